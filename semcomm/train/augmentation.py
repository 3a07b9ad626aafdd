"""Training-time augmentation of uint8 image batches, deterministic given a generator.

Two recipes:

* :func:`pad_crop_flip`: CIFAR's random crop after reflect padding and a
  random horizontal flip, vectorised on the batch (with :func:`random_flip`
  and no augmentation at all, the label-preserving augmentations of the
  registry :data:`AUGMENTATIONS`: ``none``, ``flip``, ``pad-crop-flip``,
  each called ``augment(images, generator) -> images``);
* :class:`ImageNetAugment`: the DeiT-style recipe for a ViT trained from
  scratch, built from timm's own transforms: random-resized crop, horizontal
  flip and RandAugment per image (``timm.data.transforms_imagenet_train``),
  then Mixup / CutMix on the batch (``timm.data.Mixup``, which also smooths
  the labels). Train with ``timm.loss.SoftTargetCrossEntropy`` on its targets.

timm's transforms draw from Python's ``random``, NumPy's global generator and
torch's global generator. Each batch seeds all three from the caller's
``torch.Generator`` inside a scope that restores their previous states, so a
run is reproducible and nothing else in the process sees its draws.
"""
from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import Mixup
from timm.data.transforms_factory import transforms_imagenet_train

from semcomm.core.registry import Registry

AUGMENTATIONS: Registry[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = Registry("augmentation")


@AUGMENTATIONS.register("none")
def no_augmentation(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The B x 3 x H x W images as they are."""
    return images


@AUGMENTATIONS.register("flip")
def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """B x 3 x H x W images (any dtype), each flipped left-right with probability 1/2."""
    mirrored = torch.rand(len(images), generator=generator) < 0.5
    return torch.where(mirrored[:, None, None, None], images.flip(-1), images)


@AUGMENTATIONS.register("pad-crop-flip")
def pad_crop_flip(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop after reflect padding, and random horizontal flip, of B x 3 x H x W uint8 images."""
    if images.dtype != torch.uint8:
        raise ValueError(f"pad-crop-flip augments uint8 images, got {images.dtype}")
    b, _, h, w = images.shape
    padded = F.pad(images.float(), (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator)
    rows = (dy + torch.arange(h)).view(b, 1, h, 1)
    cols = (dx + torch.arange(w)).view(b, 1, 1, w)
    flip = torch.rand(b, generator=generator) < 0.5
    cols = torch.where(flip.view(b, 1, 1, 1), cols.flip(-1), cols)
    batch = torch.arange(b).view(b, 1, 1, 1)
    channel = torch.arange(3).view(1, 3, 1, 1)
    return padded[batch, channel, rows, cols].to(torch.uint8)


@contextlib.contextmanager
def seeded_global_rngs(generator: torch.Generator):
    """Seed Python's, NumPy's and torch's global generators from ``generator``; restore them on exit."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


@dataclass
class ImageNetAugment:
    """DeiT-style augmentation: random-resized crop, flip, RandAugment, Mixup / CutMix.

    Attributes:
        num_classes: classes of the soft targets.
        crop_scale: area range of the random-resized crop.
        rand_augment: timm RandAugment spec; None for none. The default is DeiT's
            ``rand-m9-mstd0.5-inc1`` with the noisy magnitude capped at 9
            (``mmax9``): at 10, timm's increasing posterize asks Pillow for 0
            bits, which Pillow >= 12 refuses.
        mixup: Mixup alpha (0 turns it off).
        cutmix: CutMix alpha (0 turns it off); with both, each batch uses one of them.
        label_smoothing: folded into the soft targets.
    """

    num_classes: int
    crop_scale: tuple[float, float] = (0.35, 1.0)
    rand_augment: str | None = "rand-m9-mstd0.5-inc1-mmax9"
    mixup: float = 0.8
    cutmix: float = 1.0
    label_smoothing: float = 0.1

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, size: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch.

        Args:
            images: B x 3 x H x W uint8 (B even when Mixup or CutMix is on).
            labels: B int64 class indices.
            size: side of the output images (the crop is resized to it).

        Returns:
            B x 3 x size x size float images in [0, 1] and B x num_classes soft targets.
        """
        transform = transforms_imagenet_train(
            img_size=size, scale=self.crop_scale, auto_augment=self.rand_augment, interpolation="bicubic",
            separate=True)
        per_image = transform[:-1]  # crop + flip, RandAugment; the last stage (to tensor, normalise) is ours
        with seeded_global_rngs(generator):
            out = []
            for image in images.permute(0, 2, 3, 1).numpy():
                pil = Image.fromarray(image)
                for stage in per_image:
                    pil = stage(pil)
                out.append(np.asarray(pil))
            batch = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255.0
            if self.mixup > 0 or self.cutmix > 0:
                mix = Mixup(mixup_alpha=self.mixup, cutmix_alpha=self.cutmix, label_smoothing=self.label_smoothing,
                            num_classes=self.num_classes)
                return mix(batch, labels)
        off = self.label_smoothing / self.num_classes
        targets = torch.full((len(labels), self.num_classes), off).scatter_(1, labels[:, None], 1 - self.label_smoothing + off)
        return batch, targets
