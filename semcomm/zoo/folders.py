"""The zoo's folders: the user zoo, searched first, then the checkpoints shipped inside the package.

Both are laid out alike: model checkpoints at the top (``<name>.json`` + ``<name>.safetensors``), codec pairs
and hint coders in ``codecs/``, saved backends in ``backends/<name>/``.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from semcomm.core.paths import default_cache_dir

SHIPPED_DIR = Path(__file__).parent / "checkpoints"
USER_ZOO = (f"$SEMCOMM_ZOO (one directory, or several separated by {os.pathsep!r}), else $SEMCOMM_CACHE/zoo, "
            "else ~/.cache/semcomm/zoo")  # what user_zoo_dirs() follows, for help texts


def user_zoo_dirs() -> list[Path]:
    """The user's zoo directories (:data:`USER_ZOO`): ``$SEMCOMM_ZOO`` (``os.pathsep``-separated) or else
    ``<cache>/zoo`` (``$SEMCOMM_CACHE/zoo`` or ``~/.cache/semcomm/zoo``); exports go to the first."""
    listed = [Path(p).expanduser() for p in os.environ.get("SEMCOMM_ZOO", "").split(os.pathsep) if p]
    return listed or [default_cache_dir() / "zoo"]


def zoo_dirs(folder: str = "") -> list[Path]:
    """Every directory searched, first match wins: ``<user zoo>/<folder>`` for each user zoo directory, then
    ``<shipped>/<folder>`` (``folder``: ``""`` for models, ``"codecs"``, ``"backends"``)."""
    return [*(directory / folder for directory in user_zoo_dirs()), SHIPPED_DIR / folder]


def is_shipped(directory: Path) -> bool:
    """True for a directory of the shipped checkpoints (the package's own, never written by an export)."""
    shipped = SHIPPED_DIR.resolve()
    return directory.resolve() == shipped or shipped in directory.resolve().parents


def find_in_zoo(relative: str, folder: str = "") -> Path | None:
    """The first file ``<zoo dir>/<relative>`` of :func:`zoo_dirs` ``(folder)`` that exists, else None."""
    return next((path for path in (d / relative for d in zoo_dirs(folder)) if path.is_file()), None)


def zoo_entries(pattern: str, folder: str = "",
                name: Callable[[Path], str] = lambda path: path.stem) -> dict[str, Path]:
    """Name -> file of every file matching ``pattern`` (a glob) in :func:`zoo_dirs` ``(folder)``, one per name
    (the first directory's), sorted by name; ``name`` names a file (default: its stem)."""
    found: dict[str, Path] = {}
    for directory in zoo_dirs(folder):
        for path in sorted(directory.glob(pattern)) if directory.is_dir() else ():
            found.setdefault(name(path), path)
    return dict(sorted(found.items()))
