"""Progressive specialist training of experts, and building an expert-routed backend.

An expert starts from general weights (a copy of the server, or of any ViT
over all C classes, e.g. a student) and is fine-tuned over all C classes
(plain cross-entropy on the true labels, plus optionally the server's soft
labels) on batches whose composition narrows toward its *domain*, step by
step. Here "progressive" means:

* the domain of expert e is the images whose true class is in e's subset,
  together with, when the generalist's routes are given, the images the
  router sends to e (the edge's confusions the expert will actually face);
* training runs in P equal phases; in phase p (0-based) a fraction

      share_p = s0 + (s_final - s0) p / (P - 1)

  of every batch is drawn from the domain and the rest from the other images,
  where s0 is the domain's natural share of the training set (phase 0 is
  the generalist's own data distribution) and ``s_final`` (default 0.9)
  where it ends; one phase (P = 1) is a static specialist trained at
  ``s_final`` throughout. Keeping some out-of-domain images to the end lets an
  expert still answer an image the router sent it by mistake.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch

from semcomm.inference import predict_logits
from semcomm.models.timm_vit import TimmViT
from semcomm.core.seeding import as_generator
from semcomm.server.backends.base import ViTStage, check_labels
from semcomm.server.backends.devices import DeviceConfig
from semcomm.train.backends.distillation import augment, check_token_keep, supervised_loss
from semcomm.server.backends.experts import ExpertBackend, ExpertClasses, ExpertStage, TopKMassRouter
from semcomm.server.backends.grouping import groups_by
from semcomm.train.backends.phases import Phases, optimizer_step, training_mode, training_steps
from semcomm.server.backends.pruning import plan_for_budget, prune_vit, unit_importance
from semcomm.server.backends.registry import register_backend
from semcomm.server.backends.vitspec import ViTSpec


@dataclass(frozen=True)
class ProgressiveSchedule:
    """The share of in-domain images per batch over training (module docstring).

    Attributes:
        phases: P >= 1.
        final_share: s_final in (0, 1].
    """

    phases: int = 3
    final_share: float = 0.9

    def __post_init__(self):
        if isinstance(self.phases, bool) or not isinstance(self.phases, int) or self.phases < 1:
            raise ValueError(f"phases must be a positive integer, got {self.phases!r}")
        if not 0 < self.final_share <= 1:
            raise ValueError(f"final_share must lie in (0, 1], got {self.final_share!r}")

    def share(self, phase: int, natural: float) -> float:
        """share_p of phase ``phase`` for a domain whose natural share is ``natural`` (never below it)."""
        if self.phases == 1:
            return max(natural, self.final_share)
        return natural + max(0.0, self.final_share - natural) * phase / (self.phases - 1)

    def shares(self, steps: int, natural: float) -> list[float]:
        """The in-domain share of each of ``steps`` steps (phase of step s: floor(s P / steps))."""
        return [self.share(s * self.phases // steps, natural) for s in range(steps)]


def domain_batch(inside: torch.Tensor, outside: torch.Tensor, share: float, batch_size: int,
                 generator: torch.Generator) -> torch.Tensor:
    """``batch_size`` image indices: round(share x batch_size) drawn (with replacement) from ``inside``, the
    rest from ``outside`` (all from ``inside`` when ``outside`` is empty)."""
    n_in = batch_size if len(outside) == 0 else round(share * batch_size)
    return torch.cat([inside[torch.randint(len(inside), (n_in,), generator=generator)],
                      outside[torch.randint(max(1, len(outside)), (batch_size - n_in,), generator=generator)]])


def train_specialist(expert: ExpertStage, images: torch.Tensor, labels: torch.Tensor, steps: int,
                     schedule: ProgressiveSchedule = ProgressiveSchedule(), routed: torch.Tensor | None = None,
                     teacher: TimmViT | None = None, kd_weight: float = 0.0, temperature: float = 4.0,
                     batch_size: int = 64, lr: float = 1e-4, weight_decay: float = 0.05, augmentation: str = "flip",
                     token_keep: tuple[float, float] | None = None, bf16: bool = False,
                     generator: torch.Generator | int | None = None) -> list[float]:
    """Fine-tune ``expert`` progressively toward its domain (module docstring; AdamW).

    Args:
        images: N x 3 x H x W training images (uint8 or [0, 1] float).
        labels: N int64 classes in 0..C-1.
        steps: optimiser steps of ``batch_size`` images each.
        routed: N booleans, the images the router sends to this expert (they join its domain), or None.
        teacher: the server, whose soft labels (temperature T) are added with weight ``kd_weight``.
        token_keep: (lo, hi) range of kept-patch fractions (None: whole images).

    Returns:
        the loss of every step.
    """
    c = expert.vit.num_classes
    labels = check_labels(labels, c, "training labels")
    if steps < 0 or batch_size < 1 or len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need steps >= 0, batch_size >= 1 and matching, non-empty images and labels, got {steps}, "
                         f"{batch_size}, {len(images)}, {len(labels)}")
    if kd_weight and teacher is None:
        raise ValueError("kd_weight > 0 needs the teacher (the server) for its soft labels")
    held = torch.zeros(c, dtype=torch.bool)
    held[list(expert.classes)] = True
    domain = held[labels]
    if routed is not None:
        if routed.shape != labels.shape or routed.dtype != torch.bool:
            raise ValueError(f"routed must be N = {len(labels)} booleans, got {routed.dtype} {tuple(routed.shape)}")
        domain = domain | routed
    inside, outside = domain.nonzero().flatten(), (~domain).nonzero().flatten()
    if len(inside) == 0:
        raise ValueError(f"no training image is in the domain of the expert of classes {list(expert.classes)}")
    token_keep = check_token_keep(token_keep)
    shares = schedule.shares(steps, len(inside) / len(labels)) if steps else []
    gen = as_generator(generator)
    optimizer = torch.optim.AdamW(expert.parameters(), lr=lr, weight_decay=weight_decay)
    soft_teacher = ViTStage(teacher.eval()) if kd_weight else None
    losses = []
    with training_mode(expert, gen):
        for step in training_steps(len(shares), "specialist"):
            share = shares[step]
            index = domain_batch(inside, outside, share, min(batch_size, len(labels)), gen)
            batch, positions = augment(images[index], expert.vit.num_patches, augmentation, token_keep, gen)
            loss = supervised_loss(expert, batch, positions, labels[index], soft_teacher, kd_weight, temperature, bf16)
            losses.append(optimizer_step(optimizer, loss))
    return losses


@dataclass
class ExpertBuild:
    """What :func:`build_experts` made.

    Attributes:
        backend: the backend.
        parameters: per expert, its parameters.
        losses: training losses per expert (``expert/<i>``).
        routed_share: per expert, the share of the training images the router sends it.
    """

    backend: ExpertBackend
    parameters: list[int]
    losses: dict[str, list[float]] = field(default_factory=dict)
    routed_share: list[float] = field(default_factory=list)


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
                  generator: torch.Generator | int | None = None) -> ExpertBuild:
    """Build an expert-routed backend: the edge as generalist, one expert per device.

    Args:
        edge: the generalist edge ViT (its logits route).
        server: the server; experts start as copies of it unless ``init`` is given, and it gives the soft labels.
        devices: the devices; experts, largest subset first, go to the fastest devices (one per device). An
            expert larger than its device's memory is pruned to it first (heads and MLP units, class-wise Taylor
            criterion of :mod:`~semcomm.backends.pruning` on ``importance_images`` images of its domain).
        images, labels: the training set (N x 3 x H x W, N int64 classes).
        num_experts: E (default: the number of devices); 1 <= E <= min(devices, classes).
        subsets: ``"confusion"`` (the edge's), ``"random"``, or an :class:`ExpertClasses` (may overlap).
        top_k: k of the router.
        init: a ViT over all classes to start every expert from (e.g. a student) instead of the server.
        steps: progressive training steps per expert (0: experts stay copies of their start).
        schedule: the narrowing of each expert's batches (see :class:`ProgressiveSchedule`).
        use_routes: the images the router sends to an expert join its domain.
        kd_weight, temperature: weight and temperature of the server's soft labels (0: labels only).
        run_dir: keep each finished expert there and resume from it (see :mod:`~semcomm.backends.phases`).
        generator: every random draw.
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
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    labels = check_labels(labels, edge.num_classes, "training labels")
    gen = as_generator(generator)
    settings = dict(kind="experts", n=e, subsets=subsets if isinstance(subsets, str) else subsets.to_list(),
                    top_k=top_k, init=None if init is None else ViTSpec.of(init).to_dict(), steps=steps,
                    schedule=repr(schedule), use_routes=use_routes, kd_weight=kd_weight, temperature=temperature,
                    batch_size=batch_size, lr=lr, token_keep=token_keep, augmentation=augmentation, bf16=bf16,
                    images=len(images),
                    importance_images=importance_images, devices=devices.to_dict())
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
                                       token_keep=token_keep, bf16=bf16, generator=gen) if steps else []
            return expert, history

        expert, losses[f"expert/{i}"] = phases.run(f"expert{i}", one_expert)
        experts.append(expert)
    backend = ExpertBackend(edge, experts, devices, placement, top_k, classes.allow_overlap, bytes_per_param)
    shares = [float((route == i).float().mean()) for i in range(e)]
    return ExpertBuild(backend, [sum(p.numel() for p in x.parameters()) for x in experts], losses, shares)


@register_backend
def experts(edge: str | TimmViT = "vit-edge-cifar10", server: str | TimmViT = "vit-server-cifar10",
            devices: DeviceConfig | dict | None = None, images: torch.Tensor | None = None,
            labels: torch.Tensor | None = None, **kwargs) -> ExpertBackend:
    """An expert-routed backend (the edge as generalist, experts from the server) on ``devices`` (a config or
    its dict) trained on ``images`` and ``labels``; ``kwargs`` go to :func:`build_experts`."""
    from semcomm.models import create_model

    if devices is None or images is None or labels is None:
        raise ValueError("the experts backend is trained on a device config from training images and labels: "
                         "pass devices=, images=, labels=")
    devices = devices if isinstance(devices, DeviceConfig) else DeviceConfig.from_dict(devices)
    edge = create_model(edge) if isinstance(edge, str) else edge
    server = create_model(server) if isinstance(server, str) else server
    return build_experts(edge, server, devices, images, labels, **kwargs).backend
