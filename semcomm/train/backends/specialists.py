"""Progressive specialist training of the experts of an expert-routed backend.

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

Trained to the plateau (``plateau=``, :mod:`~semcomm.train.backends.plateau`)
instead of for a fixed number of steps, epoch e (0-based) is phase min(e, P - 1)
(the last phase lasts until the plateau, which is not judged before P epochs),
and the plateau is that of the expert's top-1 over all C classes on the
held-out images of its subset's classes (the images it is meant to answer).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from semcomm.core.seeding import as_generator
from semcomm.models.timm_vit import TimmViT
from semcomm.server.backends.base import ViTStage, check_labels
from semcomm.server.backends.experts import ExpertStage
from semcomm.train.backends.distillation import augment, check_token_keep, supervised_loss
from semcomm.train.backends.phases import optimizer_step, training_mode, training_steps
from semcomm.train.backends.plateau import Plateau, epoch_steps, held_out_top1, train_to_plateau


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
                     generator: torch.Generator | int | None = None, plateau: Plateau | None = None,
                     held_out: tuple[torch.Tensor, torch.Tensor] | None = None,
                     partial: str | Path | None = None) -> list[float]:
    """Fine-tune ``expert`` progressively toward its domain (module docstring; AdamW).

    Args:
        images: N x 3 x H x W training images (uint8 or [0, 1] float).
        labels: N int64 classes in 0..C-1.
        steps: optimiser steps of ``batch_size`` images each (ignored with ``plateau``).
        routed: N booleans, the images the router sends to this expert (they join its domain), or None.
        teacher: the server, whose soft labels (temperature T) are added with weight ``kd_weight``.
        token_keep: (lo, hi) range of kept-patch fractions (None: whole images).
        plateau: train in epochs of ``ceil(N / batch_size)`` steps until the plateau (module docstring) and keep
            the best epoch's weights; None: ``steps`` steps.
        held_out: with ``plateau``, the held-out images (M x 3 x H x W) and their classes (M int64).
        partial: with ``plateau``, the phase's partial file (resume from its last finished epoch).

    Returns:
        the loss of every step (with ``plateau``, a :class:`~semcomm.train.backends.plateau.History` also holding
        the held-out curve).
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
    if plateau is not None and held_out is None:
        raise ValueError("training to the plateau needs the held-out images and labels (held_out=)")
    token_keep = check_token_keep(token_keep)
    natural = len(inside) / len(labels)
    gen = as_generator(generator)
    optimizer = torch.optim.AdamW(expert.parameters(), lr=lr, weight_decay=weight_decay)
    soft_teacher = ViTStage(teacher.eval()) if kd_weight else None

    def step(share: float) -> float:
        index = domain_batch(inside, outside, share, min(batch_size, len(labels)), gen)
        batch, positions = augment(images[index], expert.vit.num_patches, augmentation, token_keep, gen)
        loss = supervised_loss(expert, batch, positions, labels[index], soft_teacher, kd_weight, temperature, bf16)
        return optimizer_step(optimizer, loss)

    with training_mode(expert, gen):
        if plateau is None:
            shares = schedule.shares(steps, natural) if steps else []
            return [step(shares[s]) for s in training_steps(len(shares), "specialist")]
        held_images, held_labels = held_out
        in_subset = torch.isin(held_labels, torch.tensor(expert.classes))
        return train_to_plateau(lambda epoch: step(schedule.share(min(epoch, schedule.phases - 1), natural)),
                                epoch_steps(len(labels), batch_size),
                                lambda: held_out_top1(expert, held_images, torch.where(in_subset, held_labels, -1),
                                                      bf16),
                                [expert], [optimizer], gen, plateau, partial, min_epochs=schedule.phases,
                                desc="specialist epoch")
