"""Where an end-to-end run (semcomm.train.e2e) stands: its epochs' held-out numbers and the step it is at.

    .venv/bin/python benchmarks/e2e_progress.py [--name hyperlatent-cifar10] [--run-dir DIR] [--snapshot DIR]

Reads the run's ``history.json`` (one record per finished epoch: training losses and estimated bits, and the
held-out top-1 and real bits per image of the pair's strings at each budget, no fusion) and, when the run is
mid-epoch, the step its ``state.pt`` was saved at; with ``--snapshot`` (e.g. ``snapshots/hyperlatent-cifar10``)
the history is the snapshot's when the run directory has none (a fresh machine). It reads files only: safe while
the run trains.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from semcomm.core.paths import default_cache_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="hyperlatent-cifar10")
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--snapshot", type=Path, help="a snapshot folder whose history to show if the run has none")
    args = parser.parse_args()
    run_dir = args.run_dir or default_cache_dir() / "runs" / args.name
    history_path, state_path = run_dir / "history.json", run_dir / "state.pt"
    history = json.loads(history_path.read_text()) if history_path.is_file() else []
    if not history and args.snapshot is not None and (args.snapshot / "snapshot.json").is_file():
        history = json.loads((args.snapshot / "snapshot.json").read_text())["history"]
    settings = list(history[0]["eval"]) if history else []
    print(f"run {run_dir}: {len(history)} epochs done")
    if history:
        print("| epoch | minutes | train CE | train bits (est.) | z bits | "
              + " | ".join(f"{s}: top-1 / bits" for s in settings) + " |")
        print("|---:|---:|---:|---:|---:|" + "---:|" * len(settings))
        for h in history:
            cells = [f"{h['eval'][s]['top1']:.2%} / {h['eval'][s]['bits_per_image']:,.0f}" for s in settings]
            print(f"| {h['epoch']}/{h['schedule_epochs']} | {h['minutes']:.0f} | {h['ce']:.3f} | {h['bits']:,.0f} | "
                  f"{h['z_bits']:.1f} | " + " | ".join(cells) + " |")
    if state_path.is_file():
        state = torch.load(state_path, weights_only=False, map_location="cpu")
        step, sums = state["step"], state["sums"]
        running = f": train CE {sums['ce'] / step:.3f}, bits {sums['bits'] / step:,.0f}, z {sums['z_bits'] / step:.1f}" \
            if step else ""
        print(f"saved state: epoch {state['epoch'] + 1}, step {step} of this epoch{running}")


if __name__ == "__main__":
    main()
