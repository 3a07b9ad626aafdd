"""Image datasets as whole splits of uint8 tensors.

Evaluation here is bound by the models, not by JPEG decoding: a split is
decoded once, cached as ``.npy`` arrays, and afterwards loads in a fraction
of a second as ``images`` (N x 3 x H x W, uint8) and ``labels`` (N, int64).

A data set is named (``"cifar10"``) or given by path (``"data/tiny-imagenet-200"``,
``"~/imagenette.tar.gz"``: anything with a ``/``, a leading ``~`` or an
archive suffix, or a :class:`~pathlib.Path`). A named one is looked for, in order, in

1. ``data_root`` given by the caller (``--data-root`` on the command line);
2. the environment variable ``SEMCOMM_DATA``;
3. ``../shared/data`` next to the current directory or next to the checkout;

as an ImageFolder tree ``<name>/<split>/...``, an archive of one
``<name>.tar.gz`` / ``.tgz`` / ``.tar`` / ``.zip`` (extracted once into the
cache; a single top folder named ``<name>`` inside is fine), or
torchvision's CIFAR on-disk format (``cifar-10-batches-py`` / ``cifar-100-python``).

A split folder is labelled in one of two ways (:func:`load_image_folder`):

* class folders: ``<split>/<class>/<image>``, images at any depth below
  their class folder (``train/n01443537/images/n01443537_0.JPEG``);
* an annotations file ``<split>/*annotations.txt`` (Tiny-ImageNet's
  ``val_annotations.txt``), one ``file<TAB>class[<TAB>...]`` line per image,
  the images anywhere below the split folder.

Labels index the training split's classes, sorted by name, in every split
(a validation split without some class still labels the others as
training does). Gray, palette and RGBA images are converted to RGB;
``image_size`` resizes the shorter side and centre-crops a square.

The cache is keyed by the source's content: an archive's path, size and
modification time, or a folder's path and every image's relative path,
size and modification time (plus the training split's classes and
``image_size``). Changed or different data with the same name are decoded
afresh, never served stale.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm
from semcomm.core.paths import default_cache_dir

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"}
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
TORCHVISION_CIFAR = {
    "cifar10": ("cifar-10-batches-py", "batches.meta", "label_names", "labels"),
    "cifar100": ("cifar-100-python", "meta", "fine_label_names", "fine_labels"),
}
CACHE_VERSION = 2  # part of every cache key: bump when decoding or labelling changes
TRAIN_SPLIT = "train"  # the split whose classes every split's labels index

# data sets whose held-out split is known without looking (others: "val" if they have one, else "test")
EVALUATION_SPLITS = {"imagenette": "val", "cifar10": "test", "cifar100": "test"}


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


@dataclass(frozen=True)
class DataLocation:
    """Where a data set's files are.

    Attributes:
        name: the data set's name (a path's folder name or archive stem).
        kind: ``"folder"`` (ImageFolder splits), ``"archive"`` (of such a
            folder) or ``"cifar"`` (torchvision's CIFAR batch files).
        path: the data set folder, the archive, or torchvision's folder.
    """

    name: str
    kind: str
    path: Path


def candidate_data_roots(data_root: str | os.PathLike | None = None) -> list[Path]:
    """Every directory searched for named data sets, in order of preference.

    Raises:
        DataNotFoundError: ``data_root`` is given but is not a directory.
    """
    roots: list[Path] = []
    if data_root is not None:
        if not Path(data_root).is_dir():
            raise DataNotFoundError(f"data root {data_root} is not a directory")
        roots.append(Path(data_root))
    if os.environ.get("SEMCOMM_DATA"):
        roots.append(Path(os.environ["SEMCOMM_DATA"]))
    roots.append(Path.cwd().parent / "shared" / "data")
    roots.append(Path(__file__).resolve().parents[3] / "shared" / "data")
    unique: list[Path] = []
    for root in roots:
        if root.resolve() not in [r.resolve() for r in unique]:
            unique.append(root)
    return unique


def is_data_path(name: str | os.PathLike) -> bool:
    """True when ``name`` names a data set by path rather than by name (see the module docstring)."""
    if isinstance(name, os.PathLike):
        return True
    return "/" in name or os.sep in name or name.startswith("~") or name in (".", "..") \
        or name.lower().endswith(ARCHIVE_SUFFIXES)


def locate(name: str | os.PathLike, split: str | None = None,
           data_root: str | os.PathLike | None = None) -> DataLocation:
    """Where the data set ``name`` (a name or a path) is; with ``split``, a named set must have that split.

    Raises:
        DataNotFoundError: naming the path, or every place searched.
    """
    if is_data_path(name):
        return _locate_path(Path(name).expanduser())
    searched = []
    for root in candidate_data_roots(data_root):
        folder = root / name
        searched.append(str(folder / split) if split else str(folder))
        if (folder / split).is_dir() if split else folder.is_dir():
            return DataLocation(name, "folder", folder)
        for suffix in ARCHIVE_SUFFIXES:
            archive = root / f"{name}{suffix}"
            searched.append(str(archive))
            if archive.is_file():
                return DataLocation(name, "archive", archive)
        if name in TORCHVISION_CIFAR:
            folder = root / TORCHVISION_CIFAR[name][0]
            searched.append(str(folder))
            if folder.is_dir():
                return DataLocation(name, "cifar", folder)
    raise DataNotFoundError(
        f"data set {name!r}{f' (split {split!r})' if split else ''} not found. Searched:\n  "
        + "\n  ".join(searched)
        + "\nPoint at the data with --data-root PATH or SEMCOMM_DATA=PATH, where PATH holds "
        f"{name}.tar.gz, an ImageFolder tree {name}/{split or '<split>'}/<class>/<image>, or torchvision's CIFAR "
        "files; or give the data set's own folder or archive with --data PATH."
    )


def _locate_path(path: Path) -> DataLocation:
    if path.is_dir():
        return DataLocation(path.resolve().name, "folder", path)
    if path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES):
        stem = path.name[: -len(next(s for s in ARCHIVE_SUFFIXES if path.name.lower().endswith(s)))]
        return DataLocation(stem, "archive", path)
    if path.exists():
        raise DataNotFoundError(f"data set {path} is neither a folder nor an archive ({', '.join(ARCHIVE_SUFFIXES)})")
    raise DataNotFoundError(f"data set {path} does not exist")


def available_splits(name: str | os.PathLike, data_root: str | os.PathLike | None = None,
                     cache_dir: str | os.PathLike | None = None) -> list[str]:
    """The split names of a data set, sorted (an archive is extracted into the cache to look)."""
    location = locate(name, None, data_root)
    if location.kind == "cifar":
        return ["test", "train"]
    return _subfolders(_dataset_folder(location, _cache(cache_dir)))


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
            looked for in the data roots, or the path of a data set's folder or archive.
        split: ``"train"``, ``"test"``, ``"val"``, ...
        data_root: where to look first for a named data set (see the module docstring).
        cache_dir: where extracted archives and decoded arrays go.
        limit: keep a fixed subset of ``limit`` images (see :meth:`ImageSplit.subset`).
        image_size: side in pixels of the square images returned: the shorter
            side is resized to it (bicubic) and the centre cropped; None keeps
            the images as they are (they must then share one size).

    Returns:
        images N x 3 x S x S uint8 (S = ``image_size``), labels N int64 indexing ``classes``.
    """
    image_size = check_image_size(image_size)
    cache = _cache(cache_dir)
    location = locate(name, split, data_root)
    source = _source(location, split)
    title = f"{location.name}/{split}"
    entry = _cached_entry(cache, location.name, split, source, image_size)
    if entry is not None:
        return _load_arrays(entry, title).subset(limit)
    images, labels, classes, resized = _decode(location, split, cache, image_size)
    size = image_size if resized else None  # nothing was resized: these are the native arrays
    entry = _entry_dir(cache, location.name, split, source, size)
    _save_arrays(entry, images, labels, classes, dict(source, split=split, image_size=size))
    return ImageSplit(torch.from_numpy(images), torch.from_numpy(labels), classes, title).subset(limit)


def check_image_size(image_size) -> int | None:
    """``image_size`` if it is None or a positive int; else a ValueError saying what was given."""
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size must be a positive whole number of pixels, got {image_size!r}")
    return int(image_size)


def load_image_folder(root: str | os.PathLike, image_size: int | None = None,
                      classes: list[str] | None = None) -> ImageSplit:
    """Decode one ImageFolder split folder into memory.

    Args:
        root: a split folder with one sub-folder per class (images at any
            depth below it), or with an annotations file ``*annotations.txt``
            of ``file<TAB>class[<TAB>...]`` lines (see the module docstring).
        image_size: side of the square images returned (shorter side resized,
            centre cropped); needed when the images do not all share one size.
        classes: class names in label order (e.g. the training split's);
            default: the folder's own classes, sorted.

    Returns:
        images N x 3 x H x W uint8, ordered by class then file path.
    """
    root = Path(root)
    images, labels, classes, _ = _decode_folder(root, check_image_size(image_size), classes)
    return ImageSplit(torch.from_numpy(images), torch.from_numpy(labels), classes, root.name)


def square_image(img: Image.Image, side: int) -> Image.Image:
    """``img`` with its shorter side resized to ``side`` pixels (bicubic), centre-cropped to side x side."""
    width, height = img.size
    scale = side / min(width, height)
    size = (max(side, round(width * scale)), max(side, round(height * scale)))
    img = img.resize(size, Image.BICUBIC)
    left, top = (size[0] - side) // 2, (size[1] - side) // 2
    return img.crop((left, top, left + side, top + side))


# ---------------------------------------------------------------- split folders: files, labels, classes


def _subfolders(folder: Path) -> list[str]:
    """Names of the visible sub-folders of ``folder``, sorted (hidden ones and macOS's ``__MACOSX`` left out)."""
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX")


def _image_files(folder: Path) -> list[Path]:
    """Every image file below ``folder`` (any depth; hidden files and folders skipped), sorted by path."""
    found = []
    for directory, subdirs, names in os.walk(folder, followlinks=True):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        found += [Path(directory, n) for n in names if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def _annotations_file(folder: Path) -> Path | None:
    """The split's ``*annotations.txt`` file, if it has one."""
    found = sorted(p for p in folder.glob("*annotations.txt") if p.is_file())
    if len(found) > 1:
        raise ValueError(f"{folder} has {len(found)} annotations files ({', '.join(p.name for p in found)}); keep one")
    return found[0] if found else None


def _read_annotations(path: Path) -> list[tuple[str, str]]:
    """(file, class) per non-blank line of a tab-separated annotations file (``file<TAB>class[<TAB>...]``)."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) < 2 or not fields[0] or not fields[1]:
            raise ValueError(f"{path} line {number}: expected 'file<TAB>class[<TAB>...]', got {line[:80]!r}")
        rows.append((fields[0], fields[1]))
    return rows


def _split_classes(folder: Path) -> list[str]:
    """Class names of a split folder, sorted: its annotated classes, or else its class sub-folders."""
    annotations = _annotations_file(folder)
    if annotations is not None:
        return sorted({cls for _, cls in _read_annotations(annotations)})
    return _subfolders(folder)


def _labelled_files(folder: Path) -> list[tuple[Path, str]]:
    """(image file, class name) for every image of a split folder, by annotations file or class folder."""
    if not folder.is_dir():
        raise DataNotFoundError(f"ImageFolder split {folder} is not a directory")
    files = _image_files(folder)
    if not files:
        raise DataNotFoundError(f"no images found under {folder}: expected {folder}/<class>/<image> with one of "
                                f"{sorted(IMAGE_SUFFIXES)}, or an annotations file")
    annotations = _annotations_file(folder)
    if annotations is not None:
        return _annotated_files(annotations, folder, files)
    loose = [f for f in files if f.parent == folder]
    if loose:
        raise ValueError(f"{folder} holds {len(loose)} images outside class folders (e.g. {loose[0].name}); expected "
                         f"{folder.name}/<class>/<image> or a tab-separated annotations file {folder.name}/*annotations.txt")
    if _subfolders(folder) == ["images"]:
        raise ValueError(f"{folder} has only an images/ folder and no annotations file, so no labels: the split looks "
                         f"unlabelled (expected <class>/ folders, or *annotations.txt with lines file<TAB>class)")
    return [(f, f.relative_to(folder).parts[0]) for f in files]


def _annotated_files(annotations: Path, folder: Path, files: list[Path]) -> list[tuple[Path, str]]:
    """Match each annotated file name (a path relative to ``folder`` or a bare file name) to one image."""
    by_path = {f.relative_to(folder).as_posix(): f for f in files}
    by_name: dict[str, list[Path]] = {}
    for f in files:
        by_name.setdefault(f.name, []).append(f)
    labelled: dict[Path, str] = {}
    unknown, ambiguous = [], []
    for name, cls in _read_annotations(annotations):
        matches = [by_path[name]] if name in by_path else by_name.get(name, [])
        if not matches:
            unknown.append(name)
        elif len(matches) > 1:
            ambiguous.append(name)
        elif matches[0] in labelled:
            raise ValueError(f"{annotations} labels {name} twice")
        else:
            labelled[matches[0]] = cls
    if unknown:
        raise ValueError(f"{annotations} names {len(unknown)} files that are not images under {folder} "
                         f"(e.g. {', '.join(unknown[:3])})")
    if ambiguous:
        raise ValueError(f"{annotations} names files found more than once under {folder} (e.g. {ambiguous[0]}); "
                         "give their paths relative to the split folder")
    missing = [f for f in files if f not in labelled]
    if missing:
        raise ValueError(f"{len(missing)} images under {folder} are not in {annotations.name} "
                         f"(e.g. {missing[0].relative_to(folder)})")
    return list(labelled.items())


def _decode_folder(folder: Path, image_size: int | None, classes: list[str] | None):
    """Images (N x 3 x H x W uint8), labels (N int64), class names and whether any image was resized."""
    labelled = _labelled_files(folder)
    found = sorted({cls for _, cls in labelled})
    classes = list(classes) if classes is not None else found
    index = {cls: i for i, cls in enumerate(classes)}
    strangers = [cls for cls in found if cls not in index]
    if strangers:
        raise ValueError(f"{folder} has {len(strangers)} classes that the training split does not have "
                         f"(e.g. {', '.join(strangers[:3])}); its {len(classes)} classes are e.g. {', '.join(classes[:3])}")
    labelled.sort(key=lambda item: (index[item[1]], item[0]))
    images, resized = _decode_images([f for f, _ in labelled], image_size, folder.name)
    labels = np.asarray([index[cls] for _, cls in labelled], dtype=np.int64)
    return images, labels, classes, resized


def _decode_images(files: list[Path], image_size: int | None, title: str) -> tuple[np.ndarray, bool]:
    """N x 3 x H x W uint8 array of ``files`` (RGB), and whether any was resized or cropped."""
    out, resized = None, False
    for i, path in enumerate(tqdm(files, desc=f"decoding {title}", unit="img")):
        array, changed = _read_rgb(path, image_size)
        if out is None:
            out, first = np.empty((len(files), 3, *array.shape[:2]), dtype=np.uint8), path
        elif array.shape[:2] != out.shape[2:]:
            raise ValueError(f"images differ in size ({first} is {out.shape[3]}x{out.shape[2]}, {path} is "
                             f"{array.shape[1]}x{array.shape[0]}); give an image size to resize and crop them to")
        out[i] = array.transpose(2, 0, 1)
        resized |= changed
    return out, resized


def _read_rgb(path: Path, image_size: int | None) -> tuple[np.ndarray, bool]:
    """H x W x 3 uint8 pixels of one image file, and whether it was resized or cropped."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    changed = image_size is not None and img.size != (image_size, image_size)
    if changed:
        img = square_image(img, image_size)
    return np.asarray(img, dtype=np.uint8), changed


# ---------------------------------------------------------------- data sets: folders, archives, torchvision's CIFAR


def _cache(cache_dir) -> Path:
    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


def _dataset_folder(location: DataLocation, cache: Path) -> Path:
    """The folder holding the split folders (an archive is extracted once, keyed by its fingerprint)."""
    if location.kind == "folder":
        return location.path
    digest = _digest(_archive_fingerprint(location.path))
    target = cache / "extracted" / f"{location.name}-{digest}"
    _extract(location.path, target)
    wrapped = target / location.name  # archives often hold one top folder named like the data set
    return wrapped if _subfolders(target) == [location.name] else target


def _split_folder(dataset: Path, split: str) -> Path:
    folder = dataset / split
    if not folder.is_dir():
        raise DataNotFoundError(f"data set {dataset} has no split {split!r}; it has {_subfolders(dataset)}")
    return folder


def _reference_classes(dataset: Path, split: str) -> list[str] | None:
    """The training split's classes, which every split's labels index (None: the split's own)."""
    train = dataset / TRAIN_SPLIT
    return _split_classes(train) if split != TRAIN_SPLIT and train.is_dir() else None


def _decode(location: DataLocation, split: str, cache: Path, image_size: int | None):
    """Images, labels, classes of one split, and whether any image was resized."""
    if location.kind == "cifar":
        images, labels, classes = _split_from_torchvision_cifar(location.path, location.name, split)
        images, resized = _resize_arrays(images, image_size)
        return images, labels, classes, resized
    dataset = _dataset_folder(location, cache)
    return _decode_folder(_split_folder(dataset, split), image_size, _reference_classes(dataset, split))


def _resize_arrays(images: np.ndarray, image_size: int | None) -> tuple[np.ndarray, bool]:
    """N x 3 x H x W uint8 images made image_size x image_size by :func:`square_image`, and whether that changed them."""
    if image_size is None or images.shape[-2:] == (image_size, image_size):
        return images, False
    squares = [square_image(Image.fromarray(a.transpose(1, 2, 0)), image_size) for a in images]
    return np.stack([np.asarray(s).transpose(2, 0, 1) for s in squares]), True


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
    """Extract ``archive`` into ``target`` once (via a temporary folder, so a partial extraction never counts)."""
    if target.is_dir():
        return
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    partial.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zipped:
                for member in zipped.namelist():
                    _check_member(member, archive)
                zipped.extractall(partial)
        else:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar.getmembers():
                    _check_member(member.name, archive)
                tar.extractall(partial, filter="data")
        partial.rename(target)
    except OSError:
        if not target.is_dir():  # another process may have finished the same extraction first
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _check_member(name: str, archive: Path) -> None:
    if name.startswith("/") or ".." in Path(name).parts:
        raise ValueError(f"refusing unsafe path {name!r} in {archive}")


# ---------------------------------------------------------------- the arrays cache, keyed by the source's content


def _source(location: DataLocation, split: str) -> dict:
    """What identifies the data a split is decoded from (JSON-ready; see the module docstring)."""
    if location.kind == "archive":
        return dict(name=location.name, **_archive_fingerprint(location.path))
    if location.kind == "cifar":
        files = sorted(p for p in location.path.iterdir() if p.is_file())
        return dict(name=location.name, source=str(location.path.resolve()), files=_files_digest(files, location.path))
    folder = _split_folder(location.path, split)
    files = _image_files(folder)
    annotations = _annotations_file(folder)
    return dict(name=location.name, source=str(folder.resolve()),
                files=_files_digest(files + ([annotations] if annotations else []), folder),
                classes=_reference_classes(location.path, split))


def _archive_fingerprint(archive: Path) -> dict:
    stat = archive.stat()
    return dict(source=str(archive.resolve()), bytes=stat.st_size, mtime_ns=stat.st_mtime_ns)


def _files_digest(files: list[Path], root: Path) -> str:
    """SHA-256 over every file's path relative to ``root``, size and modification time."""
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _entry_dir(cache: Path, name: str, split: str, source: dict, image_size: int | None) -> Path:
    """The cache folder of one split decoded from ``source`` at ``image_size`` (None: as stored)."""
    key = _digest(dict(source, split=split, image_size=image_size, version=CACHE_VERSION))
    return cache / "arrays" / f"{name}-{split}{f'-{image_size}px' if image_size else ''}-{key}"


def _cached_entry(cache: Path, name: str, split: str, source: dict, image_size: int | None) -> Path | None:
    """The cache folder holding the split at ``image_size``: its own, or the native arrays when already that size."""
    entry = _entry_dir(cache, name, split, source, image_size)
    if (entry / "labels.npy").exists():
        return entry
    native = _entry_dir(cache, name, split, source, None)
    if image_size is not None and (native / "labels.npy").exists():
        shape = np.load(native / "images.npy", mmap_mode="r").shape
        if shape[-2:] == (image_size, image_size):
            return native
    return None


def _save_arrays(folder: Path, images: np.ndarray, labels: np.ndarray, classes: list[str], source: dict) -> None:
    """Write one cache entry atomically, then drop older entries decoded from the same place."""
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    partial.mkdir(parents=True, exist_ok=True)
    np.save(partial / "images.npy", images)
    np.save(partial / "labels.npy", labels)
    (partial / "classes.json").write_text(json.dumps(classes))
    (partial / "source.json").write_text(json.dumps(source, indent=1))
    try:
        partial.rename(folder)
    except OSError:  # another process wrote the same entry first
        shutil.rmtree(partial, ignore_errors=True)
    _drop_stale_entries(folder, source)


def _drop_stale_entries(keep: Path, source: dict) -> None:
    """Remove cache entries of the same source, split and size made from earlier versions of its files."""
    same = ("source", "split", "image_size")
    for entry in keep.parent.glob(f"{source['name']}-{source['split']}-*"):
        meta = entry / "source.json"
        if entry == keep or ".partial-" in entry.name or not meta.is_file():
            continue  # entries without source.json predate keyed caching: left alone
        old = json.loads(meta.read_text())
        if all(old.get(k) == source[k] for k in same):
            shutil.rmtree(entry, ignore_errors=True)


def _load_arrays(folder: Path, name: str) -> ImageSplit:
    images = torch.from_numpy(np.load(folder / "images.npy"))
    labels = torch.from_numpy(np.load(folder / "labels.npy")).long()
    classes = json.loads((folder / "classes.json").read_text())
    return ImageSplit(images, labels, classes, name)
