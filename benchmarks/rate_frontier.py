"""The full bitrate-accuracy frontier on CIFAR-10: the semantic codec against gated AV1, WebP and JPEG.

    .venv/bin/python benchmarks/rate_frontier.py [--limit N] [--codec latent-cifar10] [--json PATH] [--plot PATH]
        [--engine local|ray] [--address HOST:PORT] [--anchors-only | --lean]

A denser grid than ``make demo``: spread-top-k and top-k at 4..64 patches at levels 2-5, IAQ over all
64 patches (a patch not sent or at level 2, or 3, and up) at payload budgets of 600..2400 bits; the image codecs behind the same min-entropy gate (thresholds 0..3) with and
without the edge's prediction fused in: AV1 intra as its transport carries it (``av1``: the frame OBUs, a codec
id and a CRC; FORMAT.md) at qualities 0..75 and VP8 likewise (``vp8``, from WebP) at 1..90, beside whole files
(WebP at 1..90, AVIF at 10/40/75, JPEG at 5..95); random twins at equal budgets.
Prints each scheme's Pareto frontier and the bits each needs at every accuracy from the edge's + 1 point to
the server's full-image accuracy (same table as ``semcomm sweep``).

``--engine ray`` spreads the sweep's tasks (settings x shards of 1,024 images) over Ray (``--address``: a
cluster's, default a local instance), with the local engine's numbers; finished tasks are saved beside the
JSON (``frontier-cifar10.tasks.jsonl``), so a rerun of an interrupted run resumes; the image codecs' and the
full-images reference's tasks are saved under keys of their own (the images, edge, server and hint they read), so
a run of another codec pair with the same ``--json`` reuses them. ``--anchors-only`` runs those alone (no semantic
setting): e.g. while the codec pair to compare is still training. ``--lean`` runs a smaller semantic grid (spread-top-k
only at 8..64 patches, the IAQ budgets, no random twins: about a quarter of the passes) for a slower pair.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from semcomm.cli.options import add_engine_args, check_engine
from semcomm.data import load_split
from semcomm.experiments.engines import engine_line, state_path, task_engine
from semcomm.experiments.plots import plot_sweep
from semcomm.experiments.sweep import Sweep, SweepConfig
from semcomm.rate.image_codecs import frontier_codecs
from semcomm.rate.policies import IAQ

THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, help="a fixed subset of N test images (default: all 10,000)")
    parser.add_argument("--codec", default="latent-cifar10")
    parser.add_argument("--json", type=Path, default=Path("results/frontier-cifar10.json"))
    parser.add_argument("--plot", type=Path, default=Path("results/frontier-cifar10.png"))
    parser.add_argument("--anchors-only", action="store_true",
                        help="the image codecs and the full-images reference only (fills the task file)")
    parser.add_argument("--lean", action="store_true",
                        help="spread-top-k at 8..64 patches and the IAQ budgets only, no random twins")
    add_engine_args(parser, "the sweep's tasks (settings x shards of images)")
    args = parser.parse_args()
    if args.lean and args.anchors_only:
        parser.error("--lean and --anchors-only are exclusive: --anchors-only runs no semantic setting")
    try:
        check_engine(args)
    except ValueError as err:
        parser.error(str(err))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    config = SweepConfig(
        codec=args.codec,
        rules=() if args.anchors_only else ("spread-top-k",) if args.lean else ("spread-top-k", "top-k"),
        budgets=(8, 16, 32, 64) if args.lean else (4, 8, 16, 32, 48, 64), levels=(2, 3, 4, 5), twins=not args.lean,
        policies=() if args.anchors_only else tuple(IAQ(b, min_level=2) for b in (600, 900, 1300, 1800, 2400))
        + tuple(IAQ(b, min_level=3) for b in (1300, 1800, 2400)), policy_budgets=(64,),
        thresholds=THRESHOLDS,
        codecs=tuple(frontier_codecs()),
    )
    split = load_split("cifar10", "test", limit=args.limit)
    engine = task_engine(args.engine, args.address)
    try:
        result = Sweep(config).run(split, engine, state_path(args.json))
    finally:
        engine.shutdown()
    result.to_json(args.json)
    plot_sweep(result, args.plot)
    print(f"# {result.images} images of {result.dataset} in {result.seconds:.0f} s ({result.machine}; "
          f"{engine_line(result.engine)})\n")
    for frontier in result.frontiers:
        points = ", ".join(f"{p['bits_per_image']:,.0f} b {100 * p['accuracy']:.2f}%" for p in frontier.points)
        print(f"* {frontier.name}: {points}")
    for note in result.notes:
        print(f"\nnote: {note}")
    print("\nmean bits per image each frontier needs for a top-1 accuracy:\n")
    print(result.comparison_table() or result.comparison_note)


if __name__ == "__main__":
    main()
