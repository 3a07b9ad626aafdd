"""A split's images left on disk: :class:`ShardedImages`, an N x 3 x H x W uint8 array read from cache shards as
it is indexed, so that a data set larger than memory can be evaluated and trained on a batch at a time.

Indexing it as a tensor is indexed (an int, a slice, a list, an int64 or bool tensor or array; a tuple's further
items then index the tensor read) returns a torch uint8 tensor of just those images, read from the shards
(:class:`~semcomm.data.shards.ShardStore`). :meth:`ShardedImages.rows` is a lazy selection (a subset keeps an
index into the shards, never a copy of pixels); :meth:`ShardedImages.batches` iterates over B x 3 x H x W batches;
:meth:`ShardedImages.to_tensor` reads it all into memory. Code that needs every image in memory refuses images on
disk by name (:func:`require_in_memory`).
"""
from __future__ import annotations

import hashlib
import numbers
from typing import Iterator

import numpy as np
import torch

from semcomm.data.shards import ShardStore

DIGEST_BATCH = 4096  # images read at a time while hashing a whole split


class ShardedImages:
    """N x 3 x H x W uint8 images held in cache shards, read when indexed (see the module docstring).

    Args:
        store: the cache entry's shards.
        index: which of the store's images, in order (int64 array); None: all of them.

    >>> # split = load_split("imagenet", "val", image_size=224, in_memory=False)
    >>> # split.images[:256].shape -> torch.Size([256, 3, 224, 224]); split.images.shape[0] -> 50000
    """

    def __init__(self, store: ShardStore, index: np.ndarray | None = None):
        self.store = store
        self.index = None if index is None else np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.store) if self.index is None else len(self.index)

    @property
    def shape(self) -> torch.Size:
        """N x 3 x H x W."""
        return torch.Size((len(self), *self.store.shape[1:]))

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8

    @property
    def ndim(self) -> int:
        return len(self.store.shape)

    def dim(self) -> int:
        return self.ndim

    @property
    def nbytes(self) -> int:
        """Bytes the images would take in memory."""
        return len(self) * self.store.row_bytes

    def __repr__(self) -> str:
        return (f"ShardedImages({' x '.join(map(str, self.shape))} uint8 in {len(self.store.shards)} shards of "
                f"{self.store.folder})")

    def _positions(self, key) -> np.ndarray:
        """Indices (into this view) that ``key`` selects, as int64."""
        n = len(self)
        if isinstance(key, slice):  # (not arange(n)[key]: a batch's indices, not all N, are made)
            return np.arange(*key.indices(n), dtype=np.int64)
        if isinstance(key, torch.Tensor):
            key = key.detach().cpu().numpy()
        key = np.asarray(key)
        if key.dtype == bool:
            if key.shape != (n,):
                raise IndexError(f"a boolean index of ShardedImages must have shape ({n},), got {key.shape}")
            return np.flatnonzero(key)
        if key.size == 0:
            return np.empty(0, dtype=np.int64)
        if key.dtype.kind not in "iu" or key.ndim != 1:
            raise IndexError(f"ShardedImages are indexed by an int, a slice, or a 1-d list, array or tensor of ints "
                             f"or booleans; got {key.dtype} of shape {key.shape}")
        key = key.astype(np.int64)
        if key.min() < -n or key.max() >= n:
            raise IndexError(f"index {int(key.min() if key.min() < -n else key.max())} is out of range for {n} "
                             "images")
        return np.where(key < 0, key + n, key)

    def _store_rows(self, positions: np.ndarray) -> np.ndarray:
        return positions if self.index is None else self.index[positions]

    def __getitem__(self, key) -> torch.Tensor:
        """The images ``key`` selects as a uint8 tensor (3 x H x W for an int, k x 3 x H x W otherwise)."""
        rest = ()
        if isinstance(key, tuple):
            key, rest = (key[0] if key else slice(None)), key[1:]
        if isinstance(key, torch.Tensor) and key.ndim == 0:
            key = key.item()  # a 0-d tensor: as its number (one image for an int)
        elif isinstance(key, np.ndarray) and key.ndim == 0:
            key = key.item()
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            if not -len(self) <= key < len(self):
                raise IndexError(f"image {key} is out of range for {len(self)} images")
            images = self._read(self._positions([int(key)]))[0]
        else:
            images = self._read(self._positions(key))
            rest = (slice(None), *rest) if rest else ()
        return images[rest] if rest else images

    def _read(self, positions: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.store.read(self._store_rows(positions)))

    def rows(self, key) -> "ShardedImages":
        """A lazy view of the images ``key`` selects (as :meth:`__getitem__` does, never an int): no pixels read."""
        return ShardedImages(self.store, self._store_rows(self._positions(key)))

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """The images in order, ``batch_size`` at a time (B x 3 x H x W uint8; the last batch may be smaller)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive number of images, got {batch_size!r}")
        for start in range(0, len(self), batch_size):
            yield self[start : start + batch_size]

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Each image (3 x H x W), read a batch at a time."""
        for batch in self.batches(256):
            yield from batch

    def to_tensor(self) -> torch.Tensor:
        """All the images in memory (N x 3 x H x W uint8), read straight into the tensor returned."""
        out = torch.empty(tuple(self.shape), dtype=torch.uint8)
        rows = np.arange(len(self), dtype=np.int64) if self.index is None else self.index
        self.store.read(rows, out=out.numpy())
        return out

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("store", "index"):
            raise AttributeError(name)
        raise AttributeError(f"ShardedImages has no attribute {name!r} (it is not a tensor: its {len(self)} images "
                             "stay on disk); index it (images[a:b], images[index]) or iterate images.batches(n) for "
                             "tensors, or load the split with in_memory=True")


def require_in_memory(images, needed_by: str):
    """``images`` itself when it is in memory (N x 3 x H x W tensor); for :class:`ShardedImages` (left on disk) a
    TypeError saying that ``needed_by`` holds every image in memory, and how to load the split so."""
    if isinstance(images, ShardedImages):
        raise TypeError(f"{needed_by} holds every image in memory, but these {len(images)} images are left on disk "
                        "(ShardedImages, a split larger than memory): load the split with "
                        "load_split(..., in_memory=True), or pass images[:] to read them into memory")
    return images


def update_digest(sha: "hashlib._Hash", images) -> None:
    """Feed the bytes of ``images`` (a uint8 tensor or :class:`ShardedImages`), in C order, to the hash ``sha``: the
    same digest as ``sha.update(images.numpy().tobytes())``, read a batch at a time for images on disk."""
    if isinstance(images, ShardedImages):
        for batch in images.batches(DIGEST_BATCH):
            sha.update(batch.numpy().tobytes())
    else:
        sha.update(images.numpy().tobytes())

