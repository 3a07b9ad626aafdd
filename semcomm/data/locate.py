"""Where a data set is: a name looked for in the data roots, or a path to its folder or archive.

A named data set is looked for, in order, in the ``data_root`` given by the caller, ``$SEMCOMM_DATA`` and
``../shared/data`` (next to the current directory, then next to the checkout), as an ImageFolder tree
``<name>/<split>/...``, an archive ``<name>.tar.gz`` / ``.tgz`` / ``.tar`` / ``.zip``, or torchvision's CIFAR
on-disk format (``cifar-10-batches-py`` / ``cifar-100-python``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
TORCHVISION_CIFAR = {  # name -> (folder, meta file, class names key, labels key)
    "cifar10": ("cifar-10-batches-py", "batches.meta", "label_names", "labels"),
    "cifar100": ("cifar-100-python", "meta", "fine_label_names", "fine_labels"),
}


class DataNotFoundError(FileNotFoundError):
    """No data set could be found in any of the places searched."""


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
    """True when ``name`` names a data set by path rather than by name: a :class:`~os.PathLike`, or a string
    with a ``/``, a leading ``~`` or an archive suffix."""
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
