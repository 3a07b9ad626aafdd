"""The ``semcomm`` command line: train, export, zoo, evaluate, sweep, link, codecs, fit.

Every command that reads data takes ``--dataset NAME`` (looked for in the
data roots) or ``--data PATH`` (a data set's own folder or archive), and
``--data-root``; images are loaded at the side the model takes (shorter side
resized, centre cropped). Options that name a strategy take their choices from
its registry, plug-ins included.
"""
from __future__ import annotations

import argparse

from semcomm.cli.catalogue import add_codecs, add_evaluate, add_zoo
from semcomm.cli.link import add_link
from semcomm.cli.options import check_inputs, check_output
from semcomm.cli.sweep import add_sweep
from semcomm.cli.training import add_export, add_fit, add_train
from semcomm.zoo import CheckpointError


def main(argv: list[str] | None = None) -> int:
    """Run one command (``argv``: its arguments, default ``sys.argv[1:]``); 0 on success, exit status 2 on a
    bad argument or input, with a one-line error."""
    parser = argparse.ArgumentParser(prog="semcomm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_train, add_export, add_zoo, add_evaluate, add_sweep, add_link, add_codecs, add_fit):
        add(sub)
    args = parser.parse_args(argv)
    try:
        for name in ("json", "plot"):
            if getattr(args, name, None) is not None:
                check_output(getattr(args, name), f"--{name}")
        check_inputs(args)
        return args.run(args)
    except (OSError, KeyError, ValueError, CheckpointError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        parser.exit(2, f"semcomm {args.command}: error: {message}\n")
