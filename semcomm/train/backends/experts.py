"""Building an expert-routed backend: the edge as generalist, one progressively specialised expert per device.

The experts' class subsets are balanced and disjoint, by the *edge's*
confusion (the classes the generalist mixes up share an expert) or at
random, or given. Each expert starts as a copy of the server (or of a given
ViT over all classes), is pruned class-wise to its device's memory when it
does not fit, and is trained progressively toward its domain
(:func:`~semcomm.train.backends.specialists.train_specialist`), for a fixed
number of steps or, with ``plateau=``, in epochs until the plateau on
held-out training images (:mod:`~semcomm.train.backends.plateau`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch

from semcomm.core.seeding import as_generator
from semcomm.data import require_in_memory
from semcomm.inference import predict_logits
from semcomm.models.timm_vit import TimmViT
from semcomm.server.backends.base import check_labels
from semcomm.server.backends.devices import DeviceConfig
from semcomm.server.backends.experts import ExpertBackend, ExpertClasses, ExpertStage, TopKMassRouter
from semcomm.server.backends.pruned import prune_vit
from semcomm.server.backends.registry import register_backend
from semcomm.server.backends.vitspec import ViTSpec
from semcomm.train.backends.grouping import groups_by
from semcomm.train.backends.phases import Phases
from semcomm.train.backends.plateau import Plateau, as_plateau, curves_of, split_holdout
from semcomm.train.backends.pruning import plan_for_budget, unit_importance
from semcomm.train.backends.specialists import ProgressiveSchedule, train_specialist


@dataclass
class ExpertBuild:
    """What :func:`build_experts` made.

    Attributes:
        backend: the backend.
        parameters: per expert, its parameters.
        losses: training losses per expert (``expert/<i>``).
        routed_share: per expert, the share of the training images the router sends it.
        curves: with ``plateau``, per expert (``expert/<i>``) its held-out curve, kept epoch and why it stopped
            (:meth:`~semcomm.train.backends.plateau.History.report`); empty otherwise.
    """

    backend: ExpertBackend
    parameters: list[int]
    losses: dict[str, list[float]] = field(default_factory=dict)
    routed_share: list[float] = field(default_factory=list)
    curves: dict[str, dict] = field(default_factory=dict)


def make_subsets(edge: TimmViT, subsets: str | ExpertClasses, num_experts: int, images: torch.Tensor,
                 labels: torch.Tensor, bf16: bool, generator: torch.Generator) -> ExpertClasses:
    """``subsets`` itself, or balanced disjoint subsets by the *edge's* confusion (the classes the generalist
    mixes up share an expert, so its top-k mass points at one expert) or at random."""
    if isinstance(subsets, ExpertClasses):
        if subsets.num_classes != edge.num_classes or len(subsets) != num_experts:
            raise ValueError(f"the subsets are {len(subsets)} over {subsets.num_classes} classes but the build has "
                             f"{num_experts} experts over the edge's {edge.num_classes} classes")
        return subsets
    groups = groups_by(subsets, edge, num_experts, images, labels, generator, bf16, "subsets", "an ExpertClasses")
    return ExpertClasses(groups.groups, edge.num_classes)


def build_experts(edge: TimmViT, server: TimmViT, devices: DeviceConfig, images: torch.Tensor, labels: torch.Tensor,
                  num_experts: int | None = None, subsets: str | ExpertClasses = "confusion", top_k: int = 3,
                  init: TimmViT | None = None, steps: int = 0, schedule: ProgressiveSchedule = ProgressiveSchedule(),
                  use_routes: bool = True, kd_weight: float = 0.0, temperature: float = 4.0, batch_size: int = 64,
                  lr: float = 1e-4, token_keep: tuple[float, float] | None = None, augmentation: str = "flip",
                  bf16: bool = False, bytes_per_param: int = 4, run_dir: str | Path | None = None,
                  importance_images: int = 256, progress: bool = False,
                  generator: torch.Generator | int | None = None, plateau: Plateau | dict | None = None) -> ExpertBuild:
    """Build an expert-routed backend: the edge as generalist, one expert per device.

    Args:
        edge: the generalist edge ViT (its logits route).
        server: the server; experts start as copies of it unless ``init`` is given, and it gives the soft labels.
        devices: the devices; experts, largest subset first, go to the fastest devices (one per device). An
            expert larger than its device's memory is pruned to it first (heads and MLP units, class-wise Taylor
            criterion of :mod:`~semcomm.train.backends.pruning` on ``importance_images`` images of its domain).
        images, labels: the training set (N x 3 x H x W, N int64 classes).
        num_experts: E (default: the number of devices); 1 <= E <= min(devices, classes).
        subsets: ``"confusion"`` (the edge's), ``"random"``, or an :class:`ExpertClasses` (may overlap).
        top_k: k of the router.
        init: a ViT over all classes to start every expert from (e.g. a student) instead of the server.
        steps: progressive training steps per expert (0: experts stay copies of their start).
        schedule: the narrowing of each expert's batches (see :class:`ProgressiveSchedule`).
        use_routes: the images the router sends to an expert join its domain.
        kd_weight, temperature: weight and temperature of the server's soft labels (0: labels only).
        run_dir: keep each finished expert there and resume from it (see :mod:`~semcomm.train.backends.phases`).
        generator: every random draw.
        plateau: a :class:`~semcomm.train.backends.plateau.Plateau` (or its dict: ``max_epochs``, ``holdout``,
            ``min_gain``, ``patience``): first hold out ``holdout`` training images (drawn with ``generator``; no
            step of the build sees them), then train each expert (when ``steps`` > 0; the count is otherwise
            ignored) in epochs, one schedule phase per epoch, until its top-1 on the held-out images of its subset's
            classes gains less than ``min_gain`` per epoch, keeping its best epoch (curves in ``curves``). None:
            ``steps`` steps.
    """
    for name, model in (("edge", edge), ("server", server), ("init", init)):
        if model is not None and not isinstance(model, TimmViT):
            raise TypeError(f"{name} must be a TimmViT, got {type(model).__name__}")
    if not isinstance(devices, DeviceConfig):
        raise TypeError(f"devices must be a DeviceConfig, got {type(devices).__name__}")
    start = init if init is not None else server
    if start.num_classes != edge.num_classes or server.num_classes != edge.num_classes:
        raise ValueError(f"the edge has {edge.num_classes} classes, the server {server.num_classes} and the experts' "
                         f"start {start.num_classes}: mismatched class counts")
    e = len(devices) if num_experts is None else num_experts
    if isinstance(e, bool) or not isinstance(e, int) or e < 1:
        raise ValueError(f"the number of experts must be an integer >= 1, got {e!r}")
    if e > len(devices) or e > edge.num_classes:
        raise ValueError(f"{e} experts need {e} devices (one each) and at least {e} classes; there are "
                         f"{len(devices)} devices and {edge.num_classes} classes")
    require_in_memory(images, "build_experts")  # its steps take the images as a tensor
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    labels = check_labels(labels, edge.num_classes, "training labels")
    gen = as_generator(generator)
    plateau = as_plateau(plateau)
    held_out = None
    if plateau is not None:
        rows, held = split_holdout(len(images), plateau.holdout, gen)
        held_out, images, labels = (images[held], labels[held]), images[rows], labels[rows]
    settings = dict(kind="experts", n=e, subsets=subsets if isinstance(subsets, str) else subsets.to_list(),
                    top_k=top_k, init=None if init is None else ViTSpec.of(init).to_dict(), steps=steps,
                    schedule=repr(schedule), use_routes=use_routes, kd_weight=kd_weight, temperature=temperature,
                    batch_size=batch_size, lr=lr, token_keep=token_keep, augmentation=augmentation, bf16=bf16,
                    images=len(images),
                    importance_images=importance_images, devices=devices.to_dict())
    if plateau is not None:  # only then, so run directories of fixed-step builds keep their settings
        settings["plateau"] = plateau.to_dict()
    phases = Phases(run_dir, settings, gen, progress)
    classes = make_subsets(edge.eval(), subsets, e, images, labels, bf16, gen)
    router = TopKMassRouter(classes, top_k)
    route = router(predict_logits(edge, images, bf16=bf16))  # where the generalist sends each training image
    by_speed = sorted(devices, key=lambda d: -d.speed)  # stable: config order among equals
    order = sorted(range(e), key=lambda i: (-len(classes.subsets[i]), i))
    placement = [""] * e
    for rank, i in enumerate(order):
        placement[i] = by_speed[rank].name
    losses, experts = {}, []
    for i, subset in enumerate(classes.subsets):
        def one_expert(i=i, subset=subset):
            vit = copy.deepcopy(start).eval()
            domain = torch.isin(labels, torch.tensor(subset)) | ((route == i) & use_routes)
            budget = devices[placement[i]].memory_bytes // bytes_per_param
            if sum(p.numel() for p in vit.parameters()) > budget:  # shrink to the device: class-wise Taylor pruning
                chosen = domain.nonzero().flatten()
                chosen = chosen[torch.randperm(len(chosen), generator=gen)[:importance_images]]
                importance = unit_importance(vit, images[chosen], labels[chosen], batch_size)
                vit = prune_vit(vit, plan_for_budget(vit, importance, budget)[0])
            expert = ExpertStage(vit, subset)
            history = train_specialist(expert, images, labels, steps, schedule,
                                       routed=(route == i) if use_routes else None,
                                       teacher=server.eval() if kd_weight else None, kd_weight=kd_weight,
                                       temperature=temperature, batch_size=batch_size, lr=lr, augmentation=augmentation,
                                       token_keep=token_keep, bf16=bf16, generator=gen, plateau=plateau,
                                       held_out=held_out, partial=phases.partial(f"expert{i}")) if steps else []
            return expert, history

        expert, losses[f"expert/{i}"] = phases.run(f"expert{i}", one_expert)
        experts.append(expert)
    backend = ExpertBackend(edge, experts, devices, placement, top_k, classes.allow_overlap, bytes_per_param)
    shares = [float((route == i).float().mean()) for i in range(e)]
    return ExpertBuild(backend, [sum(p.numel() for p in x.parameters()) for x in experts], losses, shares,
                       curves_of(losses))


@register_backend
def experts(edge: str | TimmViT = "vit-edge-cifar10", server: str | TimmViT = "vit-server-cifar10",
            devices: DeviceConfig | dict | None = None, images: torch.Tensor | None = None,
            labels: torch.Tensor | None = None, schedule: ProgressiveSchedule | tuple | list = ProgressiveSchedule(),
            curves: dict | None = None, **kwargs) -> ExpertBackend:
    """An expert-routed backend (the edge as generalist, experts from the server) on ``devices`` (a config or
    its dict) trained on ``images`` and ``labels``; ``schedule`` may be its (phases, final_share) (as a recipe
    stores it); ``kwargs`` go to :func:`build_experts`. ``curves``: a dict that receives the build's held-out
    curves (:attr:`ExpertBuild.curves`)."""
    from semcomm.models import create_model

    if devices is None or images is None or labels is None:
        raise ValueError("the experts backend is trained on a device config from training images and labels: "
                         "pass devices=, images=, labels=")
    devices = devices if isinstance(devices, DeviceConfig) else DeviceConfig.from_dict(devices)
    edge = create_model(edge) if isinstance(edge, str) else edge
    server = create_model(server) if isinstance(server, str) else server
    if not isinstance(schedule, ProgressiveSchedule):
        schedule = ProgressiveSchedule(*schedule)
    build = build_experts(edge, server, devices, images, labels, schedule=schedule, **kwargs)
    if curves is not None:
        curves.update(build.curves)
    return build.backend
