"""Is bf16 autocast faster than float32 on this CPU? Times one matrix product and the shipped server's forward.

``semcomm.inference.autocast`` uses bf16 only where ``native_bf16()`` (AVX512-BF16 or
AMX); this script shows why, by timing both precisions regardless of it:

* a 4,160 x 192 by 192 x 576 product (the server's q/k/v projection on 64 images of 65 tokens);
* ``vit-server-cifar10`` on 64 CIFAR-10-sized images, forward only.

    .venv/bin/python benchmarks/bf16_speed.py [--threads 1] [--repeats 10]

Prints a markdown table: median milliseconds per call in float32 and in bf16, and their ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from semcomm.inference import native_bf16
from semcomm.models import create_model


def median_ms(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in ms over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    tokens, weight = torch.randn(64 * 65, 192, generator=gen), torch.randn(576, 192, generator=gen)
    server = create_model("vit-server-cifar10").eval()
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=gen)

    def cast_product(bf16: bool):
        a, w = (tokens.bfloat16(), weight.bfloat16()) if bf16 else (tokens, weight)
        return lambda: torch.nn.functional.linear(a, w)

    def forward(bf16: bool):
        def run():
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                server(images)
        return run

    print(f"torch {torch.__version__}, {args.threads} thread(s), native bf16: {native_bf16()}\n")
    print("| work | float32 ms | bf16 ms | bf16 / float32 |")
    print("|---|---:|---:|---:|")
    for name, make in (("4160x192 @ 192x576 product", cast_product), ("vit-server-cifar10, 64 images", forward)):
        fp32, bf16 = median_ms(make(False), args.repeats), median_ms(make(True), args.repeats)
        print(f"| {name} | {fp32:.2f} | {bf16:.2f} | {bf16 / fp32:.2f}x |")


if __name__ == "__main__":
    main()
