"""``semcomm sweep``: the bitrate-accuracy sweep of the semantic codec and its references (the main job)."""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from semcomm.cli.inputs import (check_budgets, check_classes, check_codec, check_hint, check_levels, dataset_name,
                                image_side, load)
from semcomm.cli.options import (add_compute_args, add_data_args, add_engine_args, add_iaq_args, add_limit_arg,
                                 add_model_arg, add_outputs, add_split_args, check_engine, iaq_levels, iaq_policies,
                                 run_device)
from semcomm.cli.values import (image_codecs, positive_floats, positive_ints, registered, registered_list,
                                saved_backend, shares, thresholds)
from semcomm.edge.codec import CODECS
from semcomm.edge.gating import GATES
from semcomm.edge.importance import IMPORTANCE
from semcomm.edge.selection import SELECTION_RULES, takes_budget
from semcomm.experiments.codecs import codec_pair, latent_codecs, pixel_codecs


def add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="bitrate-accuracy sweep of the semantic codec and its references (the main job)")
    add_split_args(p)
    add_limit_arg(p)
    add_model_arg(p, "--edge", "vit-edge-cifar10", "the edge model (gate, importance, selection, hint)")
    add_model_arg(p, "--server", "vit-server-cifar10", "pixel server (references, image codecs, pixel codec pairs)")
    p.add_argument("--backend", type=saved_backend, help="a saved backend (`semcomm zoo` lists them, or its folder) "
                   "in the pixel server's place: it classifies the references, the image codecs and what a pixel codec "
                   f"pair ({', '.join(pixel_codecs())}) sends")
    add_engine_args(p, "the sweep's tasks (settings x shards of images)", "; with --backend, where the backend's "
                    "devices run instead (ray: one Ray actor per device; the tasks run in this process)")
    p.add_argument("--codec", default="latent-cifar10", type=registered(CODECS),
                   help=f"semantic codec pair: {CODECS.help()} (raw8: 8-bit pixels, format version 1)")
    p.add_argument("--importance", default="mean", type=registered(IMPORTANCE),
                   help=f"patch importance method: {IMPORTANCE.help()}")
    p.add_argument("--budgets", type=positive_ints, help="patches per image, e.g. 8,16,32")
    p.add_argument("--rules", type=registered_list(SELECTION_RULES, "selection rules"),
                   help=f"selection rules: {_rules_help()}")
    p.add_argument("--levels", type=positive_ints, help="fixed quantizer levels of the codec pair, e.g. 1,2")
    add_iaq_args(p)
    p.add_argument("--uniform-bits", type=positive_floats, help="uniform-level payload budgets (IAQ's baseline)")
    p.add_argument("--gate", default="min_entropy", type=registered(GATES),
                   help=f"the gate's uncertainty measure: {GATES.help()}")
    thresholds_group = p.add_mutually_exclusive_group()
    thresholds_group.add_argument("--thresholds", type=thresholds, help="gate thresholds, e.g. 0.4,0.8,1.2 (inf: never offload; default 0,0.2,...,2 min-entropy bits scaled to the gate's maximum for the data's classes, or offload rates where none keeps an image at the edge)")
    thresholds_group.add_argument("--offload-rates", type=shares, help="instead of --thresholds: shares of the images to offload, e.g. 0.2,0.5,0.8, each threshold calibrated on the edge's outputs")
    p.add_argument("--codecs", type=image_codecs, help="reference codecs FORMAT-qQUALITY, FORMAT one of jpeg, webp, avif (whole "
                   "files), vp8, av1 (what a transport carries of the WebP / AVIF file; FORMAT.md), e.g. "
                   "av1-q20,webp-q40 (default: webp q10/40/75, jpeg q50); 'none' for no codecs; 'frontier' for the "
                   "error-free frontier's dense grid (39 settings)")
    p.add_argument("--no-fusion", action="store_true", help="do not send the edge's prediction and fuse it")
    p.add_argument("--no-twins", action="store_true", help="no equal-budget random twins")
    p.add_argument("--all-rows", action="store_true", help="print every point, not only frontiers and references")
    add_outputs(p, "write the results here", "write the accuracy-versus-bits plot here")
    add_compute_args(p)
    add_data_args(p)
    p.set_defaults(run=sweep, check=check_sweep)


def _rules_help() -> str:
    """The selection rules, those with a budget marked as run at every budget."""
    return ", ".join(f"{name} (at every budget)" if takes_budget(name) else name for name in SELECTION_RULES)


def check_sweep(args: argparse.Namespace) -> None:
    """What depends on several options: the engine's address, budgets within the edge's patches, levels within the
    codec pair's, a pair fitted to the data, the edge's hint coder for fusion."""
    check_engine(args)
    if args.backend is not None:
        check_backend_codec(args.backend, args.codec)
    for option, budgets in (("--budgets", args.budgets), ("--iaq-budgets", args.iaq_budgets)):
        check_budgets(option, budgets, args.edge)
    check_levels(args.codec, {"--levels": args.levels, **iaq_levels(args),
                              "--uniform-bits": () if args.uniform_bits else None})
    check_codec(args.codec, args.edge, dataset_name(args), "use --codec raw8")
    if not args.no_fusion:
        check_hint(args.edge)


def check_backend_codec(backend: str, codec: str) -> None:
    """A ValueError unless the saved ``backend`` reads what ``codec``'s server reads: pixels for a pixel codec,
    the pair's latents for a latent pair (a backend built from that pair's server)."""
    from semcomm.experiments.sweep import FULL_IMAGES_CODEC
    from semcomm.server.backends import read_backend_card

    reads = read_backend_card(backend).reads
    if codec in pixel_codecs() and reads == "pixels" or codec in latent_codecs() and reads == "latents":
        return
    pixel = sorted(pixel_codecs(), key=lambda name: name != FULL_IMAGES_CODEC)  # the plain pixel codec first
    if reads == "pixels":
        raise ValueError(f"--backend {backend} reads pixels, but codec {codec}'s server reads its own representation; "
                         f"use --codec {', '.join(pixel[:-1])} or {pixel[-1]}, or a backend that reads its latents")
    raise ValueError(f"--backend {backend} reads a latent pair's latents, but codec {codec}'s server reads "
                     f"{'pixels' if codec in pixel_codecs() else 'its own representation'}; use --codec "
                     f"{' or '.join(latent_codecs())}")


def sweep(args: argparse.Namespace) -> int:
    from semcomm.experiments.engines import engine_line, state_path, task_engine
    from semcomm.experiments.plots import plot_sweep
    from semcomm.experiments.sweep import Sweep, SweepConfig
    from semcomm.rate.policies import UniformBudget

    latent_backend = args.backend is not None and args.codec in latent_codecs()
    config = SweepConfig(edge=args.edge, server=args.server if latent_backend else args.backend or args.server,
                         importance=args.importance, codec=args.codec,
                         gate_kind=args.gate, fusion=not args.no_fusion, twins=not args.no_twins)
    policies = iaq_policies(args) + tuple(UniformBudget(b) for b in args.uniform_bits or ())
    for name, value in (("budgets", args.budgets), ("rules", args.rules), ("thresholds", args.thresholds), ("offload_rates", args.offload_rates),
                        ("levels", args.levels), ("policies", policies or None), ("codecs", args.codecs),
                        ("policy_budgets", args.iaq_budgets)):
        if value is not None:
            config = replace(config, **{name: value})
    split = load(args, args.split, image_side(args.edge), limit=args.limit)
    for model in (args.edge, args.server) if args.backend is None or latent_backend else (args.edge,):
        check_classes(model, split)
    backend = None if args.backend is None else _backend_server(args, split)
    on_ray = args.engine == "ray" and backend is None
    device = run_device(args, "the Ray engine's tasks run on CPU workers" if on_ray else None)
    engine = task_engine(args.engine if backend is None else "local", args.address if backend is None else None)
    # a latent backend stands where the latent pair's server stands; a pixel backend replaces the pixel server
    pair = codec_pair(args.codec, None).with_backend(backend) if latent_backend else None
    try:
        result = Sweep(config, server=None if latent_backend else backend, device=device,
                       codec=pair).run(split, engine, state_path(args.json))
    finally:
        engine.shutdown()
        if backend is not None:
            backend.engine.shutdown()
    if result.engine["missing"]:
        print(f"semcomm sweep: error: incomplete: {result.notes[-1]}", file=sys.stderr)
        return 1
    print(result.table(everything=args.all_rows))
    print(f"\n{result.images} images of {result.dataset} in {result.seconds:.0f} s ({result.machine}; "
          f"{engine_line(result.engine)})")
    if result.comparison:
        print("\nmean bits per image each frontier needs for a top-1 accuracy (edge + 1 point .. server on full images):\n")
        print(result.comparison_table())
    elif result.comparison_note:
        print(f"\n{result.comparison_note}")
    if backend is not None:
        history = backend.engine.history
        print(f"\nbackend {args.backend} on the {backend.engine.name} engine: {len(history)} requests, "
              f"{sum(r.batch for r in history):,} images, critical path {sum(r.latency_s for r in history):.1f} s, "
              f"{sum(r.bytes_exchanged for r in history) / max(1, sum(r.batch for r in history)):,.0f} bytes "
              "between devices per image")
    if args.json:
        result.to_json(args.json)
    if args.plot:
        plot_sweep(result, args.plot)
    return 0


def _backend_server(args: argparse.Namespace, split):
    """The saved backend ``--backend`` on ``--engine``: the sweep's pixel server (of ``--codec`` too), or the latent
    pair's server."""
    from semcomm.server.backends import LocalEngine, RayEngine, load_backend

    backend = load_backend(args.backend)
    backend.check_dataset(len(split.classes), split.name)
    backend.engine = RayEngine(address=args.address) if args.engine == "ray" else LocalEngine()
    return backend
