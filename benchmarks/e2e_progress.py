"""Where an end-to-end run (semcomm.train.e2e, semcomm.train.jscc) stands: its epochs' held-out numbers and the
step it is at.

    .venv/bin/python benchmarks/e2e_progress.py [--name hyperlatent-cifar10 | jscc-cifar10] [--run-dir DIR]
                                                [--snapshot DIR]

Reads the run's ``history.json`` (one record per finished epoch: training losses (and estimated bits), and the
held-out top-1 (and real bits per image of the pair's strings) at each budget or channel point, no fusion; a
JSCC point ``awgn@0`` is every patch over AWGN at 0 dB, perfect CSI) and, when the run is
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
        train = [k for k in ("ce", "bits", "z_bits", "snr_db") if k in history[0]]
        names = dict(ce="train CE", bits="train bits (est.)", z_bits="z bits", snr_db="train SNR (dB)")
        print("| epoch | minutes | " + " | ".join(names[k] for k in train) + " | "
              + " | ".join(f"{s}: top-1{' / bits' if 'bits_per_image' in history[0]['eval'][s] else ''}"
                           for s in settings) + " |")
        print("|---:|---:|" + "---:|" * (len(train) + len(settings)))
        for h in history:
            cells = [f"{h['eval'][s]['top1']:.2%}" + (f" / {h['eval'][s]['bits_per_image']:,.0f}"
                                                      if "bits_per_image" in h["eval"][s] else "") for s in settings]
            print(f"| {h['epoch']}/{h['schedule_epochs']} | {h['minutes']:.0f} | "
                  + " | ".join(f"{h[k]:,.3f}" if k == "ce" else f"{h[k]:,.1f}" for k in train) + " | "
                  + " | ".join(cells) + " |")
    if state_path.is_file():
        state = torch.load(state_path, weights_only=False, map_location="cpu")
        step, sums = state["step"], state["sums"]
        running = (": " + ", ".join(f"{k} {v / step:,.3f}" for k, v in sums.items() if k != "loss")) if step else ""
        print(f"saved state: epoch {state['epoch'] + 1}, step {step} of this epoch{running}")


if __name__ == "__main__":
    main()
