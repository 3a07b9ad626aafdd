"""Fine-tuning the sub-models of a class-partitioned backend (each the server restricted to a group of classes).

A sub-model (:class:`~semcomm.server.backends.submodels.ClassSubModel`) is
fine-tuned, and is pruned to its device
(:mod:`~semcomm.train.backends.pruning`). Fine-tuning uses either the images of
its classes only (``data="group"``, ED-ViT's reading) or every training
image (``data="all"``: the cross-entropy on the images of its classes, the
distillation term on all of them). Trained on its own classes only, a
sub-model never sees the images it must *not* claim, and its logits are not
comparable with the other sub-models'; matching the server's raw logits on
every image (``kd_loss="logits"``) keeps all sub-models on the server's one
scale, so the fusion starts from (an approximation of) the server's logits.
"""
from __future__ import annotations

from pathlib import Path

import torch

from semcomm.core.seeding import as_generator
from semcomm.server.backends.submodels import ClassSubModel
from semcomm.train.backends.distillation import augment, check_kd_loss, check_token_keep, supervised_loss
from semcomm.train.backends.phases import optimizer_step, training_mode, training_steps
from semcomm.train.backends.plateau import Plateau, epoch_steps, held_out_top1, train_to_plateau

SUBMODEL_DATA = ("group", "all")


def finetune_submodel(sub: ClassSubModel, images: torch.Tensor, labels: torch.Tensor, steps: int,
                      batch_size: int = 64, lr: float = 1e-4, weight_decay: float = 0.05,
                      augmentation: str = "none", token_keep: tuple[float, float] | None = None,
                      teacher: ClassSubModel | None = None, kd_weight: float = 0.0, temperature: float = 4.0,
                      kd_loss: str = "kl", data: str = "group", bf16: bool = False,
                      generator: torch.Generator | int | None = None, plateau: Plateau | None = None,
                      held_out: tuple[torch.Tensor, torch.Tensor] | None = None,
                      partial: str | Path | None = None) -> list[float]:
    """Fine-tune ``sub`` on the images of its own classes, or on all images (AdamW; module docstring).

    The loss is the cross-entropy over the sub-model's outputs on the images of its classes, plus
    ``kd_weight`` times a distillation term to a frozen ``teacher`` over the same classes seeing the same patches
    (the server restricted to the group, or the unpruned sub-model teaching its pruned copy): the soft-label
    KL at temperature T (``kd_loss="kl"``) or the squared distance of the raw logits (``"logits"``).

    Args:
        images: N x 3 x H x W training images of all classes (only the group's are used).
        labels: N int64 full-label-space classes.
        steps: optimiser steps (each on ``batch_size`` images drawn with ``generator``); ignored with ``plateau``.
        augmentation, token_keep: per-batch augmentation and the range of kept-patch fractions
            (:func:`~semcomm.train.backends.distillation.augment`; None: whole images).
        teacher: a sub-model over the same classes, or None (then ``kd_weight`` must be 0).
        data: ``"group"`` (batches of the group's images) or ``"all"`` (batches of every image).
        bf16: run forward passes in bfloat16 autocast.
        plateau: train in epochs (``ceil(pool / batch_size)`` steps, ``pool`` the images batches come from) until
            the plateau of the sub-model's top-1 among its own classes on the held-out images of those classes
            (:mod:`~semcomm.train.backends.plateau`), keeping the best epoch's weights; None: ``steps`` steps.
        held_out: with ``plateau``, the held-out images (M x 3 x H x W) and their full-label-space classes (M).
        partial: with ``plateau``, the phase's partial file (resume from its last finished epoch).

    Returns:
        the training loss of every step (with ``plateau``, a :class:`~semcomm.train.backends.plateau.History`
        also holding the held-out curve).
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
    if plateau is not None and held_out is None:
        raise ValueError("training to the plateau needs the held-out images and labels (held_out=)")

    def step(epoch: int = 0) -> float:
        index = torch.randint(len(pool), (min(batch_size, len(pool)),), generator=gen)
        batch, positions = augment(pool[index], sub.vit.num_patches, augmentation, token_keep, gen)
        loss = supervised_loss(sub, batch, positions, local[index], teacher, kd_weight, temperature, bf16, kd_loss)
        return optimizer_step(optimizer, loss)

    with training_mode(sub, gen):
        if plateau is None:
            return [step() for _ in training_steps(steps, "sub-model")]
        held_images, held_labels = held_out
        return train_to_plateau(step, epoch_steps(len(pool), batch_size),
                                lambda: held_out_top1(sub, held_images, sub.targets(held_labels), bf16), [sub],
                                [optimizer], gen, plateau, partial, desc="sub-model epoch")
