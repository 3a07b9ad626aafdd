"""Option value types: each checks one option's value while the command line is parsed, before any work.

A type raises :class:`argparse.ArgumentTypeError` saying what was given and what is accepted; the parser turns
it into one line naming the option (``semcomm sweep: error: argument --limit: must be a positive integer, got
'0'``) and exit status 2. Names of strategies (rules, gates, codecs, channels) are checked against their
:class:`~semcomm.core.registry.Registry`, plug-ins included; models, saved backends and files against what exists.
"""
from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from semcomm.core.registry import Registry

Check = Callable[[Any], bool]


def number(kind: type, ok: Check, what: str) -> Callable[[str], Any]:
    """A type parsing one ``kind`` (int or float) for which ``ok`` holds (``what`` it must be, for messages)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text.strip())
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


def number_list(kind: type, ok: Check, what: str) -> Callable[[str], tuple]:
    """A type parsing comma-separated values, each one ``kind`` for which ``ok`` holds."""
    one = number(kind, ok, what)

    def parse(text: str) -> tuple:
        values = []
        for item in text.split(","):
            try:
                values.append(one(item))
            except argparse.ArgumentTypeError:
                raise argparse.ArgumentTypeError(f"must be comma-separated values, each {what}; {item.strip()!r} in "
                                                  f"{text!r} is not") from None
        return tuple(values)

    return parse


positive_int = number(int, lambda v: v >= 1, "a positive integer")
nonnegative_int = number(int, lambda v: v >= 0, "an integer >= 0")
finite_float = number(float, math.isfinite, "a finite number")
nonnegative_float = number(float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
share = number(float, lambda v: 0 <= v <= 1, "a share in [0, 1]")
open_probability = number(float, lambda v: 0 < v < 1, "a probability strictly between 0 and 1")
positive_ints = number_list(int, lambda v: v >= 1, "a positive integer")
positive_floats = number_list(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
thresholds = number_list(float, lambda v: v >= 0, "a number >= 0 (inf: never offload)")
shares = number_list(float, lambda v: 0 <= v <= 1, "a share in [0, 1]")


def names(text: str) -> tuple[str, ...]:
    """Comma-separated names (blanks dropped); at least one."""
    found = tuple(v.strip() for v in text.split(",") if v.strip())
    if not found:
        raise argparse.ArgumentTypeError(f"must name at least one, got {text!r}")
    return found


def registered(registry: Registry) -> Callable[[str], str]:
    """An option type accepting one name of ``registry``."""

    def check(text: str) -> str:
        if text not in registry:
            raise argparse.ArgumentTypeError(f"unknown {registry.kind} {text!r}; choose from {registry.help()}")
        return text

    return check


def registered_list(registry: Registry, plural: str) -> Callable[[str], tuple[str, ...]]:
    """An option type accepting comma-separated names of ``registry`` (``plural``: the kind, for messages)."""

    def check(text: str) -> tuple[str, ...]:
        listed = tuple(text.split(","))
        unknown = [name for name in listed if name not in registry]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {plural} {unknown}; choose from {registry.help()}")
        return listed

    return check


def image_geometry(text: str) -> tuple[int, int]:
    """``IMAGE/PATCH`` -> (image side, patch side) in pixels."""
    image, _, patch = text.partition("/")
    if not (image.isdigit() and patch.isdigit() and 0 < int(patch) <= int(image) and int(image) % int(patch) == 0):
        raise argparse.ArgumentTypeError(f"geometry {text!r} is not IMAGE/PATCH with the patch side dividing the "
                                         "image side, e.g. 64/8")
    return int(image), int(patch)


def image_codecs(text: str):
    """``webp-q20,jpeg-q50`` -> image codecs (``none``: no codecs; ``frontier``: the error-free frontier's dense
    grid, :func:`~semcomm.rate.image_codecs.frontier_codecs`)."""
    from semcomm.rate.image_codecs import ImageCodec, frontier_codecs

    if text == "none":
        return ()
    if text == "frontier":
        return tuple(frontier_codecs())
    codecs = []
    for item in text.split(","):
        fmt, _, quality = item.partition("-q")
        if not quality.isdigit():
            raise argparse.ArgumentTypeError(f"codec {item!r} is not FORMAT-qQUALITY, e.g. webp-q20")
        try:
            codecs.append(ImageCodec(fmt, int(quality)))
        except ValueError as err:  # argparse shows an ArgumentTypeError's own message
            raise argparse.ArgumentTypeError(str(err)) from err
    return tuple(codecs)


def device(text: str):
    """A torch device this machine has (:func:`semcomm.core.devices.resolve_device`): ``auto``, ``cpu``,
    ``cuda``, ``cuda:N`` or ``mps``."""
    from semcomm.core.devices import DeviceError, resolve_device

    try:
        return resolve_device(text)
    except DeviceError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def model(text: str) -> str:
    """A model the commands can load (:func:`semcomm.models.create_model`): a zoo checkpoint, a model card's
    path (its card checked whole) or a timm ViT architecture."""
    from semcomm.models.zoo import find_model
    from semcomm.zoo import CheckpointError

    try:
        find_model(text)
    except (KeyError, CheckpointError) as err:
        raise argparse.ArgumentTypeError(err.args[0] if err.args else str(err)) from None
    return text


def checkpoint(text: str) -> str:
    """A trained checkpoint: a zoo checkpoint's name or a model card's path (its card checked whole)."""
    from semcomm.models.zoo import model_card
    from semcomm.zoo import CheckpointError

    try:
        model_card(text)
    except (KeyError, CheckpointError) as err:
        raise argparse.ArgumentTypeError(err.args[0] if err.args else str(err)) from None
    return text


def checkpoint_or_weights(text: str) -> str:
    """A trained checkpoint (:func:`checkpoint`) or a safetensors file of weights."""
    if Path(text).is_file() and not text.endswith(".json"):
        if Path(text).suffix != ".safetensors":
            raise argparse.ArgumentTypeError(f"{text} is no .safetensors file; give one, or a zoo checkpoint")
        return text
    return checkpoint(text)


def saved_backend(text: str) -> str:
    """A saved backend, by name in the zoo or by its directory (its card checked whole)."""
    from semcomm.server.backends.storage import read_backend_card
    from semcomm.zoo import CheckpointError

    try:
        read_backend_card(text)
    except (KeyError, CheckpointError) as err:
        raise argparse.ArgumentTypeError(err.args[0] if err.args else str(err)) from None
    return text


def output_file(*suffixes: str) -> Callable[[str], Path]:
    """A file to write, with one of ``suffixes`` (``()``: every format matplotlib writes), in a folder that
    exists and is writable."""

    def check(text: str) -> Path:
        path = Path(text).expanduser()
        accepted = suffixes or tuple(f".{ext}" for ext in _plot_formats())
        if path.suffix.lower() not in accepted:
            raise argparse.ArgumentTypeError(f"{text}: the file's extension must be {', '.join(accepted)}"
                                             f"{' (the format is chosen by it)' if len(accepted) > 1 else ''}")
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a directory; give a file name")
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: the folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise argparse.ArgumentTypeError(f"{text}: the folder {parent} is not writable")
        return path

    return check


def output_folder(text: str) -> Path:
    """A folder to write into: an existing writable one, or one that can be created (its nearest existing
    parent is a writable folder)."""
    path = Path(text).expanduser()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{text}{'' if existing == path else f': {existing}'} is a file, not a folder")
    if not os.access(existing, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text}: the folder {existing} is not writable")
    return path


def _plot_formats() -> list[str]:
    """The file extensions matplotlib writes a figure as (png, pdf, svg, ...)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(FigureCanvasBase.get_supported_filetypes())
