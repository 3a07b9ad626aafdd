"""The decomposed backend (DeViT): N small student ViTs on N devices, a fusion head over their class tokens.

Building one (:func:`build_decomposed`), in order:

1. split the classes into N balanced groups (DeViT's: class ids shuffled with
   seed 42, cut into equal chunks; or by the server's confusion, or given);
2. per group, a *sub-teacher*: the server with its head restricted to the
   group's classes, optionally fine-tuned on the group's images;
3. per group, a *student*: the project's ViT architecture, smaller, either a
   copy of a given ViT (e.g. the shipped edge) with its head restricted to the
   group, optionally shortened (blocks kept evenly spaced) and pruned (heads
   and MLP units by the Taylor criterion of :mod:`~semcomm.backends.pruning`
   on the group's images: DeViT's shrinking step, with this criterion instead
   of HSIC), or a fresh one of a given shape;
4. distil each sub-teacher into its student (:mod:`~semcomm.backends.distillation`:
   soft labels at temperature T plus the q/k/v token-relation KL terms); when
   every student learns on all images from the unchanged server, all are
   distilled at once, sharing each batch and the server's forward
   (:func:`~semcomm.backends.distillation.distill_together`: one teacher
   forward per step instead of N);
5. the fusion head: the students' class tokens (each student's final,
   normalised CLS token, B x D_i) concatenated, -> Linear -> C logits (or a
   one-hidden-layer MLP), trained on the frozen students' tokens against the
   labels and the server's soft labels; optionally
6. students and fusion fine-tuned jointly, end to end.

At inference each device runs its student on what arrived and sends back
its class token (B x D_i float32: these are the bytes to the fusion device,
the host); the students run in parallel, so the critical path is the
slowest device plus the fusion.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from semcomm.inference import autocast, predict_logits
from semcomm.models.timm_vit import TimmViT
from semcomm.core.seeding import as_generator
from semcomm.server.backends.assignment import assign_greedy
from semcomm.server.backends.base import Backend, Stage, check_labels, check_members, parameter_bytes
from semcomm.server.backends.devices import DeviceConfig
from semcomm.train.backends.distillation import (
    DistillConfig, augment, check_token_keep, distill, distill_together, soft_label_kl,
)
from semcomm.server.backends.fusion import fit_head
from semcomm.server.backends.grouping import ClassGroups, groups_by
from semcomm.train.backends.phases import Phases, optimizer_step, training_mode, training_steps
from semcomm.server.backends.pruning import keep_plan, prune_vit, unit_importance
from semcomm.server.backends.registry import register_backend
from semcomm.train.backends.submodels import ClassSubModel, finetune_submodel
from semcomm.server.backends.vitspec import ViTSpec, keep_blocks, student_vit


def class_token(vit: TimmViT, images: torch.Tensor, positions: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B x D final class token, B x C logits) of ``vit``: the token is what its head reads (after the final
    norm and pooling)."""
    captured = {}

    def grab(module, args):
        captured["token"] = args[0]

    handle = vit.model.head.register_forward_pre_hook(grab)
    try:
        logits = vit(images) if positions is None else vit.forward_tokens(images, positions)
    finally:
        handle.remove()
    return captured["token"], logits


class StudentStage(nn.Module):
    """A student on its device: ``(images, positions) -> B x D`` class token.

    Attributes:
        vit: the student ViT; its head (over ``classes``) is used in training only.
        classes: the full-label-space classes of its head, ascending.
    """

    def __init__(self, vit: TimmViT, classes: Sequence[int]):
        super().__init__()
        if not isinstance(vit, TimmViT):
            raise TypeError(f"a student is a TimmViT, got {type(vit).__name__}")
        self.vit, self.classes = vit, tuple(int(c) for c in classes)
        if vit.num_classes != len(self.classes):
            raise ValueError(f"the student has {vit.num_classes} outputs for {len(self.classes)} classes")

    @property
    def width(self) -> int:
        """D, the width of its class token."""
        return self.vit.model.embed_dim

    def forward(self, images: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        return class_token(self.vit, images, positions)[0]


class TokenFusion(nn.Module):
    """The fusion head: N class tokens (B x D_i each, in student order) -> B x C logits.

    ``hidden = 0``: one Linear over the concatenation (DeViT's); else Linear -> GELU -> Linear. Initial
    weights are drawn from ``generator`` (nn.Linear's own scheme).
    """

    def __init__(self, widths: Sequence[int], num_classes: int, hidden: int = 0,
                 generator: torch.Generator | int | None = None):
        super().__init__()
        self.widths, self.num_classes, self.hidden = tuple(int(w) for w in widths), int(num_classes), int(hidden)
        if not self.widths or min(self.widths) < 1 or self.num_classes < 1 or self.hidden < 0:
            raise ValueError(f"fusion needs positive widths and classes and hidden >= 0, got widths "
                             f"{list(self.widths)}, {num_classes} classes, hidden {hidden}")
        gen = as_generator(generator)
        total = sum(self.widths)
        sizes = [(total, self.hidden), (self.hidden, self.num_classes)] if self.hidden else [(total, self.num_classes)]
        layers = []
        for i, (fan_in, fan_out) in enumerate(sizes):
            linear = nn.utils.skip_init(nn.Linear, fan_in, fan_out)
            bound = 1 / math.sqrt(fan_in)
            with torch.no_grad():
                nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5), generator=gen)
                linear.bias.uniform_(-bound, bound, generator=gen)
            layers += [linear] if i == len(sizes) - 1 else [linear, nn.GELU()]
        self.net = nn.Sequential(*layers)

    def forward(self, tokens: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(tokens) != len(self.widths):
            raise ValueError(f"fusion expects {len(self.widths)} class tokens, got {len(tokens)}")
        for i, (token, width) in enumerate(zip(tokens, self.widths)):
            if token.ndim != 2 or token.shape[1] != width or len(token) != len(tokens[0]):
                raise ValueError(f"class token {i} has shape {tuple(token.shape)}, expected B x {width}")
        return self.net(torch.cat([t.float() for t in tokens], dim=1))


class DecomposedBackend(Backend):
    """N students, each on its device, and a fusion head over their class tokens on the host.

    Args:
        students: one per group, the groups covering all classes exactly once.
        fusion: the fusion head (its widths those of the students, in order).
        devices: the devices.
        placement: per student, the name of its device.
        bytes_per_param: bytes per parameter when checking each device's memory.
    """

    kind = "devit"

    def __init__(self, students: Sequence[StudentStage], fusion: TokenFusion, devices: DeviceConfig,
                 placement: Sequence[str], bytes_per_param: int = 4):
        if not isinstance(fusion, TokenFusion):
            raise TypeError(f"fusion must be a TokenFusion, got {type(fusion).__name__}")
        first = check_members(students, StudentStage, "student", placement)
        groups = ClassGroups(tuple(s.classes for s in students), fusion.num_classes)
        if fusion.widths != tuple(s.width for s in students):
            raise ValueError(f"the fusion head reads tokens of widths {list(fusion.widths)} but the students give "
                             f"{[s.width for s in students]}")
        super().__init__(first.image_size, first.patch_size, groups.num_classes, devices)
        self.groups = groups
        self.students = nn.ModuleList(students)
        self.fusion = fusion
        self.assigned = tuple(placement)
        self.check_stages(bytes_per_param)
        self.eval()

    @property
    def stages(self) -> list[Stage]:
        return [Stage(f"student{i}", s, d) for i, (s, d) in enumerate(zip(self.students, self.assigned))]

    def fuse(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.fusion(outputs)

    # ---- saving (see semcomm.backends.storage) ----------------------------------------------------
    def describe(self) -> dict:
        """The structure (no weights) that :meth:`skeleton` rebuilds."""
        return {"students": [ViTSpec.of(s.vit).to_dict() for s in self.students],
                "classes": self.groups.to_list(), "fusion_hidden": self.fusion.hidden}

    @classmethod
    def skeleton(cls, description: dict, devices: DeviceConfig, placement: Sequence[str]) -> "DecomposedBackend":
        """A backend of the described structure with placeholder weights (to be loaded)."""
        students = [StudentStage(ViTSpec.from_dict(spec).build(), classes)
                    for spec, classes in zip(description["students"], description["classes"])]
        num_classes = sum(len(c) for c in description["classes"])
        fusion = TokenFusion([s.width for s in students], num_classes, description["fusion_hidden"], generator=0)
        return cls(students, fusion, devices, placement)


# ---- training -----------------------------------------------------------------------------------------

def train_token_fusion(fusion: TokenFusion, tokens: Sequence[torch.Tensor], labels: torch.Tensor, steps: int,
                       teacher_logits: torch.Tensor | None = None, alpha: float = 0.5, temperature: float = 4.0,
                       batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 1e-4,
                       generator: torch.Generator | int | None = None) -> list[float]:
    """Train the fusion head alone on fixed class tokens (AdamW).

    Loss: (1 - alpha) CE(fused, label) + alpha T^2 KL(server soft labels || fused) when ``teacher_logits``
    (N x C, the server's) are given, else CE alone.

    Args:
        tokens: per student, N x D_i class tokens of the training images.
        labels: N int64 classes in 0..C-1.
        steps: optimiser steps on ``batch_size`` rows drawn with ``generator``.

    Returns:
        the loss of every step.
    """
    labels = check_labels(labels, fusion.num_classes, "fusion training labels")
    if len(labels) == 0 or any(len(t) != len(labels) for t in tokens):
        raise ValueError(f"need one row of class tokens per label, got {[len(t) for t in tokens]} rows for "
                         f"{len(labels)} labels")
    if teacher_logits is not None and tuple(teacher_logits.shape) != (len(labels), fusion.num_classes):
        raise ValueError(f"teacher_logits must be N x C = {len(labels)} x {fusion.num_classes}, got "
                         f"{tuple(teacher_logits.shape)}")

    def loss_of(fused, index):
        loss = F.cross_entropy(fused, labels[index])
        if teacher_logits is not None:
            loss = (1 - alpha) * loss + alpha * soft_label_kl(fused, teacher_logits[index], temperature)
        return loss

    return fit_head(fusion, tokens, loss_of, steps, batch_size, lr, weight_decay, generator)


def finetune_jointly(backend: DecomposedBackend, server: TimmViT, images: torch.Tensor, labels: torch.Tensor,
                     steps: int, alpha: float = 0.5, temperature: float = 4.0, batch_size: int = 64,
                     lr: float = 1e-4, weight_decay: float = 0.05, augmentation: str = "flip",
                     token_keep: tuple[float, float] | None = None, bf16: bool = False,
                     generator: torch.Generator | int | None = None) -> list[float]:
    """Fine-tune the students and the fusion head together, end to end: (1 - alpha) CE(fused, label) +
    alpha T^2 KL(server soft labels || fused), on augmented batches (see
    :func:`~semcomm.backends.distillation.augment`). Returns the loss of every step."""
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


def make_student(init: TimmViT | dict, server: TimmViT, classes: Sequence[int], images: torch.Tensor,
                 labels: torch.Tensor, depth: int | None = None, keep: float = 1.0, importance_images: int = 256,
                 generator: torch.Generator | int | None = None) -> StudentStage:
    """A student for ``classes`` (step 3 of the module docstring).

    Args:
        init: a TimmViT over the server's classes to copy (its head restricted to ``classes``), or the shape of a
            fresh one: ``{"embed_dim", "depth", "num_heads", "mlp_ratio"}`` (see :func:`student_vit`).
        server: gives the geometry (and must share it with a copied ``init``).
        images, labels: training images and full-label-space classes (for the pruning criterion).
        depth: keep this many of the blocks, evenly spaced (None: all).
        keep: fraction of heads and MLP units kept per layer (1: no pruning).
        importance_images: images of the group the pruning criterion averages over.
    """
    gen = as_generator(generator)
    classes = sorted(int(c) for c in classes)
    if isinstance(init, dict):
        shape = {"mlp_ratio": 2.0, **init}
        unknown = sorted(set(shape) - {"embed_dim", "depth", "num_heads", "mlp_ratio"})
        if unknown or not {"embed_dim", "depth", "num_heads"} <= set(shape):
            raise ValueError(f"a fresh student's shape is {{'embed_dim', 'depth', 'num_heads'[, 'mlp_ratio']}}, got "
                             f"{sorted(init)}")
        vit = student_vit(server, len(classes), generator=gen, **shape)
    elif isinstance(init, TimmViT):
        if (init.image_size, init.patch_size) != (server.image_size, server.patch_size):
            raise ValueError(f"the student's initial ViT reads {init.image_size} images in {init.patch_size}-pixel "
                             f"patches, the server {server.image_size} in {server.patch_size}; they must agree")
        if init.num_classes != server.num_classes:
            raise ValueError(f"the student's initial ViT has {init.num_classes} classes, the server "
                             f"{server.num_classes}: mismatched class counts")
        vit = ClassSubModel.from_server(init, classes).vit
    else:
        raise TypeError(f"init is a TimmViT or a dict of a fresh student's shape, got {type(init).__name__}")
    if depth is not None:
        vit = keep_blocks(vit, depth)
    if not 0 < keep <= 1:
        raise ValueError(f"keep is the fraction of heads and MLP units kept, in (0, 1], got {keep!r}")
    if keep < 1:
        targets = ClassSubModel(vit, classes).targets(labels)
        chosen = (targets >= 0).nonzero().flatten()
        if len(chosen) == 0:
            raise ValueError(f"no training image belongs to the student's classes {classes}")
        chosen = chosen[torch.randperm(len(chosen), generator=gen)[:importance_images]]
        vit = prune_vit(vit, keep_plan(unit_importance(vit, images[chosen], targets[chosen]), keep))
    return StudentStage(vit.eval(), classes)


@dataclass
class DecomposedBuild:
    """What :func:`build_decomposed` made and measured.

    Attributes:
        backend: the backend.
        parameters: per student, its parameters.
        losses: training losses by phase (``subteacher/<i>``, ``distill/<i>``, ``fusion``, ``joint``).
    """

    backend: DecomposedBackend
    parameters: list[int]
    losses: dict[str, list[float]] = field(default_factory=dict)


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
                     generator: torch.Generator | int | None = None) -> DecomposedBuild:
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
        run_dir: keep each finished phase there and resume from it (see :mod:`~semcomm.backends.phases`).
        generator: every random draw (batches, subsets, fresh weights; the random grouping uses ``group_seed``).
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
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if data not in ("all", "group"):
        raise ValueError(f"data must be 'all' or 'group', got {data!r}")
    labels = check_labels(labels, server.num_classes, "training labels")
    gen = as_generator(generator)
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
    phases = Phases(run_dir, settings, gen, progress)
    if isinstance(groups, ClassGroups):
        if groups.num_classes != server.num_classes or len(groups) != n:
            raise ValueError(f"the groups are {len(groups)} over {groups.num_classes} classes but the build has "
                             f"N = {n} students over the server's {server.num_classes} classes")
    else:
        groups = groups_by(groups, server, n, images, labels, group_seed, bf16)

    losses: dict[str, list[float]] = {}
    distill_options = dict(config=distill_config, batch_size=batch_size, lr=lr, augmentation=augmentation,
                           token_keep=token_keep, bf16=bf16, generator=gen)
    if together:
        def all_students():
            stages = [make_student(student, server, group, images, labels, student_depth, student_keep, generator=gen)
                      for group in groups]
            targets = [ClassSubModel(stage.vit, group).targets(labels) for stage, group in zip(stages, groups)]
            history = [[] for _ in stages] if not distill_steps else distill_together(
                [stage.vit for stage in stages], server, images, targets, distill_steps, columns=list(groups),
                **distill_options)
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
                history[f"distill/{i}"] = distill(stage.vit, teacher.vit, images[pool], targets[pool],
                                                  distill_steps, **distill_options) if distill_steps else []
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
    return DecomposedBuild(backend, sizes, losses)


@register_backend
def devit(server: str | TimmViT = "vit-server-cifar10", devices: DeviceConfig | dict | None = None,
          images: torch.Tensor | None = None, labels: torch.Tensor | None = None, **kwargs) -> DecomposedBackend:
    """A DeViT backend distilled from ``server`` onto ``devices`` (a config or its dict) with training ``images``
    and ``labels``; ``kwargs`` go to :func:`build_decomposed`."""
    from semcomm.models import create_model

    if devices is None or images is None or labels is None:
        raise ValueError("the devit backend is distilled on a device config from training images and labels: "
                         "pass devices=, images=, labels=")
    devices = devices if isinstance(devices, DeviceConfig) else DeviceConfig.from_dict(devices)
    server = create_model(server) if isinstance(server, str) else server
    return build_decomposed(server, devices, images, labels, **kwargs).backend
