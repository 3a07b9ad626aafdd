"""The ablation of the end-to-end codec (issue 26): what each part of the recipe is worth, in top-1 and real bits.

    .venv/bin/python benchmarks/e2e_ablation.py [--images 10000] [--settings spread16@3,spread32@4]

Each variant of :data:`semcomm.train.e2e.ABLATIONS` changes one thing (linear transforms; pixels or the edge's
tokens only as the analysis's input; the hyperprior without the checkerboard context; the server's ViT frozen)
and is trained by the same short schedule as the base (``semcomm train hyperlatent-cifar10-ablation-<name>``,
:data:`~semcomm.train.e2e.ABLATION_EPOCHS` epochs, the same seed); this script reads each run's saved state
(``--run-root``, default the user cache's ``runs/``) and sends the first ``--images`` test images, every one, at
two budgets (``spreadK@L``: spread-top-k K patches at level L; ``all@L``: every patch). Rows: top-1 with its
95% Clopper-Pearson interval, mean real bits per image (8 x the strings' bytes: frame, hint-less, CRC included),
and McNemar's exact test against the base on the same images. The base's rows with every patch at levels 1 and 2
(``--no-selection``) are the selection-off comparison at about the same bits.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from channels import clopper_pearson

from semcomm.core.paths import default_cache_dir
from semcomm.data import load_split
from semcomm.experiments.statistics import paired_comparison
from semcomm.models import create_model
from semcomm.train.e2e import ABLATION_EPOCHS, ABLATIONS
from semcomm.train.e2e_eval import evaluate_pair, load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--settings", default="spread16@3,spread32@4", help="the two budgets (comma-separated)")
    parser.add_argument("--no-selection", default="all@1,all@2", help="the base's selection-off settings")
    parser.add_argument("--run-root", type=Path, default=default_cache_dir() / "runs")
    args = parser.parse_args()
    settings = tuple(args.settings.split(","))
    split = load_split("cifar10", "test", limit=args.images)
    started = time.time()
    rows, base = [], None
    for name in ABLATIONS:
        run_dir = args.run_root / f"hyperlatent-cifar10-ablation-{name}"
        try:
            codec, state = load_run(run_dir)
        except ValueError:
            print(f"* {name}: not trained (semcomm train hyperlatent-cifar10-ablation-{name})")
            continue
        edge_name, history = state["config"]["edge"], state["history"]
        if len(history) < ABLATION_EPOCHS:
            print(f"* {name}: {len(history)} of {ABLATION_EPOCHS} epochs trained so far (rows below are partial)")
        extra = tuple(args.no_selection.split(",")) if name == "base" else ()
        results = evaluate_pair(codec, create_model(edge_name), split, settings + extra, per_image=True)
        if name == "base":
            base = results
        rows.append((name, len(history), results))
    print(f"\n# {len(split)} CIFAR-10 test images, every image sent, no gate, no fusion; {time.time() - started:.0f} s "
          f"({platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__})\n")
    print("| variant | epochs | setting | top-1 [95% CI] | bits / image | vs base: only base / only variant | p |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name, epochs, results in rows:
        for setting, result in results.items():
            correct = result["correct"]
            low, high = clopper_pearson(int(correct.sum()), len(correct), 0.95)
            versus, p = "", ""
            if base is not None and name != "base" and setting in base:
                test = paired_comparison(base[setting]["correct"], correct)
                versus, p = f"{test['only_rule']} / {test['only_random']}", f"{test['p_value']:.3g}"
            print(f"| {name} | {epochs} | {setting} | {100 * result['top1']:.2f}% [{100 * low:.2f}, {100 * high:.2f}] "
                  f"| {result['bits_per_image']:,.0f} | {versus} | {p} |")


if __name__ == "__main__":
    main()
