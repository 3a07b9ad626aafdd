"""Building a decomposed backend (DeViT) from a server ViT: students distilled per class group, a fusion head.

Building one (:func:`build_decomposed`), in order:

1. split the classes into N balanced groups (DeViT's: class ids shuffled with
   seed 42, cut into equal chunks; or by the server's confusion, or given);
2. per group, a *sub-teacher*: the server with its head restricted to the
   group's classes, optionally fine-tuned on the group's images;
3. per group, a *student* (:func:`~semcomm.train.backends.students.make_student`):
   the project's ViT architecture, smaller, either a copy of a given ViT (e.g.
   the shipped edge) with its head restricted to the group, optionally
   shortened (blocks kept evenly spaced) and pruned (heads and MLP units by the
   Taylor criterion of :mod:`~semcomm.train.backends.pruning` on the group's
   images: DeViT's shrinking step, with this criterion instead of HSIC), or a
   fresh one of a given shape;
4. distil each sub-teacher into its student (:mod:`~semcomm.train.backends.distillation`:
   soft labels at temperature T plus the q/k/v token-relation KL terms); when
   every student learns on all images from the unchanged server, all are
   distilled at once, sharing each batch and the server's forward
   (:func:`~semcomm.train.backends.distillation.distill_together`: one teacher
   forward per step instead of N);
5. the fusion head (:class:`~semcomm.server.backends.decomposed.TokenFusion`):
   the students' class tokens concatenated, -> Linear -> C logits (or a
   one-hidden-layer MLP), trained on the frozen students' tokens against the
   labels and the server's soft labels
   (:func:`~semcomm.train.backends.heads.train_token_fusion`); optionally
6. students and fusion fine-tuned jointly, end to end (:func:`finetune_jointly`).

With ``plateau=`` the students' distillation (step 4) trains in epochs until
the plateau on held-out training images instead of for ``distill_steps``
(:mod:`~semcomm.train.backends.plateau`); the other phases keep their steps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from semcomm.core.seeding import as_generator
from semcomm.data import require_in_memory
from semcomm.inference import autocast, predict_logits
from semcomm.models.timm_vit import TimmViT
from semcomm.server.backends.base import check_labels, parameter_bytes
from semcomm.server.backends.decomposed import DecomposedBackend, TokenFusion
from semcomm.server.backends.devices import DeviceConfig
from semcomm.server.backends.groups import ClassGroups
from semcomm.server.backends.registry import register_backend
from semcomm.server.backends.submodels import ClassSubModel
from semcomm.server.backends.vitspec import ViTSpec
from semcomm.train.backends.assignment import assign_greedy
from semcomm.train.backends.distillation import (
    DistillConfig, augment, check_token_keep, distill, distill_together, soft_label_kl,
)
from semcomm.train.backends.grouping import groups_by
from semcomm.train.backends.heads import train_token_fusion
from semcomm.train.backends.phases import Phases, optimizer_step, training_mode, training_steps
from semcomm.train.backends.plateau import Plateau, as_plateau, curves_of, split_holdout
from semcomm.train.backends.students import make_student
from semcomm.train.backends.submodels import finetune_submodel


def finetune_jointly(backend: DecomposedBackend, server: TimmViT, images: torch.Tensor, labels: torch.Tensor,
                     steps: int, alpha: float = 0.5, temperature: float = 4.0, batch_size: int = 64,
                     lr: float = 1e-4, weight_decay: float = 0.05, augmentation: str = "flip",
                     token_keep: tuple[float, float] | None = None, bf16: bool = False,
                     generator: torch.Generator | int | None = None) -> list[float]:
    """Fine-tune the students and the fusion head together, end to end: (1 - alpha) CE(fused, label) +
    alpha T^2 KL(server soft labels || fused), on augmented batches (see
    :func:`~semcomm.train.backends.distillation.augment`). Returns the loss of every step."""
    labels = check_labels(labels, backend.num_classes, "training labels")
    if steps < 0 or len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need steps >= 0 and matching, non-empty images and labels, got {steps}, {len(images)}, "
                         f"{len(labels)}")
    token_keep = check_token_keep(token_keep)
    gen = as_generator(generator)
    optimizer = torch.optim.AdamW(backend.parameters(), lr=lr, weight_decay=weight_decay)
    server.eval()
    losses = []
    with training_mode(backend, gen):
        for _ in training_steps(steps, "joint fine-tuning"):
            index = torch.randint(len(images), (min(batch_size, len(images)),), generator=gen)
            batch, positions = augment(images[index], backend.num_patches, augmentation, token_keep, gen)
            with torch.no_grad(), autocast(bf16):
                target = server(batch) if positions is None else server.forward_tokens(batch, positions)
            with autocast(bf16):
                fused = backend.fusion([s(batch, positions) for s in backend.students])
            loss = (1 - alpha) * F.cross_entropy(fused.float(), labels[index]) + \
                alpha * soft_label_kl(fused, target, temperature)
            losses.append(optimizer_step(optimizer, loss))
    return losses


@dataclass
class DecomposedBuild:
    """What :func:`build_decomposed` made and measured.

    Attributes:
        backend: the backend.
        parameters: per student, its parameters.
        losses: training losses by phase (``subteacher/<i>``, ``distill/<i>``, ``fusion``, ``joint``).
        curves: with ``plateau``, per student (``distill/<i>``) its held-out curve, kept epoch and why it stopped
            (:meth:`~semcomm.train.backends.plateau.History.report`); empty otherwise.
    """

    backend: DecomposedBackend
    parameters: list[int]
    losses: dict[str, list[float]] = field(default_factory=dict)
    curves: dict[str, dict] = field(default_factory=dict)


def build_decomposed(server: TimmViT, devices: DeviceConfig, images: torch.Tensor, labels: torch.Tensor,
                     student: TimmViT | dict | None = None, num_students: int | None = None,
                     groups: str | ClassGroups = "random", group_seed: int = 42, student_depth: int | None = None,
                     student_keep: float = 1.0, subteacher_steps: int = 0, distill_steps: int = 0,
                     fusion_steps: int = 0, joint_steps: int = 0, distill_config: DistillConfig = DistillConfig(),
                     data: str = "all", fusion_images: int | None = None, fusion_hidden: int = 0,
                     batch_size: int = 64, lr: float = 5e-4, fusion_lr: float = 1e-3, joint_lr: float = 1e-4,
                     subteacher_lr: float = 1e-4, token_keep: tuple[float, float] | None = None,
                     augmentation: str = "flip", bf16: bool = False,
                     bytes_per_param: int = 4, run_dir: str | Path | None = None, progress: bool = False,
                     generator: torch.Generator | int | None = None,
                     plateau: Plateau | dict | None = None) -> DecomposedBuild:
    """Build a DeViT backend from a server ViT (steps in the module docstring).

    Args:
        server: the trained server (a TimmViT), the teacher.
        devices: the devices; by default one student per device.
        images: N x 3 x H x W training images (uint8 or [0, 1] float).
        labels: N int64 classes of the server's label space.
        student: how students start (see :func:`make_student`; default: a fresh ViT of half the server's width
            and depth, with half its heads).
        num_students: N (default: the number of devices); N >= 1 and at most the number of classes.
        groups: ``"random"`` (shuffled with ``group_seed``, DeViT's), ``"confusion"`` (the server's) or given.
        student_depth, student_keep: shrinking of each student (see :func:`make_student`).
        subteacher_steps, distill_steps, fusion_steps, joint_steps: optimiser steps of each phase (0 skips it).
        distill_config: the distillation loss's settings; its alpha and temperature also weigh the server's soft
            labels in the fusion and joint phases.
        data: ``"all"``: each student is distilled on every training image (the CE term on its group's only);
            ``"group"``: on its group's images only.
        fusion_images: training images the fusion head sees (default: all).
        token_keep: (lo, hi) range of kept-patch fractions in distillation and joint fine-tuning (None: whole
            images).
        bf16: forwards under CPU bf16 autocast while training.
        run_dir: keep each finished phase there and resume from it (see :mod:`~semcomm.train.backends.phases`).
        generator: every random draw (batches, subsets, fresh weights; the random grouping uses ``group_seed``).
        plateau: a :class:`~semcomm.train.backends.plateau.Plateau` (or its dict: ``max_epochs``, ``holdout``,
            ``min_gain``, ``patience``): first hold out ``holdout`` training images (drawn with ``generator``; no
            phase sees them), then distil the students (when ``distill_steps`` > 0; the count is otherwise ignored)
            in epochs until a student's top-1 among its group's classes on the held-out images of those classes
            gains less than ``min_gain`` per epoch (distilled together: the students' mean), keeping the best
            epoch (curves in ``curves``). None: ``distill_steps`` steps.
    """
    if not isinstance(server, TimmViT):
        raise TypeError(f"a decomposed backend is distilled from a TimmViT server, got {type(server).__name__}")
    if not isinstance(devices, DeviceConfig):
        raise TypeError(f"devices must be a DeviceConfig, got {type(devices).__name__}")
    n = len(devices) if num_students is None else num_students
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of students N must be an integer >= 1, got {n!r}")
    if n > server.num_classes:
        raise ValueError(f"N = {n} students need at least N classes; the server has {server.num_classes}")
    require_in_memory(images, "build_decomposed")  # its steps take the images as a tensor
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if data not in ("all", "group"):
        raise ValueError(f"data must be 'all' or 'group', got {data!r}")
    labels = check_labels(labels, server.num_classes, "training labels")
    gen = as_generator(generator)
    plateau = as_plateau(plateau)
    held_images = held_labels = None
    if plateau is not None:
        rows, held = split_holdout(len(images), plateau.holdout, gen)
        held_images, held_labels, images, labels = images[held], labels[held], images[rows], labels[rows]
    server = server.eval()
    if student is None:
        m = server.model
        student = {"embed_dim": max(m.blocks[0].attn.head_dim, m.embed_dim // 2), "depth": max(1, len(m.blocks) // 2),
                   "num_heads": max(1, m.blocks[0].attn.num_heads // 2), "mlp_ratio": 2.0}
    settings = dict(kind="devit", n=n, groups=groups if isinstance(groups, str) else groups.to_list(),
                    group_seed=group_seed,
                    student=student if isinstance(student, dict) else ViTSpec.of(student).to_dict(),
                    student_depth=student_depth, student_keep=student_keep, steps=[subteacher_steps, distill_steps,
                    fusion_steps, joint_steps], distill=repr(distill_config), data=data, fusion_images=fusion_images,
                    fusion_hidden=fusion_hidden, batch_size=batch_size, lr=[lr, fusion_lr, joint_lr, subteacher_lr],
                    token_keep=token_keep, augmentation=augmentation, bf16=bf16, images=len(images))
    together = data == "all" and not subteacher_steps
    if together:  # one phase for all students: another run directory than per-student phases
        settings["distilled"] = "together"
    if plateau is not None:  # only then, so run directories of fixed-step builds keep their settings
        settings["plateau"] = plateau.to_dict()
    phases = Phases(run_dir, settings, gen, progress)
    if isinstance(groups, ClassGroups):
        if groups.num_classes != server.num_classes or len(groups) != n:
            raise ValueError(f"the groups are {len(groups)} over {groups.num_classes} classes but the build has "
                             f"N = {n} students over the server's {server.num_classes} classes")
    else:
        groups = groups_by(groups, server, n, images, labels, group_seed, bf16)

    losses: dict[str, list[float]] = {}
    distill_options = dict(config=distill_config, batch_size=batch_size, lr=lr, augmentation=augmentation,
                           token_keep=token_keep, bf16=bf16, generator=gen, plateau=plateau)
    if together:
        def all_students():
            stages = [make_student(student, server, group, images, labels, student_depth, student_keep, generator=gen)
                      for group in groups]
            targets = [ClassSubModel(stage.vit, group).targets(labels) for stage, group in zip(stages, groups)]
            held_out = None if plateau is None else (
                held_images, [ClassSubModel(stage.vit, group).targets(held_labels) for stage, group in zip(stages, groups)])
            history = [[] for _ in stages] if not distill_steps else distill_together(
                [stage.vit for stage in stages], server, images, targets, distill_steps, columns=list(groups),
                held_out=held_out, partial=phases.partial("students"), **distill_options)
            return stages, {f"distill/{i}": h for i, h in enumerate(history)}

        students, history = phases.run("students", all_students)
        losses.update(history)
    else:
        students = []
        for i, group in enumerate(groups):
            def one_student(i=i, group=group):
                teacher = ClassSubModel.from_server(server, group)
                history = {}
                if subteacher_steps:
                    history[f"subteacher/{i}"] = finetune_submodel(teacher, images, labels, subteacher_steps,
                                                                   batch_size, lr=subteacher_lr, generator=gen)
                stage = make_student(student, server, group, images, labels, student_depth, student_keep,
                                     generator=gen)
                targets = teacher.targets(labels)
                pool = slice(None) if data == "all" else targets >= 0
                held_out = None if plateau is None else (held_images, teacher.targets(held_labels))
                history[f"distill/{i}"] = distill(stage.vit, teacher.vit, images[pool], targets[pool], distill_steps,
                                                  held_out=held_out, partial=phases.partial(f"student{i}"),
                                                  **distill_options) if distill_steps else []
                return stage, history

            stage, history = phases.run(f"student{i}", one_student)
            students.append(stage)
            losses.update(history)
    sizes = [sum(p.numel() for p in s.parameters()) for s in students]
    largest = max(d.memory_bytes for d in devices)
    for i, size in enumerate(sizes):
        if size * bytes_per_param > largest:
            raise ValueError(f"student {i} has {size * bytes_per_param / 1e6:.3f} MB of parameters but the largest "
                             f"device holds {largest / 1e6:.3f} MB; make the students smaller (student=, "
                             "student_depth=, student_keep=)")
    try:
        assignment = assign_greedy(sizes, [parameter_bytes(s, bytes_per_param) for s in students], devices)
    except ValueError as err:
        raise ValueError(f"the students ({', '.join(f'{bytes_per_param * n / 1e6:.3f}' for n in sizes)} MB) do not "
                         f"fit the devices ({', '.join(f'{d.name} {d.memory_mb:g}' for d in devices)} MB); make them "
                         "smaller (student=, student_depth=, student_keep=)") from err
    fusion = TokenFusion([s.width for s in students], server.num_classes, fusion_hidden, generator=gen)
    backend = DecomposedBackend(students, fusion, devices, assignment.devices, bytes_per_param)
    if fusion_steps:
        def fit_fusion():
            rows = torch.randperm(len(images), generator=gen)[:fusion_images or len(images)]
            tokens = backend.stage_outputs(images[rows], bf16=bf16, desc="students' tokens")
            teacher_logits = predict_logits(server, images[rows], bf16=bf16, desc="server's logits")
            history = train_token_fusion(fusion, tokens, labels[rows], fusion_steps, teacher_logits,
                                         distill_config.alpha, distill_config.temperature, lr=fusion_lr, generator=gen)
            return fusion.state_dict(), history

        state, losses["fusion"] = phases.run("fusion", fit_fusion)
        fusion.load_state_dict(state)
    if joint_steps:
        def joint():
            history = finetune_jointly(backend, server, images, labels, joint_steps, distill_config.alpha,
                                       distill_config.temperature, batch_size, joint_lr, augmentation=augmentation,
                                       token_keep=token_keep, bf16=bf16, generator=gen)
            return backend.state_dict(), history

        state, losses["joint"] = phases.run("joint", joint)
        backend.load_state_dict(state)
    backend.eval()
    return DecomposedBuild(backend, sizes, losses, curves_of(losses))


@register_backend
def devit(server: str | TimmViT = "vit-server-cifar10", devices: DeviceConfig | dict | None = None,
          images: torch.Tensor | None = None, labels: torch.Tensor | None = None, edge: str | TimmViT | None = None,
          distill_config: DistillConfig | dict = DistillConfig(), curves: dict | None = None,
          **kwargs) -> DecomposedBackend:
    """A DeViT backend distilled from ``server`` onto ``devices`` (a config or its dict) with training ``images``
    and ``labels``. ``edge`` (a zoo name or a TimmViT): the students start from it unless ``student`` is given;
    ``distill_config`` may be its dict (as a recipe stores it); ``kwargs`` go to :func:`build_decomposed`.
    ``curves``: a dict that receives the build's held-out curves (:attr:`DecomposedBuild.curves`)."""
    from semcomm.models import create_model

    if devices is None or images is None or labels is None:
        raise ValueError("the devit backend is distilled on a device config from training images and labels: "
                         "pass devices=, images=, labels=")
    devices = devices if isinstance(devices, DeviceConfig) else DeviceConfig.from_dict(devices)
    server = create_model(server) if isinstance(server, str) else server
    if edge is not None and "student" not in kwargs:
        kwargs["student"] = create_model(edge) if isinstance(edge, str) else edge
    if isinstance(distill_config, dict):
        distill_config = DistillConfig(**distill_config)
    build = build_decomposed(server, devices, images, labels, distill_config=distill_config, **kwargs)
    if curves is not None:
        curves.update(build.curves)
    return build.backend
