"""Ablation of the rate path at two budgets: what each lever is worth, in top-1 and real bits.

    .venv/bin/python benchmarks/rate_ablation.py [--images 10000] [--settings 8:250,16:500] [--gate 0]

Every image is sent (``--gate 0``; ``--gate 0.8`` sends the uncertain ones only). A setting ``K:B`` is
spread-top-k K patches with an IAQ payload budget of B bits per image. The base row is the latent
codec pair with IAQ and fusion; every other row changes one thing, and pairs with the base (or the row it
names) image by image: McNemar's exact test on the images only one of the two gets right.
Bits are the mean length of the strings actually sent (8 x bytes; headers, hint and CRC included).
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

from semcomm import create_model
from semcomm.data import load_split
from semcomm.edge.encoder import EdgeEncoder
from semcomm.edge.gating import Gate
from semcomm.edge.selection import RandomK, SpreadTopK, TopK
from semcomm.experiments.sweep import paired_comparison
from semcomm.rate import create_codec
from semcomm.rate.allocation import greedy_allocation, lagrangian_allocation, quantizer_distortion
from semcomm.rate.hint import fuse
from semcomm.rate.policies import IAQ, FixedLevel, LevelPolicy, UniformBudget
from semcomm.rate.zoo import load_hint
from semcomm.server.decoder import ServerDecoder


class MatchedIAQ(LevelPolicy):
    """IAQ with each image's budget set to the payload a uniform allocation spends on it: equal bits, image by image."""

    needs_rates = True

    def __init__(self, uniform: UniformBudget, solver: str = "lagrangian"):
        self.uniform, self.solver = uniform, solver

    def __call__(self, mask, importance, rates, distortion=None):
        level = self.uniform(mask, importance, rates)
        budget = rates.gather(-1, level[..., None])[..., 0].sum(1)
        solve = lagrangian_allocation if self.solver == "lagrangian" else greedy_allocation
        if distortion is None:
            distortion = quantizer_distortion(rates.shape[-1] - 1)
        iaq = solve(importance.double() * mask, rates, distortion, budget)
        return torch.where(iaq.amax(1, keepdim=True) > 0, iaq, level)

    @property
    def label(self) -> str:
        return f"iaq at {self.uniform.label}'s bits"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--settings", default="8:250,16:500", help="K:B pairs (patches, IAQ payload bits)")
    parser.add_argument("--gate", type=float, default=0.0, help="min-entropy gate threshold (0: every image)")
    parser.add_argument("--dct-server", default="vit-server-dct-cifar10")
    args = parser.parse_args()
    started = time.time()
    split = load_split("cifar10", "test", limit=args.images)
    labels = split.labels
    edge = create_model("vit-edge-cifar10")
    hint = load_hint("vit-edge-cifar10")
    latent = create_codec("latent-cifar10")
    pairs = {
        "latent": latent,
        "latent, entropy coding off": create_codec("latent-cifar10", entropy_coding=False),
        "dct, original server": create_codec("dct-cifar10"),
        "dct, fine-tuned server": create_codec("dct-cifar10", server=args.dct_server),
        "dct, entropy coding off": create_codec("dct-cifar10", entropy_coding=False),
        "raw pixels (pixel-iaq), original server": create_codec("pixel-iaq"),
    }
    analysis = EdgeEncoder(edge, TopK(1), gate=None, codec=latent).analyze(split.images, ("mean",), desc="edge")
    importance = analysis.importance["mean"]
    gate = Gate("min_entropy", args.gate)
    offloaded = gate.offload(analysis.logits)
    edge_correct = analysis.logits.argmax(-1) == labels
    edge_log_probs = hint.log_probs(hint.symbols(analysis.logits))
    print(f"# {len(split)} CIFAR-10 test images, gate {gate.label} ({100 * float(offloaded.float().mean()):.1f}% sent), "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {platform.machine()}")

    def run(pair_name, rule, policy, fusion=True):
        pair = pairs[pair_name]
        pair.hint_coder = hint
        encoder = EdgeEncoder(edge, rule, gate=None, codec=pair, policy=policy, hint=hint if fusion else None)
        mask = rule(importance, edge.grid_size, torch.Generator().manual_seed(0))
        sent = encoder.transmit(split.images, analysis.logits, mask, importance, analysis.hidden)
        logits = ServerDecoder(codec=pair).classify(sent.strings, fuse=False)
        if fusion:
            logits = fuse(logits, edge_log_probs, hint.weight)
        correct = torch.where(offloaded, logits.argmax(-1) == labels, edge_correct)
        bits = torch.where(offloaded, sent.bits.float(), torch.zeros(len(labels)))
        return correct, bits

    print("| setting | row | top-1 | bits/image | vs | only this / only that (McNemar p) |")
    print("|---|---|---:|---:|---|---|")
    for setting in args.settings.split(","):
        k, budget = (float(v) for v in setting.split(":"))
        k = int(k)
        rule = SpreadTopK(k)
        rows = {}
        rows["base: latent, spread-top-k, IAQ, fusion"] = run("latent", rule, IAQ(budget)), None
        base = "base: latent, spread-top-k, IAQ, fusion"
        rows["selection: top-k"] = run("latent", TopK(k), IAQ(budget)), base
        rows["selection: random"] = run("latent", RandomK(k), IAQ(budget)), base
        rows["levels: IAQ greedy solver"] = run("latent", rule, IAQ(budget, solver="greedy")), base
        uniform = "levels: uniform (highest common level within B)"
        rows[uniform] = run("latent", rule, UniformBudget(budget)), None
        rows["levels: IAQ at the uniform allocation's bits, image by image"] = (
            run("latent", rule, MatchedIAQ(UniformBudget(budget))), uniform)
        rows["entropy coding off (fixed-length symbols)"] = run("latent, entropy coding off", rule, IAQ(budget)), base
        rows["fusion off"] = run("latent", rule, IAQ(budget), fusion=False), base
        dct_policy = FixedLevel(3)
        rows["transform: fixed DCT (L3), fine-tuned server"] = run("dct, fine-tuned server", rule, dct_policy), base
        rows["server: DCT (L3) with the original server"] = (run("dct, original server", rule, dct_policy),
                                                             "transform: fixed DCT (L3), fine-tuned server")
        rows["DCT (L3), entropy coding off, original server"] = (run("dct, entropy coding off", rule, dct_policy),
                                                                 "server: DCT (L3) with the original server")
        rows["raw pixels, 1 bit each (pixel-iaq L1; about the DCT's bits), original server"] = (
            run("raw pixels (pixel-iaq), original server", rule, FixedLevel(1)), "server: DCT (L3) with the original server")
        for name, ((correct, bits), versus) in rows.items():
            compare = ""
            if versus is not None:
                other = rows[versus][0][0]
                p = paired_comparison(correct, other)
                compare = f"{p['only_rule']} / {p['only_random']} (p={p['p_value']:.2g})"
            print(f"| K={k}, B={budget:g} | {name} | {100 * float(correct.float().mean()):.2f}% | "
                  f"{float(bits.mean()):,.0f} | {versus or ''} | {compare} |")
    print(f"\n{len(split)} images in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
