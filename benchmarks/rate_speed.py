"""Speed of the rate path: the edge's codec path against the edge forward, the server's parsing and
decoding against the server forward, per image.

    .venv/bin/python benchmarks/rate_speed.py [--images 2048] [--batch 256] [--repeats 3] [--codec latent-cifar10]

Edge codec path (what the edge does besides its ViT forward, every image offloaded): patch importance from
the recorded attention, selection, the level policy (with the codec's per-patch rate estimates for budget
policies), the codec's source transform (latent: the bottleneck on the edge's tokens; DCT: YCbCr + DCT),
quantization, the edge hint, rANS coding and framing (CRC included). Target: under 25% of the edge forward
(fp32, as the EdgeEncoder runs it).

Server: parsing, CRC, rANS decoding and dequantization of every string, against the server forward that
classifies the decoded patches (bf16 autocast, as the ServerDecoder runs it). Target: under 25%.
"""
from __future__ import annotations

import argparse
import platform

import torch
from codec_overhead import best_of  # benchmarks/ is on the path when a script here runs

from semcomm import create_model
from semcomm.data import load_split
from semcomm.edge.encoder import EdgeEncoder
from semcomm.edge.gating import Gate
from semcomm.edge.importance import attention_layers, patch_importance
from semcomm.edge.selection import SpreadTopK
from semcomm.rate import create_codec
from semcomm.rate.policies import IAQ, FixedLevel
from semcomm.rate.zoo import load_hint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edge", default="vit-edge-cifar10")
    parser.add_argument("--codec", default="latent-cifar10")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=int, default=16, help="patches per image (spread-top-k)")
    args = parser.parse_args()

    edge = create_model(args.edge)
    pair = create_codec(args.codec)
    hint = load_hint(args.edge)
    images = load_split("cifar10", "test", limit=args.images).images
    batches = images.split(args.batch)
    tap = () if pair.tap is None else (pair.tap,)
    layers = attention_layers("mean")
    print(f"# {args.codec}, edge {args.edge}, {len(images)} CIFAR-10 test images, batch {args.batch}, "
          f"spread-top-k {args.budget}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}")

    @torch.no_grad()
    def edge_plain():
        for b in batches:
            edge(b)

    outputs = []

    @torch.no_grad()
    def edge_recording():
        outputs.clear()
        for b in batches:
            outputs.append(edge.forward_with_attention(b, layers, hidden=tap))

    plain = best_of(edge_plain, args.repeats)
    recording = best_of(edge_recording, args.repeats)
    rows = [("edge forward (fp32, fused attention, no maps)", plain, plain),
            ("edge forward recording last-layer attention and the codec's tokens", recording, plain)]
    rule = SpreadTopK(args.budget)
    strings = []
    for policy in (FixedLevel(2), IAQ(400)):
        encoder = EdgeEncoder(edge, rule, Gate("min_entropy", 0.0), codec=pair, policy=policy, hint=hint)

        @torch.no_grad()
        def codec_path():
            strings.clear()
            for b, out in zip(batches, outputs):
                importance = patch_importance(out, "mean")
                mask = rule(importance, edge.grid_size, torch.Generator().manual_seed(0))
                hidden = out.hidden[tap[0]] if tap else None
                strings.extend(encoder.transmit(b, out.logits, mask, importance=importance, hidden=hidden).strings)

        rows.append((f"edge codec path: importance + {rule.label} + {policy.label} + source + rANS + framing + hint",
                     best_of(codec_path, args.repeats), plain))
    bits = sum(8 * len(s) for s in strings) / len(strings)

    received = []

    def server_parse():
        received.clear()
        received.extend(pair.decompress(strings))

    parse = best_of(server_parse, args.repeats)
    pair.bf16 = True
    forward = best_of(lambda: pair.classify(received, args.batch), args.repeats)
    patches = sum(len(r.positions) for r in received) / len(received)
    rows += [(f"server forward on the received patches ({patches:.1f} per image, bf16, fusion)", forward, forward),
             (f"server parsing + CRC + rANS decoding + dequantization ({bits:.0f} bits per string, IAQ 400)",
              parse, forward)]
    print("| stage | ms per image | % of the reference forward |")
    print("|---|---:|---:|")
    for name, seconds, reference in rows:
        print(f"| {name} | {1e3 * seconds / len(images):.4f} | {100 * seconds / reference:.1f}% |")


if __name__ == "__main__":
    main()
