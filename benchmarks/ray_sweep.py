"""The bitrate-accuracy sweep on Ray against the local engine: the same JSON, wall times, tasks per node.

    .venv/bin/python benchmarks/ray_sweep.py [--limit 2000] [--rounds 1] [--shard-images 1024] [--no-cluster]
        [--out PATH]

Runs ``semcomm sweep``'s default grid (``SweepConfig()``: the latent pair at spread-top-k 16/32/64 L3 and
64 L4, random twins, full images, WebP 10/40/75 and JPEG 50, with fusion) on a fixed subset of ``--limit``
CIFAR-10 test images, with the local engine (this process, torch's threads) and on a local Ray instance
(``--cpus`` CPUs, one task per CPU), back to back and in alternating order (round 1: local then Ray, round 2:
Ray then local, ...), since other work on the machine moves timings; then once on a local two-node cluster
(``ray.cluster_utils.Cluster``, two nodes of ``--cpus``/2 CPUs on this machine) to count the tasks per node.
The models and the edge pass (cached on disk) are loaded before any timing; a Ray run's time counts its
workers' start and the context's transfer, not ``ray.init`` (reported on its own).

Reports, as Markdown with the command, date and machine: whether each Ray result's JSON equals the local one
(all but ``seconds`` and ``engine``; the fields that differ if not), each run's wall time and the Ray / local
ratio, and the tasks each node of the two-node cluster ran.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

from _machine import cpu_model  # noqa: E402  (benchmarks/ is the script's folder)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def comparable(result) -> dict:
    """The result as plain data, less what differs by nature between engines."""
    data = json.loads(json.dumps(asdict(result)))  # NaN -> NaN floats compare unequal: compare the JSON text below
    del data["seconds"], data["engine"]
    return data


def differences(local: dict, other: dict) -> list[str]:
    """Top-level fields (and point indices) whose JSON differs."""
    found = []
    for key in sorted(set(local) | set(other)):
        a, b = local.get(key), other.get(key)
        if json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True):
            continue
        if key == "points" and isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            rows = [i for i, (p, q) in enumerate(zip(a, b)) if json.dumps(p, sort_keys=True) != json.dumps(q, sort_keys=True)]
            found.append(f"points {rows[:10]}{' ...' if len(rows) > 10 else ''}")
        else:
            found.append(key)
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=2000, help="test images (a fixed subset; default 2000)")
    p.add_argument("--rounds", type=int, default=1, help="local/Ray pairs, alternating which runs first")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance (and of the cluster)")
    p.add_argument("--shard-images", type=int, default=1024, help="images per task (SweepConfig.shard_images)")
    p.add_argument("--no-cluster", action="store_true", help="skip the two-node cluster")
    p.add_argument("--out", type=Path, help="also write the Markdown here")
    args = p.parse_args()

    import ray
    import torch

    from semcomm.data import load_split
    from semcomm.experiments.engines import RayTasks
    from semcomm.experiments.sweep import Sweep, SweepConfig

    split = load_split("cifar10", "test", limit=args.limit)
    sweep = Sweep(replace(SweepConfig(), shard_images=args.shard_images), progress=False)
    sweep.edge_analysis(split)  # computed (and cached) before any timing
    tasks = len(sweep.tasks(len(split)))
    runs = []  # (engine, seconds, result)

    def timed(engine):
        started = time.perf_counter()
        result = sweep.run(split, engine)
        runs.append((result.engine["engine"], time.perf_counter() - started, result))
        print(f"{runs[-1][0]}: {runs[-1][1]:.1f} s", file=sys.stderr)

    started = time.perf_counter()
    ray.init(num_cpus=args.cpus, object_store_memory=200 * 2 ** 20, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - started
    try:
        for round_ in range(args.rounds):
            for engine in ((None, RayTasks()) if round_ % 2 == 0 else (RayTasks(), None)):
                timed(engine)
    finally:
        ray.shutdown()
    per_node = None
    if not args.no_cluster:
        from ray.cluster_utils import Cluster

        half = max(1, args.cpus // 2)
        cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=half, object_store_memory=200 * 2 ** 20))
        try:
            cluster.add_node(num_cpus=half, object_store_memory=200 * 2 ** 20)
            timed(RayTasks(address=cluster.address))
            runs[-1] = ("ray, two nodes", *runs[-1][1:])
            per_node = runs[-1][2].engine["tasks_per_node"]
        finally:
            ray.shutdown()
            cluster.shutdown()

    local = [r for r in runs if r[0] == "local"]
    reference = comparable(local[0][2])
    lines = [f"## The sweep on Ray against the local engine ({args.limit:,} CIFAR-10 test images)", "",
             f"    {' '.join([Path(sys.executable).name, *sys.argv])}", "",
             f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}; {cpu_model()}, {torch.get_num_threads()} torch threads "
             f"locally, Ray {ray.__version__} with {args.cpus} CPUs (one task per CPU), torch {torch.__version__}. "
             f"Default sweep grid, {tasks} tasks (shards of {args.shard_images:,} images); local and Ray runs back to "
             "back in alternating order (other work on the machine, e.g. trainings at nice 19, moves the timings). "
             f"`ray.init` took {ray_start:.1f} s (not counted below).", "",
             "| run | engine | wall time (s) | Ray / local of its round | JSON equal to local | tasks per node |",
             "|---:|---|---:|---:|---|---|"]
    ratios = []
    for i, (name, seconds, result) in enumerate(runs, 1):
        diff = differences(reference, comparable(result))
        nodes = ", ".join(str(n) for n in result.engine["tasks_per_node"].values())
        ratio = ""
        if name == "ray":  # its round's local run: the run before it in odd rounds, after it in even ones
            ratios.append(seconds / runs[i - 2 if (i - 1) % 2 else i][1])
            ratio = f"{ratios[-1]:.2f}x"
        lines.append(f"| {i} | {name} | {seconds:.1f} | {ratio} | "
                     f"{'yes' if not diff else 'NO: ' + '; '.join(diff)} | {nodes} |")
    if ratios:
        lines += ["", f"Ray on one instance / local, per round: {', '.join(f'{r:.2f}x' for r in ratios)}."]
    if per_node is not None:
        lines += [f"Two-node cluster: tasks per node {sorted(per_node.values(), reverse=True)} "
                  f"({len(per_node)} nodes ran tasks)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
