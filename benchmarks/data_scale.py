"""Data sets larger than memory (issue 29): peak memory of loading a generated ImageFolder data set and of a
pass over every image of it against a memory cap smaller than its pixels, and decoding throughput, one process
against the pool (and with ``--ray`` Ray tasks).

    .venv/bin/python benchmarks/data_scale.py [--images 100000] [--side 64] [--cap-mib 64]
        [--edge-images 0] [--throughput-images 4000] [--ray] [--workdir /tmp/semcomm-data-scale] [--keep]

Generates ``--images`` pictures of side x side (JPEG, quality 90, smooth random content, 10 classes) under
``--workdir``. Every measurement runs in a fresh process of its own: its peak resident memory above what it held
before the step (Linux: VmHWM reset through /proc/self/clear_refs; elsewhere ru_maxrss above the RSS at the start,
which can under-count), and the resident memory of the interpreter itself after its imports (torch, semcomm).

* decode: the first ``load_split``: decoding into 64 MiB cache shards over the pool (every core);
* load in memory: the cached split read into one tensor (``in_memory=True``); target: its decoded size at most;
* load on disk: the cached split left in its shards (``in_memory=False``), then every image read in batches of 256;
* pass: ``predict_logits`` of a stand-in model (each image's mean per channel, so that the model holds next to
  nothing) over every image on disk in batches of 256, and over a 1000-image subset; target: within ``--cap-mib``;
* edge pass (``--edge-images N`` > 0): ``semcomm.experiments.edge_pass`` (the sweep's pass: logits and every
  importance method of ``vit-edge-cifar10``) over N generated 32 x 32 pictures on disk, batches of 64, counted
  from after one batch (the model's activations, listed apart); its outputs, held for the sweep, are listed;
* decode throughput: ``--throughput-images`` files decoded by one process and by the pool, images per second
  and per second per core; with ``--ray`` also as Ray tasks (``engine="ray"``) on a local Ray instance of as many
  CPUs as the pool's processes, started before the clock, and its workers too (a first decoding of
  ``2 x CHUNK_IMAGES`` images per CPU: they import the library); both start-ups are listed apart.

glibc's allocator keeps freed buffers in its heap (its dynamic mmap threshold): ``--malloc-fixed`` runs every step
with ``MALLOC_MMAP_THRESHOLD_=131072`` so that the peak counts what is held rather than what glibc kept.
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

import numpy as np

from _machine import cpu_model  # noqa: E402  (benchmarks/ is the script's folder)

MIB = 2**20
CLASSES = 10


def generate(root: Path, n: int, side: int) -> float:
    """``n`` side x side JPEGs in ``root/train/<class>/`` (smooth random pictures); seconds taken (0 if there)."""
    done = root / "train" / ".complete"
    if done.exists() and int(done.read_text()) == n:
        return 0.0
    from PIL import Image

    shutil.rmtree(root, ignore_errors=True)
    started = time.time()
    rng = np.random.default_rng(0)
    for c in range(CLASSES):
        (root / "train" / f"class{c:02d}").mkdir(parents=True)
    for i in range(n):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        picture = Image.fromarray(small).resize((side, side), Image.BICUBIC)
        picture.save(root / "train" / f"class{i % CLASSES:02d}" / f"{i:06d}.jpg", quality=90)
    done.write_text(str(n))
    return time.time() - started


def status(field: str) -> int | None:
    """Bytes of a /proc/self/status field (VmRSS, VmHWM), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class Peak:
    """Peak resident memory above what was resident when made (see the module docstring)."""

    def __init__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.exact = True
        except OSError:
            self.exact = False
        self.base = status("VmRSS") or 0

    def growth(self) -> int:
        if self.exact:
            return status("VmHWM") - self.base
        import resource

        return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self.base)


def step(args) -> dict:
    """One measurement, in this process (run by the parent as ``--step NAME``)."""
    import torch

    from semcomm.data import load_split
    from semcomm.data.decode import CHUNK_IMAGES, decoded_chunks
    from semcomm.data.folders import image_files
    from semcomm.data.parallel import check_workers

    out = dict(interpreter=status("VmRSS"))
    cache = args.workdir / "cache"
    if args.step == "throughput":
        files = image_files(args.workdir / "data" / "train")[: args.throughput_images]
        cores = check_workers(args.workers)
        for workers in (1, cores):
            started = time.time()
            for _ in decoded_chunks(files, None, "throughput", workers):
                pass
            out[f"workers={workers}"] = len(files) / (time.time() - started)
        if args.ray:
            import ray

            started = time.time()
            ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
            out["ray_start_seconds"] = time.time() - started
            started = time.time()  # Ray's workers start (and import the library) on their first tasks
            for _ in decoded_chunks(files[: 2 * cores * CHUNK_IMAGES + 1], None, "warm-up", cores, engine="ray"):
                pass
            out["ray_warmup_seconds"] = time.time() - started
            started = time.time()
            for _ in decoded_chunks(files, None, "throughput", cores, engine="ray"):
                pass
            out[f"ray={cores}"] = len(files) / (time.time() - started)
            ray.shutdown()
        return out
    data = args.workdir / ("edge" if args.step.startswith("edge") else "data")
    peak = Peak()
    started = time.time()
    if args.step in ("decode", "edge-decode"):
        split = load_split(data, "train", cache_dir=cache, in_memory=False, workers=args.workers)
        out.update(shards=len(split.images.store.shards), nbytes=split.images.nbytes)
    elif args.step == "memory":
        split = load_split(data, "train", cache_dir=cache, in_memory=True)
        out.update(nbytes=split.images.numel())
    elif args.step == "disk":
        split = load_split(data, "train", cache_dir=cache, in_memory=False)
        out.update(load_seconds=time.time() - started, nbytes=split.images.nbytes)
        total = 0
        for batch in split.images.batches(256):
            total += int(batch[:, 0, 0, 0].sum())
    elif args.step == "pass":
        from semcomm.inference import predict_logits

        class Mean(torch.nn.Module):  # a stand-in model: each image's mean per channel
            def forward(self, images):
                return images.float().mean((2, 3))

        warm = load_split(data, "train", cache_dir=cache, in_memory=False).subset(300)
        predict_logits(Mean(), warm.images, bf16=False)  # first calls off the count
        peak = Peak()
        started = time.time()
        split = load_split(data, "train", cache_dir=cache, in_memory=False)
        logits = predict_logits(Mean(), split.images, bf16=False)
        predict_logits(Mean(), split.subset(1000).images, bf16=False)
        out.update(nbytes=split.images.nbytes, outputs=logits.numel() * 4)
    elif args.step == "edge":
        from semcomm import create_model
        from semcomm.edge import EdgeEncoder, TopK
        from semcomm.edge.importance import IMPORTANCE
        from semcomm.experiments.edge_pass import edge_analysis

        encoder = EdgeEncoder(create_model("vit-edge-cifar10"), TopK(16), gate=None, batch_size=64)
        split = load_split(data, "train", cache_dir=cache, in_memory=False)
        encoder.analyze(split.images[:64], tuple(IMPORTANCE))
        out.update(one_batch=peak.growth())  # the model's activations for one batch: off the count
        peak = Peak()
        started = time.time()
        analysis = edge_analysis(encoder, split, None, "vit-edge-cifar10", False, cache / "edge", progress=False)
        outputs = analysis.logits.numel() * 4 + sum(v.numel() * 4 for v in analysis.importance.values())
        out.update(nbytes=split.images.nbytes, outputs=outputs, methods=len(analysis.importance))
    out.update(seconds=time.time() - started, growth=peak.growth(), exact=peak.exact)
    return out


def run_step(name: str, args) -> dict:
    command = [sys.executable, __file__, "--step", name, "--workdir", str(args.workdir),
               "--throughput-images", str(args.throughput_images)]
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    if args.ray:
        command.append("--ray")
    env = dict(os.environ, **({"MALLOC_MMAP_THRESHOLD_": "131072"} if args.malloc_fixed else {}))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"step {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mib(value: float) -> str:
    return f"{value / MIB:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100_000, help="pictures of the loading data set")
    parser.add_argument("--side", type=int, default=64, help="their side in pixels")
    parser.add_argument("--cap-mib", type=float, default=64.0, help="memory cap of the pass (MiB)")
    parser.add_argument("--edge-images", type=int, default=0, help="32 x 32 pictures of the edge pass (0: none)")
    parser.add_argument("--malloc-fixed", action="store_true", help="fixed glibc mmap threshold in every step")
    parser.add_argument("--throughput-images", type=int, default=4000)
    parser.add_argument("--workers", type=int, help="decoding processes (default: every core available)")
    parser.add_argument("--ray", action="store_true", help="also decode as Ray tasks in the throughput step")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/semcomm-data-scale"))
    parser.add_argument("--keep", action="store_true", help="keep the generated data and cache")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args)))
        return

    import torch

    command = " ".join([os.path.relpath(sys.executable)] + sys.argv)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    shutil.rmtree(args.workdir / "cache", ignore_errors=True)
    made = generate(args.workdir / "data", args.images, args.side)
    steps = ["decode", "memory", "disk", "pass"] + (["edge-decode", "edge"] if args.edge_images else [])
    steps.append("throughput")
    if args.edge_images:
        made_edge = generate(args.workdir / "edge", args.edge_images, 32)
    rows = {name: run_step(name, args) for name in steps}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    print(f"- command: `{command}`")
    print(f"- date: {started}")
    print(f"- machine: {cpu_model()} ({platform.machine()}), {cores} cores, load average at start {load}; "
          f"Python {platform.python_version()}, torch {torch.__version__}")
    print(f"- data: {args.images} JPEGs of {args.side} x {args.side} ({mib(rows['decode']['nbytes'])} MiB decoded, "
          f"{rows['decode']['shards']} shards of at most 64 MiB), generated in {made:.0f} s")
    exact = all(r.get("exact", True) for r in rows.values())
    how = "VmHWM reset" if exact else "ru_maxrss, may under-count"
    malloc = "MALLOC_MMAP_THRESHOLD_=131072" if args.malloc_fixed else "glibc's default allocator settings"
    print(f"- memory: peak resident above the step's start ({how}, {malloc}); the interpreter itself (torch and "
          f"semcomm imported) holds {mib(rows['memory']['interpreter'])} MiB\n")
    print("| step | images | decoded (MiB) | peak growth (MiB) | target | seconds | images/s |")
    print("|---|---:|---:|---:|---|---:|---:|")
    table = [("decode", "decode into shards (first load_split, pool)", "-"),
             ("memory", "load cached, in memory", "<= decoded"),
             ("disk", "load cached, on disk + read every image", "far below decoded"),
             ("pass", "pass over every image on disk (+ a 1000 subset)", f"<= cap {args.cap_mib:g}")]
    if args.edge_images:
        table.append(("edge", "edge pass (vit-edge-cifar10, 32 px) on disk", "-"))
    for name, label, target in table:
        row = rows[name]
        n = args.edge_images if name == "edge" else args.images
        print(f"| {label} | {n} | {mib(row['nbytes'])} | {mib(row['growth'])} | {target} | {row['seconds']:.1f} | "
              f"{n / row['seconds']:.0f} |")
    p = rows["pass"]
    within = "within" if p["growth"] <= args.cap_mib * MIB else "NOT within"
    print(f"\nPass: {mib(p['growth'])} MiB peak growth, {within} the {args.cap_mib:g} MiB cap, over "
          f"{mib(p['nbytes'])} MiB of pixels (its outputs: {mib(p['outputs'])} MiB).")
    if args.edge_images:
        e = rows["edge"]
        print(f"Edge pass: {args.edge_images} images generated in {made_edge:.0f} s, {mib(e['nbytes'])} MiB of "
              f"pixels; its outputs held for the sweep (logits and {e['methods']} importance maps per image) take "
              f"{mib(e['outputs'])} MiB; one batch of 64 (activations, before the count) took "
              f"{mib(e['one_batch'])} MiB.")
    t = rows["throughput"]
    print("\n| decoding | images/s | images/s per core |")
    print("|---|---:|---:|")
    for key, value in t.items():
        if key.startswith("workers="):
            workers = int(key.split("=")[1])
            print(f"| {workers} process{'es' if workers > 1 else ''} | {value:.0f} | {value / workers:.0f} |")
        elif key.startswith("ray="):
            workers = int(key.split("=")[1])
            print(f"| Ray, {workers} CPUs (local: started in {t['ray_start_seconds']:.1f} s and its workers in "
                  f"{t['ray_warmup_seconds']:.1f} s, not counted) | {value:.0f} | {value / workers:.0f} |")
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
