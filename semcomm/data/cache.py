"""The decoded-image cache: one folder per split of checksummed ``.npy`` image shards, keyed by the source's content.

The key is a SHA-256 over what identifies the data (:func:`source_key`): an archive's path, size and
modification time, or a folder's path, its class folders and every image's relative path, size and modification
time (plus the training split's classes), with the split, ``image_size``, whether annotated files that do not
exist are skipped, and :data:`CACHE_VERSION`. Changed or different data
with the same name are decoded afresh, never served stale; an entry replaced by a newer one of the same source
is dropped.

An entry ``<cache>/arrays/<name>-<split>[-<S>px]-<key>/`` holds the images (N x 3 x H x W uint8) as shards
``images-00000.npy``, ... with ``shards.json`` (each shard's rows and SHA-256: :mod:`semcomm.data.shards`),
``labels.npy`` (N int64), ``classes.json`` and ``source.json`` (what it was decoded from, and under ``skipped``
the warning naming annotated files that were skipped, said again whenever the entry is served). It is written a
chunk of decoded images at a time into a partial folder, renamed into place once complete, so that neither a
split larger than memory nor an interrupted decoding leaves anything half-written behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from typing import Callable

import numpy as np
import torch

from semcomm.core.paths import default_cache_dir
from semcomm.data.archives import archive_fingerprint
from semcomm.data.folders import annotations_file, image_files, reference_classes, split_folder, subfolders
from semcomm.data.image_split import ImageSplit
from semcomm.data.locate import DataLocation
from semcomm.data.sharded import ShardedImages
from semcomm.data.shards import META, SHARD_BYTES, ShardStore, ShardWriter

CACHE_VERSION = 4  # part of every cache key: bump when decoding, labelling or the entry's layout changes (3: 16-bit
#                   and float images scaled to 8 bits, CMYK rounded, empty class folders refused, .gif and Netpbm
#                   files read; 4: images in checksummed shards, not one images.npy: the pixels are the same, but a
#                   version-3 entry has no shards.json, and under the same key its folder would block the new one)


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
    """The cache folder holding the split at ``image_size``: its own, or the native images when already that size."""
    entry = entry_dir(cache, name, split, source, image_size)
    if (entry / META).exists():
        return entry
    native = entry_dir(cache, name, split, source, None)
    if image_size is not None and (native / META).exists():
        shape = json.loads((native / META).read_text())["shape"]
        if tuple(shape[-2:]) == (image_size, image_size):
            return native
    return None


def write_entry(cache: Path, name: str, split: str, source: dict, images, image_size: int | None,
                workers: int | None = None, shard_bytes: int = SHARD_BYTES, engine: str = "processes") -> Path:
    """Decode ``images`` (a :class:`~semcomm.data.decode.SplitImages`) into a new cache entry a chunk at a time and
    return its folder: written into a partial folder, renamed into place once complete (under ``image_size`` if
    any image was resized, else as the native images), then older entries decoded from the same place dropped.

    ``workers``: processes decoding image files (default every core) over ``engine`` (``"processes"`` or
    ``"ray"``: :mod:`semcomm.data.parallel`); ``shard_bytes``: target bytes of a shard.
    """
    partial = cache / "arrays" / f"{name}-{split}-decoding.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)  # left by an earlier run of this process id
    partial.mkdir(parents=True)
    writer = ShardWriter(partial, len(images), shard_bytes)
    resized = False
    try:
        for chunk, changed in images.chunks(workers=workers, engine=engine):
            writer.write(chunk)
            resized |= changed
        writer.finish()
        size = image_size if resized else None  # nothing was resized: these are the native images
        said = dict(skipped=images.skipped) if images.skipped else {}
        meta = dict(source, split=split, image_size=size, **said)
        np.save(partial / "labels.npy", np.asarray(images.labels, dtype=np.int64))
        (partial / "classes.json").write_text(json.dumps(images.classes))
        (partial / "source.json").write_text(json.dumps(meta, indent=1))
        folder = entry_dir(cache, name, split, source, size)
        try:
            partial.rename(folder)
        except OSError:  # another process wrote the same entry first
            if not (folder / META).exists():
                raise
    finally:
        writer.abort()
        shutil.rmtree(partial, ignore_errors=True)
    _drop_stale_entries(folder, meta)
    return folder


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


def entry_source(folder: Path) -> dict:
    """What the cache entry ``folder`` was decoded from (its ``source.json``): the source key, ``split``,
    ``image_size`` (None: native) and, if any annotated files were skipped, ``skipped``."""
    return json.loads((folder / "source.json").read_text())


def skipped_warning(folder: Path) -> str | None:
    """The warning naming the annotated files skipped when the cache entry ``folder`` was decoded, or None."""
    return entry_source(folder).get("skipped")


def open_entry(folder: Path, name: str, repair: Callable[[int, int], np.ndarray] | None = None) -> ImageSplit:
    """The split held in the cache entry ``folder``, named ``name``, its images left in the shards
    (:class:`~semcomm.data.sharded.ShardedImages`; ``repair(start, stop)`` decodes rows again for a damaged shard)."""
    images = ShardedImages(ShardStore(folder, repair))
    labels = torch.from_numpy(np.load(folder / "labels.npy")).long()
    classes = json.loads((folder / "classes.json").read_text())
    return ImageSplit(images, labels, classes, name)
