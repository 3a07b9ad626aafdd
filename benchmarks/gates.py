"""Gate comparison: min-entropy, Shannon entropy and margin at equal offload rates.

Each gate is calibrated on one half of the CIFAR-10 test split (fixed seed)
for a target offload rate and evaluated on the other half, with the server
classifying offloaded images from all their patches. Prints, per gate and
rate: the offload rate reached on the evaluation half and the collaborative
top-1 accuracy.

    .venv/bin/python benchmarks/gates.py [--limit N]
"""
from __future__ import annotations

import argparse

import torch

from semcomm import create_model
from semcomm.data import load_split
from semcomm.gating import KINDS, Gate
from semcomm.inference import predict_logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edge", default="vit-edge-cifar10")
    parser.add_argument("--server", default="vit-server-cifar10")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--rates", default="0.1,0.2,0.3,0.4,0.5,0.7")
    args = parser.parse_args()

    split = load_split("cifar10", "test", limit=args.limit)
    edge_logits = predict_logits(create_model(args.edge), split.images, desc="edge")
    server_logits = predict_logits(create_model(args.server), split.images, desc="server")
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))
    held_out, evaluation = order[: len(order) // 2], order[len(order) // 2 :]
    labels = split.labels[evaluation]
    edge_ok = edge_logits[evaluation].argmax(-1) == labels
    server_ok = server_logits[evaluation].argmax(-1) == labels
    print(f"# {split.name}: calibrated on {len(held_out)} images, evaluated on {len(evaluation)}; "
          f"edge alone {100 * edge_ok.float().mean():.2f}%, server alone {100 * server_ok.float().mean():.2f}%")
    print("| gate | target offload | threshold | offload reached | top-1 |")
    print("|---|---:|---:|---:|---:|")
    for rate in (float(r) for r in args.rates.split(",")):
        for kind in KINDS:
            gate = Gate.calibrate(edge_logits[held_out], rate, kind)
            offload = gate.offload(edge_logits[evaluation])
            accuracy = torch.where(offload, server_ok, edge_ok).float().mean()
            print(f"| {kind} | {rate:.0%} | {gate.threshold:.4f} | {offload.float().mean():.1%} | {100 * accuracy:.2f}% |")


if __name__ == "__main__":
    main()
