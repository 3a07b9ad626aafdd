"""A sweep over a data set larger than a memory cap (issue 29): its peak memory against the cap and the pixels.

    .venv/bin/python benchmarks/sweep_memory.py [--images 100000] [--cap-mib 256] [--pair latent-cifar10|tokens]
        [--workdir /tmp/semcomm-sweep-memory] [--threads 2]

Generates ``--images`` pictures of 32 x 32 (the CIFAR-10 models' size; JPEG, smooth random content, 10 classes,
as ``benchmarks/data_scale.py`` does) and a 512-picture warm-up set under ``--workdir``, decodes both into cache
shards (off the count), then in a fresh process: builds the sweep (zoo edge and server, one semantic setting:
spread-top-k 16 at level 3, WebP 40 as the image codec, one gate threshold, fusion; no twins, no full-image
reference), sweeps the warm-up set once (first calls, model activations and allocator pools off the count), and
measures the peak resident memory above that point (Linux VmHWM reset through /proc/self/clear_refs; glibc's mmap
threshold fixed at 128 KiB so that freed batch buffers are returned, see data_scale.py) of loading the big set on
disk and sweeping it. The edge pass is not cached (a fresh cache folder).

``--pair tokens`` sweeps with a hyperlatent pair that codes the edge's tokens (random weights: its accuracy means
nothing, its memory does): a pass over a split on disk holds no tokens (16 times the pixels at 32 px), each task
computes its own shard's.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _machine import cpu_model  # noqa: E402  (benchmarks/ is the script's folder)
from data_scale import Peak, generate, status  # noqa: E402

MIB = 2**20
WARM_IMAGES = 512


def sweep_step(args) -> dict:
    """The measurement, in this process (run by the parent as ``--step``)."""
    import torch

    from semcomm.data import load_split
    from semcomm.experiments.sweep import Sweep, SweepConfig
    from semcomm.rate.image_codecs import ImageCodec

    torch.set_num_threads(args.threads)
    config = SweepConfig(budgets=(16,), levels=(3,), policies=(), codecs=(ImageCodec("webp", 40),),
                         thresholds=(0.8,), twins=False, full_images=False)
    codec = None
    if args.pair == "tokens":
        from semcomm.rate.hyperlatent import HyperLatentPair
        from semcomm.rate.hyperprior import HyperConfig, HyperLatentCodec
        from semcomm.rate.zoo import load_hint

        torch.manual_seed(0)
        codec = HyperLatentPair.from_codec(HyperLatentCodec(HyperConfig(server_architecture="semcomm_vit_edge_p4_32")),
                                           hint_coder=load_hint("vit-edge-cifar10"))
    cache = args.workdir / "cache"
    edge_cache = args.workdir / f"edge-{os.getpid()}"
    sweep = Sweep(config, progress=False, cache_dir=edge_cache, codec=codec, device="cpu")
    out = dict(interpreter=status("VmRSS"))
    sweep.run(load_split(args.workdir / "warm", "train", cache_dir=cache, in_memory=False))  # off the count
    out["warm"] = status("VmRSS")
    peak = Peak()
    started = time.time()
    split = load_split(args.workdir / "data", "train", cache_dir=cache, in_memory=False)
    result = sweep.run(split)
    out.update(growth=peak.growth(), exact=peak.exact, seconds=time.time() - started, images=len(split),
               nbytes=split.images.nbytes, points=len(result.points),
               tokens_bytes=len(split) * sweep.edge.num_patches * sweep.edge.embed_dim * 4
               if sweep.codec.tap is not None else 0)
    shutil.rmtree(edge_cache, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--cap-mib", type=float, default=256)
    parser.add_argument("--pair", choices=("latent-cifar10", "tokens"), default="latent-cifar10")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/semcomm-sweep-memory"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--step", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(sweep_step(args)))
        return
    from semcomm.data import load_split

    made = generate(args.workdir / "data", args.images, 32) + generate(args.workdir / "warm", WARM_IMAGES, 32)
    for name in ("data", "warm"):  # decoded into shards here, off the count
        load_split(args.workdir / name, "train", cache_dir=args.workdir / "cache", in_memory=False)
    command = [sys.executable, __file__, "--step", "--workdir", str(args.workdir), "--pair", args.pair,
               "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True,
                          env=dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(128 * 1024)))
    if done.returncode:
        raise SystemExit(f"the sweep step failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    cap = args.cap_mib * MIB
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu_model()}, {platform.machine()}, "
          f"{args.threads} threads; generated in {made:.0f} s")
    print(f"| pair | images | pixels (MiB) | tokens (MiB) | cap (MiB) | peak growth (MiB) | within cap | seconds |")
    print("|---|---:|---:|---:|---:|---:|---|---:|")
    print(f"| {args.pair} | {out['images']:,} | {out['nbytes'] / MIB:.1f} | {out['tokens_bytes'] / MIB:.1f} | "
          f"{args.cap_mib:.0f} | {out['growth'] / MIB:.1f} | {'yes' if out['growth'] <= cap else 'NO'} | "
          f"{out['seconds']:.0f} |")
    print(json.dumps(dict(out, cap=cap, pair=args.pair)))


if __name__ == "__main__":
    main()
