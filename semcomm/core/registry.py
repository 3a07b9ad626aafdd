"""One registry type for every named strategy: importance methods, selection rules, gates, level policies,
IAQ solvers, codecs, backends, channels, augmentations.

A registry maps names to objects (classes, factories or functions) of one kind. Where the library
expects a strategy it takes a name or the object itself (as Sionna's ``cn_update="name" | callable``):
:meth:`Registry.resolve` looks names up and passes objects through. Names are unique (registering a
name twice raises), listings are sorted, and an unknown name is an error that lists the valid ones
(:class:`UnknownNameError`, both a KeyError and a ValueError). The command line's choices and help come
from the same listings.

Third-party packages add strategies without editing semcomm, as pytest finds its plug-ins: a package
declares an entry point in the group ``semcomm.plugins`` naming a module (or a callable); semcomm loads
every such entry point once, the first time a registry is listed or asked for a name it does not hold,
and the module registers its strategies with the registries' decorators::

    # pyproject.toml of the plug-in package
    [project.entry-points."semcomm.plugins"]
    my_rules = "my_package.rules"

    # my_package/rules.py
    from semcomm.edge.selection import SELECTION_RULES, SelectionRule

    @SELECTION_RULES.register("every-other", budget=True)
    class EveryOther(SelectionRule): ...

A plug-in that fails to load (an import error, a name registered twice, a callable that raises) is
reported with a warning and skipped; the library and the other plug-ins work on. The library never
reads a registry while its own modules are being imported, so a plug-in may import any of them.

>>> from semcomm.core.registry import Registry
>>> shapes = Registry("shape")
>>> @shapes.register("square", sides=4)
... def square(side):
...     return side * side
>>> shapes.names(), shapes.resolve("square")(3), shapes.info("square"), shapes.name_of(square)
(['square'], 9, {'sides': 4}, 'square')
"""
from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
PLUGIN_GROUP = "semcomm.plugins"
_plugins_loaded = False


class UnknownNameError(KeyError, ValueError):
    """A name no registry entry has; the message lists the valid names.

    A KeyError (a failed look-up) and a ValueError (a bad argument value), so either ``except`` catches it.
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def load_plugins() -> None:
    """Load every entry point of the ``semcomm.plugins`` group once (a module, or a callable that is called).

    A plug-in that raises while loading is reported with a warning and skipped.
    """
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True  # before loading: a plug-in that reads a registry does not load them again
    for entry in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        try:
            loaded = entry.load()
            if callable(loaded) and not isinstance(loaded, type):
                loaded()
        except Exception as err:  # a broken plug-in must not take the library down with it
            warnings.warn(f"semcomm plug-in {entry.name!r} ({entry.value}) failed to load: "
                          f"{type(err).__name__}: {err}", stacklevel=2)


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
        """The object registered under ``name``; :class:`UnknownNameError` listing the valid names if none is."""
        if name not in self:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; choose from: {', '.join(self.names()) or '(none)'}")
        return self._entries[name]

    def info(self, name_or_object: str | Any) -> dict[str, Any]:
        """The metadata a name was registered with; for an object, that of the name it is registered under
        (``{}`` for an object that is not registered)."""
        if isinstance(name_or_object, str):
            self.get(name_or_object)
            return dict(self._info[name_or_object])
        name = self._registered_name(name_or_object)
        return {} if name is None else dict(self._info[name])

    def resolve(self, name_or_object: str | T) -> T:
        """A name is looked up; anything else is taken to be the strategy itself and passed through."""
        return self.get(name_or_object) if isinstance(name_or_object, str) else name_or_object

    def create(self, name_or_object: str | Any, *args: Any, **kwargs: Any) -> Any:
        """Call the factory registered under a name with ``args``/``kwargs``; an object is passed through."""
        if not isinstance(name_or_object, str):
            return name_or_object
        return self.get(name_or_object)(*args, **kwargs)

    def name_of(self, name_or_object: str | Any) -> str:
        """A name for labels and messages: a name itself, the name an object is registered under, else the
        object's ``__name__`` (or its type's)."""
        if isinstance(name_or_object, str):
            return name_or_object
        name = self._registered_name(name_or_object)
        return name if name is not None else getattr(name_or_object, "__name__", type(name_or_object).__name__)

    def _registered_name(self, obj: Any) -> str | None:
        load_plugins()
        return next((name for name, entry in self._entries.items() if entry is obj), None)

    def help(self) -> str:
        """``a, b, c``: the names, for ``--help`` texts."""
        return ", ".join(self.names())

    def __contains__(self, name: object) -> bool:
        if name not in self._entries:  # plug-ins are loaded only for a name the library does not hold
            load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(sorted(self._entries))})"


def _describe(entry: Any) -> str:
    if callable(entry) and hasattr(entry, "__qualname__"):
        return f"{getattr(entry, '__module__', '?')}.{entry.__qualname__}"
    return repr(entry)
