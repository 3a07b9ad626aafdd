"""Decoding images into N x 3 x H x W uint8 arrays: image files (RGB, optionally squared to one size) and
torchvision's CIFAR batch files.

Every image mode becomes 8-bit RGB as :mod:`semcomm.data.pixels` says (16-bit and float images scaled, CMYK,
palette, alpha and 1-bit converted; oversized and damaged files refused by name); ``image_size`` resizes the
shorter side (bicubic) and centre-crops a square.
"""
from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from semcomm.data.folders import DataWarning, labelled_files
from semcomm.data.image_split import ImageSplit
from semcomm.data.locate import TORCHVISION_CIFAR, DataNotFoundError
from semcomm.data.pixels import read_image


def check_image_size(image_size) -> int | None:
    """``image_size`` if it is None or a positive int; else a ValueError saying what was given."""
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size must be a positive whole number of pixels, got {image_size!r}")
    return int(image_size)


def square_image(img: Image.Image, side: int) -> Image.Image:
    """``img`` with its shorter side resized to ``side`` pixels (bicubic), centre-cropped to side x side."""
    width, height = img.size
    scale = side / min(width, height)
    size = (max(side, round(width * scale)), max(side, round(height * scale)))
    img = img.resize(size, Image.BICUBIC)
    left, top = (size[0] - side) // 2, (size[1] - side) // 2
    return img.crop((left, top, left + side, top + side))


def load_image_folder(root: str | os.PathLike, image_size: int | None = None,
                      classes: list[str] | None = None, skip_missing: bool = False) -> ImageSplit:
    """Decode one ImageFolder split folder into memory.

    Args:
        root: a split folder with one sub-folder per class (images at any
            depth below it), or with an annotations file ``*annotations.txt``
            of ``file<TAB>class[<TAB>...]`` lines (see :mod:`semcomm.data.folders`).
        image_size: side of the square images returned (shorter side resized,
            centre cropped); needed when the images do not all share one size.
        classes: class names in label order (e.g. the training split's);
            default: the folder's own classes, sorted.
        skip_missing: skip lines of the annotations file naming files that do not exist, with a
            :class:`~semcomm.data.folders.DataWarning` naming them (default: such lines are an error).

    Returns:
        images N x 3 x H x W uint8, ordered by class then file path.

    Raises:
        ValueError: naming the file or class folder: an empty class folder, an image that cannot be decoded or
            claims too many pixels, a bad annotations file, a class that ``classes`` lacks.
    """
    root = Path(root)
    images, labels, classes, _, skipped = decode_folder(root, check_image_size(image_size), classes, skip_missing)
    warn_skipped(skipped)
    return ImageSplit(torch.from_numpy(images), torch.from_numpy(labels), classes, root.name)


def warn_skipped(skipped: str | None) -> None:
    """Say which annotated files were skipped (the message :func:`decode_folder` returned), if any were."""
    if skipped:
        warnings.warn(skipped, DataWarning, stacklevel=3)


def decode_folder(folder: Path, image_size: int | None, classes: list[str] | None, skip_missing: bool = False):
    """Images (N x 3 x H x W uint8), labels (N int64), class names, whether any image was resized, and a message
    naming the annotated files skipped (``skip_missing``) or None."""
    labelled, skipped = labelled_files(folder, skip_missing)
    found = sorted({cls for _, cls in labelled})
    classes = list(classes) if classes is not None else found
    index = {cls: i for i, cls in enumerate(classes)}
    strangers = [cls for cls in found if cls not in index]
    if strangers:
        raise ValueError(f"{folder} has {len(strangers)} classes that the training split does not have "
                         f"(e.g. {', '.join(strangers[:3])}); its {len(classes)} classes are e.g. "
                         f"{', '.join(classes[:3])}")
    labelled.sort(key=lambda item: (index[item[1]], item[0]))
    images, resized = decode_images([f for f, _ in labelled], image_size, folder.name)
    labels = np.asarray([index[cls] for _, cls in labelled], dtype=np.int64)
    return images, labels, classes, resized, skipped


def decode_images(files: list[Path], image_size: int | None, title: str) -> tuple[np.ndarray, bool]:
    """N x 3 x H x W uint8 array of ``files`` (RGB), and whether any was resized or cropped."""
    out, resized = None, False
    for i, path in enumerate(tqdm(files, desc=f"decoding {title}", unit="img")):
        array, changed = read_rgb(path, image_size)
        if out is None:
            out, first = np.empty((len(files), 3, *array.shape[:2]), dtype=np.uint8), path
        elif array.shape[:2] != out.shape[2:]:
            raise ValueError(f"images differ in size ({first} is {out.shape[3]}x{out.shape[2]}, {path} is "
                             f"{array.shape[1]}x{array.shape[0]}); give an image size to resize and crop them to")
        out[i] = array.transpose(2, 0, 1)
        resized |= changed
    return out, resized


def read_rgb(path: Path, image_size: int | None) -> tuple[np.ndarray, bool]:
    """H x W x 3 uint8 pixels of one image file (:func:`~semcomm.data.pixels.read_image`), and whether it was
    resized or cropped."""
    img = read_image(path)
    changed = image_size is not None and img.size != (image_size, image_size)
    if changed:
        img = square_image(img, image_size)
    return np.asarray(img, dtype=np.uint8), changed


def resize_arrays(images: np.ndarray, image_size: int | None) -> tuple[np.ndarray, bool]:
    """N x 3 x H x W uint8 images made image_size x image_size by :func:`square_image`, and whether that changed
    them."""
    if image_size is None or images.shape[-2:] == (image_size, image_size):
        return images, False
    squares = [square_image(Image.fromarray(a.transpose(1, 2, 0)), image_size) for a in images]
    return np.stack([np.asarray(s).transpose(2, 0, 1) for s in squares]), True


def read_torchvision_cifar(folder: Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images (N x 3 x 32 x 32 uint8), labels (N int64) and class names of one split of torchvision's CIFAR
    files (``name``: ``cifar10`` or ``cifar100``; ``split``: ``train`` or ``test``)."""
    _, meta_file, names_key, labels_key = TORCHVISION_CIFAR[name]
    if split not in ("train", "test"):
        raise DataNotFoundError(f"torchvision CIFAR has splits 'train' and 'test', not {split!r}")
    if name == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    else:
        files = [split]
    data, labels = [], []
    for file in files:
        with open(folder / file, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        data.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(batch[labels_key])
    with open(folder / meta_file, "rb") as f:
        classes = pickle.load(f, encoding="latin1")[names_key]
    return np.concatenate(data), np.asarray(labels, dtype=np.int64), list(classes)
