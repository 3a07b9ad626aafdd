"""Loading a split: find the data set, decode it once, and serve the cached arrays afterwards."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from semcomm.data.archives import archive_fingerprint, extract
from semcomm.data.cache import cache_root, cached_entry, digest, entry_dir, load_arrays, save_arrays, source_key
from semcomm.data.decode import check_image_size, decode_folder, read_torchvision_cifar, resize_arrays
from semcomm.data.folders import reference_classes, split_folder, subfolders
from semcomm.data.image_split import ImageSplit
from semcomm.data.locate import DataLocation, DataNotFoundError, is_data_path, locate

# data sets whose held-out split is known without looking (others: "val" if they have one, else "test")
EVALUATION_SPLITS = {"imagenette": "val", "cifar10": "test", "cifar100": "test"}


def load_split(
    name: str | os.PathLike,
    split: str,
    data_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    image_size: int | None = None,
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

    Returns:
        images N x 3 x S x S uint8 (S = ``image_size``), labels N int64 indexing ``classes``.

    >>> from semcomm.data import load_split
    >>> test = load_split("cifar10", "test", limit=100)  # doctest: +SKIP
    >>> test.images.shape, test.labels.shape  # doctest: +SKIP
    (torch.Size([100, 3, 32, 32]), torch.Size([100]))
    """
    image_size = check_image_size(image_size)
    cache = cache_root(cache_dir)
    location = locate(name, split, data_root)
    source = source_key(location, split)
    title = f"{location.name}/{split}"
    entry = cached_entry(cache, location.name, split, source, image_size)
    if entry is not None:
        return load_arrays(entry, title).subset(limit)
    images, labels, classes, resized = _decode(location, split, cache, image_size)
    size = image_size if resized else None  # nothing was resized: these are the native arrays
    entry = entry_dir(cache, location.name, split, source, size)
    save_arrays(entry, images, labels, classes, dict(source, split=split, image_size=size))
    return ImageSplit(torch.from_numpy(images), torch.from_numpy(labels), classes, title).subset(limit)


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


def _decode(location: DataLocation, split: str, cache: Path, image_size: int | None):
    """Images, labels, classes of one split, and whether any image was resized."""
    if location.kind == "cifar":
        images, labels, classes = read_torchvision_cifar(location.path, location.name, split)
        images, resized = resize_arrays(images, image_size)
        return images, labels, classes, resized
    dataset = _dataset_folder(location, cache)
    return decode_folder(split_folder(dataset, split), image_size, reference_classes(dataset, split))
