"""``semcomm predict``: each image's predicted class, for images without labels (a folder, or a data set's
unlabelled split such as Tiny-ImageNet's ``test/``)."""
from __future__ import annotations

import argparse
import csv
import json

from semcomm.cli.inputs import image_side, zoo_card
from semcomm.cli.options import (add_compute_args, add_data_args, add_limit_arg, add_model_arg, add_outputs,
                                 run_device)
from semcomm.cli.values import output_file


def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="each image's predicted class: every image below a folder, or one split of a "
                       "data set, no labels needed")
    add_model_arg(p, "model")
    p.add_argument("--split", help="with --dataset (required) or --data: read this split of the data set; without it "
                   "--data is a folder whose images (at any depth) are all read")
    add_limit_arg(p)
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    add_outputs(p, "write the predictions here: model, data and one {file, class, index, probability} per image")
    p.add_argument("--csv", type=output_file(".csv"), help="write the predictions here as CSV: file, class, index, "
                   "probability (a .csv file)")
    add_compute_args(p)
    add_data_args(p, default=None)
    p.set_defaults(run=predict, check=check_predict)


def check_predict(args: argparse.Namespace) -> None:
    if args.data is None and args.split is None:
        raise ValueError(f"--dataset {args.dataset} needs --split (e.g. test): a named data set is read one split at "
                         "a time")


def predict(args: argparse.Namespace) -> int:
    from semcomm.data import load_images
    from semcomm.inference import predict_logits
    from semcomm.models import create_model

    model = create_model(args.model)
    images = load_images(args.data if args.data is not None else args.dataset, args.split, args.data_root,
                         limit=args.limit, image_size=image_side(args.model))
    model.to(run_device(args))
    logits = predict_logits(model, images.images, bf16=not args.fp32, desc=args.model)
    probabilities, indices = logits.float().softmax(-1).max(-1)
    card = zoo_card(args.model)
    classes = card.classes if card is not None and card.classes else None
    rows = [{"file": file, "class": classes[i] if classes else str(i), "index": i, "probability": round(p, 6)}
            for file, i, p in zip(images.files, indices.tolist(), probabilities.tolist())]
    if args.json:
        args.json.write_text(json.dumps(dict(model=args.model, data=images.name, images=len(rows),
                                             device=str(args.device), predictions=rows), indent=1))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["file", "class", "index", "probability"])
            writer.writeheader()
            writer.writerows(rows)
    if args.json or args.csv:
        written = " and ".join(str(path) for path in (args.json, args.csv) if path)
        print(f"{len(rows)} images of {images.name} classified by {args.model}: written to {written}")
    else:
        for row in rows:
            print(f"{row['file']}\t{row['class']}\t{row['probability']:.4f}")
    return 0
