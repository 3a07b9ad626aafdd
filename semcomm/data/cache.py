"""The decoded-array cache: one folder of ``.npy`` arrays per split, keyed by the source's content.

The key is a SHA-256 over what identifies the data (:func:`source_key`): an archive's path, size and
modification time, or a folder's path, its class folders and every image's relative path, size and modification
time (plus the training split's classes), with the split, ``image_size``, whether annotated files that do not
exist are skipped, and :data:`CACHE_VERSION`. Changed or different data
with the same name are decoded afresh, never served stale; an entry replaced by a newer one of the same source
is dropped.

An entry ``<cache>/arrays/<name>-<split>[-<S>px]-<key>/`` holds ``images.npy`` (N x 3 x H x W uint8),
``labels.npy`` (N int64), ``classes.json`` and ``source.json`` (what it was decoded from, and under ``skipped``
the warning naming annotated files that were skipped, said again whenever the entry is served).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from semcomm.core.paths import default_cache_dir
from semcomm.data.archives import archive_fingerprint
from semcomm.data.folders import annotations_file, image_files, reference_classes, split_folder, subfolders
from semcomm.data.image_split import ImageSplit
from semcomm.data.locate import DataLocation

CACHE_VERSION = 3  # part of every cache key: bump when decoding or labelling changes (3: 16-bit and float images
#                   scaled to 8 bits, CMYK rounded, empty class folders refused, .gif and Netpbm files read)


def cache_root(cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir``, or the default cache (``$SEMCOMM_CACHE`` or ``~/.cache/semcomm``)."""
    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


def digest(data: dict) -> str:
    """16 hex digits of the SHA-256 of ``data`` as sorted JSON."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def source_key(location: DataLocation, split: str, skip_missing: bool = False) -> dict:
    """What identifies the data a split is decoded from (JSON-ready; see the module docstring).

    A folder's class folders are part of it, so that one added empty is refused rather than served from the cache,
    and so are the training split's classes, checked on every load (an empty one is an error naming it).
    """
    if location.kind == "archive":
        return dict(name=location.name, skip_missing=skip_missing, **archive_fingerprint(location.path))
    if location.kind == "cifar":
        files = sorted(p for p in location.path.iterdir() if p.is_file())
        return dict(name=location.name, source=str(location.path.resolve()), files=_files_digest(files, location.path))
    folder = split_folder(location.path, split)
    files = image_files(folder)
    annotations = annotations_file(folder)
    return dict(name=location.name, source=str(folder.resolve()),
                files=_files_digest(files + ([annotations] if annotations else []), folder),
                folders=subfolders(folder), classes=reference_classes(location.path), skip_missing=skip_missing)


def _files_digest(files: list[Path], root: Path) -> str:
    """SHA-256 over every file's path relative to ``root``, size and modification time."""
    sha = hashlib.sha256()
    for path in files:
        stat = path.stat()
        sha.update(f"{path.relative_to(root).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return sha.hexdigest()


def entry_dir(cache: Path, name: str, split: str, source: dict, image_size: int | None) -> Path:
    """The cache folder of one split decoded from ``source`` at ``image_size`` (None: as stored)."""
    key = digest(dict(source, split=split, image_size=image_size, version=CACHE_VERSION))
    return cache / "arrays" / f"{name}-{split}{f'-{image_size}px' if image_size else ''}-{key}"


def cached_entry(cache: Path, name: str, split: str, source: dict, image_size: int | None) -> Path | None:
    """The cache folder holding the split at ``image_size``: its own, or the native arrays when already that size."""
    entry = entry_dir(cache, name, split, source, image_size)
    if (entry / "labels.npy").exists():
        return entry
    native = entry_dir(cache, name, split, source, None)
    if image_size is not None and (native / "labels.npy").exists():
        shape = np.load(native / "images.npy", mmap_mode="r").shape
        if shape[-2:] == (image_size, image_size):
            return native
    return None


def save_arrays(folder: Path, images: np.ndarray, labels: np.ndarray, classes: list[str], source: dict) -> None:
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


def skipped_warning(folder: Path) -> str | None:
    """The warning naming the annotated files skipped when the cache entry ``folder`` was decoded, or None."""
    return json.loads((folder / "source.json").read_text()).get("skipped")


def load_arrays(folder: Path, name: str) -> ImageSplit:
    """The split held in the cache entry ``folder``, named ``name``."""
    images = torch.from_numpy(np.load(folder / "images.npy"))
    labels = torch.from_numpy(np.load(folder / "labels.npy")).long()
    classes = json.loads((folder / "classes.json").read_text())
    return ImageSplit(images, labels, classes, name)
