"""What every training recipe of a codec pair on the edge's patches shares: its config's common part
(:class:`PairTrainConfig`), a batch as the pair sees it (:func:`training_batch`: augmented images, the frozen
edge's importance and values, the teacher's answer), the learning-rate schedule (:func:`schedule_lr`) and the task
loss (:func:`task_loss`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from semcomm.core.devices import module_device
from semcomm.data import ImageSplit
from semcomm.inference import autocast
from semcomm.models import ViTAdapter
from semcomm.rate.hyperprior import HyperConfig, edge_pass, source_values
from semcomm.train.augmentation import pad_crop_flip
from semcomm.train.schedule import warmup_cosine


@dataclass
class PairTrainConfig:
    """Hyper-parameters shared by the codec pairs' recipes (:mod:`semcomm.train.latent`, :mod:`semcomm.train.e2e`,
    :mod:`semcomm.train.jscc`); each recipe's config adds its own and sets ``codec``'s type.

    Attributes:
        codec: the pair's architecture (the recipe's config type).
        edge: the frozen edge ViT (zoo name) whose attention selects and whose tokens may be coded.
        server_init: the zoo server the pair's server starts from (and the teacher of the ``kd`` term).
        epochs, batch_size: the schedule (warm-up of ``warmup_epochs``, then cosine to ``min_lr``).
        lr, server_lr, min_lr, weight_decay: AdamW (the server's ViT at ``server_lr``).
        label_smoothing, kd: cross-entropy smoothing, weight of the KL to the server's answer on the full image.
        keep, full_prob, guided_prob: each batch sends a fraction of patches drawn from ``keep`` (every patch
            with probability ``full_prob``), chosen by attention with probability ``guided_prob``
            (:func:`~semcomm.train.latent.training_patches`).
        bf16: bf16 autocast for the networks.
        seed: every draw of the run.
        eval_images: held-out images measured after each epoch.
    """

    codec_type: ClassVar[type] = object

    codec: Any = None
    edge: str = "vit-edge-cifar10"
    server_init: str = "vit-server-cifar10"
    epochs: int = 16
    batch_size: int = 128
    lr: float = 3e-4
    server_lr: float = 5e-5
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.1
    kd: float = 1.0
    keep: tuple[float, float] = (0.125, 1.0)
    full_prob: float = 0.3
    guided_prob: float = 0.7
    bf16: bool = True
    seed: int = 0
    eval_images: int = 2000

    @classmethod
    def from_dict(cls, data: dict):
        """The config of its JSON form (lists back to tuples, the codec's dict to its config)."""
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**{**data, "codec": cls.codec_type.from_dict(data["codec"])})


@dataclass
class Batch:
    """One training batch as a pair sees it.

    Attributes:
        images: B x 3 x H x W uint8, augmented (pad, crop, flip).
        labels: B int64.
        importance: B x N float32, the edge's mean attention per patch.
        values: B x N x in_dim float32, what the pair's analysis reads (:func:`~semcomm.rate.hyperprior.source_values`).
        target: B x C float32 logits of the teacher on the full image, or None without one.
    """

    images: torch.Tensor
    labels: torch.Tensor
    importance: torch.Tensor
    values: torch.Tensor
    target: torch.Tensor | None


def training_batch(split: ImageSplit, index: torch.Tensor, generator: torch.Generator, edge: ViTAdapter,
                   teacher: ViTAdapter | None, latent: HyperConfig, bf16: bool) -> Batch:
    """The images ``index`` of ``split`` augmented (drawing from ``generator``, on the CPU), through the frozen edge
    and teacher; the batch lives on the edge's device."""
    device = module_device(edge)
    images = pad_crop_flip(split.images[index], generator).to(device)
    with torch.no_grad(), autocast(bf16):
        _, importance, hidden = edge_pass(edge, images, latent)
        values = source_values(images, hidden, latent)
        target = teacher(images).float() if teacher is not None else None
    return Batch(images, split.labels[index].to(device), importance.float(), values.float(), target)


def schedule_lr(optimizer: torch.optim.Optimizer, config: PairTrainConfig, step: int, steps_per_epoch: int) -> None:
    """Every parameter group at its ``base_lr`` times the warm-up + cosine factor of ``step``."""
    scale = warmup_cosine(step, steps_per_epoch, config.epochs, config.warmup_epochs, 1.0, config.min_lr / config.lr)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * scale


def task_loss(logits: torch.Tensor, batch: Batch, config: PairTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, cross-entropy): label-smoothed cross-entropy plus ``kd`` x KL to the teacher's answer."""
    logits = logits.float()
    ce = F.cross_entropy(logits, batch.labels, label_smoothing=config.label_smoothing)
    if batch.target is None:
        return ce, ce
    kl = F.kl_div(logits.log_softmax(-1), batch.target.log_softmax(-1), log_target=True, reduction="batchmean")
    return ce + config.kd * kl, ce
