"""Data set archives (``.tar.gz``, ``.tgz``, ``.tar``, ``.zip``): what identifies one, and extracting it once."""
from __future__ import annotations

import os
import shutil
import tarfile
import zipfile
from pathlib import Path


def archive_fingerprint(archive: Path) -> dict:
    """What identifies an archive's content for the cache: its resolved path, size in bytes and mtime (ns)."""
    stat = archive.stat()
    return dict(source=str(archive.resolve()), bytes=stat.st_size, mtime_ns=stat.st_mtime_ns)


def extract(archive: Path, target: Path) -> None:
    """Extract ``archive`` into ``target`` once (via a temporary folder, so a partial extraction never counts).

    Raises:
        ValueError: a member's path is absolute or climbs out of the target (``..``).
    """
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
