"""Gate comparison: min-entropy, Shannon entropy and margin at equal offload rates.

Each gate is calibrated on one half of the evaluation split (CIFAR-10's test split by default; a fixed seed)
for a target offload rate and evaluated on the other half, with the server
classifying offloaded images from all their patches. Prints, per gate and
rate: the offload rate reached on the evaluation half and the collaborative
top-1 accuracy.

    .venv/bin/python benchmarks/gates.py [--dataset NAME --edge NAME --server NAME] [--limit N]
"""
from __future__ import annotations

import argparse

from semcomm import create_model
from semcomm.data import evaluation_split, load_split
from semcomm.edge.gating import compare_gates
from semcomm.experiments.comparisons import gate_table
from semcomm.inference import predict_logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edge", default="vit-edge-cifar10")
    parser.add_argument("--server", default="vit-server-cifar10")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--rates", default="0.1,0.2,0.3,0.4,0.5,0.7")
    args = parser.parse_args()

    edge = create_model(args.edge)
    split = load_split(args.dataset, evaluation_split(args.dataset), limit=args.limit, image_size=edge.image_size[0])
    edge_logits = predict_logits(edge, split.images, desc="edge")
    server_logits = predict_logits(create_model(args.server), split.images, desc="server")
    rows = compare_gates(edge_logits, server_logits, split.labels, tuple(float(r) for r in args.rates.split(",")))
    print(f"# {split.name}: calibrated on {len(split) // 2} images, evaluated on {len(split) - len(split) // 2}; "
          f"edge alone {100 * rows[0]['top1']:.2f}%, server alone {100 * rows[1]['top1']:.2f}%")
    print(gate_table(rows, title=False))


if __name__ == "__main__":
    main()
