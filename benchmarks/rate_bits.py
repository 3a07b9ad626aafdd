"""Where a string's bits go, and how close the rANS payload comes to the model's estimate, on real data.

    .venv/bin/python benchmarks/rate_bits.py [--images 10000] [--codec latent-cifar10] [--budget 16] [--level 2]

Every test image is encoded with spread-top-k ``--budget`` patches at level ``--level``, with the edge's
hint; each string is dissected field by field (semcomm.wire.v2.dissect) and the mean bits per field are
printed, then the rANS payload's real bits against the tables' estimate (-sum log2 p of the symbols).
"""
from __future__ import annotations

import argparse
from collections import defaultdict

from semcomm import create_model
from semcomm.data import load_split
from semcomm.edge.encoder import EdgeEncoder
from semcomm.edge.selection import SpreadTopK
from semcomm.rate import create_codec
from semcomm.rate.entropy import rans_encode
from semcomm.rate.policies import FixedLevel
from semcomm.rate.zoo import load_hint
from semcomm.wire.v2 import dissect, unpack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--codec", default="latent-cifar10")
    parser.add_argument("--budget", type=int, default=16)
    parser.add_argument("--level", type=int, default=2)
    args = parser.parse_args()
    split = load_split("cifar10", "test", limit=args.images)
    edge = create_model("vit-edge-cifar10")
    pair = create_codec(args.codec)
    hint = load_hint("vit-edge-cifar10")
    encoder = EdgeEncoder(edge, SpreadTopK(args.budget), gate=None, codec=pair, policy=FixedLevel(args.level), hint=hint)
    analysis = encoder.analyze(split.images)
    sent = encoder.encode(split.images, analysis=analysis)
    fields = defaultdict(float)
    real, estimate, string_estimate, one_set = 0, 0.0, 0.0, 0
    source = pair.source(split.images, analysis.hidden)
    per_image = pair.symbols(source, sent.level)
    for string, (symbols, indexes, params) in zip(sent.strings, per_image):
        for row in dissect(string, pair.layout, hint, pair.num_classes):
            name = row["field"] if not row["field"].startswith("level") else "level map and counts"
            fields[name] += row["bits"]
        frame = unpack(string, {pair.layout.codec_id: pair.layout}, hint_coder=hint, classes=pair.num_classes)
        real += 8 * len(frame.payload)
        estimate += pair.tables_for(params).estimated_bits(symbols, indexes)
        string_estimate += pair.tables_for(params).string_bits(symbols, indexes)
        if getattr(pair, "switched", False):  # the same symbols with the one pooled set, for comparison
            one_set += 8 * len(rans_encode(pair.tables, symbols, indexes)[1])
    n = len(sent.strings)
    total = float(sent.bits.float().mean())
    print(f"# {args.codec}, spread-top-k {args.budget} at level {args.level}, {n} CIFAR-10 test images, "
          f"{total:.1f} bits per string\n")
    print("| field | mean bits per string | share |")
    print("|---|---:|---:|")
    for name, bits in fields.items():
        print(f"| {name} | {bits / n:.1f} | {100 * bits / n / total:.1f}% |")
    flush = real / n - estimate / n
    print(f"\nrANS payload: {real / n:.1f} real bits per string against an estimate of {estimate / n:.1f} "
          f"(-sum log2 p under the tables each string was coded with): ratio {real / estimate:.4f}, {flush:.1f} bits per string "
          f"above it (the coder's flushed initial state and word rounding); "
          f"over the whole split, {real:,} real bits for {estimate:,.0f} estimated. With the coder's flush and "
          f"mean byte rounding in the estimate (SymbolTables.string_bits: + 31 + 4 bits per string): "
          f"{string_estimate / n:.1f} estimated, ratio {real / string_estimate:.4f}.")
    if one_set:
        real += n * sum(pair.layout.param_widths)
        print(f"\nSwitched tables: {real / n:.1f} bits per string (payload + the {sum(pair.layout.param_widths)} bits naming "
              f"the set) against {one_set / n:.1f} with the one pooled set: {100 * (real - one_set) / one_set:+.1f}% "
              "(the set's bits included).")


if __name__ == "__main__":
    main()
