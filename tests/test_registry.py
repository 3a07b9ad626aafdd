"""The one Registry type for named strategies: names, look-ups, errors, and entry-point plug-ins."""
from __future__ import annotations

import importlib.metadata
import sys
import types
import warnings

import pytest

from semcomm.core import registry as registry_module
from semcomm.core.registry import PLUGIN_GROUP, Registry, UnknownNameError, load_plugins


def shapes() -> Registry:
    reg = Registry("shape")

    @reg.register("square", sides=4)
    def square(side):
        return side * side

    reg.register("triangle", lambda side: side * side * 3 ** 0.5 / 4, sides=3)
    reg.register("circle", dict)
    return reg


def test_names_are_sorted_and_objects_registered_by_decorator_or_call():
    reg = shapes()
    assert reg.names() == ["circle", "square", "triangle"] == list(reg) and len(reg) == 3
    assert reg.help() == "circle, square, triangle"
    assert reg.get("square")(3) == 9 and reg.create("square", 4) == 16 and reg.create("circle", a=1) == {"a": 1}
    assert "square" in reg and "hexagon" not in reg and 5 not in reg
    assert repr(reg) == "Registry('shape': circle, square, triangle)"


def test_info_is_a_copy_of_the_metadata_by_name_or_object():
    reg = shapes()
    assert reg.info("triangle") == {"sides": 3} and reg.info("circle") == {}
    reg.info("square")["sides"] = 5
    assert reg.info("square") == {"sides": 4}
    assert reg.info(reg.get("square")) == {"sides": 4}
    assert reg.info(len) == {}  # an object that is not registered has no metadata


def test_resolve_create_and_name_of_pass_objects_through():
    reg = shapes()

    def hexagon(side):
        return 6 * side

    assert reg.resolve("square") is reg.get("square") and reg.resolve(hexagon) is hexagon
    marker = object()
    assert reg.create(marker, 1, 2) is marker
    assert reg.name_of("square") == "square" and reg.name_of(reg.get("square")) == "square"
    assert reg.name_of(hexagon) == "hexagon" and reg.name_of(marker) == "object"


def test_a_name_registered_twice_raises_and_the_same_object_again_does_not():
    reg = shapes()
    square = reg.get("square")
    assert reg.register("square", square) is square  # idempotent for the very same object
    with pytest.raises(ValueError, match=r"shape 'square' is already registered \(.*square\); cannot register "
                                         r"builtins.len under the same name"):
        reg.register("square", len)
    with pytest.raises(ValueError, match=r"shape 'square' is already registered"):
        reg.register("square")(lambda side: side)
    assert reg.get("square") is square
    for bad in ("", None, 3):
        with pytest.raises(ValueError, match="a shape needs a non-empty name"):
            reg.register(bad, len)


def test_an_unknown_name_lists_the_valid_ones():
    reg = shapes()
    for call in (reg.get, reg.info, reg.resolve, reg.create):
        with pytest.raises(UnknownNameError) as info:
            call("hexagon")
        assert str(info.value) == "unknown shape 'hexagon'; choose from: circle, square, triangle"
        assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    with pytest.raises(KeyError, match="choose from: \\(none\\)"):
        Registry("empty thing").get("anything")


@pytest.fixture
def fresh_plugins(monkeypatch):
    """Plug-ins not loaded yet, and the entry points of the group given by the test."""
    monkeypatch.setattr(registry_module, "_plugins_loaded", False)

    def use(*entries: tuple[str, str]):
        points = [importlib.metadata.EntryPoint(name, value, PLUGIN_GROUP) for name, value in entries]
        monkeypatch.setattr(importlib.metadata, "entry_points",
                            lambda group=None: [p for p in points if p.group == group])

    return use


def test_a_broken_plugin_warns_and_the_library_goes_on(fresh_plugins, monkeypatch):
    called = []
    module = types.ModuleType("semcomm_test_plugin_ok")
    module.setup = lambda: called.append("setup")
    module.fails = lambda: 1 / 0
    monkeypatch.setitem(sys.modules, "semcomm_test_plugin_ok", module)
    fresh_plugins(("missing", "no_such_semcomm_plugin_module"), ("raises", "semcomm_test_plugin_ok:fails"),
                  ("works", "semcomm_test_plugin_ok:setup"))
    reg = shapes()
    with pytest.warns(UserWarning) as caught:
        assert reg.names() == ["circle", "square", "triangle"]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert messages[0].startswith("semcomm plug-in 'missing' (no_such_semcomm_plugin_module) failed to load: "
                                  "ModuleNotFoundError")
    assert messages[1] == ("semcomm plug-in 'raises' (semcomm_test_plugin_ok:fails) failed to load: "
                           "ZeroDivisionError: division by zero")
    assert called == ["setup"]  # the plug-ins after a broken one still load
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_plugins()  # once only: no second round of warnings
        assert reg.get("square")(2) == 4


def test_a_plugin_registering_a_taken_name_is_skipped_with_a_warning(fresh_plugins, monkeypatch):
    reg = shapes()
    module = types.ModuleType("semcomm_test_plugin_clash")
    module.setup = lambda: (reg.register("hexagon", abs), reg.register("square", len))
    monkeypatch.setitem(sys.modules, "semcomm_test_plugin_clash", module)
    fresh_plugins(("clash", "semcomm_test_plugin_clash:setup"))
    with pytest.warns(UserWarning, match="plug-in 'clash' .* failed to load: ValueError: shape 'square' is already"):
        assert reg.names() == ["circle", "hexagon", "square", "triangle"]
    assert reg.get("square")(3) == 9  # the library's own entry stands


def test_plugins_load_when_a_name_is_missing_or_the_names_are_listed(fresh_plugins, monkeypatch):
    reg = shapes()
    module = types.ModuleType("semcomm_test_plugin_late")
    module.setup = lambda: reg.register("pentagon", abs, sides=5)
    monkeypatch.setitem(sys.modules, "semcomm_test_plugin_late", module)
    fresh_plugins(("late", "semcomm_test_plugin_late:setup"))
    assert reg.get("square")(2) == 4 and "circle" in reg and reg.name_of("circle") == "circle"
    assert not registry_module._plugins_loaded  # a name the library holds needs no plug-ins
    assert reg.info("pentagon") == {"sides": 5} and registry_module._plugins_loaded
