"""Building a class-partitioned backend (ED-ViT) from a server ViT: grouping, sub-models, pruning, fusion.

Building one (:func:`build_partitioned`), in order:

1. group the classes (:mod:`~semcomm.train.backends.grouping`): by the server's
   confusion (confusable classes share a sub-model) or at random;
2. one sub-model per group, the server with its head restricted to the
   group (:class:`~semcomm.server.backends.submodels.ClassSubModel`), fine-tuned on
   the group's images, or on all images while matching the server's logits
   for the group (``data="all"``, ``kd_loss="logits"``);
3. place the sub-models on the devices greedily and give each a parameter
   budget (:mod:`~semcomm.train.backends.assignment`);
4. prune each sub-model's heads and MLP units class-wise to its budget
   (:mod:`~semcomm.train.backends.pruning`), then fine-tune it again to recover
   (the same way, optionally distilled from its unpruned self);
5. train the fusion network on the sub-models' outputs
   (:func:`~semcomm.train.backends.heads.train_fusion`).

Every step's length is an argument (0 skips the training steps), so the same
function builds a tiny backend in a test and the shipped ones in a recipe.
With ``plateau=`` the fine-tuning and recovery that are on (steps > 0) train
instead in epochs until the plateau on held-out training images
(:mod:`~semcomm.train.backends.plateau`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from semcomm.core.seeding import as_generator
from semcomm.data import require_in_memory
from semcomm.models.timm_vit import TimmViT
from semcomm.server.backends.base import check_labels
from semcomm.server.backends.devices import DeviceConfig
from semcomm.server.backends.fusion import FusionNetwork
from semcomm.server.backends.groups import ClassGroups
from semcomm.server.backends.partitioned import PartitionedBackend
from semcomm.server.backends.pruned import prune_vit
from semcomm.server.backends.registry import register_backend
from semcomm.server.backends.submodels import ClassSubModel
from semcomm.train.backends.assignment import Assignment, assign_greedy
from semcomm.train.backends.distillation import check_token_keep
from semcomm.train.backends.grouping import groups_by
from semcomm.train.backends.heads import train_fusion
from semcomm.train.backends.phases import Phases
from semcomm.train.backends.plateau import Plateau, as_plateau, curves_of, split_holdout
from semcomm.train.backends.pruning import full_plan, minimal_plan, plan_for_budget, pruned_parameters, unit_importance
from semcomm.train.backends.submodels import finetune_submodel


@dataclass
class PartitionedBuild:
    """What :func:`build_partitioned` made and measured.

    Attributes:
        backend: the backend.
        assignment: devices and parameter budgets (bytes) of the sub-models.
        keep_fractions: per sub-model, the fraction of heads and MLP units kept.
        parameters: per sub-model, its parameters after pruning.
        losses: training losses by phase (``finetune/<i>``, ``recover/<i>``, ``fusion``).
        curves: with ``plateau``, per sub-model loop trained to the plateau (``finetune/<i>``, ``recover/<i>``),
            its held-out curve, kept epoch and why it stopped
            (:meth:`~semcomm.train.backends.plateau.History.report`); empty otherwise.
    """

    backend: PartitionedBackend
    assignment: Assignment
    keep_fractions: list[float]
    parameters: list[int]
    losses: dict[str, list[float]] = field(default_factory=dict)
    curves: dict[str, dict] = field(default_factory=dict)


def make_groups(server: TimmViT, groups: str | ClassGroups, num_groups: int, images: torch.Tensor,
                labels: torch.Tensor, generator: torch.Generator) -> ClassGroups:
    """``groups`` itself, or groups made by ``"confusion"`` (the server's soft confusion on the images) or
    ``"random"``."""
    if isinstance(groups, ClassGroups):
        if groups.num_classes != server.num_classes:
            raise ValueError(f"the groups cover {groups.num_classes} classes but the server has "
                             f"{server.num_classes}: mismatched class counts")
        return groups
    return groups_by(groups, server, num_groups, images, labels, generator)


def build_partitioned(server: TimmViT, devices: DeviceConfig, images: torch.Tensor, labels: torch.Tensor,
                      groups: str | ClassGroups = "confusion", num_groups: int | None = None,
                      finetune_steps: int = 0, recovery_steps: int = 0, fusion_steps: int = 0,
                      importance_images: int = 256, fusion_images: int | None = None, batch_size: int = 64,
                      lr: float = 1e-4, fusion_lr: float = 1e-3, fusion_hidden: int = 64,
                      augmentation: str = "none", token_keep: tuple[float, float] | None = None,
                      kd_weight: float = 0.0, kd_loss: str = "kl", data: str = "group", bf16: bool = False,
                      bytes_per_param: int = 4, run_dir: str | Path | None = None, progress: bool = False,
                      generator: torch.Generator | int | None = None,
                      plateau: Plateau | dict | None = None) -> PartitionedBuild:
    """Build a class-partitioned backend from a server ViT (steps in the module docstring).

    Args:
        server: the trained server (a TimmViT).
        devices: the devices; by default one group per device.
        images: N x 3 x H x W training images (uint8 or [0, 1] float).
        labels: N int64 classes of the server's label space.
        groups: ``"confusion"``, ``"random"`` or explicit :class:`ClassGroups`.
        num_groups: groups to make (default: the number of devices).
        finetune_steps, recovery_steps, fusion_steps: optimiser steps before pruning, after it, and of the fusion.
        importance_images: images of the group's classes the pruning criterion averages over.
        fusion_images: training images the fusion network sees (default: all).
        augmentation, token_keep: per-batch augmentation and range of kept-patch fractions in fine-tuning and
            recovery (:func:`~semcomm.train.backends.distillation.augment`; None: whole images).
        kd_weight: weight of the soft-label KL in fine-tuning (teacher: the server restricted to the group)
            and recovery (teacher: the unpruned, fine-tuned sub-model); 0: cross-entropy only.
        kd_loss, data: the distillation term (``"kl"``, soft labels, or ``"logits"``, raw-logit matching) and the
            images each sub-model trains on (``"group"``: its classes', or ``"all"``); see
            :mod:`~semcomm.train.backends.submodels`.
        bf16: bfloat16 autocast in fine-tuning and recovery.
        bytes_per_param: bytes a parameter takes in device memory (4: float32).
        run_dir: keep each finished sub-model and the fusion there and resume from them (see
            :mod:`~semcomm.train.backends.phases`).
        generator: every random draw (grouping, batches, subsets).
        plateau: a :class:`~semcomm.train.backends.plateau.Plateau` (or its dict: ``max_epochs``, ``holdout``,
            ``min_gain``, ``patience``): first hold out ``holdout`` training images (drawn with ``generator``; no
            step of the build sees them), then train each sub-model's fine-tuning and recovery (those whose steps
            are > 0; the counts are otherwise ignored) in epochs until its top-1 among its group's classes on the
            held-out images of those classes gains less than ``min_gain`` per epoch, keeping its best epoch
            (curves in ``curves``). None: the fixed step counts.
    """
    if not isinstance(server, TimmViT):
        raise TypeError(f"a partitioned backend is built from a TimmViT server, got {type(server).__name__}")
    if not isinstance(devices, DeviceConfig):
        raise TypeError(f"devices must be a DeviceConfig, got {type(devices).__name__}")
    require_in_memory(images, "build_partitioned")  # its steps take the images as a tensor
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    labels = check_labels(labels, server.num_classes, "training labels")
    gen = as_generator(generator)
    plateau = as_plateau(plateau)
    held_out = None
    if plateau is not None:
        rows, held = split_holdout(len(images), plateau.holdout, gen)
        held_out, images, labels = (images[held], labels[held]), images[rows], labels[rows]
    server = server.eval()
    groups = make_groups(server, groups, num_groups or len(devices), images, labels, gen)
    subs = [ClassSubModel.from_server(server, group) for group in groups]
    assignment = assign_greedy(
        [len(g) for g in groups],
        [bytes_per_param * pruned_parameters(s.vit, minimal_plan(s.vit)) for s in subs],
        devices,
        [bytes_per_param * pruned_parameters(s.vit, full_plan(s.vit)) for s in subs],
    )
    settings = dict(kind="partitioned", groups=groups.to_list(), devices=devices.to_dict(),
                    steps=[finetune_steps, recovery_steps, fusion_steps], importance_images=importance_images,
                    fusion_images=fusion_images, batch_size=batch_size, lr=[lr, fusion_lr],
                    fusion_hidden=fusion_hidden, augmentation=augmentation, token_keep=check_token_keep(token_keep),
                    kd_weight=kd_weight, kd_loss=kd_loss, data=data, bf16=bf16, bytes_per_param=bytes_per_param,
                    images=len(images))
    if plateau is not None:  # only then, so run directories of fixed-step builds keep their settings
        settings["plateau"] = plateau.to_dict()
    phases = Phases(run_dir, settings, gen, progress)
    losses: dict[str, list[float]] = {}
    fractions, sizes = [], []

    def finetune(model: ClassSubModel, teacher: ClassSubModel | None, steps: int, phase: str) -> list[float]:
        return finetune_submodel(model, images, labels, steps, batch_size, lr, augmentation=augmentation,
                                 token_keep=token_keep, teacher=teacher, kd_weight=kd_weight, kd_loss=kd_loss,
                                 data=data, bf16=bf16, generator=gen, plateau=plateau, held_out=held_out,
                                 partial=phases.partial(phase)) if steps else []

    def finetuned(sub: ClassSubModel, phase: str) -> tuple[ClassSubModel, list[float]]:
        teacher = ClassSubModel.from_server(server, sub.classes) if kd_weight and finetune_steps else None
        return sub, finetune(sub, teacher, finetune_steps, phase)

    def prune_and_recover(sub: ClassSubModel, budget: int, phase: str) -> tuple[ClassSubModel, float, list[float]]:
        targets = sub.targets(labels)
        chosen = (targets >= 0).nonzero().flatten()
        chosen = chosen[torch.randperm(len(chosen), generator=gen)[:importance_images]]
        importance = unit_importance(sub.vit, images[chosen], targets[chosen], batch_size)
        plan, fraction = plan_for_budget(sub.vit, importance, budget // bytes_per_param)
        pruned = ClassSubModel(prune_vit(sub.vit, plan), sub.classes)
        return pruned, fraction, finetune(pruned, sub if kd_weight else None, recovery_steps, phase)

    for i in range(len(subs)):
        tuned, losses[f"finetune/{i}"] = phases.run(f"finetune{i}", partial(finetuned, subs[i], f"finetune{i}"))
        subs[i], fraction, losses[f"recover/{i}"] = phases.run(
            f"submodel{i}", partial(prune_and_recover, tuned, assignment.budgets[i], f"submodel{i}"))
        fractions.append(fraction)
        sizes.append(sum(p.numel() for p in subs[i].parameters()))
    fusion = FusionNetwork(groups, fusion_hidden, generator=gen)
    backend = PartitionedBackend(subs, fusion, devices, assignment.devices, bytes_per_param)
    if fusion_steps:
        def fit_fusion():
            rows = torch.randperm(len(images), generator=gen)[:fusion_images or len(images)]
            outputs = backend.stage_outputs(images[rows], desc="sub-models' logits")
            history = train_fusion(fusion, outputs, labels[rows], fusion_steps, lr=fusion_lr, generator=gen)
            return fusion.state_dict(), history

        state, losses["fusion"] = phases.run("fusion", fit_fusion)
        fusion.load_state_dict(state)
    backend.eval()
    return PartitionedBuild(backend, assignment, fractions, sizes, losses, curves_of(losses))


@register_backend
def partitioned(server: str | TimmViT = "vit-server-cifar10", devices: DeviceConfig | dict | None = None,
                images: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                edge: str | TimmViT | None = None, curves: dict | None = None, **kwargs) -> PartitionedBackend:
    """A class-partitioned backend built from ``server`` on ``devices`` (a config or its dict) with training
    ``images`` and ``labels``; ``kwargs`` go to :func:`build_partitioned`. ``edge`` is not used (every sub-model
    comes from the server); it is accepted so that every trained backend is created from the same models.
    ``curves``: a dict that receives the build's held-out curves (:attr:`PartitionedBuild.curves`)."""
    from semcomm.models import create_model

    if devices is None or images is None or labels is None:
        raise ValueError("the partitioned backend is built from a device config and training images and labels: "
                         "pass devices=, images=, labels=")
    devices = devices if isinstance(devices, DeviceConfig) else DeviceConfig.from_dict(devices)
    server = create_model(server) if isinstance(server, str) else server
    build = build_partitioned(server, devices, images, labels, **kwargs)
    if curves is not None:
        curves.update(build.curves)
    return build.backend
