"""Decoding images into N x 3 x H x W uint8 arrays: image files (RGB, optionally squared to one size) and
torchvision's CIFAR batch files.

Every image mode becomes 8-bit RGB as :mod:`semcomm.data.pixels` says (16-bit and float images scaled, CMYK,
palette, alpha and 1-bit converted; oversized and damaged files refused by name); ``image_size`` resizes the
shorter side (bicubic) and centre-crops a square.

A split is described before it is decoded (:class:`SplitImages`: its image files or CIFAR pixels, labels and
classes) and decoded a chunk at a time (:meth:`SplitImages.chunks`), so that it can go straight into cache shards
without ever being whole in memory. Image files are decoded over a pool of ``workers`` processes
(:mod:`semcomm.data.parallel`; default every core available), or over Ray (``engine="ray"``), into the same bytes
as one process decodes.
"""
from __future__ import annotations

import functools
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from semcomm.data.folders import DataWarning, labelled_files
from semcomm.data.image_split import ImageSplit
from semcomm.data.locate import TORCHVISION_CIFAR, DataNotFoundError
from semcomm.data.parallel import ordered_map
from semcomm.data.pixels import read_image

CHUNK_IMAGES = 64  # image files decoded per task of the pool (and per chunk handed on)
CHUNK_ROWS = 1024  # images of an array (CIFAR's) resized or handed on at a time


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
                      classes: list[str] | None = None, skip_missing: bool = False,
                      workers: int | None = None, engine: str = "processes") -> ImageSplit:
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
        workers: processes decoding the images (default: every core available).
        engine: ``"processes"`` (a local pool) or ``"ray"`` (Ray tasks: :mod:`semcomm.data.parallel`).

    Returns:
        images N x 3 x H x W uint8, ordered by class then file path.

    Raises:
        ValueError: naming the file or class folder: an empty class folder, an image that cannot be decoded or
            claims too many pixels, a bad annotations file, a class that ``classes`` lacks.
    """
    root = Path(root)
    source = decode_folder(root, check_image_size(image_size), classes, skip_missing)
    images, _ = source.decode(workers=workers, engine=engine)
    warn_skipped(source.skipped)
    return ImageSplit(torch.from_numpy(images), torch.from_numpy(source.labels), source.classes, root.name)


def warn_skipped(skipped: str | None) -> None:
    """Say which annotated files were skipped (the message :func:`decode_folder` returned), if any were."""
    if skipped:
        warnings.warn(skipped, DataWarning, stacklevel=3)


@dataclass
class SplitImages:
    """The images of one split, not yet decoded, and their labels.

    Attributes:
        labels: N int64 class indices, in the images' order.
        classes: class names, indexed by label.
        title: what the images are, for progress and errors (e.g. ``"val"``).
        image_size: side of the square images decoded (None: as stored).
        files: the N image files, in order (an ImageFolder split); or None and
        pixels: N x 3 x h x w uint8 (torchvision's CIFAR).
        skipped: the warning naming annotated files that were skipped, or None.
    """

    labels: np.ndarray
    classes: list[str]
    title: str
    image_size: int | None = None
    files: list[Path] | None = None
    pixels: np.ndarray | None = None
    skipped: str | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def chunks(self, start: int = 0, stop: int | None = None, workers: int | None = None,
               engine: str = "processes") -> Iterator[tuple[np.ndarray, bool]]:
        """Images ``start:stop`` decoded in order, as k x 3 x S x S uint8 chunks, each with whether any of its
        images was resized or cropped (``workers``: processes decoding image files, default every core, over
        ``engine``: :func:`~semcomm.data.parallel.ordered_map`)."""
        if self.files is not None:
            yield from decoded_chunks(self.files[start:stop], self.image_size, self.title, workers, engine)
        else:
            yield from resized_chunks(self.pixels[start:stop], self.image_size)

    def decode(self, start: int = 0, stop: int | None = None, workers: int | None = None,
               engine: str = "processes") -> tuple[np.ndarray, bool]:
        """Images ``start:stop`` in memory ((stop - start) x 3 x S x S uint8), and whether any was resized."""
        return gather(self.chunks(start, stop, workers, engine), len(range(len(self))[start:stop]))


def gather(chunks, n: int) -> tuple[np.ndarray, bool]:
    """The ``n`` images of ``chunks`` ((k x 3 x H x W uint8, resized) pairs) in one array, and whether any was
    resized."""
    out, start, resized = None, 0, False
    for chunk, changed in chunks:
        if out is None:
            out = np.empty((n, *chunk.shape[1:]), dtype=np.uint8)
        out[start : start + len(chunk)] = chunk
        start, resized = start + len(chunk), resized or changed
    return (out if out is not None else np.empty((0, 3, 0, 0), dtype=np.uint8)), resized


def decode_folder(folder: Path, image_size: int | None, classes: list[str] | None,
                  skip_missing: bool = False) -> SplitImages:
    """The image files of an ImageFolder split folder, ordered by class then path, with their labels (indexing
    ``classes``, default the folder's own, sorted), not yet decoded."""
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
    labels = np.asarray([index[cls] for _, cls in labelled], dtype=np.int64)
    return SplitImages(labels, classes, folder.name, image_size, files=[f for f, _ in labelled], skipped=skipped)


def decode_images(files: list[Path], image_size: int | None, title: str, workers: int | None = None,
                  engine: str = "processes") -> tuple[np.ndarray, bool]:
    """N x 3 x H x W uint8 array of ``files`` (RGB), and whether any was resized or cropped."""
    return gather(decoded_chunks(files, image_size, title, workers, engine), len(files))


def decoded_chunks(files: list[Path], image_size: int | None, title: str, workers: int | None = None,
                   engine: str = "processes") -> Iterator[tuple[np.ndarray, bool]]:
    """The images of ``files`` decoded in order (RGB), k x 3 x H x W uint8 at a time, each chunk with whether any
    of its images was resized or cropped.

    The first file fixes H x W (a file of another size is a ValueError naming both, unless ``image_size`` makes
    them one size); the rest are decoded :data:`CHUNK_IMAGES` at a time over ``workers`` processes (default: every
    core available) or, with ``engine="ray"``, Ray tasks (:func:`~semcomm.data.parallel.ordered_map`), what they
    warn about warned again here, in order.
    """
    if not files:
        return
    with tqdm(total=len(files), desc=f"decoding {title}", unit="img") as progress:
        array, changed = read_rgb(files[0], image_size)
        progress.update(1)
        yield array.transpose(2, 0, 1)[None], changed
        tasks = [files[i : i + CHUNK_IMAGES] for i in range(1, len(files), CHUNK_IMAGES)]
        decode = functools.partial(decode_chunk, image_size=image_size, size=array.shape[:2], first=files[0])
        for chunk, changed, said in ordered_map(decode, tasks, workers, engine):
            for message, category in said:
                warnings.warn(message, category, stacklevel=2)
            progress.update(len(chunk))
            yield chunk, changed


def decode_chunk(files: list[Path], image_size: int | None, size: tuple[int, int],
                 first: Path) -> tuple[np.ndarray, bool, list[tuple[str, type]]]:
    """k x 3 x H x W uint8 of ``files`` (each must be H x W = ``size``, the size of the split's ``first`` image),
    whether any was resized or cropped, and what was warned while decoding them (message, category), to be warned
    again by the process that asked (this may run in a worker process)."""
    out, resized = np.empty((len(files), 3, *size), dtype=np.uint8), False
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        for i, path in enumerate(files):
            array, changed = read_rgb(path, image_size)
            if array.shape[:2] != tuple(size):
                raise ValueError(f"images differ in size ({first} is {size[1]}x{size[0]}, {path} is "
                                 f"{array.shape[1]}x{array.shape[0]}); give an image size to resize and crop them to")
            out[i] = array.transpose(2, 0, 1)
            resized |= changed
    return out, resized, [(str(w.message), w.category) for w in said]


def read_rgb(path: Path, image_size: int | None) -> tuple[np.ndarray, bool]:
    """H x W x 3 uint8 pixels of one image file (:func:`~semcomm.data.pixels.read_image`), and whether it was
    resized or cropped."""
    img = read_image(path)
    changed = image_size is not None and img.size != (image_size, image_size)
    if changed:
        img = square_image(img, image_size)
    return np.asarray(img, dtype=np.uint8), changed


def resized_chunks(images: np.ndarray, image_size: int | None) -> Iterator[tuple[np.ndarray, bool]]:
    """N x 3 x H x W uint8 ``images`` made image_size x image_size by :func:`square_image`, :data:`CHUNK_ROWS` at a
    time, each chunk with whether that changed it (as they are when ``image_size`` is None or already theirs)."""
    same = image_size is None or images.shape[-2:] == (image_size, image_size)
    for start in range(0, len(images), CHUNK_ROWS):
        chunk = images[start : start + CHUNK_ROWS]
        if same:
            yield chunk, False
        else:
            squares = [square_image(Image.fromarray(a.transpose(1, 2, 0)), image_size) for a in chunk]
            yield np.stack([np.asarray(s).transpose(2, 0, 1) for s in squares]), True


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
