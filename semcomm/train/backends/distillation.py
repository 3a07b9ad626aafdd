"""Knowledge distillation of a student ViT from a teacher ViT: soft labels plus q/k/v token relations (DeViT).

Per batch, with the teacher frozen and both models seeing the same images and
the same patches,

    loss = (1 - alpha) CE(student, y) + alpha T^2 KL(softmax(t / T) || softmax(s / T)) + beta L_rel,

where s and t are the student's and teacher's logits over the same classes,
y the true class (the CE term is taken over the images that have one among
those classes: ``targets >= 0``), T the temperature, and L_rel the relation
loss of :mod:`~semcomm.train.backends.relations` (q, k and v token relations of
the paired blocks). Optional per-batch augmentation (:func:`augment`): a
horizontal flip or CIFAR's pad-crop-flip, and keeping a random subset of
patches (the server receives partial images).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from semcomm.core.seeding import as_generator
from semcomm.inference import autocast
from semcomm.models.timm_vit import TimmViT
from semcomm.train.augmentation import AUGMENTATIONS
from semcomm.train.backends.phases import optimizer_step, training_mode, training_steps
from semcomm.train.backends.plateau import History, Plateau, epoch_steps, held_out_top1, train_to_plateau
from semcomm.train.backends.relations import layer_pairs, recording_qkv, relation_kl


@dataclass(frozen=True)
class DistillConfig:
    """The distillation loss's settings (module docstring).

    The default mapping: the student's last block with the teacher's last block, and each model's heads
    concatenated into one relation head (R = 1), for q, k and v alike.

    Attributes:
        temperature: T of the soft labels (> 0).
        alpha: weight of the soft-label term in [0, 1]; 1 - alpha goes to the true labels.
        relation_weight: beta, the weight of the relation loss (0 switches it off).
        layers: ``"last"``, ``"uniform"`` or (student block, teacher block) pairs (see :func:`layer_pairs`).
        relation_heads: R, the relation heads (divides both models' attention widths).
    """

    temperature: float = 4.0
    alpha: float = 0.5
    relation_weight: float = 1.0
    layers: str | tuple = "last"
    relation_heads: int = 1

    def __post_init__(self):
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a positive number, got {self.temperature!r}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha!r}")
        if not self.relation_weight >= 0:
            raise ValueError(f"relation_weight must be >= 0, got {self.relation_weight!r}")
        if isinstance(self.relation_heads, bool) or not isinstance(self.relation_heads, int) or self.relation_heads < 1:
            raise ValueError(f"relation_heads must be a positive integer, got {self.relation_heads!r}")
        if not isinstance(self.layers, str):
            object.__setattr__(self, "layers", tuple(tuple(p) for p in self.layers))


def soft_label_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 x mean over the B rows of KL(softmax(t / T) || softmax(s / T)); both B x C."""
    t = temperature
    return F.kl_div((student_logits.float() / t).log_softmax(-1), (teacher_logits.float() / t).log_softmax(-1),
                    log_target=True, reduction="batchmean") * t * t


KD_LOSSES = ("kl", "logits")


def check_kd_loss(kd_loss: str) -> str:
    """``kd_loss`` when it names a distillation term of :func:`supervised_loss`, else a clear ValueError."""
    if kd_loss not in KD_LOSSES:
        raise ValueError(f"unknown kd_loss {kd_loss!r}; choose from {', '.join(KD_LOSSES)}")
    return kd_loss


def known_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of B x C ``logits`` over the rows whose target is >= 0 (-1: an image of none of the C
    classes); zero, still attached to the graph, when no row has one."""
    known = targets >= 0
    return F.cross_entropy(logits[known].float(), targets[known]) if known.any() else logits.float().sum() * 0


def logit_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean over the B rows of the squared distance between raw logits (B x C each), summed over the C classes:
    logit matching (Ba & Caruana, 2014). Unlike softmax-based terms it keeps the logits' common offset, so
    models trained on different class groups stay on the teacher's one scale."""
    return (student_logits.float() - teacher_logits.float()).pow(2).sum(-1).mean()


def supervised_loss(model, batch: torch.Tensor, positions: torch.Tensor | None, targets: torch.Tensor,
                    teacher=None, kd_weight: float = 0.0, temperature: float = 4.0, bf16: bool = False,
                    kd_loss: str = "kl") -> torch.Tensor:
    """CE of ``model(batch, positions)`` (B x C logits) against B ``targets`` (rows with target -1, images of
    none of the C classes, take no CE), plus ``kd_weight`` x a distillation term to a frozen
    ``teacher(batch, positions)`` over the same C classes (no gradient through the teacher): the soft-label KL
    at ``temperature`` (``kd_loss="kl"``) or :func:`logit_mse` (``"logits"``)."""
    with autocast(bf16):
        logits = model(batch, positions)
    loss = known_cross_entropy(logits, targets)
    if kd_weight:
        with torch.no_grad(), autocast(bf16):
            target = teacher(batch, positions)
        term = soft_label_kl(logits, target, temperature) if check_kd_loss(kd_loss) == "kl" else \
            logit_mse(logits, target)
        loss = loss + kd_weight * term
    return loss


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      student_qkv: dict, teacher_qkv: dict, pairs: Sequence[tuple[int, int]],
                      config: DistillConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of the module docstring and its parts (``ce``, ``kd``, ``relation``, as floats).

    Args:
        student_logits, teacher_logits: B x C over the same classes.
        targets: B int64 class indices into those C, or -1 for an image of none of them (no CE term).
        student_qkv, teacher_qkv: recorded q, k, v per block (:func:`~semcomm.train.backends.relations.recording_qkv`).
        pairs: the (student block, teacher block) pairs of the relation loss.
    """
    ce = known_cross_entropy(student_logits, targets)
    kd = soft_label_kl(student_logits, teacher_logits, config.temperature)
    rel = relation_kl(teacher_qkv, student_qkv, pairs, config.relation_heads) if config.relation_weight else kd * 0
    loss = (1 - config.alpha) * ce + config.alpha * kd + config.relation_weight * rel
    return loss, {"ce": float(ce.detach()), "kd": float(kd.detach()), "relation": float(rel.detach())}


def augment(images: torch.Tensor, num_patches: int, augmentation: str, token_keep: tuple[float, float] | None,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(images, positions) of one training batch.

    ``augmentation``: a name in :data:`~semcomm.train.augmentation.AUGMENTATIONS` (``"none"``, ``"flip"``,
    ``"pad-crop-flip"``, ...).
    Then K random patches per image are kept, K = round(f N) with f ~ U(token_keep) drawn per batch
    (positions None when all are kept or ``token_keep`` is None).
    """
    images = AUGMENTATIONS.get(augmentation)(images, generator)
    if token_keep is None:
        return images, None
    lo, hi = token_keep
    keep = max(1, round((lo + (hi - lo) * float(torch.rand(1, generator=generator))) * num_patches))
    if keep >= num_patches:
        return images, None
    positions = torch.rand(len(images), num_patches, generator=generator).argsort(1)[:, :keep].sort(1).values
    return images, positions


def check_token_keep(token_keep) -> tuple[float, float] | None:
    """``token_keep`` as a (lo, hi) pair with 0 < lo <= hi <= 1, or None."""
    if token_keep is None:
        return None
    lo, hi = (float(v) for v in token_keep)
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"token_keep is a range (lo, hi) of kept-patch fractions with 0 < lo <= hi <= 1, "
                         f"got {token_keep!r}")
    return lo, hi


def distill(student: TimmViT, teacher: TimmViT, images: torch.Tensor, targets: torch.Tensor, steps: int,
            config: DistillConfig = DistillConfig(), batch_size: int = 64, lr: float = 5e-4,
            weight_decay: float = 0.05, augmentation: str = "flip", token_keep: tuple[float, float] | None = None,
            bf16: bool = False, generator: torch.Generator | int | None = None, plateau: Plateau | None = None,
            held_out: tuple[torch.Tensor, torch.Tensor] | None = None, partial: str | Path | None = None) -> list[float]:
    """Distil ``teacher`` into ``student`` (AdamW on the student only); the teacher is left unchanged.

    Args:
        student, teacher: ViTs with the same number of outputs, reading the same image and patch sizes.
        images: N x 3 x H x W training images (uint8 or [0, 1] float).
        targets: N int64 true classes among the models' outputs, -1 where the image has none of them.
        steps: optimiser steps, each on ``batch_size`` images drawn with ``generator``.
        augmentation: ``"none"``, ``"flip"`` or ``"pad-crop-flip"`` (see :func:`augment`).
        token_keep: if set, the (lo, hi) range of kept-patch fractions (see :func:`augment`).
        bf16: run the forwards under CPU bf16 autocast (the losses are computed in float32).
        plateau, held_out, partial: train to the plateau instead of ``steps`` steps (see :func:`distill_together`;
            ``held_out``: held-out images and their targets as ``targets``).

    Returns:
        the loss of every step (with ``plateau``, a :class:`~semcomm.train.backends.plateau.History`).
    """
    held_out = None if held_out is None else (held_out[0], [held_out[1]])
    return distill_together([student], teacher, images, [targets], steps, config, batch_size=batch_size, lr=lr,
                            weight_decay=weight_decay, augmentation=augmentation, token_keep=token_keep, bf16=bf16,
                            generator=generator, plateau=plateau, held_out=held_out, partial=partial)[0]


def distill_together(students: Sequence[TimmViT], teacher: TimmViT, images: torch.Tensor,
                     targets: Sequence[torch.Tensor], steps: int, config: DistillConfig = DistillConfig(),
                     columns: Sequence[Sequence[int]] | None = None, batch_size: int = 64, lr: float = 5e-4,
                     weight_decay: float = 0.05, augmentation: str = "flip",
                     token_keep: tuple[float, float] | None = None, bf16: bool = False,
                     generator: torch.Generator | int | None = None, plateau: Plateau | None = None,
                     held_out: tuple[torch.Tensor, Sequence[torch.Tensor]] | None = None,
                     partial: str | Path | None = None) -> list[list[float]]:
    """Distil one ``teacher`` into several students at once, each with its own AdamW, as :func:`distill` does
    for one: every step draws one batch (and one patch subset) for all of them and runs the teacher once,
    so N students cost one teacher forward per step instead of N.

    Args:
        students: ViTs reading the teacher's image and patch sizes.
        targets: per student, N int64 true classes among its outputs, -1 where the image has none of them.
        columns: per student, the teacher's outputs it matches, in the order of its own (None: all of them,
            every student having the teacher's outputs).
        steps: optimiser steps (ignored with ``plateau``).
        plateau: train in epochs of ``ceil(N / batch_size)`` steps until the plateau of the students' mean top-1
            among their own classes on the held-out images of those classes (each student's own accuracy is in
            its curve; :mod:`~semcomm.train.backends.plateau`); all students keep the weights of the best epoch by
            that mean. None: ``steps`` steps.
        held_out: with ``plateau``, the held-out images (M x 3 x H x W) and, per student, their M targets among
            its outputs (-1: none of its classes).
        partial: with ``plateau``, the phase's partial file (resume from its last finished epoch).
        (the rest as in :func:`distill`)

    Returns:
        per student, the loss of every step (with ``plateau``, a
        :class:`~semcomm.train.backends.plateau.History` also holding that student's held-out curve).
    """
    if not students:
        raise ValueError("distill_together needs at least one student")
    if columns is None:
        columns = [range(teacher.num_classes)] * len(students)
    if len(targets) != len(students) or len(columns) != len(students):
        raise ValueError(f"{len(students)} students but {len(targets)} target sets and {len(columns)} column sets")
    if steps < 0 or batch_size < 1:
        raise ValueError(f"steps must be >= 0 and batch_size >= 1, got {steps} and {batch_size}")
    columns = [torch.tensor(list(c), dtype=torch.int64, device="cpu") for c in columns]
    for student, student_targets, picked in zip(students, targets, columns):
        _check_student(student, teacher, images, student_targets, picked)
    token_keep = check_token_keep(token_keep)
    pairs = [layer_pairs(len(s.model.blocks), len(teacher.model.blocks), config.layers) for s in students]
    teacher_blocks = sorted({t for student_pairs in pairs for _, t in student_pairs})
    gen = as_generator(generator)
    optimizers = [torch.optim.AdamW(s.parameters(), lr=lr, weight_decay=weight_decay) for s in students]
    teacher.eval()
    if plateau is not None and (held_out is None or len(held_out[1]) != len(students)):
        raise ValueError("training to the plateau needs the held-out images and one target set per student "
                         "(held_out=)")

    def step(epoch: int = 0) -> list[float]:
        index = torch.randint(len(images), (min(batch_size, len(images)),), generator=gen)
        batch, positions = augment(images[index], teacher.num_patches, augmentation, token_keep, gen)
        with torch.no_grad(), autocast(bf16), recording_qkv(teacher, teacher_blocks) as t_qkv:
            t_logits = _forward(teacher, batch, positions)
        losses = []
        for i, student in enumerate(students):
            with autocast(bf16), recording_qkv(student, [s for s, _ in pairs[i]]) as s_qkv:
                s_logits = _forward(student, batch, positions)
            loss, _ = distillation_loss(s_logits, t_logits[:, columns[i]], targets[i][index], s_qkv, t_qkv,
                                        pairs[i], config)
            losses.append(optimizer_step(optimizers[i], loss))
        return losses

    with training_mode(nn.ModuleList(students), gen):
        if plateau is None:
            return [list(per_student) for per_student in zip(*(step() for _ in training_steps(steps, "distil")))] \
                if steps else [[] for _ in students]
        held_images, held_targets = held_out

        def evaluate() -> dict:
            accuracies = [held_out_top1(s, held_images, t, bf16) for s, t in zip(students, held_targets)]
            return {"accuracy": sum(accuracies) / len(accuracies), "students": accuracies}

        history = train_to_plateau(step, epoch_steps(len(images), batch_size), evaluate, students, optimizers, gen,
                                   plateau, partial, desc="distil epoch")
    return [History([losses[i] for losses in history],
                    [{"epoch": e["epoch"], "accuracy": e["students"][i],
                      "loss": None if e["loss"] is None else e["losses"][i]} for e in history.curve],
                    history.kept_epoch, history.stopped_by) for i in range(len(students))]


def _check_student(student: TimmViT, teacher: TimmViT, images: torch.Tensor, targets: torch.Tensor,
                  columns: torch.Tensor) -> None:
    """Clear errors for a student that cannot be distilled from ``teacher``'s outputs ``columns`` on
    ``images`` with ``targets`` (see :func:`distill_together`)."""
    if student.num_classes != len(columns):
        raise ValueError(f"the student has {student.num_classes} outputs but the teacher {len(columns)}: "
                         "distillation matches logits over the same classes")
    if len(columns) and (columns.min() < 0 or columns.max() >= teacher.num_classes):
        raise ValueError(f"the teacher has outputs 0..{teacher.num_classes - 1}, got columns {columns.tolist()}")
    if (student.image_size, student.patch_size) != (teacher.image_size, teacher.patch_size):
        raise ValueError(f"the student reads {student.image_size} images in {student.patch_size}-pixel patches, the "
                         f"teacher {teacher.image_size} in {teacher.patch_size}: token relations need the same tokens")
    if len(images) == 0 or len(images) != len(targets):
        raise ValueError(f"need matching, non-empty images and targets, got {len(images)} and {len(targets)}")
    if targets.max() >= student.num_classes or targets.min() < -1:
        raise ValueError(f"targets must lie in -1..{student.num_classes - 1}, got {int(targets.min())}.."
                         f"{int(targets.max())}")


def _forward(vit: TimmViT, images: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    return vit(images) if positions is None else vit.forward_tokens(images, positions)
