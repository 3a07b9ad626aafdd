"""Loading a split: find the data set, decode it once into the cache's shards, and serve them afterwards (in
memory when small, else read from disk as indexed); or the images of a folder without labels, for prediction."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch

from semcomm.data.archives import archive_fingerprint, extract
from semcomm.data.cache import (cache_root, cached_entry, digest, entry_source, open_entry, skipped_warning,
                                source_key, write_entry)
from semcomm.data.decode import (SplitImages, check_image_size, decode_folder, decode_images, read_torchvision_cifar,
                                 warn_skipped)
from semcomm.data.folders import IMAGE_SUFFIXES, image_files, reference_classes, split_folder, subfolders
from semcomm.data.image_split import ImageSplit, UnlabelledImages, check_limit
from semcomm.data.locate import DataLocation, DataNotFoundError, is_data_path, locate
from semcomm.data.parallel import check_engine, check_workers
from semcomm.data.shards import SHARD_BYTES, check_shard_bytes

IN_MEMORY_BYTES = 2**30  # a split (or its subset) of at most this many bytes of pixels is read into memory by default

# data sets whose held-out split is known without looking (others: "val" if they have one, else "test")
EVALUATION_SPLITS = {"imagenette": "val", "cifar10": "test", "cifar100": "test"}


def load_split(
    name: str | os.PathLike,
    split: str,
    data_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    image_size: int | None = None,
    skip_missing: bool = False,
    in_memory: bool | None = None,
    workers: int | None = None,
    shard_bytes: int = SHARD_BYTES,
    engine: str = "processes",
) -> ImageSplit:
    """Load one split of a data set, decoding it on first use.

    Args:
        name: a data set name (``cifar10``, ``imagenette``, ``tiny-imagenet-200``, ...)
            looked for in the data roots, or the path of a data set's folder or archive
            (see :mod:`semcomm.data`).
        split: ``"train"``, ``"test"``, ``"val"``, ...
        data_root: where to look first for a named data set.
        cache_dir: where extracted archives and decoded arrays go.
        limit: keep a fixed subset of ``limit`` images (see :meth:`ImageSplit.subset`).
        image_size: side in pixels of the square images returned: the shorter
            side is resized to it (bicubic) and the centre cropped; None keeps
            the images as they are (they must then share one size).
        skip_missing: skip lines of an annotations file that name files that do not exist, with a
            :class:`~semcomm.data.folders.DataWarning` naming how many and which (on every load, cached or
            not); default: such lines refuse the split.
        in_memory: True: ``images`` is a tensor in memory; False: a
            :class:`~semcomm.data.sharded.ShardedImages` read from the cache's shards as it is indexed (memory
            bounded by the batches read, however large the split); None (default): in memory when the images
            (after ``limit``) take at most :data:`IN_MEMORY_BYTES`.
        workers: processes decoding the images on first use (default: every core available; with ``engine="ray"``
            every CPU of the Ray cluster); the bytes decoded are the same for any number, and either engine.
        shard_bytes: target size in bytes of one cache shard written on first use (:mod:`semcomm.data.shards`;
            an entry already cached is served with the shards it has).
        engine: what decodes on first use: ``"processes"`` (a pool of local processes) or ``"ray"`` (Ray tasks:
            the Ray this process has joined, e.g. a cluster's after ``ray.init(address=...)``, else a local instance
            started for the decoding and stopped after it). On a cluster every node must read the image files at
            the same path (a shared file system) and have this library installed: see
            :mod:`semcomm.data.parallel`. Ray is an optional dependency (``pip install 'semcomm[ray]'``).

    Returns:
        images N x 3 x S x S uint8 (S = ``image_size``), labels N int64 indexing ``classes``: the
        training split's classes, sorted, in every split. A damaged cache shard (changed, truncated or missing)
        is decoded again when first read, with a :class:`~semcomm.data.folders.DataWarning` naming it.

    Raises:
        DataNotFoundError: no such data set or split.
        ValueError: one line naming the file or folder: an empty class folder (in this split or the training
            split), an image that cannot be decoded, claims more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels or
            holds values outside its mode's range (:mod:`semcomm.data.pixels`), a bad annotations file, a class
            that the training split lacks.

    >>> from semcomm.data import load_split
    >>> test = load_split("cifar10", "test", limit=100)  # doctest: +SKIP
    >>> test.images.shape, test.labels.shape  # doctest: +SKIP
    (torch.Size([100, 3, 32, 32]), torch.Size([100]))
    """
    image_size, limit = check_image_size(image_size), check_limit(limit)
    workers, shard_bytes, engine = _checked_workers(workers), check_shard_bytes(shard_bytes), check_engine(engine)
    if in_memory not in (None, True, False):
        raise ValueError(f"in_memory must be True, False or None (by size), got {in_memory!r}")
    cache = cache_root(cache_dir)
    location = locate(name, split, data_root)
    source = source_key(location, split, skip_missing)
    entry = cached_entry(cache, location.name, split, source, image_size)
    if entry is None:
        images = _split_images(location, split, cache, image_size, skip_missing)
        entry = write_entry(cache, location.name, split, source, images, image_size, workers, shard_bytes, engine)
    warn_skipped(skipped_warning(entry))
    repair = Redecode(location, split, str(cache), entry_source(entry)["image_size"], skip_missing)
    loaded = open_entry(entry, f"{location.name}/{split}", repair).subset(limit)
    if in_memory or (in_memory is None and loaded.images.nbytes <= IN_MEMORY_BYTES):
        return dataclasses.replace(loaded, images=loaded.images.to_tensor())
    return loaded


@dataclasses.dataclass(frozen=True)
class Redecode:
    """Decodes images ``start:stop`` of a cached split again (``image_size``: the cache entry's; None: native):
    how a damaged cache shard is rewritten (:class:`~semcomm.data.shards.ShardStore`)."""

    location: DataLocation
    split: str
    cache: str
    image_size: int | None
    skip_missing: bool

    def __call__(self, start: int, stop: int) -> np.ndarray:
        images = _split_images(self.location, self.split, Path(self.cache), self.image_size, self.skip_missing)
        return images.decode(start, stop)[0]


def load_images(
    source: str | os.PathLike,
    split: str | None = None,
    data_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    image_size: int | None = None,
    workers: int | None = None,
    engine: str = "processes",
) -> UnlabelledImages:
    """Every image below a folder, or in one split of a data set, without labels: for prediction only.

    Args:
        source: a folder of images (any depth), or with ``split`` a data set (a name looked for in the
            data roots, or a folder or archive: see :func:`load_split`).
        split: the split to read (e.g. Tiny-ImageNet's unlabelled ``"test"``); None: every image below
            ``source``. Class folders and annotations files are ignored.
        data_root: where to look first for a named data set.
        cache_dir: where archives are extracted (the images themselves are decoded on every call).
        limit: only the first ``limit`` images, by path.
        image_size: side in pixels of the square images returned (shorter side resized, centre cropped);
            None keeps the images as they are (they must then share one size).
        workers: processes decoding the images (default: every core available; Ray: the cluster's CPUs).
        engine: ``"processes"`` (a local pool) or ``"ray"`` (Ray tasks; as :func:`load_split` says).

    Returns:
        images N x 3 x S x S uint8 and ``files``, each image's path relative to the folder read, in path order.

    Raises:
        DataNotFoundError: no such folder, data set or split, or no images in it.
        ValueError: naming the file: an image that cannot be decoded or claims too many pixels (as load_split).

    >>> from semcomm.data import load_images
    >>> test = load_images("~/data/tiny-imagenet-200", "test", image_size=64)  # doctest: +SKIP
    >>> test.images.shape, test.files[0]  # doctest: +SKIP
    (torch.Size([10000, 3, 64, 64]), 'images/test_0.JPEG')
    """
    image_size, limit, workers = check_image_size(image_size), check_limit(limit), _checked_workers(workers)
    engine = check_engine(engine)
    location = locate(source, split, data_root)
    if location.kind == "cifar":
        raise ValueError(f"{location.path} holds torchvision's CIFAR files, which are labelled: use load_split")
    folder = _dataset_folder(location, cache_root(cache_dir))
    folder = split_folder(folder, split) if split is not None else folder
    files = image_files(folder)[:limit]
    if not files:
        raise DataNotFoundError(f"no images found under {folder} (files with one of {sorted(IMAGE_SUFFIXES)})")
    title = f"{location.name}/{split}" if split is not None else location.name
    images, _ = decode_images(files, image_size, title, workers, engine)
    return UnlabelledImages(torch.from_numpy(images), [f.relative_to(folder).as_posix() for f in files], title)


def _checked_workers(workers) -> int | None:
    """``workers`` checked (:func:`~semcomm.data.parallel.check_workers`); None stays None, for the engine to
    choose (every core here, or every CPU of a Ray cluster)."""
    return None if workers is None else check_workers(workers)


def available_splits(name: str | os.PathLike, data_root: str | os.PathLike | None = None,
                     cache_dir: str | os.PathLike | None = None) -> list[str]:
    """The split names of a data set, sorted (an archive is extracted into the cache to look)."""
    location = locate(name, None, data_root)
    if location.kind == "cifar":
        return ["test", "train"]
    return subfolders(_dataset_folder(location, cache_root(cache_dir)))


def evaluation_split(name: str | os.PathLike, data_root: str | os.PathLike | None = None) -> str:
    """The held-out split a data set's models are scored on: ``"val"`` if it has one, else ``"test"``.

    Tiny-ImageNet's ``test/`` is unlabelled, so ``"val"`` is preferred;
    CIFAR and Imagenette are known without looking at the data.
    """
    if not is_data_path(name) and name in EVALUATION_SPLITS:
        return EVALUATION_SPLITS[name]
    try:
        return "val" if "val" in available_splits(name, data_root) else "test"
    except DataNotFoundError:
        return "test"  # loading it will say where the data were looked for


def _dataset_folder(location: DataLocation, cache: Path) -> Path:
    """The folder holding the split folders (an archive is extracted once, keyed by its fingerprint)."""
    if location.kind == "folder":
        return location.path
    target = cache / "extracted" / f"{location.name}-{digest(archive_fingerprint(location.path))}"
    extract(location.path, target)
    wrapped = target / location.name  # archives often hold one top folder named like the data set
    return wrapped if subfolders(target) == [location.name] else target


def _split_images(location: DataLocation, split: str, cache: Path, image_size: int | None,
                  skip_missing: bool) -> SplitImages:
    """The images of one split, labelled, not yet decoded (an archive is extracted first)."""
    if location.kind == "cifar":
        pixels, labels, classes = read_torchvision_cifar(location.path, location.name, split)
        return SplitImages(labels, classes, split, image_size, pixels=pixels)
    dataset = _dataset_folder(location, cache)
    return decode_folder(split_folder(dataset, split), image_size, reference_classes(dataset), skip_missing)
