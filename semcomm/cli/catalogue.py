"""``semcomm zoo``, ``semcomm codecs`` and ``semcomm evaluate``: what is shipped and saved, and how well a
model does."""
from __future__ import annotations

import argparse
import json

from semcomm.cli.inputs import check_classes, dataset, dataset_name, image_side, load
from semcomm.cli.options import (add_compute_args, add_data_args, add_limit_arg, add_model_arg, add_outputs,
                                 add_split_args, run_device)
from semcomm.data import evaluation_split
from semcomm.zoo import USER_ZOO


def add_zoo(sub) -> None:
    sub.add_parser("zoo", help=f"list the checkpoints, saved backends and codec pairs of the user zoo ({USER_ZOO}) "
                   "and the shipped ones, with their measured accuracy").set_defaults(run=zoo)


def add_codecs(sub) -> None:
    sub.add_parser("codecs", help="list the registered codec pairs and the shipped ones").set_defaults(run=codecs)


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="top-1 accuracy of one model on a data split")
    add_model_arg(p, "model")
    add_split_args(p)
    add_limit_arg(p)
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    add_outputs(p, "write the result here")
    add_compute_args(p)
    add_data_args(p)
    p.set_defaults(run=evaluate)


def zoo(args: argparse.Namespace) -> int:
    from semcomm.models import list_checkpoints
    from semcomm.rate.zoo import list_codec_cards
    from semcomm.zoo import user_zoo_dirs

    print(f"user zoo: {', '.join(map(str, user_zoo_dirs()))} ({USER_ZOO}), searched before the shipped checkpoints\n")
    cards = list_checkpoints()
    name, arch, data = (max([width, *(len(getattr(c, field)) for c in cards)])
                        for field, width in (("name", 24), ("architecture", 26), ("dataset", 10)))
    print(f"{'name':{name}} {'architecture':{arch}} {'dataset':{data}} {'params':>9} {'epochs':>6} {'test top-1':>10}")
    for card in cards:
        acc = f"{100 * card.test_top1:.2f}%" if card.test_top1 is not None else "-"
        print(f"{card.name:{name}} {card.architecture:{arch}} {card.dataset:{data}} {card.params:9,d} {card.epochs:6d} "
              f"{acc:>10}")
    _list_backends()
    print("\ncodec pairs (every patch sent, server alone: top-1 at bits per image, per level; a JSCC pair: top-1 per "
          "channel point)")
    for card in list_codec_cards():
        levels = [f"L{m[1:]} {100 * v['top1']:.1f}% @ {v['bits_per_image']:,.0f}" for m, v in card.measured.items()
                  if m.startswith("L") and isinstance(v, dict)]
        levels += [f"{m} {100 * v['top1']:.1f}%" for m, v in card.measured.items() if "@" in m and isinstance(v, dict)]
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


def codecs(args: argparse.Namespace) -> int:
    from semcomm.rate import list_codecs
    from semcomm.rate.zoo import list_codec_cards

    print("registered:", ", ".join(list_codecs()))
    for card in list_codec_cards():
        print(f"{card.name:20} {card.kind:8} edge {card.edge:20} server {card.server:28} sha256 {card.sha256[:12]}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from semcomm.inference import predict_logits, top1
    from semcomm.models import create_model

    model = create_model(args.model)
    split_name = args.split or evaluation_split(dataset(args), args.data_root)
    split = load(args, split_name, image_side(args.model), limit=args.limit)
    check_classes(args.model, split)
    model.to(run_device(args))
    logits = predict_logits(model, split.images, bf16=not args.fp32, desc=args.model)
    result = dict(model=args.model, dataset=dataset_name(args), split=split_name, images=len(split),
                  top1=top1(logits, split.labels), bf16=not args.fp32, device=str(args.device))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0
