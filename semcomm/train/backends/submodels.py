"""Sub-models of a class-partitioned backend: the server restricted to a group of classes, and their fine-tuning.

A sub-model starts as a copy of the server ViT whose classifier keeps only
the rows of its group's classes (so at first its logits are exactly the
server's for those classes), is fine-tuned, and is pruned to its device
(:mod:`~semcomm.backends.pruning`). Fine-tuning uses either the images of
its classes only (``data="group"``, ED-ViT's reading) or every training
image (``data="all"``: the cross-entropy on the images of its classes, the
distillation term on all of them). Trained on its own classes only, a
sub-model never sees the images it must *not* claim, and its logits are not
comparable with the other sub-models'; matching the server's raw logits on
every image (``kd_loss="logits"``) keeps all sub-models on the server's one
scale, so the fusion starts from (an approximation of) the server's logits.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from semcomm.models.timm_vit import TimmViT
from semcomm.core.seeding import as_generator
from semcomm.server.backends.base import ViTStage
from semcomm.train.backends.distillation import augment, check_kd_loss, check_token_keep, supervised_loss
from semcomm.train.backends.phases import optimizer_step, training_mode, training_steps


SUBMODEL_DATA = ("group", "all")


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

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """B int64: each label's index among this sub-model's outputs, -1 for a label outside its group."""
        size = max(max(self.classes), int(labels.max()) if labels.numel() else 0) + 1
        lookup = torch.full((size,), -1, dtype=torch.int64)
        lookup[torch.tensor(self.classes)] = torch.arange(len(self.classes))
        return lookup[labels.long()]


def finetune_submodel(sub: ClassSubModel, images: torch.Tensor, labels: torch.Tensor, steps: int,
                      batch_size: int = 64, lr: float = 1e-4, weight_decay: float = 0.05,
                      augmentation: str = "none", token_keep: tuple[float, float] | None = None,
                      teacher: ClassSubModel | None = None, kd_weight: float = 0.0, temperature: float = 4.0,
                      kd_loss: str = "kl", data: str = "group", bf16: bool = False,
                      generator: torch.Generator | int | None = None) -> list[float]:
    """Fine-tune ``sub`` on the images of its own classes, or on all images (AdamW; module docstring).

    The loss is the cross-entropy over the sub-model's outputs on the images of its classes, plus
    ``kd_weight`` times a distillation term to a frozen ``teacher`` over the same classes seeing the same patches
    (the server restricted to the group, or the unpruned sub-model teaching its pruned copy): the soft-label
    KL at temperature T (``kd_loss="kl"``) or the squared distance of the raw logits (``"logits"``).

    Args:
        images: N x 3 x H x W training images of all classes (only the group's are used).
        labels: N int64 full-label-space classes.
        steps: optimiser steps (each on ``batch_size`` images drawn with ``generator``).
        augmentation, token_keep: per-batch augmentation and the range of kept-patch fractions
            (:func:`~semcomm.backends.distillation.augment`; None: whole images).
        teacher: a sub-model over the same classes, or None (then ``kd_weight`` must be 0).
        data: ``"group"`` (batches of the group's images) or ``"all"`` (batches of every image).
        bf16: run forward passes in bfloat16 autocast.

    Returns:
        the training loss of every step.
    """
    if steps < 0 or batch_size < 1:
        raise ValueError(f"steps must be >= 0 and batch_size >= 1, got {steps} and {batch_size}")
    if kd_weight and (teacher is None or teacher.classes != sub.classes):
        raise ValueError("kd_weight > 0 needs a teacher sub-model over the same classes")
    check_kd_loss(kd_loss)
    if data not in SUBMODEL_DATA:
        raise ValueError(f"unknown sub-model training data {data!r}; choose from {', '.join(SUBMODEL_DATA)}")
    token_keep = check_token_keep(token_keep)
    targets = sub.targets(labels)
    mine = targets >= 0
    if not mine.any():
        raise ValueError(f"no training image belongs to the sub-model's classes {list(sub.classes)}")
    pool, local = (images[mine], targets[mine]) if data == "group" else (images, targets)
    gen = as_generator(generator)
    optimizer = torch.optim.AdamW(sub.parameters(), lr=lr, weight_decay=weight_decay)
    if teacher is not None:
        teacher.eval()
    losses = []
    with training_mode(sub, gen):
        for _ in training_steps(steps, "sub-model"):
            index = torch.randint(len(pool), (min(batch_size, len(pool)),), generator=gen)
            batch, positions = augment(pool[index], sub.vit.num_patches, augmentation, token_keep, gen)
            loss = supervised_loss(sub, batch, positions, local[index], teacher, kd_weight, temperature, bf16,
                                   kd_loss)
            losses.append(optimizer_step(optimizer, loss))
    return losses
