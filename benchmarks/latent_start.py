"""What training adds to the latent pair: its starting point (no training) against the shipped pair.

    .venv/bin/python benchmarks/latent_start.py [--images 10000] [--fit-images 10000]

The start: the zoo server unchanged, the edge's bottleneck the principal components of the server's own
patch embeddings (semcomm.train.latent.pca_init, 2,000 training images), rANS tables fitted the
same way as the shipped pair's (switched sets included). Every test image is sent whole (all 64 patches) at each level; real bits
(strings as sent, no hint), top-1 of the server alone.
"""
from __future__ import annotations

import argparse

import torch

from semcomm import create_model
from semcomm.data import load_split
from semcomm.edge.encoder import EdgeEncoder
from semcomm.edge.selection import TopK
from semcomm.rate import create_codec
from semcomm.rate.latent import LatentPair
from semcomm.rate.policies import FixedLevel
from semcomm.server.decoder import ServerDecoder
from semcomm.train.fitting import fit_latent_tables
from semcomm.train.latent import LatentTrainConfig, build_codec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--fit-images", type=int, default=10_000)
    args = parser.parse_args()
    train = load_split("cifar10", "train")
    test = load_split("cifar10", "test", limit=args.images)
    edge = create_model("vit-edge-cifar10")
    start = build_codec(LatentTrainConfig(), train).eval()
    shipped = create_codec("latent-cifar10", hint=False)
    stats = fit_latent_tables(start, edge, train.subset(args.fit_images).images, sets=len(shipped.table_sets or [1]))
    pairs = {"start (PCA, zoo server, no training)": LatentPair(start, stats.tables, start.entropy.medians(),
                                                              distortion=stats.distortion, table_sets=stats.table_sets),
             "shipped latent-cifar10": shipped}
    print(f"# {len(test)} CIFAR-10 test images, every patch sent, {torch.get_num_threads()} threads\n")
    print("| pair | level | top-1 | bits/image |")
    print("|---|---:|---:|---:|")
    for name, pair in pairs.items():
        analysis = None
        for level in range(1, pair.levels + 1):
            encoder = EdgeEncoder(edge, TopK(64), gate=None, codec=pair, policy=FixedLevel(level))
            analysis = analysis or encoder.analyze(test.images)
            sent = encoder.encode(test.images, analysis=analysis)
            logits = ServerDecoder(codec=pair).classify(sent.strings)
            top1 = float((logits.argmax(-1) == test.labels).float().mean())
            print(f"| {name} | {level} | {100 * top1:.2f}% | {float(sent.bits.float().mean()):,.0f} |")


if __name__ == "__main__":
    main()
