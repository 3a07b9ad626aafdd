"""Training fusion heads alone, on fixed per-device outputs: a partitioned backend's fusion network (on the
sub-models' logits) and a decomposed backend's token fusion (on the students' class tokens)."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from semcomm.core.seeding import as_generator
from semcomm.server.backends.base import check_labels
from semcomm.server.backends.decomposed import TokenFusion
from semcomm.server.backends.fusion import FusionNetwork
from semcomm.train.backends.distillation import soft_label_kl
from semcomm.train.backends.phases import optimizer_step, training_steps


def train_fusion(fusion: FusionNetwork, outputs: Sequence[torch.Tensor], labels: torch.Tensor, steps: int,
                 batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 1e-4,
                 generator: torch.Generator | int | None = None) -> list[float]:
    """Train the fusion network alone on fixed sub-model outputs (cross-entropy, AdamW).

    Args:
        outputs: per group, N x len(group) logits of its sub-model on the training images.
        labels: N int64 classes in 0..C-1.
        steps: optimiser steps on ``batch_size`` rows drawn with ``generator``.

    Returns:
        the training loss of every step.
    """
    c = fusion.groups.num_classes
    if labels.ndim != 1 or any(len(o) != len(labels) for o in outputs):
        raise ValueError(f"need one row of sub-model outputs per label, got {[len(o) for o in outputs]} rows "
                         f"for {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError("no training rows for the fusion network")
    if labels.min() < 0 or labels.max() >= c:
        raise ValueError(f"labels hold classes {int(labels.min())}..{int(labels.max())} but the fusion network "
                         f"covers {c} classes: mismatched class counts between the backend and the data set")
    return fit_head(fusion, outputs, lambda fused, index: F.cross_entropy(fused, labels[index].long()), steps,
                    batch_size, lr, weight_decay, generator)


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


def fit_head(head: torch.nn.Module, inputs: Sequence[torch.Tensor], loss_of: Callable, steps: int,
             batch_size: int, lr: float, weight_decay: float,
             generator: torch.Generator | int | None) -> list[float]:
    """Train a fusion head alone on fixed per-device inputs (AdamW), then leave it in eval mode.

    Args:
        inputs: per device, N x D_i rows (its outputs on the training images).
        loss_of: ``(head output on a batch, the batch's row indices) -> scalar loss``.
        steps: optimiser steps on ``batch_size`` rows drawn with ``generator``.

    Returns:
        the loss of every step.
    """
    rows = len(inputs[0])
    gen = as_generator(generator)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    head.train()
    losses = []
    for _ in training_steps(steps, "fusion head"):
        index = torch.randint(rows, (min(batch_size, rows),), generator=gen)
        loss = loss_of(head([x[index] for x in inputs]), index)
        losses.append(optimizer_step(optimizer, loss))
    head.eval()
    return losses
