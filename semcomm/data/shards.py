"""Decoded images on disk as fixed-size ``.npy`` shards, each checked by its SHA-256 before its rows are served.

A cache entry's images (N x 3 x H x W uint8) are split in row order into shards ``images-00000.npy``,
``images-00001.npy``, ... of ``shard_rows`` images each (the last one shorter), every one a plain ``.npy`` file
(``np.load`` reads it). ``shards.json`` records the whole array's shape, ``shard_rows`` and, for each shard, its
file name, rows, header length (``offset``, bytes), file size (bytes) and SHA-256 of the whole file.

:class:`ShardWriter` writes the shards while the images are decoded, a chunk at a time, so that no more than one
chunk is ever in memory. :class:`ShardStore` reads any rows back with positioned reads (``os.preadv``: nothing is
memory-mapped, so only the rows asked for are resident). A shard is checked the first time this process reads it:
a missing file, a file of the wrong size or one whose SHA-256 differs is decoded again by the store's ``repair``
(rows ``start:stop`` as an array), with a :class:`~semcomm.data.folders.DataWarning` naming the shard, and
written anew (atomically); a store without ``repair`` refuses it with a ValueError naming the shard.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from semcomm.data.folders import DataWarning

SHARD_BYTES = 64 * 2**20  # target size of one shard: 64 MiB (5461 images of 64 x 64, 445 of 224 x 224)
META = "shards.json"
READ_BLOCK = 2**20  # bytes hashed at a time while checking a shard


def shard_name(index: int) -> str:
    """File name of shard ``index``."""
    return f"images-{index:05d}.npy"


def npy_header(rows: int, image_shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` (version 1.0) header of a C-ordered ``rows x image_shape`` uint8 array."""
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
              "shape": (rows, *image_shape)}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def check_shard_bytes(shard_bytes) -> int:
    """``shard_bytes`` if it is a positive whole number of bytes; else a ValueError saying what was given."""
    if isinstance(shard_bytes, bool) or not isinstance(shard_bytes, (int, np.integer)) or shard_bytes < 1:
        raise ValueError(f"shard_bytes must be a positive whole number of bytes, got {shard_bytes!r}")
    return int(shard_bytes)


class ShardWriter:
    """Writes ``n`` images, given in order as k x 3 x H x W uint8 chunks, as shards into ``folder``.

    The first chunk fixes H x W and ``shard_rows`` (``shard_bytes`` // bytes of one image, at least 1); every shard
    is hashed while it is written. :meth:`finish` writes ``shards.json`` once all ``n`` images have come.
    """

    def __init__(self, folder: Path, n: int, shard_bytes: int = SHARD_BYTES):
        self.folder, self.n, self.shard_bytes = Path(folder), int(n), check_shard_bytes(shard_bytes)
        self.image_shape: tuple[int, ...] | None = None
        self.shard_rows = 0
        self.written = 0
        self.shards: list[dict] = []
        self._file = None
        self._sha = None
        self._left = 0  # rows still to write into the open shard

    def write(self, chunk: np.ndarray) -> None:
        """Append ``chunk`` (k x 3 x H x W uint8) to the images written so far."""
        if self.image_shape is None:
            self.image_shape = tuple(chunk.shape[1:])
            self.shard_rows = max(1, self.shard_bytes // int(np.prod(self.image_shape)))
        if tuple(chunk.shape[1:]) != self.image_shape or chunk.dtype != np.uint8:
            raise ValueError(f"chunk of {chunk.dtype} {tuple(chunk.shape)} among images of uint8 {self.image_shape}")
        if self.written + len(chunk) > self.n:
            raise ValueError(f"more than the {self.n} images announced were written")
        done = 0
        while done < len(chunk):
            if self._file is None:
                self._open()
            take = min(self._left, len(chunk) - done)
            data = np.ascontiguousarray(chunk[done : done + take]).tobytes()
            self._file.write(data)
            self._sha.update(data)
            self._left -= take
            done += take
            if self._left == 0:
                self._close()
        self.written += len(chunk)

    def _open(self) -> None:
        rows = min(self.shard_rows, self.n - self.written_rows())
        header = npy_header(rows, self.image_shape)
        self._file = open(self.folder / shard_name(len(self.shards)), "wb")
        self._file.write(header)
        self._sha = hashlib.sha256(header)
        self._left = rows
        self.shards.append(dict(file=shard_name(len(self.shards)), rows=rows, offset=len(header)))

    def written_rows(self) -> int:
        """Rows of the shards opened so far."""
        return sum(s["rows"] for s in self.shards)

    def _close(self) -> None:
        self.shards[-1].update(bytes=self._file.tell(), sha256=self._sha.hexdigest())
        self._file.close()
        self._file = None

    def finish(self) -> dict:
        """Write ``shards.json`` (all ``n`` images must have been written) and return what it holds."""
        if self.written != self.n or self.image_shape is None:
            raise ValueError(f"{self.written} images were written of the {self.n} announced")
        meta = dict(shape=[self.n, *self.image_shape], dtype="uint8", shard_rows=self.shard_rows, shards=self.shards)
        (self.folder / META).write_text(json.dumps(meta, indent=1))
        return meta

    def abort(self) -> None:
        """Close the open shard, if any (the caller removes the partial folder)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def write_shard(path: Path, rows: np.ndarray) -> dict:
    """Write ``rows`` (k x 3 x H x W uint8) as one shard file atomically; its ``bytes`` and ``sha256``."""
    header = npy_header(len(rows), tuple(rows.shape[1:]))
    data = header + np.ascontiguousarray(rows, dtype=np.uint8).tobytes()
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}-{threading.get_ident()}")
    partial.write_bytes(data)
    os.replace(partial, path)
    return dict(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


def shard_fault(path: Path, record: dict) -> str | None:
    """What is wrong with the shard file ``path`` against its ``record`` in ``shards.json``, or None when its size
    and SHA-256 match (reads the file once, a block at a time)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    if size != record["bytes"]:
        return f"{size} bytes long instead of {record['bytes']} (truncated or overwritten)"
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(READ_BLOCK):
            sha.update(block)
    if sha.hexdigest() != record["sha256"]:
        return "changed (its SHA-256 differs from the one recorded when it was written)"
    return None


def pread_into(fd: int, buffer: memoryview, offset: int, path: Path) -> None:
    """Fill ``buffer`` with the bytes of ``fd`` from ``offset`` on (a ValueError naming ``path`` if it ends first)."""
    done = 0
    while done < len(buffer):
        got = os.preadv(fd, [buffer[done:]], offset + done)
        if got == 0:
            raise ValueError(f"cache shard {path} ended {len(buffer) - done} bytes early while being read; it was "
                             "changed after it was checked: load the split again")
        done += got


class ShardStore:
    """The shards of one cache entry: reads any rows, checking each shard once (see the module docstring).

    Args:
        folder: the cache entry holding ``shards.json`` and the shards.
        repair: ``repair(start, stop)`` -> rows ``start:stop`` decoded again ((stop - start) x 3 x H x W uint8),
            used to rewrite a shard found damaged; None: a damaged shard is an error.
    """

    def __init__(self, folder: Path, repair: Callable[[int, int], np.ndarray] | None = None):
        self.folder = Path(folder)
        meta_file = self.folder / META
        if not meta_file.is_file():
            raise ValueError(f"{self.folder} is not a sharded image cache entry (it has no {META})")
        meta = json.loads(meta_file.read_text())
        self.shape = tuple(meta["shape"])
        self.shard_rows = int(meta["shard_rows"])
        self.shards = meta["shards"]
        self.repair = repair
        self.row_bytes = int(np.prod(self.shape[1:]))
        self.checked: set[int] = set()
        self._lock = threading.Lock()

    def __getstate__(self):
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.shape[0]

    def path(self, index: int) -> Path:
        return self.folder / self.shards[index]["file"]

    def check(self, index: int) -> None:
        """Check shard ``index`` once per process (size and SHA-256); decode a damaged one again (or refuse it)."""
        if index in self.checked:
            return
        with self._lock:
            if index in self.checked:
                return
            record, path = self.shards[index], self.path(index)
            fault = shard_fault(path, record)
            if fault is not None:
                self._repair(index, path, fault)
            self.checked.add(index)

    def _repair(self, index: int, path: Path, fault: str) -> None:
        start = index * self.shard_rows
        stop = start + self.shards[index]["rows"]
        if self.repair is None:
            raise ValueError(f"cache shard {path} is {fault}; load the split again with load_split to decode it "
                             f"afresh, or delete {self.folder}")
        warnings.warn(f"cache shard {path} is {fault}: decoding its {stop - start} images (rows {start}..{stop - 1}) "
                      "again", DataWarning, stacklevel=4)
        rows = np.asarray(self.repair(start, stop), dtype=np.uint8)
        if rows.shape != (stop - start, *self.shape[1:]):
            raise ValueError(f"decoding the images of cache shard {path} again gave shape {rows.shape}, not "
                             f"{(stop - start, *self.shape[1:])}: the data changed; load the split again")
        written = write_shard(path, rows)
        if written["sha256"] != self.shards[index]["sha256"]:  # decoded differently now (another Pillow, say)
            self.shards[index].update(written)
            meta = json.loads((self.folder / META).read_text())
            meta["shards"][index].update(written)
            partial = self.folder / f"{META}.partial-{os.getpid()}-{threading.get_ident()}"
            partial.write_text(json.dumps(meta, indent=1))
            os.replace(partial, self.folder / META)

    def read(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Images ``rows`` (k int64 indices into the N images, any order, repeats allowed) as k x 3 x H x W uint8."""
        rows = np.asarray(rows, dtype=np.int64)
        if out is None:
            out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        if not len(rows):
            return out
        flat = out.reshape(len(rows), self.row_bytes)
        shard_of = rows // self.shard_rows
        order = np.argsort(shard_of, kind="stable")
        bounds = np.flatnonzero(np.diff(shard_of[order])) + 1
        for positions in np.split(order, bounds):
            self._read_shard(int(shard_of[positions[0]]), rows[positions], positions, flat)
        return out

    def read_range(self, start: int, stop: int) -> np.ndarray:
        """Images ``start:stop`` as (stop - start) x 3 x H x W uint8 (one read per shard)."""
        return self.read(np.arange(start, stop, dtype=np.int64))

    def _read_whole(self, index: int, view: memoryview) -> bool:
        """Read every image of shard ``index`` into ``view`` checking it on the way, if not checked yet: True when
        read and sound (False: not read, or damaged, for :meth:`check` to find)."""
        if index in self.checked:
            return False
        record, path = self.shards[index], self.path(index)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            if os.fstat(fd).st_size != record["bytes"]:
                return False
            header = bytearray(record["offset"])
            pread_into(fd, memoryview(header), 0, path)
            pread_into(fd, view, record["offset"], path)
        finally:
            os.close(fd)
        sha = hashlib.sha256(header)
        sha.update(view)
        if sha.hexdigest() != record["sha256"]:
            return False
        self.checked.add(index)
        return True

    def _read_shard(self, index: int, rows: np.ndarray, positions: np.ndarray, flat: np.ndarray) -> None:
        """Copy ``rows`` (all in shard ``index``) into ``flat[positions]`` (k x row bytes)."""
        record, path = self.shards[index], self.path(index)
        local = rows - index * self.shard_rows
        lo, hi = int(local.min()), int(local.max()) + 1
        contiguous = positions[-1] - positions[0] + 1 == len(positions) and np.all(np.diff(positions) == 1)
        contiguous = contiguous and hi - lo == len(rows) and np.all(np.diff(local) == 1)
        view = memoryview(flat[positions[0] : positions[-1] + 1]).cast("B") if contiguous else None
        if contiguous and len(rows) == record["rows"] and self._read_whole(index, view):
            return  # the whole shard, read and checked in one pass
        self.check(index)
        fd = os.open(path, os.O_RDONLY)
        try:
            if contiguous:
                pread_into(fd, view, record["offset"] + lo * self.row_bytes, path)
            elif hi - lo <= 2 * len(rows) + 16:  # dense enough: one read of the span, then pick
                span = np.empty((hi - lo, self.row_bytes), dtype=np.uint8)
                pread_into(fd, memoryview(span).cast("B"), record["offset"] + lo * self.row_bytes, path)
                flat[positions] = span[local - lo]
            else:
                for position, row in zip(positions.tolist(), local.tolist()):
                    pread_into(fd, memoryview(flat[position]).cast("B"), record["offset"] + row * self.row_bytes,
                               path)
        finally:
            os.close(fd)
