"""Image datasets as whole splits of uint8 tensors.

Evaluation here is bound by the models, not by JPEG decoding: a split is
decoded once, cached as ``.npy`` arrays, and afterwards loads in a fraction
of a second as ``images`` (N x 3 x H x W, uint8) and ``labels`` (N, int64).

Where data comes from, in order:

1. ``data_root`` given by the caller (``--data-root`` on the command line);
2. the environment variable ``SEMCOMM_DATA``;
3. ``../shared/data`` next to the current directory or next to the checkout.

A data root may hold ``<name>.tar.gz`` (an ImageFolder tree
``<split>/<class>/<image>`` inside a gzip tar, extracted once into the
cache), an extracted tree ``<name>/<split>/<class>/<image>``, or
torchvision's CIFAR on-disk format (``cifar-10-batches-py`` /
``cifar-100-python``). Any ImageFolder tree can also be loaded by path with
:func:`load_image_folder`.
"""
from __future__ import annotations

import json
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"}
TORCHVISION_CIFAR = {
    "cifar10": ("cifar-10-batches-py", "batches.meta", "label_names", "labels"),
    "cifar100": ("cifar-100-python", "meta", "fine_label_names", "fine_labels"),
}


EVALUATION_SPLITS = {"imagenette": "val"}  # data sets whose held-out split is not called "test"


def evaluation_split(name: str) -> str:
    """The held-out split a data set's models are scored on (``"test"`` unless known otherwise)."""
    return EVALUATION_SPLITS.get(name, "test")


class DataNotFoundError(FileNotFoundError):
    """No data set could be found in any of the places searched."""


@dataclass
class ImageSplit:
    """One split of an image-classification data set, held in memory.

    Attributes:
        images: N x 3 x H x W uint8 tensor.
        labels: N int64 tensor of class indices.
        classes: class names, indexed by label.
        name: data set name and split, e.g. ``"cifar10/test"``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, limit: int | None) -> "ImageSplit":
        """A fixed subset of ``limit`` images (all of them when ``limit`` is None).

        Splits are stored class by class, so the subset is drawn with a fixed
        seed (0), in the split's order: the same images every time, every
        class represented.
        """
        if limit is None or limit >= len(self):
            return self
        if limit < 1:
            raise ValueError(f"limit must be a positive number of images, got {limit}")
        index = torch.randperm(len(self), generator=torch.Generator().manual_seed(0))[:limit].sort().values
        return ImageSplit(self.images[index], self.labels[index], self.classes, f"{self.name}[{limit}]")


def default_cache_dir() -> Path:
    """``$SEMCOMM_CACHE`` or ``~/.cache/semcomm``."""
    return Path(os.environ.get("SEMCOMM_CACHE", Path.home() / ".cache" / "semcomm"))


def candidate_data_roots(data_root: str | os.PathLike | None = None) -> list[Path]:
    """Every directory searched for data, in order of preference."""
    roots: list[Path] = []
    if data_root is not None:
        roots.append(Path(data_root))
    if os.environ.get("SEMCOMM_DATA"):
        roots.append(Path(os.environ["SEMCOMM_DATA"]))
    roots.append(Path.cwd().parent / "shared" / "data")
    roots.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    unique: list[Path] = []
    for root in roots:
        if root.resolve() not in [r.resolve() for r in unique]:
            unique.append(root)
    return unique


def load_split(
    name: str,
    split: str,
    data_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    limit: int | None = None,
) -> ImageSplit:
    """Load one split of a named data set (``cifar10``, ``cifar100``, ``imagenette``, ...).

    Args:
        name: data set name; the archive ``<name>.tar.gz``, the directory
            ``<name>/`` or torchvision's CIFAR directory is looked for.
        split: ``"train"``, ``"test"``, ``"val"``, ...
        data_root: where to look first (see the module docstring).
        cache_dir: where extracted trees and decoded arrays go.
        limit: keep a fixed subset of ``limit`` images (see :meth:`ImageSplit.subset`).
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    arrays = cache / "arrays" / f"{name}-{split}"
    if not (arrays / "labels.npy").exists():
        images, labels, classes = _decode_split(name, split, data_root, cache)
        _save_arrays(arrays, images, labels, classes)
    return _load_arrays(arrays, f"{name}/{split}").subset(limit)


def load_image_folder(root: str | os.PathLike, resize: int | None = None) -> ImageSplit:
    """Decode an ImageFolder tree ``root/<class>/<image>`` into memory.

    Args:
        root: directory with one sub-directory per class.
        resize: side length to resize every image to (square); needed when
            the images do not all have the same size.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"ImageFolder root {root} is not a directory")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    files = [
        (path, label)
        for label, cls in enumerate(classes)
        for path in sorted((root / cls).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise DataNotFoundError(
            f"no images found under {root}: expected {root}/<class>/<image> with one of {sorted(IMAGE_SUFFIXES)}"
        )
    arrays = [_read_rgb(path, resize) for path, _ in tqdm(files, desc=f"decoding {root.name}", unit="img")]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"images under {root} differ in size ({sorted(shapes)[:3]} ...); pass resize=<side>")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return ImageSplit(images, labels, classes, root.name)


def _read_rgb(path: Path, resize: int | None) -> np.ndarray:
    with Image.open(path) as img:
        img = img.convert("RGB")
        if resize is not None and img.size != (resize, resize):
            img = img.resize((resize, resize), Image.BICUBIC)
        return np.asarray(img, dtype=np.uint8)


def _decode_split(name: str, split: str, data_root, cache: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    searched = []
    for root in candidate_data_roots(data_root):
        for folder in (root / name / split, cache / "extracted" / name / split):
            searched.append(str(folder))
            if folder.is_dir():
                return _split_from_folder(folder)
        archive = root / f"{name}.tar.gz"
        searched.append(str(archive))
        if archive.is_file():
            _extract(archive, cache / "extracted" / name)
            folder = cache / "extracted" / name / split
            if not folder.is_dir():
                available = sorted(p.name for p in folder.parent.iterdir() if p.is_dir())
                raise DataNotFoundError(f"archive {archive} has no split {split!r}; it has {available}")
            return _split_from_folder(folder)
        if name in TORCHVISION_CIFAR:
            folder = root / TORCHVISION_CIFAR[name][0]
            searched.append(str(folder))
            if folder.is_dir():
                return _split_from_torchvision_cifar(folder, name, split)
    raise DataNotFoundError(
        f"data set {name!r} (split {split!r}) not found. Searched:\n  "
        + "\n  ".join(searched)
        + "\nPoint at the data with --data-root PATH or SEMCOMM_DATA=PATH, where PATH holds "
        f"{name}.tar.gz, an ImageFolder tree {name}/{split}/<class>/<image>, or torchvision's CIFAR files."
    )


def _split_from_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    split = load_image_folder(folder)
    return split.images.numpy(), split.labels.numpy(), split.classes


def _split_from_torchvision_cifar(folder: Path, name: str, split: str):
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


def _extract(archive: Path, target: Path) -> None:
    done = target / ".extracted"
    if done.exists():
        return
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        for member in tqdm(members, desc=f"extracting {archive.name}", unit="file"):
            if member.name.startswith("/") or ".." in Path(member.name).parts:
                raise ValueError(f"refusing unsafe path {member.name!r} in {archive}")
            tar.extract(member, target)
    done.touch()


def _save_arrays(folder: Path, images: np.ndarray, labels: np.ndarray, classes: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "images.npy", images)
    (folder / "classes.json").write_text(json.dumps(classes))
    np.save(folder / "labels.npy", labels)  # written last: its presence marks a complete cache


def _load_arrays(folder: Path, name: str) -> ImageSplit:
    images = torch.from_numpy(np.load(folder / "images.npy"))
    labels = torch.from_numpy(np.load(folder / "labels.npy")).long()
    classes = json.loads((folder / "classes.json").read_text())
    return ImageSplit(images, labels, classes, name)
