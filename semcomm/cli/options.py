"""The parser, the arguments several commands share, and the checks of what they name before any work.

Every option's value is checked while the command line is parsed (:mod:`semcomm.cli.values`); what depends on
several options or on the file system (data sets, channel conditions against the channel) is checked by
:func:`check_inputs` and each command's own ``check`` before it loads anything. A bad value is one line naming
the option, exit status 2.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from semcomm.cli.values import (device, model, nonnegative_float, output_file, output_folder, positive_floats,
                                positive_int, positive_ints, registered)
from semcomm.data import available_splits, locate
from semcomm.zoo import USER_ZOO


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``<prog>: error: <message>`` (no usage), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_data_args(p: argparse.ArgumentParser, dataset: bool = True, default: str | None = "cifar10") -> None:
    """--data-root, and --data PATH (for commands without a preset, --dataset NAME as the alternative, by
    default ``default``; with ``default=None`` one of them is required)."""
    p.add_argument("--data-root", type=Path, help="directory holding the data sets (default: SEMCOMM_DATA or ../shared/data)")
    data_help = ("a data set by path: its folder (<split>/<class>/.../<image>, or <split>/*annotations.txt) or "
                 "its archive (.tar.gz, .tgz, .tar, .zip)")
    if not dataset:
        p.add_argument("--data", type=Path, help=data_help)
        return
    group = p.add_mutually_exclusive_group(required=default is None)
    group.add_argument("--dataset", default=default, help="a data set by name, looked for in the data roots")
    group.add_argument("--data", type=Path, help=data_help)
    p.add_argument("--skip-missing", action="store_true", help="skip the images an annotations file names but that "
                   "do not exist (a warning names them; by default they are an error)")


def add_split_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", help="the split to use (default: the data set's val split if it has one, else test)")


def add_limit_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=positive_int, help="a fixed subset of N images (seed 0), for a quick look")


def add_compute_args(p: argparse.ArgumentParser, devices: bool = True) -> None:
    """--threads and (with ``devices``) --device, for every command that runs a model."""
    p.add_argument("--threads", type=positive_int, help="torch CPU threads for the models (default: torch's, "
                   "usually one per core)")
    if not devices:
        return
    p.add_argument("--device", type=device, help="torch device the models run on: cpu, cuda, "
                   "cuda:N, mps (default auto: CUDA if available, else the CPU); the entropy coders, image codecs "
                   "and channels run on the CPU")


def run_device(args: argparse.Namespace, cpu_only: str | None = None):
    """The torch device a command runs its models on: ``--device``, else CUDA if available, else the CPU (only the
    CPU where ``cpu_only`` says why: a ValueError names any other ``--device``); said in a line on stderr
    (``semcomm COMMAND: models on DEVICE``) and kept in ``args.device``."""
    import sys

    from semcomm.core.devices import resolve_device

    if cpu_only is not None and args.device is not None and args.device.type != "cpu":
        raise ValueError(f"--device {args.device}: {cpu_only}; use --device cpu")
    args.device = resolve_device("cpu" if cpu_only is not None else args.device)
    print(f"semcomm {args.command}: models on {args.device}", file=sys.stderr)
    return args.device


def add_model_arg(p: argparse.ArgumentParser, option: str, default: str | None = None, what: str = "") -> None:
    """A model option: a zoo checkpoint, a model card's path or a timm ViT architecture."""
    p.add_argument(option, type=model, default=default, help=f"{what + ': ' if what else ''}a zoo checkpoint "
                   "(`semcomm zoo`), a model card's path (.../<name>.json) or a timm ViT architecture"
                   f"{f' (default {default})' if default else ''}")


def add_outputs(p: argparse.ArgumentParser, json_help: str, plot_help: str | None = None) -> None:
    """--json PATH (a .json file) and, with ``plot_help``, --plot PATH (by extension: .png, .pdf, .svg, ...)."""
    p.add_argument("--json", type=output_file(".json"), help=f"{json_help} (a .json file)")
    if plot_help:
        p.add_argument("--plot", type=output_file(), help=f"{plot_help} (the format by the extension: .png, .pdf, "
                       ".svg, ...)")


def add_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", type=output_folder, help=f"zoo folder to write the weights and card into (default: the "
                   f"first user zoo directory: {USER_ZOO}; the project ships with --to semcomm/zoo/checkpoints)")


def check_inputs(args: argparse.Namespace) -> None:
    """Fail before any work if --data-root, --data or --dataset names nothing usable, or --split a split the data
    set does not have."""
    if getattr(args, "data_root", None) is not None and not args.data_root.is_dir():
        raise ValueError(f"--data-root {args.data_root} " + ("is not a directory" if args.data_root.exists()
                                                            else "does not exist"))
    if getattr(args, "data", None) is not None and not args.data.exists():
        raise ValueError(f"--data {args.data} does not exist")
    for option, name in (("--data", "data"), ("--dataset", "dataset")):
        if getattr(args, name, None) is not None:
            try:
                locate(getattr(args, name), data_root=args.data_root)  # a folder or an archive, or a name found
                splits = available_splits(getattr(args, name), args.data_root) if getattr(args, "split", None) else []
            except FileNotFoundError as err:
                raise ValueError(f"{option} {getattr(args, name)}: {err}") from err
            if getattr(args, "split", None) and args.split not in splits:
                raise ValueError(f"--split {args.split}: {option} {getattr(args, name)} has the splits "
                                 f"{', '.join(splits) or '(none)'}")
            return


def add_iaq_args(p: argparse.ArgumentParser) -> None:
    """Importance-aware quantization settings of the codec pair (``--iaq-bits`` and its options)."""
    from semcomm.rate.allocation import IAQ_SOLVERS

    p.add_argument("--iaq-bits", type=positive_floats, help="IAQ payload budgets in bits per image, e.g. 200,400")
    p.add_argument("--iaq-min-level", type=positive_int, default=1,
                   help="IAQ: a patch is not sent or sent at this level or above")
    p.add_argument("--iaq-power", type=nonnegative_float, default=1.0, help="IAQ weights: importance to this power")
    p.add_argument("--iaq-solver", default="lagrangian", type=registered(IAQ_SOLVERS),
                   help=f"IAQ's bit allocation: {IAQ_SOLVERS.help()}")
    p.add_argument("--iaq-budgets", type=positive_ints, help="patches IAQ chooses among (default 64: all)")


def iaq_policies(args: argparse.Namespace) -> tuple:
    """The IAQ level policies of :func:`add_iaq_args`'s options (none without ``--iaq-bits``)."""
    from semcomm.rate.policies import IAQ

    return tuple(IAQ(b, solver=args.iaq_solver, power=args.iaq_power, min_level=args.iaq_min_level)
                 for b in args.iaq_bits or ())


def iaq_levels(args: argparse.Namespace) -> dict:
    """The level options :func:`~semcomm.cli.inputs.check_levels` checks against the pair's levels."""
    iaq_min_level = (args.iaq_min_level,) if args.iaq_bits and args.iaq_min_level > 1 else None
    return {"--iaq-bits": () if args.iaq_bits else None, "--iaq-min-level": iaq_min_level}


def add_engine_args(p: argparse.ArgumentParser, tasks: str, note: str = "") -> None:
    """--engine (``local`` or ``ray``, refused otherwise by argparse) and --address: where ``tasks`` run."""
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help=f"where {tasks} run: local (this process, one after the other) or ray (Ray tasks of one CPU "
                   f"each; the same results){note}")
    p.add_argument("--address", help="(--engine ray) a Ray cluster's address, host:port or ray://host:port "
                   "(default: a local Ray instance on this machine's CPUs)")


def check_engine(args: argparse.Namespace, timeout_s: float = 5.0) -> None:
    """An --address without --engine ray, malformed or that does not answer within ``timeout_s`` is refused, naming
    it, before any work."""
    if args.address is None:
        return
    if args.engine != "ray":
        raise ValueError(f"--address {args.address} is the Ray cluster of --engine ray; add --engine ray or drop "
                         "--address")
    from channels.montecarlo import check_reachable

    try:
        check_reachable(args.address, timeout_s)
    except (ValueError, ConnectionError) as err:
        raise ValueError(f"--address: {err}") from None
