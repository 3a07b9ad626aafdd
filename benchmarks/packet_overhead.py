"""What packets cost: bits on the link for one image as packets against its version-2 string.

    .venv/bin/python benchmarks/packet_overhead.py [--images 10000] [--sizes 32,64,128] [--copies 2]

The shipped latent pair with the edge's hint; each test image is encoded at a few operating points
(spread-top-k K at a fixed level, IAQ over every patch), its string split into packets
(semcomm.rate.packetize.Packetizer: ``--copies`` header packets, data packets of at most S bytes), and the
bits of all packets (8 x bytes, every field, padding and CRC) are compared with the string's.
"""
from __future__ import annotations

import argparse

from semcomm import create_model
from semcomm.data import load_split
from semcomm.edge.encoder import EdgeEncoder
from semcomm.edge.selection import SpreadTopK
from semcomm.rate import create_codec
from semcomm.rate.packetize import Packetizer
from semcomm.rate.policies import IAQ, FixedLevel
from semcomm.rate.zoo import load_hint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--sizes", default="32,64,128")
    parser.add_argument("--copies", type=int, default=2)
    args = parser.parse_args()
    split = load_split("cifar10", "test", limit=args.images)
    edge, pair, hint = create_model("vit-edge-cifar10"), create_codec("latent-cifar10"), load_hint("vit-edge-cifar10")
    settings = [(SpreadTopK(16), FixedLevel(3)), (SpreadTopK(64), FixedLevel(3)), (SpreadTopK(64), FixedLevel(4)),
                (SpreadTopK(64), IAQ(1800, min_level=3))]
    analysis = EdgeEncoder(edge, SpreadTopK(16), gate=None, codec=pair).analyze(split.images)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"# latent-cifar10 with hint, {len(split)} CIFAR-10 test images, {args.copies} header copies\n")
    print("| setting | string bits | " + " | ".join(f"{s}-byte packets: bits (packets)" for s in sizes) + " |")
    print("|---|---:|" + "---:|" * len(sizes))
    for rule, policy in settings:
        encoder = EdgeEncoder(edge, rule, gate=None, codec=pair, policy=policy, hint=hint)
        strings = encoder.encode(split.images, analysis=analysis).strings
        string_bits = sum(8 * len(s) for s in strings) / len(strings)
        cells = []
        for size in sizes:
            packets = [Packetizer(pair, size, args.copies).split(s) for s in strings]
            bits = sum(8 * len(p) for ps in packets for p in ps) / len(strings)
            count = sum(len(ps) for ps in packets) / len(strings)
            cells.append(f"{bits:,.0f} (+{100 * (bits / string_bits - 1):.0f}%, {count:.1f})")
        print(f"| {rule.label} {policy.label} | {string_bits:,.0f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
