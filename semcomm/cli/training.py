"""``semcomm train``, ``semcomm export`` and ``semcomm fit``: training runs, their export into the zoo, and the
statistics a codec pair ships with."""
from __future__ import annotations

import argparse
import json
import re
from dataclasses import replace
from pathlib import Path

from semcomm.cli.inputs import check_classes, geometry_of, image_side, load, run_dir
from semcomm.cli.options import add_compute_args, add_data_args, add_export_args, add_model_arg, run_device
from semcomm.cli.values import checkpoint, checkpoint_or_weights, image_geometry, output_folder, positive_int
from semcomm.data import load_split, locate
from semcomm.models.architectures import SIZES
from semcomm.train.backends.recipes import CIFAR10_RECIPES
from semcomm.train.e2e import E2E_PRESETS
from semcomm.train.jscc import JSCC_PRESETS
from semcomm.train.latent import LATENT_PRESETS
from semcomm.train.presets import PRESET_DATASETS, PRESETS, parse_run_name, recipe
from semcomm.zoo import USER_ZOO


_END_TO_END = {**E2E_PRESETS, **JSCC_PRESETS}  # codec pairs trained end to end, resumable with snapshots


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train (or resume) a zoo model from a preset, or a ViT on any ImageFolder data")
    p.add_argument("preset", nargs="?", help=f"a preset ({', '.join(_preset_names())}) or "
                   "vit-<edge|server>-<dataset>[-<image>p<patch>], or a backend: "
                   f"{'|'.join(CIFAR10_RECIPES)}-cifar10-n<devices>[-plateau] (-plateau: trained to the plateau on "
                   "held-out training images), or its monolithic baseline: "
                   "baseline-of-<backend>[-total][-plateau] (one ViT in the memory of its largest device, or of all); without "
                   "it, --data, --size and --geometry name the run")
    p.add_argument("--size", choices=SIZES, help="the project's edge or server ViT")
    p.add_argument("--geometry", type=image_geometry, help="IMAGE/PATCH sides in pixels, e.g. 64/8 (default: the preset's)")
    p.add_argument("--batch-size", type=positive_int, help="override the batch size")
    p.add_argument("--epochs", type=positive_int, help="override the schedule length")
    p.add_argument("--run-dir", type=output_folder, help="training state directory (default: "
                   "$SEMCOMM_CACHE/runs/PRESET, else ~/.cache/semcomm/runs/PRESET)")
    p.add_argument("--init-from", type=checkpoint_or_weights, help="warm restart from a zoo checkpoint (continuing "
                   "its schedule at the epoch its card records) or a safetensors file (from epoch 0)")
    p.add_argument("--grow-from", metavar="NAME", type=checkpoint, help="start a deeper ViT from a trained shallower "
                   "zoo model of the same width, its blocks stacked (progressive stacking; a new run's start only)")
    p.add_argument("--stop-after", type=positive_int, help="train at most N epochs in this call; run again to continue")
    p.add_argument("--snapshot", type=output_folder, help=f"({', '.join([*E2E_PRESETS, *JSCC_PRESETS][:3])}, ...) write "
                   "the weights and history "
                   "here after every epoch and start from them when the run directory holds no state (the "
                   "repository keeps them in snapshots/NAME)")
    add_compute_args(p)
    p.add_argument("--export", action="store_true", help="export to the zoo when done")
    add_export_args(p)
    add_data_args(p, dataset=False)
    p.set_defaults(run=train)


def add_export(sub) -> None:
    p = sub.add_parser("export", help="write a run's weights and model card into the zoo")
    p.add_argument("preset", help="the run's name, as `semcomm train` printed it")
    p.add_argument("--run-dir", type=Path, help="the run's state directory (default: $SEMCOMM_CACHE/runs/PRESET, else "
                   "~/.cache/semcomm/runs/PRESET; a JSCC run's snapshot folder also serves)")
    add_export_args(p)
    add_compute_args(p, devices=False)
    add_data_args(p, dataset=False)
    p.set_defaults(run=export)


def add_fit(sub) -> None:
    p = sub.add_parser("fit", help="fit the training-split statistics a codec pair ships with")
    p.add_argument("what", choices=["hint", "dct"], help="hint: the edge's prediction code; dct: the DCT pair's tables")
    add_model_arg(p, "--edge", "vit-edge-cifar10", "the edge model (hint: filed under its name, a card's under the "
                  "card's name)")
    add_model_arg(p, "--server", "vit-server-cifar10", "(dct) the pair's default pixel server")
    p.add_argument("--images", type=positive_int, default=10_000, help="training images to fit on (a fixed subset)")
    p.add_argument("--to", type=output_folder, help="(hint) write it into this folder (default: codecs/ in the first "
                   f"user zoo directory: {USER_ZOO})")
    add_compute_args(p, devices=False)
    add_data_args(p)
    p.set_defaults(run=fit, check=check_fit)


def train(args: argparse.Namespace) -> int:
    from semcomm.train.latent import train_latent
    from semcomm.train.vit import train as train_vit

    kinds = "|".join(re.escape(kind) for kind in CIFAR10_RECIPES)
    backend = re.fullmatch(rf"(baseline-of-)?({kinds})-cifar10-n(\d+)(-total)?(-plateau)?", args.preset or "")
    if backend and (backend[1] or not backend[4]):
        return _train_backend(args, backend[2], int(backend[3]), baseline=bool(backend[1]), total=bool(backend[4]),
                              plateau=bool(backend[5]))
    if args.snapshot and args.preset not in _END_TO_END:
        raise ValueError(f"--snapshot is for the end-to-end codec runs ({', '.join(_END_TO_END)})")
    if args.preset in _END_TO_END:
        return _train_e2e(args)
    if args.preset in LATENT_PRESETS:
        if args.data or args.size or args.geometry or args.batch_size or args.grow_from:
            raise ValueError(f"{args.preset} trains the CIFAR-10 codec pair as configured; --data, --size, --geometry, "
                             "--batch-size and --grow-from are for ViT runs")
        config = LATENT_PRESETS[args.preset]
        if args.epochs:
            config = replace(config, epochs=args.epochs)
        train_split = load_split("cifar10", "train", args.data_root)
        test_split = load_split("cifar10", "test", args.data_root)
        run_device(args)
        init_from = args.init_from
        if init_from is not None and not Path(init_from).is_file():
            raise ValueError(f"--init-from for a latent codec takes a safetensors file of codec weights (a run's or a "
                             f"shipped pair's), got {init_from}")
        train_latent(config, train_split, test_split, run_dir(args), stop_after=args.stop_after, init_from=init_from,
                     device=args.device)
        return export(args) if args.export else 0
    name, config, dataset, side = _training_run(args)
    args.preset = name  # the run's name: its state directory and its zoo name
    train_split = load_split(dataset, "train", args.data_root, image_size=side)
    test_split = load(args, None, side, data=dataset)
    config = replace(config, num_classes=len(train_split.classes))
    for option, value in (("epochs", args.epochs), ("batch_size", args.batch_size), ("grown_from", args.grow_from)):
        if value:
            config = replace(config, **{option: value})
    print(f"run {name}: {config.architecture}, {len(train_split.classes)} classes, {len(train_split)} training images "
          f"of {train_split.name} at {side} x {side}, scored on {test_split.name}; state in {run_dir(args)}", flush=True)
    init_from, start_epoch, earlier_history = args.init_from, 0, None
    if init_from is not None and Path(init_from).suffix != ".safetensors":  # a checkpoint: its weights and epoch
        from semcomm.models import model_card

        from semcomm.zoo import verify_sha256

        card = model_card(init_from)
        verify_sha256(card.weights_path, card.sha256)  # the weights the card was written for, unaltered
        init_from, start_epoch, earlier_history = card.weights_path, card.epochs, card.history
    run_device(args)
    train_vit(config, train_split, test_split, run_dir(args), init_from=init_from, start_epoch=start_epoch,
              earlier_history=earlier_history, stop_after=args.stop_after, device=args.device)
    if args.export:
        return export(args)
    return 0


def _train_e2e(args: argparse.Namespace) -> int:
    """Train (or resume) a codec pair trained end to end (:mod:`semcomm.train.e2e`, :mod:`semcomm.train.jscc`),
    optionally export it."""
    from semcomm.train.e2e import train_e2e
    from semcomm.train.jscc import train_jscc

    ignored = [f"--{o.replace('_', '-')}" for o in ("data", "size", "geometry", "batch_size", "init_from", "grow_from")
               if getattr(args, o, None)]
    if ignored:
        raise ValueError(f"{args.preset} trains the CIFAR-10 codec pair as configured; {', '.join(ignored)} "
                         f"{'does' if len(ignored) == 1 else 'do'} not apply")
    config = _END_TO_END[args.preset]
    if args.epochs:
        config = replace(config, epochs=args.epochs)
    print(f"run {args.preset}: state in {run_dir(args)}", flush=True)
    trainer = train_e2e if args.preset in E2E_PRESETS else train_jscc
    run_device(args)
    trainer(config, load_split("cifar10", "train", args.data_root), load_split("cifar10", "test", args.data_root),
            run_dir(args), stop_after=args.stop_after, snapshot=args.snapshot, device=args.device)
    return export(args) if args.export else 0


def _train_backend(args: argparse.Namespace, kind: str, devices: int, baseline: bool = False,
                   total: bool = False, plateau: bool = False) -> int:
    """Build (or resume), measure and save a backend recipe (:mod:`semcomm.train.backends.recipes`; ``plateau``:
    its variant trained to the plateau), or with ``baseline`` its monolithic baseline (``total``: in all its
    devices' memory), into the user zoo or --to."""
    from semcomm.train.backends.recipes import baseline_recipe, cifar10_recipe, run_recipe

    ignored = [f"--{o.replace('_', '-')}" for o in ("data", "size", "geometry", "batch_size", "epochs", "init_from",
                                                     "grow_from", "stop_after", "device") if getattr(args, o, None)]
    if ignored:
        raise ValueError("a backend recipe is built as configured in semcomm.train.backends.recipes; "
                         f"{', '.join(ignored)} do not apply")
    recipe = (baseline_recipe(kind, devices, total, plateau=plateau) if baseline
              else cifar10_recipe(kind, devices, plateau=plateau))
    results = run_recipe(recipe, run_dir=args.run_dir, zoo_dir=args.to)
    print(json.dumps({k: results[k] for k in ("name", "top1", "server_top1", "parameters_per_device", "saved")
                      if k in results}, indent=1))
    return 0


def _training_run(args: argparse.Namespace):
    """(run name, config, data set (name or path), image side) that `semcomm train`'s arguments ask for."""
    data_name = locate(args.data).name if args.data else None
    if args.preset is None:
        if not (args.data and args.size and args.geometry):
            raise ValueError("give a preset (e.g. vit-edge-cifar10), or --data PATH with --size edge|server and "
                             "--geometry IMAGE/PATCH")
        size, dataset, geometry, base = args.size, data_name, args.geometry, None
    elif args.preset in PRESETS:
        size, dataset, base = parse_run_name(args.preset)[0], PRESET_DATASETS[args.preset], args.preset
        geometry = args.geometry or geometry_of(PRESETS[args.preset].architecture)
    else:
        parsed = parse_run_name(args.preset)
        if parsed is None:
            raise KeyError(f"unknown preset {args.preset!r}; choose from {', '.join(_preset_names())}, or "
                           "vit-<edge|server>-<dataset> with --geometry IMAGE/PATCH, or --data PATH --size "
                           "edge|server --geometry IMAGE/PATCH")
        size, dataset, geometry = parsed
        if geometry and args.geometry and geometry != args.geometry:
            raise ValueError(f"{args.preset} names geometry {geometry[0]}/{geometry[1]} but --geometry is "
                             f"{args.geometry[0]}/{args.geometry[1]}")
        geometry, base = geometry or args.geometry, None
        if geometry is None:
            raise ValueError(f"no preset trains {args.preset}: give its geometry, e.g. --geometry 64/8")
    if args.size and args.size != size:
        raise ValueError(f"{args.preset} trains the {size} ViT but --size is {args.size}")
    if data_name and data_name != dataset:
        raise ValueError(f"{args.preset} trains on {dataset} but --data {args.data} is {data_name}; name the run "
                         "after the data with --data PATH --size edge|server --geometry IMAGE/PATCH")
    name, config = recipe(size, dataset, geometry, base)
    return name, config, args.data or dataset, geometry[0]


def _preset_names() -> list[str]:
    """The training presets: ViTs, then codec pairs."""
    return [*PRESETS, *LATENT_PRESETS, *_END_TO_END]


def export(args: argparse.Namespace) -> int:
    from semcomm.train.vit import TrainConfig
    from semcomm.train.vit import export as export_vit

    if args.preset in JSCC_PRESETS:
        from semcomm.train.jscc import export_jscc

        card = export_jscc(args.preset, run_dir(args), load_split("cifar10", "test", args.data_root),
                           None if args.to is None else Path(args.to) / "codecs")
        print(json.dumps(dict(name=card.name, sha256=card.sha256, measured=card.measured), indent=2))
        return 0
    if args.preset in E2E_PRESETS:
        from semcomm.train.e2e_eval import export_e2e

        train_split = load_split("cifar10", "train", args.data_root).subset(10_000)
        test_split = load_split("cifar10", "test", args.data_root)
        card = export_e2e(args.preset, run_dir(args), train_split, test_split,
                          None if args.to is None else Path(args.to) / "codecs")
        print(json.dumps(dict(name=card.name, sha256=card.sha256, measured=card.measured), indent=2))
        return 0
    if args.preset in LATENT_PRESETS:
        from semcomm.train.fitting import export_latent

        train_split = load_split("cifar10", "train", args.data_root).subset(10_000)
        test_split = load_split("cifar10", "test", args.data_root)
        card = export_latent(args.preset, run_dir(args), LATENT_PRESETS[args.preset].edge, train_split, test_split)
        print(json.dumps(dict(name=card.name, sha256=card.sha256, history=card.history[-1:]), indent=2))
        return 0

    parsed = parse_run_name(args.preset)
    if args.preset not in PRESET_DATASETS and parsed is None:
        raise KeyError(f"unknown run {args.preset!r}; give the name `semcomm train` printed "
                       f"(presets: {', '.join(_preset_names())}, or vit-<edge|server>-<dataset>-<image>p<patch>)")
    directory = run_dir(args)
    if not (directory / "config.json").is_file():
        raise ValueError(f"no training run in {directory}: train it first (semcomm train {args.preset} ...)")
    config = TrainConfig.from_dict(json.loads((directory / "config.json").read_text()))
    data = args.data or PRESET_DATASETS.get(args.preset) or parsed[1]
    test_split = load(args, None, image_side(config.architecture), data=data)
    card = export_vit(args.preset, directory, test_split, directory=args.to)
    shown = {**card.to_dict(), "classes": f"{len(card.classes)} classes", "history": card.history[-1:]}
    print(json.dumps(shown, indent=2))
    print(f"wrote {card.weights_path} and its card")
    return 0


def check_fit(args: argparse.Namespace) -> None:
    if args.what == "dct" and (args.data is not None or args.dataset != "cifar10"):
        raise ValueError("fit dct fits the dct-cifar10 pair on cifar10; --data and --dataset are for fit hint")
    if args.what == "dct" and args.to is not None:
        raise ValueError("--to: fit dct writes the shipped dct-cifar10 pair in place; --to is for fit hint")


def fit(args: argparse.Namespace) -> int:
    from semcomm.rate.zoo import hint_name, hint_path
    from semcomm.train.fitting import fit_dct, fit_hint

    train_split = load(args, "train", image_side(args.edge), limit=args.images)
    check_classes(args.edge, train_split)
    if args.what == "hint":
        coder = fit_hint(args.edge, train_split, directory=args.to)
        written = hint_path(args.edge) if args.to is None else args.to / f"hint-{hint_name(args.edge)}.json"
        print(f"hint coder for {args.edge}: counts {coder.counts.tolist()}, code lengths {[n for _, n in coder.code]}; "
              f"written to {written}")
    else:
        card = fit_dct("dct-cifar10", train_split, args.edge, args.server,
                       test_split=load(args, "test", train_split.images.shape[-1]))
        print(f"{card.name}: tables fitted on {train_split.name}, sha256 {card.sha256}")
    return 0
