"""Time per image of the edge codec path against the edge ViT's forward alone.

The codec path is what the edge does besides running its ViT: patch
importance from the recorded attention, selection, the gate, and packing
the byte strings. Target: under 10% of the edge forward.

    .venv/bin/python benchmarks/codec_overhead.py [--images 2048] [--batch 256] [--repeats 5] [--bf16]

The edge runs in fp32, as the EdgeEncoder does by default (``--bf16`` for bf16 autocast).
Percentages are of the plain edge forward (fused attention, no maps). The
edge forward the codec needs records attention maps, which costs more than
the plain one; it is timed both ways: every layer (``mean_layers``,
``rollout``) and the last layer only (``mean``, what the EdgeEncoder asks for
by default).
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
from semcomm.edge.importance import attention_layers, patch_importance
from semcomm.edge.selection import AttentionSum, SpreadTopK, TopK
from semcomm.inference import autocast


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit-edge-cifar10")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for the edge forward")
    args = parser.parse_args()

    model = create_model(args.model)
    images = load_split("cifar10", "test", limit=args.images).images
    batches = images.split(args.batch)
    gate = Gate("min_entropy", 0.0)  # offload every image: packing is timed for all of them
    print(f"# {args.model}, {len(images)} CIFAR-10 test images, batch {args.batch}, {'bf16 autocast' if args.bf16 else 'fp32'}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}")

    @torch.no_grad()
    def forward_plain():
        for b in batches:
            with autocast(args.bf16):
                model(b)

    def forward_recording(layers):
        outputs = []

        @torch.no_grad()
        def run():
            outputs.clear()
            for b in batches:
                with autocast(args.bf16):
                    outputs.append(model.forward_with_attention(b, layers))

        return run, outputs

    forward_plain_s = best_of(forward_plain, args.repeats)
    forward_all, _ = forward_recording(None)
    forward_last, outputs = forward_recording(attention_layers("mean"))
    rows = [("edge forward (fused attention, no maps)", forward_plain_s),
            ("edge forward recording every layer's attention (mean_layers, rollout)", best_of(forward_all, args.repeats)),
            ("edge forward recording the last layer's attention (mean; the codec's default)",
             best_of(forward_last, args.repeats))]
    for rule in (TopK(16), SpreadTopK(16), AttentionSum(0.97)):
        encoder = EdgeEncoder(model, rule, gate)

        def codec_path():
            for b, out in zip(batches, outputs):
                importance = patch_importance(out, "mean")
                mask = rule(importance, model.grid_size, torch.Generator().manual_seed(0))
                encoder.transmit(b, out.logits.float(), mask)  # gate + packing

        rows.append((f"codec path: importance + {rule.label} + gate + packing", best_of(codec_path, args.repeats)))
    print("| stage | ms per image | % of the plain edge forward |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {1e3 * seconds / len(images):.4f} | {100 * seconds / forward_plain_s:.1f}% |")


if __name__ == "__main__":
    main()
