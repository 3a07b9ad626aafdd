"""Backends for CIFAR-10 on N = 2 and N = 5 devices: build (resumably), measure, save into the user zoo.

For each kind (class-partitioned ED-ViT, DeViT, expert routing) and each N, runs
``semcomm.train.backends.recipes.run_recipe`` on the recipe ``cifar10_recipe(kind, N)``:
built from the shipped ``vit-server-cifar10`` / ``vit-edge-cifar10`` on the
CIFAR-10 train split (every phase kept under ``~/.cache/semcomm/runs/backend-<name>/``,
so running the script again resumes), measured on the test split, and saved as
``<kind>-cifar10-n<N>`` in the user zoo (``$SEMCOMM_ZOO`` or ``~/.cache/semcomm/zoo``).
Prints one table of accuracy, parameters and MACs per device and in-process
critical-path latency against the server, one of accuracy on the codec's partial
inputs (the patches spread-top-k picks by the edge's attention) against the server
on the same patches, and for expert routing one of accuracy at equal offload rates
with the share of offloaded images each expert served (and both answers
fused with the edge's own prediction, as the codec's pairs fuse). All results also go
to ``--json``.

    .venv/bin/python benchmarks/backends_cifar10.py [--kinds devit,experts,partitioned] [--devices 2,5]
        [--scale 1.0] [--train-limit N] [--test-limit N] [--threads 1] [--json PATH] [--no-save] [--ray]
        [--tables-only | --retime | --evaluate]

Full scale takes hours on two cores (DeViT: 5 distillation epochs per student);
``--scale 0.002 --train-limit 2000 --test-limit 300`` checks the whole path in minutes.
``--retime`` builds and evaluates nothing: it times the saved backends of the
recipes already measured again (in process, and with ``--ray`` on a local Ray
instance), for latencies taken on an idle machine. ``--evaluate`` builds nothing
either: it measures the saved backends (the user zoo, else the shipped checkpoints)
in full, as a build is measured, e.g. to check the shipped numbers on your machine.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from semcomm.core.paths import default_cache_dir
from semcomm.train.backends.recipes import CIFAR10_RECIPES, cifar10_recipe, evaluate_recipe, retime_recipe, run_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", default=",".join(CIFAR10_RECIPES.names()))
    parser.add_argument("--devices", default="2,5", help="comma-separated N")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every training step count")
    parser.add_argument("--train-limit", type=int, help="a fixed subset of the train split")
    parser.add_argument("--test-limit", type=int, help="a fixed subset of the test split")
    parser.add_argument("--latency-requests", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch threads while measuring latency")
    parser.add_argument("--runs", type=Path, help="parent of the run directories (default ~/.cache/semcomm/runs)")
    parser.add_argument("--zoo", type=Path, help="save into <zoo>/backends/<name> instead of the user zoo")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--ray", action="store_true", help="also measure latency on Ray (a local instance)")
    parser.add_argument("--json", type=Path)
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--tables-only", action="store_true",
                        help="build nothing: print the tables of the recipes already measured (their results.json)")
    only.add_argument("--retime", action="store_true",
                        help="build nothing: time the saved backends of the recipes already measured again (e.g. "
                             "on an idle machine; with --ray also on Ray), update their results.json and cards")
    only.add_argument("--evaluate", action="store_true",
                        help="build nothing: measure the saved backends (the user zoo, else the shipped ones) in full "
                             "and write their results.json (their cards are left as they are)")
    args = parser.parse_args()

    kinds = [k for k in args.kinds.split(",") if k]
    counts = [int(n) for n in args.devices.split(",") if n]
    rows = []
    for kind in kinds:
        for n in counts:
            trial = args.scale != 1.0 or args.train_limit is not None  # not the shipped recipe: another name
            name = f"{kind}-cifar10-n{n}" + (f"-trial-s{args.scale:g}-t{args.train_limit or 'all'}" if trial else "")
            recipe = cifar10_recipe(kind, n, args.scale, name=name, train_limit=args.train_limit,
                                    test_limit=args.test_limit)
            run_dir = (args.runs or default_cache_dir() / "runs") / f"backend-{recipe.name}"
            if args.tables_only:
                if (run_dir / "results.json").exists():
                    rows.append(json.loads((run_dir / "results.json").read_text()))
                continue
            if args.retime:
                if (run_dir / "results.json").exists():
                    print(f"# timing {recipe.name}", flush=True)
                    rows.append(retime_recipe(recipe, run_dir, save=not args.no_save, zoo_dir=args.zoo,
                                              latency_requests=args.latency_requests, threads=args.threads,
                                              ray=args.ray))
                continue
            print(f"# {recipe.name}", flush=True)
            if args.evaluate:
                rows.append(evaluate_recipe(recipe, run_dir, latency_requests=args.latency_requests,
                                            threads=args.threads, ray=args.ray))
            else:
                rows.append(run_recipe(recipe, run_dir, save=not args.no_save, zoo_dir=args.zoo,
                                       latency_requests=args.latency_requests, threads=args.threads,
                                       ray=args.ray))
            if args.json:
                args.json.write_text(json.dumps(rows, indent=2, default=str))
    print_tables(rows, args.threads)


def print_tables(rows: list[dict], threads: int) -> None:
    """The markdown tables of the module docstring, one row per measured recipe."""
    print(f"\ntorch threads while timing: {threads}; latency is the in-process critical path "
          "(devices in parallel, slowest device + fusion), median over requests of whole test images\n")
    print("| backend | N | top-1 | server top-1 | change | largest device params (server / it) | "
          "largest device MMACs (server's) | host params | batch 1 ms (server ms) | speed-up | batch 64 speed-up | "
          "bytes / image |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        one, many = r["latency"]["batch1"], r["latency"]["batch64"]
        largest = max(r["parameters_per_device"].values())
        print(f"| {r['name']} | {r['num_devices']} | {100 * r['top1']:.2f}% | {100 * r['server_top1']:.2f}% | "
              f"{100 * (r['top1'] - r['server_top1']):+.2f} | {largest:,} ({r['server_parameters'] / largest:.1f}x) | "
              f"{max(r['macs_per_device'].values()) / 1e6:.1f} ({r['server_macs'] / 1e6:.1f}) | "
              f"{r['host_parameters']:,} | {one['backend']['critical_path_ms']:.2f} "
              f"({one['server']['critical_path_ms']:.2f}) | {one['speedup']:.2f}x | {many['speedup']:.2f}x | "
              f"{r['bytes_per_image']:,.0f} |")
    print("\n| backend | patches of 64 | top-1 | server top-1 on the same patches | change | "
          "largest device MMACs (server's) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        for p in r["partial_inputs"]:
            print(f"| {r['name']} | {p['patches']} | {100 * p['top1']:.2f}% | {100 * p['server_top1']:.2f}% | "
                  f"{100 * (p['top1'] - p['server_top1']):+.2f} | {max(p['macs_per_device'].values()) / 1e6:.1f} "
                  f"({p['server_macs'] / 1e6:.1f}) |")
    timed_on_ray = [r for r in rows if "latency_ray" in r]
    if timed_on_ray:
        print("\n| backend | engine | batch 1 ms (server ms) | speed-up | batch 64 ms (server ms) | speed-up |")
        print("|---|---|---:|---:|---:|---:|")
        for r in timed_on_ray:
            for engine, key in (("in-process", "latency"), ("Ray", "latency_ray")):
                one, many = r[key]["batch1"], r[key]["batch64"]
                print(f"| {r['name']} | {engine} | {one['backend']['critical_path_ms']:.2f} "
                      f"({one['server']['critical_path_ms']:.2f}) | {one['speedup']:.2f}x | "
                      f"{many['backend']['critical_path_ms']:.1f} ({many['server']['critical_path_ms']:.1f}) | "
                      f"{many['speedup']:.2f}x |")
    routed = [r for r in rows if "offload" in r]
    if routed:
        fused = all("fused_top1" in o for r in routed for o in r["offload"])
        extra = " edge + server, fused | edge + experts, fused |" if fused else ""
        print(f"\n| backend | offload | edge alone | edge + server | edge + experts |{extra} share served per expert |")
        print("|---|---:|---:|---:|---:|" + ("---:|---:|" if fused else "") + "---|")
        for r in routed:
            for o in r["offload"]:
                shares = ", ".join(f"{100 * v:.0f}%" for v in (o["share_served"] or {}).values())
                cells = (f" {100 * o['server_fused_top1']:.2f}% | {100 * o['fused_top1']:.2f}% |" if fused else "")
                print(f"| {r['name']} | {100 * o['offload_rate']:.1f}% | {100 * o['edge_top1']:.2f}% | "
                      f"{100 * o['server_top1']:.2f}% | {100 * o['top1']:.2f}% |{cells} {shares} |")


if __name__ == "__main__":
    main()
