"""The ``semcomm`` command line: train, export, zoo, evaluate, sweep."""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path

from .data import default_cache_dir, evaluation_split, load_split
from .models.zoo import CheckpointError
from .rate import list_codecs
from .sweep import IMPORTANCE_METHODS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="semcomm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train (or resume) a zoo model from a preset")
    p.add_argument("preset", help="vit-edge-cifar10, vit-server-cifar10, vit-server-dct-cifar10 or latent-cifar10")
    p.add_argument("--epochs", type=int, help="override the schedule length")
    p.add_argument("--run-dir", type=Path, help="training state directory (default: cache/runs/PRESET)")
    p.add_argument("--init-from", help="warm restart from a zoo checkpoint (continuing its schedule at the "
                   "epoch its card records) or a safetensors file (from epoch 0)")
    p.add_argument("--stop-after", type=int, help="train at most N epochs in this call; run again to continue")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--export", action="store_true", help="export to the zoo when done")
    _export_args(p)
    _data_args(p)

    p = sub.add_parser("export", help="write a run's weights and model card into the zoo")
    p.add_argument("preset")
    p.add_argument("--run-dir", type=Path)
    _export_args(p)
    _data_args(p)

    sub.add_parser("zoo", help="list the shipped checkpoints and their measured accuracy")

    p = sub.add_parser("evaluate", help="top-1 accuracy of one model on a data split")
    p.add_argument("model", help="zoo checkpoint name")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, help="a fixed subset of N images (seed 0)")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    p.add_argument("--json", type=Path, help="write the result here")
    _data_args(p)

    p = sub.add_parser("sweep", help="bitrate-accuracy sweep of the semantic codec and its references (the main job)")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, help="a fixed subset of N images (seed 0), for a quick look")
    p.add_argument("--edge", default="vit-edge-cifar10")
    p.add_argument("--server", default="vit-server-cifar10", help="pixel server (references, image codecs, raw8)")
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
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--split", default="test")
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
    _data_args(p)

    args = parser.parse_args(argv)
    commands = {"train": _train, "export": _export, "zoo": _zoo, "evaluate": _evaluate, "sweep": _sweep,
                "codecs": _codecs, "fit": _fit, "link": _link}
    try:
        for name in ("json", "plot"):
            if getattr(args, name, None) is not None:
                _check_output(getattr(args, name), f"--{name}")
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
    from .baselines import ImageCodec

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


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", type=Path, help="directory holding the data sets (default: SEMCOMM_DATA or ../shared/data)")


def _run_dir(args) -> Path:
    return args.run_dir or default_cache_dir() / "runs" / args.preset


def _train(args) -> int:
    import torch

    from .training import PRESET_DATASETS, PRESETS, train

    if args.threads:
        torch.set_num_threads(args.threads)
    from .rate.latent_training import LATENT_PRESETS, train_latent

    if args.preset in LATENT_PRESETS:
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
    if args.preset not in PRESETS:
        raise KeyError(f"unknown preset {args.preset!r}; choose from {', '.join([*PRESETS, *LATENT_PRESETS])}")
    config = PRESETS[args.preset]
    if args.epochs:
        config = replace(config, epochs=args.epochs)
    dataset = PRESET_DATASETS[args.preset]
    train_split = load_split(dataset, "train", args.data_root)
    test_split = load_split(dataset, evaluation_split(dataset), args.data_root)
    init_from, start_epoch, earlier_history = args.init_from, 0, None
    if init_from is not None and not Path(init_from).is_file():
        from .models import model_card

        card = model_card(init_from)
        init_from, start_epoch, earlier_history = card.weights_path, card.epochs, card.history
    train(config, train_split, test_split, _run_dir(args), init_from=init_from, start_epoch=start_epoch,
          earlier_history=earlier_history, stop_after=args.stop_after)
    if args.export:
        return _export(args)
    return 0


def _export(args) -> int:
    from .rate.latent_training import LATENT_PRESETS
    from .training import PRESET_DATASETS, export

    if args.preset in LATENT_PRESETS:
        from .rate.fitting import export_latent

        train_split = load_split("cifar10", "train", args.data_root).subset(10_000)
        test_split = load_split("cifar10", "test", args.data_root)
        card = export_latent(args.preset, _run_dir(args), LATENT_PRESETS[args.preset].edge, train_split, test_split)
        print(json.dumps(dict(name=card.name, sha256=card.sha256, history=card.history[-1:]), indent=2))
        return 0

    dataset = PRESET_DATASETS[args.preset]
    test_split = load_split(dataset, evaluation_split(dataset), args.data_root)
    card = export(args.preset, _run_dir(args), test_split, directory=args.to)
    print(json.dumps(card.to_dict(), indent=2))
    print(f"wrote {card.weights_path} and its card")
    return 0


def _zoo(args) -> int:
    from .models import list_checkpoints

    from .rate.zoo import list_codec_cards

    print(f"{'name':24} {'architecture':26} {'dataset':10} {'params':>9} {'epochs':>6} {'test top-1':>10}")
    for card in list_checkpoints():
        acc = f"{100 * card.test_top1:.2f}%" if card.test_top1 is not None else "-"
        print(f"{card.name:24} {card.architecture:26} {card.dataset:10} {card.params:9,d} {card.epochs:6d} {acc:>10}")
    print("\ncodec pairs (every patch sent, server alone: top-1 at bits per image, per level)")
    for card in list_codec_cards():
        levels = [f"L{m[1:]} {100 * v['top1']:.1f}% @ {v['bits_per_image']:,.0f}" for m, v in card.measured.items()
                  if m.startswith("L") and isinstance(v, dict)]
        print(f"{card.name:24} {card.kind:8} server {card.server:26} {'; '.join(levels) or 'not measured'}")
    return 0


def _evaluate(args) -> int:
    from .inference import predict_logits, top1
    from .models import create_model

    model = create_model(args.model)
    split = load_split(args.dataset, args.split, args.data_root, limit=args.limit)
    logits = predict_logits(model, split.images, bf16=not args.fp32, desc=args.model)
    result = dict(model=args.model, dataset=args.dataset, split=args.split, images=len(split),
                  top1=top1(logits, split.labels), bf16=not args.fp32)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def _fit(args) -> int:
    from .rate.fitting import fit_dct, fit_hint

    train_split = load_split("cifar10", "train", args.data_root).subset(args.images)
    if args.what == "hint":
        coder = fit_hint(args.edge, train_split)
        print(f"hint coder for {args.edge}: counts {coder.counts.tolist()}, code lengths {[n for _, n in coder.code]}")
    else:
        card = fit_dct("dct-cifar10", train_split, args.edge, args.server,
                       test_split=load_split("cifar10", "test", args.data_root))
        print(f"{card.name}: tables fitted on {train_split.name}, sha256 {card.sha256}")
    return 0


def _codecs(args) -> int:
    from .rate.zoo import list_codec_cards

    print("registered:", ", ".join(list_codecs()))
    for card in list_codec_cards():
        print(f"{card.name:20} {card.kind:8} edge {card.edge:20} server {card.server:28} sha256 {card.sha256[:12]}")
    return 0


def _sweep(args) -> int:
    from .plots import plot_sweep
    from .rate.policies import IAQ, UniformBudget
    from .sweep import Sweep, SweepConfig

    codec = None if args.codec == "raw8" else args.codec
    if codec is not None and codec not in list_codecs():
        raise KeyError(f"unknown codec {args.codec!r}; choose from raw8, {', '.join(list_codecs())}")
    config = SweepConfig(edge=args.edge, server=args.server, importance=args.importance, codec=codec,
                         fusion=not args.no_fusion, twins=not args.no_twins)
    policies = (tuple(IAQ(b, power=args.iaq_power, min_level=args.iaq_min_level) for b in args.iaq_bits or ())
                + tuple(UniformBudget(b) for b in args.uniform_bits or ()))
    for name, value in (("budgets", args.budgets), ("rules", args.rules), ("thresholds", args.thresholds),
                        ("levels", args.levels), ("policies", policies or None), ("codecs", args.codecs),
                        ("policy_budgets", args.iaq_budgets)):
        if value is not None:
            config = replace(config, **{name: value})
    split = load_split(args.dataset, args.split, args.data_root, limit=args.limit)
    result = Sweep(config).run(split)
    print(result.table(everything=args.all_rows))
    print(f"\n{result.images} images of {result.dataset} in {result.seconds:.0f} s ({result.machine})")
    if result.comparison:
        print("\nmean bits per image each frontier needs for a top-1 accuracy (edge + 1 point .. server on full images):\n")
        print(result.comparison_table())
    if args.json:
        result.to_json(args.json)
    if args.plot:
        plot_sweep(result, args.plot)
    return 0


def _link(args) -> int:
    from .plots import plot_link
    from .transport.links import LinkSpec
    from .transport.sweep import LinkSweep, LinkSweepConfig

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
    split = load_split(args.dataset, args.split, args.data_root, limit=args.limit)
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
