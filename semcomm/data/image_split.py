"""One split of an image-classification data set: uint8 images (in memory, or left on disk in cache shards) and
int64 labels; or images without labels, held with their file names."""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

from semcomm.data.sharded import ShardedImages


@dataclass
class ImageSplit:
    """One split of an image-classification data set.

    Attributes:
        images: N x 3 x H x W uint8: a tensor, or for a split larger than memory a
            :class:`~semcomm.data.sharded.ShardedImages` read from the cache's shards as it is indexed
            (``images[a:b]`` and ``images[index]`` are tensors).
        labels: N int64 tensor of class indices.
        classes: class names, indexed by label.
        name: data set name and split, e.g. ``"cifar10/test"``.

    >>> images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    >>> split = ImageSplit(images, torch.tensor([0, 1, 0, 1]), ["a", "b"], "toy/test")
    >>> len(split), split.subset(2).name
    (4, 'toy/test[2]')
    """

    images: torch.Tensor | ShardedImages
    labels: torch.Tensor
    classes: list[str]
    name: str

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, limit: int | None) -> "ImageSplit":
        """A fixed subset of ``limit`` images (all of them when ``limit`` is None).

        Splits are stored class by class, so the subset is drawn with a fixed
        seed (0), in the split's order: the same images every time, every
        class represented. Images on disk stay there: the subset is an index into them.
        """
        limit = check_limit(limit)
        if limit is None or limit >= len(self):
            return self
        index = torch.randperm(len(self), generator=torch.Generator().manual_seed(0))[:limit].sort().values
        images = self.images.rows(index) if isinstance(self.images, ShardedImages) else self.images[index]
        return ImageSplit(images, self.labels[index], self.classes, f"{self.name}[{limit}]")


@dataclass
class UnlabelledImages:
    """Images without labels (for prediction), held in memory with the files they were decoded from.

    Attributes:
        images: N x 3 x H x W uint8 tensor.
        files: each image's file path relative to the folder read (``/``-separated), in the images' order.
        name: what was read, e.g. ``"tiny-imagenet-200/test"``.

    >>> images = UnlabelledImages(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), ["a.png", "b/c.png"], "toy")
    >>> len(images), images.files[1]
    (2, 'b/c.png')
    """

    images: torch.Tensor
    files: list[str]
    name: str

    def __len__(self) -> int:
        return len(self.files)


def check_limit(limit) -> int | None:
    """``limit`` if it is None or a positive number of images; else a ValueError saying what was given."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1:
        raise ValueError(f"limit must be a positive number of images, got {limit!r}")
    return int(limit)
