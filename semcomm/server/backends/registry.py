"""Backends by name, like timm's models: ``@register_backend``, ``create_backend(name)``, ``list_backends()``.

``create_backend`` also loads a saved backend: from its directory's path, or
by name from the user zoo's ``backends/`` folder (see
:mod:`~semcomm.backends.storage`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

_REGISTRY: dict[str, Callable] = {}


def register_backend(fn: Callable) -> Callable:
    """Register a factory ``fn(**kwargs) -> Backend`` under its function name (``-`` for ``_``)."""
    _REGISTRY[fn.__name__.replace("_", "-")] = fn
    return fn


def list_backends() -> list[str]:
    """Names of the registered backends (the recipes that build one; saved ones: ``list_saved_backends``)."""
    return sorted(_REGISTRY)


def create_backend(name: str | Path, **kwargs):
    """Build a registered backend by name (keyword arguments go to its factory), or load a saved one from its
    directory or by its name in the zoo (no keyword arguments then)."""
    if isinstance(name, str) and name in _REGISTRY:
        return _REGISTRY[name](**kwargs)
    from semcomm.server.backends.storage import list_saved_backends, load_backend, locate_backend, saved_backend_dirs

    if locate_backend(name) is not None:
        if kwargs:
            raise TypeError(f"a saved backend is loaded as it is; got arguments {sorted(kwargs)}")
        return load_backend(name)
    saved = [card.name for card in list_saved_backends()]
    raise KeyError(f"unknown backend {str(name)!r}; registered: {', '.join(list_backends())}; saved: "
                   f"{', '.join(saved) or 'none'} (in {', '.join(str(d) for d in saved_backend_dirs())})")
