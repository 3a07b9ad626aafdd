"""Routes to fewer bits for the latent pair's symbols: what richer probability models would save (estimates).

    .venv/bin/python benchmarks/rate_context.py [--train 5000] [--test 2000]

Every patch of every image at each level; the tables are fitted on ``--train`` training images and
evaluated on ``--test`` test images, as ideal code lengths (-sum log2 p, no coder flush): estimates, not
strings. Models compared, per image (64 patches):

* one set: the shipped pair's pooled L x C tables (the baseline);
* switched sets (S = 4, 16): each image coded with its cheapest set, + log2 S bits (what the shipped pair does);
* per-patch classes (4): each patch with its cheapest of 4 sets, + the class's ideal cost;
* left-neighbour context: each symbol's table chosen by min(|left neighbour's symbol, same channel|, 2)
  (a fourth context in the first column); needs symbol-by-symbol decoding, which CompressAI's batch
  decoder does not do in one call.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from semcomm import create_model
from semcomm.data import load_split
from semcomm.rate import create_codec
from semcomm.rate.entropy import SymbolTables
from semcomm.train.fitting import fit_switched_tables


def symbols_of(pair, edge, images) -> np.ndarray:
    """B x L x N x C symbols of every patch at every level."""
    source = pair.source(images, None)
    return np.stack([pair.quantize(source, torch.full(source.shape[:2], m)).numpy()
                     for m in range(1, pair.levels + 1)], 1)


def image_costs(tables: SymbolTables, symbols: np.ndarray, index: np.ndarray) -> np.ndarray:
    """B x L bits of each image's symbols at each level under ``tables`` with table ``index`` per symbol."""
    cost = tables.cost(torch.from_numpy(symbols).long(), torch.from_numpy(np.broadcast_to(index, symbols.shape).copy()))
    return cost.sum((-1, -2)).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--test", type=int, default=2000)
    args = parser.parse_args()
    pair, edge = create_codec("latent-cifar10", hint=False), create_model("vit-edge-cifar10")
    train = symbols_of(pair, edge, load_split("cifar10", "train", limit=args.train).images)
    test = symbols_of(pair, edge, load_split("cifar10", "test", limit=args.test).images)
    _, levels, n, channels = test.shape
    per_set = levels * channels
    index = (np.arange(levels)[:, None] * channels + np.arange(channels))[None, :, None, :]
    rows = {"one set (pooled)": image_costs(SymbolTables.fit(train, np.broadcast_to(index, train.shape), per_set),
                                            test, index)}
    for sets in (4, 16):
        tables = SymbolTables.concat(*fit_switched_tables(train, sets)[0])
        costs = np.stack([image_costs(tables, test, index + s * per_set) for s in range(sets)])  # S x B x L
        rows[f"switched, {sets} sets per image (+{np.log2(sets):.0f} bits)"] = costs.min(0) + np.log2(sets)
    # per-patch classes: treat each patch as an "image" of one patch
    patches = lambda x: x.transpose(0, 2, 1, 3).reshape(-1, levels, 1, channels)
    sets, classes = fit_switched_tables(patches(train), 4)
    tables = SymbolTables.concat(*sets)
    prior = np.bincount(classes, minlength=4) + 1.0
    class_bits = -np.log2(prior / prior.sum())
    costs = np.stack([image_costs(tables, patches(test), index + s * per_set) + class_bits[s] for s in range(4)])
    rows["per-patch classes (4), class coded ideally"] = costs.min(0).reshape(len(test), n, levels).sum(1)
    # left-neighbour context
    side = int(round(n ** 0.5))

    def context(x):
        left = np.zeros_like(x)
        grid = x.reshape(*x.shape[:2], side, side, channels)
        left.reshape(grid.shape)[:, :, :, 1:] = np.minimum(np.abs(grid[:, :, :, :-1]), 2)
        first = np.zeros((side, side), dtype=bool)
        first[:, 0] = True
        left.reshape(grid.shape)[:, :, first] = 3
        return left

    ctx_index = lambda x: context(x) * per_set + index
    tables = SymbolTables.fit(train, ctx_index(train), 4 * per_set)
    cost = tables.cost(torch.from_numpy(test).long(), torch.from_numpy(ctx_index(test)).long())
    rows["left-neighbour context (4 per table)"] = cost.sum((-1, -2)).numpy()
    base = rows["one set (pooled)"].mean(0)
    print(f"# latent-cifar10, every patch at each level; tables fitted on {len(train)} training images, "
          f"{len(test)} test images; ideal bits per image (estimates)\n")
    print("| model | " + " | ".join(f"L{m}" for m in range(1, levels + 1)) + " |")
    print("|---|" + "---:|" * levels)
    for name, bits in rows.items():
        mean = bits.mean(0)
        print(f"| {name} | " + " | ".join(f"{b:,.0f} ({100 * (b / b0 - 1):+.1f}%)" for b, b0 in zip(mean, base)) + " |")


if __name__ == "__main__":
    main()
