"""Backends by name, like timm's models: ``@register_backend``, ``create_backend(name)``, ``list_backends()``."""
from __future__ import annotations

from typing import Callable

_REGISTRY: dict[str, Callable] = {}


def register_backend(fn: Callable) -> Callable:
    """Register a factory ``fn(**kwargs) -> Backend`` under its function name (``-`` for ``_``)."""
    _REGISTRY[fn.__name__.replace("_", "-")] = fn
    return fn


def list_backends() -> list[str]:
    """Names of the registered backends."""
    return sorted(_REGISTRY)


def create_backend(name: str, **kwargs):
    """Build a registered backend by name (keyword arguments go to its factory)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown backend {name!r}; registered: {', '.join(list_backends())}")
    return _REGISTRY[name](**kwargs)
