"""Sub-models of a class-partitioned backend: the server restricted to a group of classes, and their fine-tuning.

A sub-model starts as a copy of the server ViT whose classifier keeps only
the rows of its group's classes (so at first it ranks its classes exactly
as the server does), is fine-tuned on images of its classes only, and is
then pruned to its device (:mod:`~semcomm.backends.pruning`).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models.timm_vit import TimmViT
from ..selection import as_generator
from .base import ViTStage
from .phases import training_mode, training_steps


class ClassSubModel(ViTStage):
    """A ViT answering for a group of classes: ``(images, positions) -> B x len(classes)`` logits.

    Attributes:
        vit: the sub-model (its ``num_classes`` = len(classes)).
        classes: the full-label-space class of each output, ascending.
    """

    def __init__(self, vit: TimmViT, classes: Sequence[int]):
        super().__init__(vit)
        self.classes = tuple(int(c) for c in classes)
        if vit.num_classes != len(self.classes):
            raise ValueError(f"the sub-model has {vit.num_classes} outputs for {len(self.classes)} classes")

    @classmethod
    def from_server(cls, server: TimmViT, classes: Sequence[int]) -> "ClassSubModel":
        """A copy of ``server`` whose head keeps the rows of ``classes`` only (weights copied, not shared)."""
        if not isinstance(server, TimmViT):
            raise TypeError(f"sub-models are built from a TimmViT server (a timm VisionTransformer), "
                            f"got {type(server).__name__}")
        classes = sorted(int(c) for c in classes)
        if not classes or len(set(classes)) != len(classes) or classes[0] < 0 or classes[-1] >= server.num_classes:
            raise ValueError(f"classes must be distinct indices in 0..{server.num_classes - 1}, got {classes}")
        head = server.model.head
        if not isinstance(head, nn.Linear):
            raise TypeError(f"the server's head is {type(head).__name__}; restricting it needs an nn.Linear")
        vit = copy.deepcopy(server)
        index = torch.tensor(classes)
        restricted = nn.utils.skip_init(nn.Linear, head.in_features, len(classes), bias=head.bias is not None)
        with torch.no_grad():
            restricted.weight.copy_(head.weight[index])
            if head.bias is not None:
                restricted.bias.copy_(head.bias[index])
        vit.model.head = restricted
        vit.model.num_classes = len(classes)
        vit.num_classes = len(classes)
        return cls(vit, classes)

    def local_labels(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask of the B labels in this group, their indices among its outputs)."""
        size = max(max(self.classes), int(labels.max()) if labels.numel() else 0) + 1
        lookup = torch.full((size,), -1, dtype=torch.int64)
        lookup[torch.tensor(self.classes)] = torch.arange(len(self.classes))
        local = lookup[labels.long()]
        return local >= 0, local[local >= 0]


def finetune_submodel(sub: ClassSubModel, images: torch.Tensor, labels: torch.Tensor, steps: int,
                      batch_size: int = 64, lr: float = 1e-4, weight_decay: float = 0.05,
                      keep: int | None = None, generator: torch.Generator | int | None = None) -> list[float]:
    """Fine-tune ``sub`` on the images of its own classes (cross-entropy over its outputs, AdamW).

    Args:
        images: N x 3 x H x W training images of all classes (only the group's are used).
        labels: N int64 full-label-space classes.
        steps: optimiser steps (each on ``batch_size`` images drawn with ``generator``).
        keep: if set, each image keeps a random subset of ``keep`` patches (the server sees partial inputs).

    Returns:
        the training loss of every step.
    """
    if steps < 0 or batch_size < 1:
        raise ValueError(f"steps must be >= 0 and batch_size >= 1, got {steps} and {batch_size}")
    mine, local = sub.local_labels(labels)
    if not mine.any():
        raise ValueError(f"no training image belongs to the sub-model's classes {list(sub.classes)}")
    pool = images[mine]
    gen = as_generator(generator)
    optimizer = torch.optim.AdamW(sub.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    with training_mode(sub, gen):
        _steps(sub, pool, local, steps, batch_size, keep, optimizer, gen, losses)
    return losses


def _steps(sub, pool, local, steps, batch_size, keep, optimizer, gen, losses) -> None:
    for _ in training_steps(steps, "sub-model"):
        index = torch.randint(len(pool), (min(batch_size, len(pool)),), generator=gen)
        positions = None
        if keep is not None:
            n = sub.vit.num_patches
            positions = torch.rand(len(index), n, generator=gen).argsort(1)[:, :keep].sort(1).values
        logits = sub(pool[index], positions)
        loss = F.cross_entropy(logits.float(), local[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
