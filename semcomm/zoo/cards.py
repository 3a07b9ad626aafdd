"""Cards: what is known about a checkpoint, a dataclass stored as indented JSON next to its tensors.

Reading a card checks it whole before anything uses it: the file is JSON text holding an object, with exactly
the dataclass's fields (those without a default required), each of its annotated JSON type (``int``: an
integer, ``float``: a number, ``str``, ``list``, ``dict``, ``None``: null), and whatever the card's own
:meth:`Card.problems` says (value ranges, a name that is the file's). Every failure is a
:class:`CheckpointError` naming the file and the field. Listing the zoo skips a card that fails, with a
:class:`ZooWarning` naming it (:func:`read_cards`).
"""
from __future__ import annotations

import json
import re
import types
import typing
import warnings
from collections.abc import Callable, Iterable
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any, TypeVar

from semcomm.zoo.errors import CheckpointError, ZooWarning

C = TypeVar("C", bound="Card")
T = TypeVar("T")
JSON_TYPES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
              dict: "an object", type(None): "null"}
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class Card:
    """Base of the zoo's card dataclasses (models, codec pairs, hint coders, backends).

    A card is stored as JSON without its ``directory`` field (where it was read from or written to, when the
    dataclass has one); :meth:`read` refuses a file that is not JSON, whose fields are not the dataclass's or
    not of their types, or that :meth:`problems` finds fault with.
    """

    def to_dict(self) -> dict:
        """The card as stored in its JSON file (without ``directory``)."""
        data = asdict(self)
        data.pop("directory", None)
        return data

    def problems(self, path: Path) -> list[str]:
        """What is wrong with the values of a card read from ``path``, one ``"field 'x' ..."`` phrase each (the
        types are already checked); a subclass adds its own checks. The base finds nothing."""
        return []

    @classmethod
    def read(cls: type[C], path: Path) -> C:
        """The card in the JSON file ``path`` (its ``directory`` set to the file's folder).

        Raises:
            CheckpointError: naming ``path``: the file cannot be read or is not JSON text, has unknown fields or
                lacks required ones, or a field is not of its type or has a value :meth:`problems` refuses.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise CheckpointError(f"card {path} cannot be read: {err.strerror or err}") from err
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise CheckpointError(f"card {path} is not valid JSON: {err}") from err
        known = {f.name for f in fields(cls)} - {"directory"}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        if not isinstance(data, dict) or set(data) - known or required - set(data):
            unknown = sorted(set(data) - known) if isinstance(data, dict) else []
            missing = sorted(required - set(data)) if isinstance(data, dict) else sorted(required)
            raise CheckpointError(f"card {path} is malformed: unknown fields {unknown}, missing {missing}")
        hints = typing.get_type_hints(cls)
        wrong = [_type_problem(name, value, hints[name]) for name, value in data.items()]
        _refuse(path, [problem for problem in wrong if problem])
        card = cls(**data)
        _refuse(path, card.problems(path))
        if "directory" in {f.name for f in fields(cls)}:
            card.directory = path.parent
        return card

    def write(self, path: Path) -> Path:
        """Write the card as ``path`` (its ``directory`` set to the file's folder); returns ``path``."""
        write_json(path, self.to_dict())
        if hasattr(self, "directory"):
            self.directory = path.parent
        return path


def read_cards(paths: Iterable[Path], read: Callable[[Path], T]) -> list[T]:
    """``read(path)`` of every path, in order; one that raises :class:`CheckpointError` is skipped with a
    :class:`ZooWarning` quoting the error (which names the file), so one bad entry never hides the others."""
    cards = []
    for path in paths:
        try:
            cards.append(read(path))
        except CheckpointError as err:
            warnings.warn(f"skipped a zoo entry: {err}", ZooWarning, stacklevel=2)
    return cards


def name_problems(name: str, path: Path) -> list[str]:
    """A card that must be named as its file (``<name>.json``, its tensors ``<name>.safetensors``)."""
    if name != path.stem:
        return [f"field 'name' is {name!r}, but a card is stored as <name>.json: name it {path.stem!r} or "
                f"rename the file"]
    return []


def sha256_problems(sha256: str) -> list[str]:
    """A recorded SHA-256: 64 lowercase hex digits (or empty: not recorded, refused when the tensors load)."""
    if sha256 and not SHA256_HEX.fullmatch(sha256):
        return [f"field 'sha256' must be 64 lowercase hex digits, got {_shown(sha256)}"]
    return []


def count_problems(card: Any, names: Iterable[str], minimum: int = 0) -> list[str]:
    """Integer (or absent, None) fields of ``card`` that must be at least ``minimum``."""
    return [f"field {name!r} must be at least {minimum}, got {getattr(card, name)}" for name in names
            if getattr(card, name) is not None and getattr(card, name) < minimum]


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON; readers never see a half-written file."""
    tmp = path.with_suffix(".jsontmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _type_problem(name: str, value: Any, hint: Any) -> str | None:
    """None if ``value`` (read from JSON) is of the annotated type ``hint``, else the phrase saying so."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if any(_is_of(value, option) for option in options):
        return None
    expected = " or ".join(JSON_TYPES.get(typing.get_origin(t) or t, getattr(t, "__name__", str(t))) for t in options)
    return f"field {name!r} must be {expected}, got {_shown(value)}"


def _is_of(value: Any, kind: Any) -> bool:
    """JSON's view of types: a bool is no number, an integer is a float."""
    kind = typing.get_origin(kind) or kind
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(kind, type) and isinstance(value, kind)


def _shown(value: Any) -> str:
    """A short rendering of a value for a message."""
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _refuse(path: Path, problems: list[str]) -> None:
    if problems:
        raise CheckpointError(f"card {path} is malformed: {'; '.join(problems)}")
