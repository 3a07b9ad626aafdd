"""Loading a split: find the data set, decode it once, and serve the cached arrays afterwards; or the images of a
folder without labels, for prediction."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from semcomm.data.archives import archive_fingerprint, extract
from semcomm.data.cache import (cache_root, cached_entry, digest, entry_dir, load_arrays, save_arrays, skipped_warning,
                                source_key)
from semcomm.data.decode import (check_image_size, decode_folder, decode_images, read_torchvision_cifar, resize_arrays,
                                 warn_skipped)
from semcomm.data.folders import IMAGE_SUFFIXES, image_files, reference_classes, split_folder, subfolders
from semcomm.data.image_split import ImageSplit, UnlabelledImages, check_limit
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
    skip_missing: bool = False,
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

    Returns:
        images N x 3 x S x S uint8 (S = ``image_size``), labels N int64 indexing ``classes``: the
        training split's classes, sorted, in every split.

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
    image_size = check_image_size(image_size)
    cache = cache_root(cache_dir)
    location = locate(name, split, data_root)
    source = source_key(location, split, skip_missing)
    title = f"{location.name}/{split}"
    entry = cached_entry(cache, location.name, split, source, image_size)
    if entry is not None:
        warn_skipped(skipped_warning(entry))
        return load_arrays(entry, title).subset(limit)
    images, labels, classes, resized, skipped = _decode(location, split, cache, image_size, skip_missing)
    warn_skipped(skipped)
    size = image_size if resized else None  # nothing was resized: these are the native arrays
    entry = entry_dir(cache, location.name, split, source, size)
    said = dict(skipped=skipped) if skipped else {}
    save_arrays(entry, images, labels, classes, dict(source, split=split, image_size=size, **said))
    return ImageSplit(torch.from_numpy(images), torch.from_numpy(labels), classes, title).subset(limit)


def load_images(
    source: str | os.PathLike,
    split: str | None = None,
    data_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    image_size: int | None = None,
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
    image_size, limit = check_image_size(image_size), check_limit(limit)
    location = locate(source, split, data_root)
    if location.kind == "cifar":
        raise ValueError(f"{location.path} holds torchvision's CIFAR files, which are labelled: use load_split")
    folder = _dataset_folder(location, cache_root(cache_dir))
    folder = split_folder(folder, split) if split is not None else folder
    files = image_files(folder)[:limit]
    if not files:
        raise DataNotFoundError(f"no images found under {folder} (files with one of {sorted(IMAGE_SUFFIXES)})")
    title = f"{location.name}/{split}" if split is not None else location.name
    images, _ = decode_images(files, image_size, title)
    return UnlabelledImages(torch.from_numpy(images), [f.relative_to(folder).as_posix() for f in files], title)


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


def _decode(location: DataLocation, split: str, cache: Path, image_size: int | None, skip_missing: bool):
    """Images, labels, classes of one split, whether any image was resized, and the warning naming skipped
    annotated files (or None)."""
    if location.kind == "cifar":
        images, labels, classes = read_torchvision_cifar(location.path, location.name, split)
        images, resized = resize_arrays(images, image_size)
        return images, labels, classes, resized, None
    dataset = _dataset_folder(location, cache)
    return decode_folder(split_folder(dataset, split), image_size, reference_classes(dataset), skip_missing)
