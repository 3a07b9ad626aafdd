"""The ``semcomm`` command line: train, export, zoo, evaluate, predict, sweep, link, codecs, fit.

Every command that reads data takes ``--dataset NAME`` (looked for in the
data roots) or ``--data PATH`` (a data set's own folder or archive), and
``--data-root``; images are loaded at the side the model takes (shorter side
resized, centre cropped). Options that name a strategy take their choices from
its registry, plug-ins included. Every command that runs a model takes
``--threads N`` and ``--device`` (``auto``: CUDA if available, else the CPU; named in a line on stderr
and in the JSON results). Every option is checked before any work: a bad value is one
line naming it, exit status 2; a warning (e.g. a zoo file skipped) is one line
on stderr.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from semcomm.cli.catalogue import add_codecs, add_evaluate, add_zoo
from semcomm.cli.link import add_link
from semcomm.cli.options import Parser, check_inputs
from semcomm.cli.predict import add_predict
from semcomm.cli.sweep import add_sweep
from semcomm.cli.training import add_export, add_fit, add_train
from semcomm.zoo import CheckpointError

COMMANDS = (add_train, add_export, add_zoo, add_evaluate, add_predict, add_sweep, add_link, add_codecs, add_fit)


def main(argv: list[str] | None = None) -> int:
    """Run one command (``argv``: its arguments, default ``sys.argv[1:]``); 0 on success, exit status 2 on a
    bad argument or input, with a one-line error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"semcomm {args.command}"
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *_: print(f"{prog}: warning: {_one_line(message)}", file=sys.stderr)
        try:
            check_inputs(args)
            if getattr(args, "check", None) is not None:
                args.check(args)
            if getattr(args, "threads", None) is not None:
                import torch

                torch.set_num_threads(args.threads)
            return args.run(args)
        except (OSError, KeyError, ValueError, CheckpointError) as err:
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            parser.exit(2, f"{prog}: error: {_one_line(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (one-line errors, :class:`~semcomm.cli.options.Parser`)."""
    parser = Parser(prog="semcomm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def _one_line(message: object) -> str:
    """A message on one line: the lines of a multi-line one joined by '; ' (by ' ' after a colon)."""
    text = ""
    for line in (line.strip() for line in str(message).splitlines() if line.strip()):
        text += ("" if not text else " " if text.endswith(":") else "; ") + line
    return text
