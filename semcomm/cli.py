"""The ``semcomm`` command line: train, export, zoo, evaluate, sweep, link, fit, codecs.

Every command that reads data takes ``--dataset NAME`` (looked for in the
data roots) or ``--data PATH`` (a data set's own folder or archive), and
``--data-root``; images are loaded at the side the model takes (shorter side
resized, centre cropped).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

from semcomm.core.paths import default_cache_dir
from semcomm.data import evaluation_split, load_split, locate
from semcomm.models.architectures import SIZES
from semcomm.models.zoo import CheckpointError
from semcomm.rate import list_codecs
from semcomm.experiments.sweep import IMPORTANCE_METHODS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="semcomm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train (or resume) a zoo model from a preset, or a ViT on any ImageFolder data")
    p.add_argument("preset", nargs="?", help="a preset (vit-edge-cifar10, vit-server-cifar10, vit-server-dct-cifar10, "
                   "vit-edge-imagenette, vit-server-imagenette, latent-cifar10) or vit-<edge|server>-<dataset>"
                   "[-<image>p<patch>], or a backend: partitioned|devit|experts-cifar10-n<devices>; without it, --data, --size "
                   "and --geometry name the run")
    p.add_argument("--size", choices=SIZES, help="the project's edge or server ViT")
    p.add_argument("--geometry", type=_geometry, help="IMAGE/PATCH sides in pixels, e.g. 64/8 (default: the preset's)")
    p.add_argument("--batch-size", type=int, help="override the batch size")
    p.add_argument("--epochs", type=int, help="override the schedule length")
    p.add_argument("--run-dir", type=Path, help="training state directory (default: cache/runs/PRESET)")
    p.add_argument("--init-from", help="warm restart from a zoo checkpoint (continuing its schedule at the "
                   "epoch its card records) or a safetensors file (from epoch 0)")
    p.add_argument("--grow-from", metavar="NAME", help="start a deeper ViT from a trained shallower zoo model of the "
                   "same width, its blocks stacked (progressive stacking; a new run's start only)")
    p.add_argument("--stop-after", type=int, help="train at most N epochs in this call; run again to continue")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--export", action="store_true", help="export to the zoo when done")
    _export_args(p)
    _data_args(p, dataset=False)

    p = sub.add_parser("export", help="write a run's weights and model card into the zoo")
    p.add_argument("preset", help="the run's name, as `semcomm train` printed it")
    p.add_argument("--run-dir", type=Path)
    _export_args(p)
    _data_args(p, dataset=False)

    sub.add_parser("zoo", help="list the shipped checkpoints and their measured accuracy")

    p = sub.add_parser("evaluate", help="top-1 accuracy of one model on a data split")
    p.add_argument("model", help="zoo checkpoint name")
    _split_args(p)
    p.add_argument("--limit", type=int, help="a fixed subset of N images (seed 0)")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    p.add_argument("--json", type=Path, help="write the result here")
    _data_args(p)

    p = sub.add_parser("sweep", help="bitrate-accuracy sweep of the semantic codec and its references (the main job)")
    _split_args(p)
    p.add_argument("--limit", type=int, help="a fixed subset of N images (seed 0), for a quick look")
    p.add_argument("--edge", default="vit-edge-cifar10")
    p.add_argument("--server", default="vit-server-cifar10", help="pixel server (references, image codecs, raw8)")
    p.add_argument("--backend", help="a saved backend (`semcomm zoo` lists them) in the pixel server's place: it "
                   "classifies the references, the image codecs and what a pixel codec (raw8, dct-cifar10, pixel-iaq) "
                   "sends")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="where --backend's devices run: in "
                   "this process, or one Ray actor per device")
    p.add_argument("--address", help="(--engine ray) a Ray cluster's address; default: a local Ray instance")
    p.add_argument("--codec", default="latent-cifar10",
                   help=f"semantic codec pair ({', '.join(list_codecs())}) or raw8 (8-bit pixels, format version 1)")
    p.add_argument("--importance", default="mean", choices=list(IMPORTANCE_METHODS))
    p.add_argument("--budgets", type=_int_list, help="patches per image, e.g. 8,16,32")
    p.add_argument("--rules", type=lambda t: tuple(t.split(",")),
                   help="selection rules: top-k,spread-top-k (at every budget), threshold, attention-sum")
    p.add_argument("--levels", type=_int_list, help="fixed quantizer levels of the codec pair, e.g. 1,2")
    p.add_argument("--iaq-bits", type=_float_list, help="IAQ payload budgets in bits per image, e.g. 200,400")
    p.add_argument("--iaq-min-level", type=int, default=1, help="IAQ: a patch is not sent or sent at this level or above")
    p.add_argument("--iaq-power", type=float, default=1.0, help="IAQ weights: importance to this power")
    p.add_argument("--iaq-budgets", type=_int_list, help="patches IAQ chooses among (default 64: all)")
    p.add_argument("--uniform-bits", type=_float_list, help="uniform-level payload budgets (IAQ's baseline)")
    p.add_argument("--thresholds", type=_float_list, help="gate thresholds, e.g. 0.4,0.8,1.2")
    p.add_argument("--codecs", type=_codec_list, help="reference codecs, e.g. jpeg-q50,webp-q20 (default: "
                   "webp q10/40/75, jpeg q50); 'none' for no codecs")
    p.add_argument("--no-fusion", action="store_true", help="do not send the edge's prediction and fuse it")
    p.add_argument("--no-twins", action="store_true", help="no equal-budget random twins")
    p.add_argument("--all-rows", action="store_true", help="print every point, not only frontiers and references")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--plot", type=Path, help="write the accuracy-versus-bits plot here (PNG or PDF)")
    _data_args(p)

    p = sub.add_parser("link", help="accuracy against SNR and channel uses: the codec and image codecs over a link")
    p.add_argument("--channel", default="awgn", help="ideal, awgn, rayleigh (block fading), rayleigh-fast, bsc, bec "
                   "or gilbert-elliott")
    p.add_argument("--snrs", type=_float_list, help="channel conditions: Es/N0 in dB (awgn, rayleigh*), or crossover / "
                   "erasure / block loss probabilities (bsc, bec, gilbert-elliott); default 0,1,2,3,4,6,10 dB")
    p.add_argument("--modulation", type=int, default=4, help="QAM order: 2 (BPSK), 4 (QPSK), 16, 64, 256")
    p.add_argument("--code-rate", default="1/2", help="802.11n LDPC rate: 1/2, 2/3, 3/4, 5/6")
    p.add_argument("--block", type=int, default=648, help="LDPC block length: 648, 1296, 1944")
    p.add_argument("--adaptive", action="store_true", help="link adaptation: the fastest modulation and code whose "
                   "measured block error rate at each SNR is at most --target-bler")
    p.add_argument("--target-bler", type=float, default=0.01, help="link adaptation's block error target")
    p.add_argument("--framings", type=_str_list, help="the semantic codec's framing: packets (independently "
                   "decodable, protected header) and/or whole (the string as one packet); default both")
    p.add_argument("--header-copies", type=int, default=2, help="copies of each image's header packet")
    p.add_argument("--packet-bytes", type=int, help="data packet size in bytes (default: one code block's payload)")
    p.add_argument("--min-arrived", type=float, default=0.5, help="share of an image's patches that must arrive for "
                   "the server to answer (else the edge does)")
    _split_args(p)
    p.add_argument("--limit", type=int, help="a fixed subset of N images (seed 0)")
    p.add_argument("--edge", default="vit-edge-cifar10")
    p.add_argument("--server", default="vit-server-cifar10", help="pixel server of the image codecs")
    p.add_argument("--codec", default="latent-cifar10", help=f"semantic codec pair ({', '.join(list_codecs())})")
    p.add_argument("--budgets", type=_int_list, help="spread-top-k patches per image, e.g. 16,32,64 (at --levels)")
    p.add_argument("--levels", type=_int_list, help="codec levels, e.g. 3,4")
    p.add_argument("--thresholds", type=_float_list, help="min-entropy gate thresholds")
    p.add_argument("--codecs", type=_codec_list, help="image codecs, e.g. webp-q10,webp-q40; 'none' for none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write the results here (a .partial file beside it lets a run resume)")
    p.add_argument("--plot", type=Path, help="write accuracy vs SNR and vs channel uses here (PNG or PDF)")
    _data_args(p)

    sub.add_parser("codecs", help="list the registered codec pairs and the shipped ones")

    p = sub.add_parser("fit", help="fit the training-split statistics a codec pair ships with")
    p.add_argument("what", choices=["hint", "dct"], help="hint: the edge's prediction code; dct: the DCT pair's tables")
    p.add_argument("--edge", default="vit-edge-cifar10")
    p.add_argument("--server", default="vit-server-cifar10", help="(dct) the pair's default pixel server")
    p.add_argument("--images", type=int, default=10_000, help="training images to fit on (a fixed subset)")
    p.add_argument("--to", type=Path, help="(hint) write it into this folder (default: the user zoo's codecs/)")
    _data_args(p)

    args = parser.parse_args(argv)
    commands = {"train": _train, "export": _export, "zoo": _zoo, "evaluate": _evaluate, "sweep": _sweep,
                "codecs": _codecs, "fit": _fit, "link": _link}
    try:
        for name in ("json", "plot"):
            if getattr(args, name, None) is not None:
                _check_output(getattr(args, name), f"--{name}")
        _check_inputs(args)
        return commands[args.command](args)
    except (OSError, KeyError, ValueError, CheckpointError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        parser.exit(2, f"semcomm {args.command}: error: {message}\n")


def _check_output(path: Path, option: str) -> None:
    """Fail before any work if ``path`` cannot be written."""
    if path.is_dir():
        raise ValueError(f"{option} {path} is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"{option} {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{option} {path}: the folder {parent} is not writable")


def _check_inputs(args) -> None:
    """Fail before any work if --data-root or --data names nothing usable."""
    if getattr(args, "data_root", None) is not None and not args.data_root.is_dir():
        raise ValueError(f"--data-root {args.data_root} " + ("is not a directory" if args.data_root.exists()
                                                            else "does not exist"))
    if getattr(args, "data", None) is not None:
        if not args.data.exists():
            raise ValueError(f"--data {args.data} does not exist")
        locate(args.data)  # a folder or an archive


def _geometry(text: str) -> tuple[int, int]:
    """``IMAGE/PATCH`` -> (image side, patch side) in pixels."""
    image, _, patch = text.partition("/")
    if not (image.isdigit() and patch.isdigit() and 0 < int(patch) <= int(image) and int(image) % int(patch) == 0):
        raise argparse.ArgumentTypeError(f"geometry {text!r} is not IMAGE/PATCH with the patch side dividing the "
                                         "image side, e.g. 64/8")
    return int(image), int(patch)


def _int_list(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def _export_args(p) -> None:
    p.add_argument("--to", type=Path, help="zoo folder to write the weights and card into (default: the user zoo, "
                   "$SEMCOMM_ZOO or ~/.cache/semcomm/zoo; the project ships with --to semcomm/models/checkpoints)")


def _str_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _float_list(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def _codec_list(text: str):
    from semcomm.rate.image_codecs import ImageCodec

    if text == "none":
        return ()
    codecs = []
    for item in text.split(","):
        fmt, _, quality = item.partition("-q")
        if not quality.isdigit():
            raise argparse.ArgumentTypeError(f"codec {item!r} is not FORMAT-qQUALITY, e.g. webp-q20")
        try:
            codecs.append(ImageCodec(fmt, int(quality)))
        except ValueError as err:  # argparse shows an ArgumentTypeError's own message
            raise argparse.ArgumentTypeError(str(err)) from err
    return tuple(codecs)


def _data_args(p: argparse.ArgumentParser, dataset: bool = True) -> None:
    """--data-root, and --data PATH (for commands without a preset, --dataset NAME as the alternative)."""
    p.add_argument("--data-root", type=Path, help="directory holding the data sets (default: SEMCOMM_DATA or ../shared/data)")
    data_help = ("a data set by path: its folder (<split>/<class>/.../<image>, or <split>/*annotations.txt) or "
                 "its archive (.tar.gz, .tgz, .tar, .zip)")
    if not dataset:
        p.add_argument("--data", type=Path, help=data_help)
        return
    group = p.add_mutually_exclusive_group()
    group.add_argument("--dataset", default="cifar10", help="a data set by name, looked for in the data roots")
    group.add_argument("--data", type=Path, help=data_help)


def _split_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", help="the split to use (default: the data set's val split if it has one, else test)")


def _dataset(args):
    """The data set the command reads: --data's path, else --dataset's name."""
    return args.data if args.data is not None else args.dataset


def _load(args, split: str | None, image_size: int, limit: int | None = None, dataset=None):
    """One split of the command's data set at ``image_size`` (default split: the data set's evaluation split)."""
    dataset = dataset if dataset is not None else _dataset(args)
    split = split or evaluation_split(dataset, args.data_root)
    return load_split(dataset, split, args.data_root, limit=limit, image_size=image_size)


def _zoo_card(model: str):
    """The model card of a zoo checkpoint (by name or card path), or None for anything else."""
    from semcomm.models import model_card

    try:
        return model_card(model)
    except KeyError:
        return None


def _geometry_of(model: str) -> tuple[int, int]:
    """(image side, patch side) in pixels of a zoo model, model card or timm architecture (square images only)."""
    card = _zoo_card(model)
    architecture = card.architecture if card is not None else model
    match = re.fullmatch(r"semcomm_vit_\w+_p(\d+)_(\d+)", architecture)
    if match:
        return int(match[2]), int(match[1])
    from semcomm.models import create_model

    built = create_model(model)  # any other timm ViT: ask the model itself
    if built.image_size[0] != built.image_size[1]:
        raise ValueError(f"{model} takes {built.image_size[0]} x {built.image_size[1]} images; data are loaded as "
                         "squares only")
    return built.image_size[0], built.patch_size


def _image_side(model: str) -> int:
    """Side in pixels of the square images ``model`` takes: what its data are resized and cropped to."""
    return _geometry_of(model)[0]


def _check_codec(codec: str | None, edge: str, split, instead: str) -> None:
    """Refuse a shipped codec pair fitted to another data set or patch grid (its tables and server would not fit)."""
    from semcomm.rate.zoo import codec_card

    try:
        card = codec_card(codec) if codec else None
    except KeyError:
        return  # registered but not shipped: built for whatever it is given
    data = split.name.split("/")[0]
    if card is not None and (card.dataset != data or _geometry_of(card.edge) != _geometry_of(edge)):
        raise ValueError(f"codec pair {codec} was fitted to {card.dataset} at the geometry of {card.edge}; it does not "
                         f"fit {edge} on {data}: {instead}")


def _check_hint(edge: str) -> None:
    """Fusion needs the edge's hint coder, fitted on its training split."""
    from semcomm.rate.zoo import hint_path

    if not hint_path(edge).is_file():
        raise ValueError(f"no hint coder for edge {edge} (fusion): fit one with `semcomm fit hint --edge {edge} "
                         "--data PATH`, or pass --no-fusion")


def _check_classes(model: str, split) -> None:
    """Refuse a zoo model whose classes are not the data's (its labels would mean other things)."""
    card = _zoo_card(model)
    if card is None:
        return
    if card.num_classes != len(split.classes) or (card.classes and card.classes != split.classes):
        raise ValueError(f"{model} classifies {card.num_classes} classes of {card.dataset}, but {split.name} has "
                         f"{len(split.classes)} classes{' (other ones)' if card.num_classes == len(split.classes) else ''}")


def _run_dir(args) -> Path:
    return args.run_dir or default_cache_dir() / "runs" / args.preset


def _train(args) -> int:
    import torch

    from semcomm.train.latent import LATENT_PRESETS, train_latent
    from semcomm.train.vit import train

    if args.threads:
        torch.set_num_threads(args.threads)
    backend = re.fullmatch(r"(partitioned|devit|experts)-cifar10-n(\d+)", args.preset or "")
    if backend:
        return _train_backend(args, backend[1], int(backend[2]))
    if args.preset in LATENT_PRESETS:
        if args.data or args.size or args.geometry or args.batch_size or args.grow_from:
            raise ValueError(f"{args.preset} trains the CIFAR-10 codec pair as configured; --data, --size, --geometry, "
                             "--batch-size and --grow-from are for ViT runs")
        config = LATENT_PRESETS[args.preset]
        if args.epochs:
            config = replace(config, epochs=args.epochs)
        train_split = load_split("cifar10", "train", args.data_root)
        test_split = load_split("cifar10", "test", args.data_root)
        init_from = args.init_from
        if init_from is not None and not Path(init_from).is_file():
            raise ValueError(f"--init-from for a latent codec takes a safetensors file of codec weights (a run's or a "
                             f"shipped pair's), got {init_from}")
        train_latent(config, train_split, test_split, _run_dir(args), stop_after=args.stop_after, init_from=init_from)
        return _export(args) if args.export else 0
    name, config, dataset, side = _training_run(args)
    args.preset = name  # the run's name: its state directory and its zoo name
    train_split = load_split(dataset, "train", args.data_root, image_size=side)
    test_split = _load(args, None, side, dataset=dataset)
    config = replace(config, num_classes=len(train_split.classes))
    for option, value in (("epochs", args.epochs), ("batch_size", args.batch_size), ("grown_from", args.grow_from)):
        if value:
            config = replace(config, **{option: value})
    print(f"run {name}: {config.architecture}, {len(train_split.classes)} classes, {len(train_split)} training images "
          f"of {train_split.name} at {side} x {side}, scored on {test_split.name}; state in {_run_dir(args)}", flush=True)
    init_from, start_epoch, earlier_history = args.init_from, 0, None
    if init_from is not None and not Path(init_from).is_file():
        from semcomm.models import model_card

        card = model_card(init_from)
        init_from, start_epoch, earlier_history = card.weights_path, card.epochs, card.history
    train(config, train_split, test_split, _run_dir(args), init_from=init_from, start_epoch=start_epoch,
          earlier_history=earlier_history, stop_after=args.stop_after)
    if args.export:
        return _export(args)
    return 0


def _train_backend(args, kind: str, devices: int) -> int:
    """Build (or resume), measure and save a backend recipe (semcomm.backends.recipes) into the user zoo or --to."""
    from semcomm.train.backends.recipes import cifar10_recipe, run_recipe

    ignored = [f"--{o.replace('_', '-')}" for o in ("data", "size", "geometry", "batch_size", "epochs", "init_from",
                                                     "grow_from", "stop_after") if getattr(args, o, None)]
    if ignored:
        raise ValueError(f"a backend recipe is built as configured in semcomm.backends.recipes; {', '.join(ignored)} "
                         "do not apply")
    results = run_recipe(cifar10_recipe(kind, devices), run_dir=args.run_dir, zoo_dir=args.to)
    print(json.dumps({k: results[k] for k in ("name", "top1", "server_top1", "parameters_per_device", "saved")
                      if k in results}, indent=1))
    return 0


def _training_run(args):
    """(run name, config, data set (name or path), image side) that `semcomm train`'s arguments ask for."""
    from semcomm.train.vit import PRESET_DATASETS, PRESETS, parse_run_name, recipe

    data_name = locate(args.data).name if args.data else None
    if args.preset is None:
        if not (args.data and args.size and args.geometry):
            raise ValueError("give a preset (e.g. vit-edge-cifar10), or --data PATH with --size edge|server and "
                             "--geometry IMAGE/PATCH")
        size, dataset, geometry, base = args.size, data_name, args.geometry, None
    elif args.preset in PRESETS:
        size, dataset, base = parse_run_name(args.preset)[0], PRESET_DATASETS[args.preset], args.preset
        geometry = args.geometry or _geometry_of(PRESETS[args.preset].architecture)
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
    from semcomm.train.latent import LATENT_PRESETS
    from semcomm.train.vit import PRESETS

    return [*PRESETS, *LATENT_PRESETS]


def _export(args) -> int:
    from semcomm.train.latent import LATENT_PRESETS
    from semcomm.train.vit import PRESET_DATASETS, TrainConfig, export, parse_run_name

    if args.preset in LATENT_PRESETS:
        from semcomm.train.fitting import export_latent

        train_split = load_split("cifar10", "train", args.data_root).subset(10_000)
        test_split = load_split("cifar10", "test", args.data_root)
        card = export_latent(args.preset, _run_dir(args), LATENT_PRESETS[args.preset].edge, train_split, test_split)
        print(json.dumps(dict(name=card.name, sha256=card.sha256, history=card.history[-1:]), indent=2))
        return 0

    parsed = parse_run_name(args.preset)
    if args.preset not in PRESET_DATASETS and parsed is None:
        raise KeyError(f"unknown run {args.preset!r}; give the name `semcomm train` printed "
                       f"(presets: {', '.join(_preset_names())}, or vit-<edge|server>-<dataset>-<image>p<patch>)")
    run_dir = _run_dir(args)
    if not (run_dir / "config.json").is_file():
        raise ValueError(f"no training run in {run_dir}: train it first (semcomm train {args.preset} ...)")
    config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    dataset = args.data or PRESET_DATASETS.get(args.preset) or parsed[1]
    test_split = _load(args, None, _image_side(config.architecture), dataset=dataset)
    card = export(args.preset, run_dir, test_split, directory=args.to)
    shown = {**card.to_dict(), "classes": f"{len(card.classes)} classes", "history": card.history[-1:]}
    print(json.dumps(shown, indent=2))
    print(f"wrote {card.weights_path} and its card")
    return 0


def _zoo(args) -> int:
    from semcomm.models import list_checkpoints

    from semcomm.rate.zoo import list_codec_cards

    cards = list_checkpoints()
    name, arch, data = (max([width, *(len(getattr(c, field)) for c in cards)])
                        for field, width in (("name", 24), ("architecture", 26), ("dataset", 10)))
    print(f"{'name':{name}} {'architecture':{arch}} {'dataset':{data}} {'params':>9} {'epochs':>6} {'test top-1':>10}")
    for card in cards:
        acc = f"{100 * card.test_top1:.2f}%" if card.test_top1 is not None else "-"
        print(f"{card.name:{name}} {card.architecture:{arch}} {card.dataset:{data}} {card.params:9,d} {card.epochs:6d} "
              f"{acc:>10}")
    _list_backends()
    print("\ncodec pairs (every patch sent, server alone: top-1 at bits per image, per level)")
    for card in list_codec_cards():
        levels = [f"L{m[1:]} {100 * v['top1']:.1f}% @ {v['bits_per_image']:,.0f}" for m, v in card.measured.items()
                  if m.startswith("L") and isinstance(v, dict)]
        print(f"{card.name:24} {card.kind:8} server {card.server:26} {'; '.join(levels) or 'not measured'}")
    return 0


def _list_backends() -> None:
    """Saved backends (user zoo, then shipped): kind, devices, measured top-1, largest device's parameters."""
    from semcomm.server.backends.storage import list_saved_backends

    cards = list_saved_backends()
    if not cards:
        return
    print("\nbackends (the server side split over devices; `semcomm train KIND-cifar10-nN` builds one)")
    print(f"{'name':24} {'kind':12} {'devices':>7} {'params (largest device)':>24} {'params (all)':>12} {'test top-1':>10}")
    for card in cards:
        accuracy = card.accuracy or {}
        acc = f"{100 * accuracy['top1']:.2f}%" if accuracy.get("top1") is not None else "-"
        largest = max(card.parameters_per_device.values(), default=0)
        print(f"{card.name:24} {card.kind:12} {card.num_devices:7d} {largest:24,d} {card.parameters:12,d} {acc:>10}")


def _evaluate(args) -> int:
    from semcomm.inference import predict_logits, top1
    from semcomm.models import create_model

    model = create_model(args.model)
    split_name = args.split or evaluation_split(_dataset(args), args.data_root)
    split = _load(args, split_name, _image_side(args.model), limit=args.limit)
    _check_classes(args.model, split)
    logits = predict_logits(model, split.images, bf16=not args.fp32, desc=args.model)
    result = dict(model=args.model, dataset=split.name.split("/")[0], split=split_name, images=len(split),
                  top1=top1(logits, split.labels), bf16=not args.fp32)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def _fit(args) -> int:
    from semcomm.train.fitting import fit_dct, fit_hint
    from semcomm.rate.zoo import hint_path

    if args.what == "dct" and (args.data is not None or args.dataset != "cifar10"):
        raise ValueError("fit dct fits the dct-cifar10 pair on cifar10; --data and --dataset are for fit hint")
    train_split = _load(args, "train", _image_side(args.edge), limit=args.images)
    _check_classes(args.edge, train_split)
    if args.what == "hint":
        coder = fit_hint(args.edge, train_split, directory=args.to)
        print(f"hint coder for {args.edge}: counts {coder.counts.tolist()}, code lengths {[n for _, n in coder.code]}; "
              f"written to {hint_path(args.edge) if args.to is None else args.to}")
    else:
        card = fit_dct("dct-cifar10", train_split, args.edge, args.server,
                       test_split=_load(args, "test", train_split.images.shape[-1]))
        print(f"{card.name}: tables fitted on {train_split.name}, sha256 {card.sha256}")
    return 0


def _codecs(args) -> int:
    from semcomm.rate.zoo import list_codec_cards

    print("registered:", ", ".join(list_codecs()))
    for card in list_codec_cards():
        print(f"{card.name:20} {card.kind:8} edge {card.edge:20} server {card.server:28} sha256 {card.sha256[:12]}")
    return 0


def _sweep(args) -> int:
    from semcomm.experiments.plots import plot_sweep
    from semcomm.rate.policies import IAQ, UniformBudget
    from semcomm.experiments.sweep import Sweep, SweepConfig

    codec = None if args.codec == "raw8" else args.codec
    if codec is not None and codec not in list_codecs():
        raise KeyError(f"unknown codec {args.codec!r}; choose from raw8, {', '.join(list_codecs())}")
    if args.backend is None and (args.engine != "local" or args.address is not None):
        raise ValueError("--engine and --address say where a --backend runs; give one (`semcomm zoo` lists them)")
    config = SweepConfig(edge=args.edge, server=args.backend or args.server, importance=args.importance, codec=codec,
                         fusion=not args.no_fusion, twins=not args.no_twins)
    policies = (tuple(IAQ(b, power=args.iaq_power, min_level=args.iaq_min_level) for b in args.iaq_bits or ())
                + tuple(UniformBudget(b) for b in args.uniform_bits or ()))
    for name, value in (("budgets", args.budgets), ("rules", args.rules), ("thresholds", args.thresholds),
                        ("levels", args.levels), ("policies", policies or None), ("codecs", args.codecs),
                        ("policy_budgets", args.iaq_budgets)):
        if value is not None:
            config = replace(config, **{name: value})
    split = _load(args, args.split, _image_side(args.edge), limit=args.limit)
    for model in (args.edge, args.server) if args.backend is None else (args.edge,):
        _check_classes(model, split)
    _check_codec(codec, args.edge, split, "use --codec raw8")
    if config.fusion:
        _check_hint(args.edge)
    backend, pair = (None, None) if args.backend is None else _backend_server(args, codec, split)
    try:
        result = Sweep(config, server=backend, codec=pair).run(split)
    finally:
        if backend is not None:
            backend.engine.shutdown()
    print(result.table(everything=args.all_rows))
    print(f"\n{result.images} images of {result.dataset} in {result.seconds:.0f} s ({result.machine})")
    if result.comparison:
        print("\nmean bits per image each frontier needs for a top-1 accuracy (edge + 1 point .. server on full images):\n")
        print(result.comparison_table())
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


def _backend_server(args, codec: str | None, split):
    """(the saved backend ``--backend`` on ``--engine``, the codec pair ``codec`` with it as server or None)."""
    from semcomm.server.backends import LocalEngine, RayEngine, load_backend
    from semcomm.rate import create_codec
    from semcomm.rate.pixels import PixelPair

    backend = load_backend(args.backend)
    backend.check_dataset(len(split.classes), split.name)
    pair = None
    if codec is not None:
        if not isinstance(create_codec(codec, hint=False), PixelPair):
            raise ValueError(f"--backend replaces a pixel server, but codec {codec}'s server reads its own "
                             "representation; use --codec raw8, dct-cifar10 or pixel-iaq")
        pair = create_codec(codec, server=backend, hint=False)
    backend.engine = RayEngine(address=args.address) if args.engine == "ray" else LocalEngine()
    return backend, pair


def _link(args) -> int:
    from semcomm.experiments.plots import plot_link
    from semcomm.transport.links import LinkSpec
    from semcomm.experiments.link_sweep import LinkSweep, LinkSweepConfig

    if args.codec not in list_codecs():
        raise KeyError(f"unknown codec {args.codec!r}; choose from {', '.join(list_codecs())}")
    link = LinkSpec(args.channel, modulation=args.modulation, code_rate=args.code_rate, block=args.block,
                    adaptive=args.adaptive, target_bler=args.target_bler)
    config = LinkSweepConfig(link=link, edge=args.edge, server=args.server, codec=args.codec, seed=args.seed,
                             min_arrived=args.min_arrived, header_copies=args.header_copies,
                             packet_bytes=args.packet_bytes,
                             conditions=tuple(args.snrs) if args.snrs else
                             ((0.0,) if args.channel == "ideal" else LinkSweepConfig.conditions))
    if args.budgets or args.levels:
        config = replace(config, settings=tuple(("spread-top-k", k, m) for k in args.budgets or (16, 32, 64)
                                                for m in args.levels or (3,)))
    for name, value in (("thresholds", args.thresholds), ("codecs", args.codecs), ("framings", args.framings)):
        if value is not None:
            config = replace(config, **{name: value})
    split = _load(args, args.split, _image_side(args.edge), limit=args.limit)
    for model in (args.edge, args.server):
        _check_classes(model, split)
    _check_codec(args.codec, args.edge, split, "the link needs a codec pair fitted to this data")
    _check_hint(args.edge)
    state = args.json.with_suffix(".partial") if args.json else None
    result = LinkSweep(config).run(split, state_path=state)
    print(f"{result.link}: the semantic codec against the best image codec at equal channel uses per image\n")
    print(result.table())
    print(f"\nedge alone {100 * result.edge_accuracy:.2f}%; {result.images} images of {result.dataset} in "
          f"{result.seconds:.0f} s ({result.machine})")
    if args.json:
        result.to_json(args.json)
    if args.plot:
        plot_link(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
