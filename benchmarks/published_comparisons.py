"""The published comparisons of methods.md sections 1 and 2 (see semcomm.experiments.comparisons) on one data set.

    .venv/bin/python benchmarks/published_comparisons.py [--dataset imagenette --edge vit-edge-imagenette
        --server vit-server-imagenette] [--limit N] [--json PATH]

On the data set's evaluation split (val, or test); prints markdown tables for
BENCHMARKS.md and writes every number to --json.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from semcomm import create_model
from semcomm.data import evaluation_split, load_split
from semcomm.experiments.comparisons import RATES, markdown, published_comparisons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="imagenette")
    parser.add_argument("--edge", default="vit-edge-imagenette")
    parser.add_argument("--server", default="vit-server-imagenette")
    parser.add_argument("--limit", type=int, help="a fixed subset of N images")
    parser.add_argument("--rates", default=",".join(f"{r:g}" for r in RATES), help="offload rates of the gates")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    side = create_model(args.edge).image_size[0]
    split = load_split(args.dataset, evaluation_split(args.dataset), limit=args.limit, image_size=side)
    result = published_comparisons(split, args.edge, args.server, tuple(float(r) for r in args.rates.split(",")))
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2, default=str))


if __name__ == "__main__":
    main()
