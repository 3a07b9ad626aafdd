"""Backends by name, like timm's models: ``@register_backend``, ``create_backend(name)``, ``list_backends()``.

A registered backend is a factory ``fn(**kwargs) -> Backend`` (a recipe that builds one), held in
:data:`BACKENDS` under its function name with ``-`` for ``_``; third-party packages add theirs through the
``semcomm.plugins`` entry points (:mod:`semcomm.core.registry`). ``create_backend`` also loads a saved backend:
from its directory's path, or by name from the zoo's ``backends/`` folders (see
:mod:`~semcomm.server.backends.storage`).

>>> from semcomm.server.backends import create_backend, list_backends
>>> "monolithic" in list_backends()
True
>>> backend = create_backend("monolithic", server="vit-server-cifar10")  # doctest: +SKIP
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from semcomm.core.registry import Registry
from semcomm.server.backends.base import Backend
from semcomm.server.backends.storage import list_saved_backends, load_backend, locate_backend, saved_backend_dirs

BACKENDS: Registry[Callable[..., Backend]] = Registry("backend")


def register_backend(fn: Callable[..., Backend]) -> Callable[..., Backend]:
    """Register a factory ``fn(**kwargs) -> Backend`` under its function name (``-`` for ``_``); a name
    registered twice is a ValueError."""
    return BACKENDS.register(fn.__name__.replace("_", "-"), fn)


def list_backends() -> list[str]:
    """Names of the registered backends (the recipes that build one; saved ones: ``list_saved_backends``)."""
    return BACKENDS.names()


def create_backend(name: str | Path, **kwargs) -> Backend:
    """Build a registered backend by name (keyword arguments go to its factory), or load a saved one from its
    directory or by its name in the zoo (no keyword arguments then)."""
    if isinstance(name, str) and name in BACKENDS:
        return BACKENDS.get(name)(**kwargs)
    if locate_backend(name) is not None:
        if kwargs:
            raise TypeError(f"a saved backend is loaded as it is; got arguments {sorted(kwargs)}")
        return load_backend(name)
    saved = [card.name for card in list_saved_backends()]
    raise KeyError(f"unknown backend {str(name)!r}; registered: {', '.join(list_backends())}; saved: "
                   f"{', '.join(saved) or 'none'} (in {', '.join(str(d) for d in saved_backend_dirs())})")
