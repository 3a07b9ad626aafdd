"""Arguments shared by the commands, and the option types that check names against the registries.

An option that names a strategy (a selection rule, a gate, a codec, a channel) takes its choices from
the strategy's :class:`~semcomm.core.registry.Registry`, plug-ins included: the name is checked while
the command line is parsed, and an unknown one is an error (exit status 2) that lists the valid names.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from semcomm.core.registry import Registry
from semcomm.data import locate


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
        names = tuple(text.split(","))
        unknown = [name for name in names if name not in registry]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {plural} {unknown}; choose from {registry.help()}")
        return names

    return check


def int_list(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def float_list(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def str_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def image_geometry(text: str) -> tuple[int, int]:
    """``IMAGE/PATCH`` -> (image side, patch side) in pixels."""
    image, _, patch = text.partition("/")
    if not (image.isdigit() and patch.isdigit() and 0 < int(patch) <= int(image) and int(image) % int(patch) == 0):
        raise argparse.ArgumentTypeError(f"geometry {text!r} is not IMAGE/PATCH with the patch side dividing the "
                                         "image side, e.g. 64/8")
    return int(image), int(patch)


def image_codecs(text: str):
    """``webp-q20,jpeg-q50`` -> image codecs (``none``: no codecs)."""
    from semcomm.rate.image_codecs import ImageCodec

    if text == "none":
        return ()
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


def add_data_args(p: argparse.ArgumentParser, dataset: bool = True) -> None:
    """--data-root, and --data PATH (for commands without a preset, --dataset NAME as the alternative)."""
    p.add_argument("--data-root", type=Path, help="directory holding the data sets (default: SEMCOMM_DATA or ../shared/data)")
    data_help = ("a data set by path: its folder (<split>/<class>/.../<image>, or <split>/*annotations.txt) or "
                 "its archive (.tar.gz, .tgz, .tar, .zip)")
    if not dataset:
        p.add_argument("--data", type=Path, help=data_help)
        return
    group = p.add_mutually_exclusive_group()
    group.add_argument("--dataset", default="cifar10", help="a data set by name, looked for in the data roots")
    group.add_argument("--data", type=Path, help=data_help)


def add_split_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", help="the split to use (default: the data set's val split if it has one, else test)")


def add_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", type=Path, help="zoo folder to write the weights and card into (default: the user zoo, "
                   "$SEMCOMM_ZOO or ~/.cache/semcomm/zoo; the project ships with --to semcomm/zoo/checkpoints)")


def check_output(path: Path, option: str) -> None:
    """Fail before any work if ``path`` cannot be written."""
    if path.is_dir():
        raise ValueError(f"{option} {path} is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"{option} {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{option} {path}: the folder {parent} is not writable")


def check_inputs(args: argparse.Namespace) -> None:
    """Fail before any work if --data-root or --data names nothing usable."""
    if getattr(args, "data_root", None) is not None and not args.data_root.is_dir():
        raise ValueError(f"--data-root {args.data_root} " + ("is not a directory" if args.data_root.exists()
                                                            else "does not exist"))
    if getattr(args, "data", None) is not None:
        if not args.data.exists():
            raise ValueError(f"--data {args.data} does not exist")
        locate(args.data)  # a folder or an archive
