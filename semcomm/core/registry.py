"""One registry type for every named strategy: importance methods, selection rules, gates, level policies,
IAQ solvers, codecs, backends, channels, augmentations.

A registry maps names to objects (classes, factories or functions) of one kind. Where the library
expects a strategy it takes a name or the object itself (as Sionna's ``cn_update="name" | callable``):
:meth:`Registry.resolve` looks names up and passes objects through. Names are unique (registering a
name twice raises), listings are sorted, and an unknown name is an error that lists the valid ones.
The command line's choices and help come from the same listings.

Third-party packages add strategies without editing semcomm, as pytest finds its plug-ins: a package
declares an entry point in the group ``semcomm.plugins`` naming a module (or a callable); semcomm loads
every such entry point the first time any registry is read, and the module registers its strategies
with the registries' decorators::

    # pyproject.toml of the plug-in package
    [project.entry-points."semcomm.plugins"]
    my_rules = "my_package.rules"

    # my_package/rules.py
    from semcomm.edge.selection import SELECTION_RULES, SelectionRule

    @SELECTION_RULES.register("every-other")
    class EveryOther(SelectionRule): ...

>>> from semcomm.core.registry import Registry
>>> shapes = Registry("shape")
>>> @shapes.register("square")
... def square(side):
...     return side * side
>>> shapes.names(), shapes.resolve("square")(3)
(['square'], 9)
"""
from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
PLUGIN_GROUP = "semcomm.plugins"
_plugins_loaded = False


def load_plugins() -> None:
    """Load every entry point of the ``semcomm.plugins`` group once (a module, or a callable that is called)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        try:
            loaded = entry.load()
        except Exception as err:  # a broken plug-in must not take the library down with it
            warnings.warn(f"semcomm plug-in {entry.name!r} ({entry.value}) failed to load: {err}", stacklevel=2)
            continue
        if callable(loaded) and not isinstance(loaded, type):
            loaded()


class Registry(Generic[T]):
    """Named objects of one kind (see the module docstring).

    Args:
        kind: what the objects are, in words (``"selection rule"``); errors and help name it.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._info: dict[str, dict[str, Any]] = {}

    def register(self, name: str, obj: T | None = None, **info: Any):
        """Register ``obj`` under ``name`` (as a decorator when ``obj`` is omitted); ``info`` is free metadata
        (:meth:`info`). A name registered twice raises ValueError naming both objects."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")

        def add(entry: T) -> T:
            if name in self._entries and self._entries[name] is not entry:
                raise ValueError(f"{self.kind} {name!r} is already registered ({_describe(self._entries[name])}); "
                                 f"cannot register {_describe(entry)} under the same name")
            self._entries[name] = entry
            self._info[name] = info
            return entry

        return add if obj is None else add(obj)

    def names(self) -> list[str]:
        """Every registered name, sorted (plug-ins included)."""
        load_plugins()
        return sorted(self._entries)

    def get(self, name: str) -> T:
        """The object registered under ``name``; KeyError listing the valid names if there is none."""
        load_plugins()
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}; choose from: {', '.join(self.names()) or '(none)'}")
        return self._entries[name]

    def info(self, name: str) -> dict[str, Any]:
        """The metadata ``name`` was registered with."""
        self.get(name)
        return dict(self._info[name])

    def resolve(self, name_or_object: str | T) -> T:
        """A name is looked up; anything else is taken to be the strategy itself and passed through."""
        return self.get(name_or_object) if isinstance(name_or_object, str) else name_or_object

    def create(self, name_or_object: str | Any, *args: Any, **kwargs: Any) -> Any:
        """Call the factory registered under a name with ``args``/``kwargs``; an object is passed through."""
        if not isinstance(name_or_object, str):
            return name_or_object
        return self.get(name_or_object)(*args, **kwargs)

    def help(self) -> str:
        """``a, b, c``: the names, for ``--help`` texts."""
        return ", ".join(self.names())

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(sorted(self._entries))})"


def _describe(entry: Any) -> str:
    if isinstance(entry, Callable) and hasattr(entry, "__qualname__"):
        return f"{getattr(entry, '__module__', '?')}.{entry.__qualname__}"
    return repr(entry)
