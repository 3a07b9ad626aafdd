"""What the commands read, and the checks that refuse a mismatch before any work: data splits at the side a
model takes, models whose classes are not the data's, codec pairs fitted to other data, a missing hint coder."""
from __future__ import annotations

import argparse
import re
from functools import lru_cache
from pathlib import Path

from semcomm.core.paths import default_cache_dir
from semcomm.data import ImageSplit, evaluation_split, load_split, locate


def dataset(args: argparse.Namespace):
    """The data set the command reads: --data's path, else --dataset's name."""
    return args.data if args.data is not None else args.dataset


def dataset_name(args: argparse.Namespace) -> str:
    """The name of the command's data set (a path's folder or archive name)."""
    return locate(dataset(args), data_root=args.data_root).name


def load(args: argparse.Namespace, split: str | None, image_size: int, limit: int | None = None,
         data=None) -> ImageSplit:
    """One split of the command's data set (or ``data``) at ``image_size`` (default split: its evaluation split)."""
    data = data if data is not None else dataset(args)
    split = split or evaluation_split(data, args.data_root)
    return load_split(data, split, args.data_root, limit=limit, image_size=image_size,
                      skip_missing=getattr(args, "skip_missing", False))


def zoo_card(model: str):
    """The model card of a zoo checkpoint (by name or card path), or None for anything else."""
    from semcomm.models import model_card

    try:
        return model_card(model)
    except KeyError:
        return None


def geometry_of(model: str) -> tuple[int, int]:
    """(image side, patch side) in pixels of a zoo model, model card or timm architecture (square images only)."""
    card = zoo_card(model)
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


def image_side(model: str) -> int:
    """Side in pixels of the square images ``model`` takes: what its data are resized and cropped to."""
    return geometry_of(model)[0]


def check_budgets(option: str, budgets: tuple[int, ...] | None, model: str) -> None:
    """Refuse patch budgets above the number of patches ``model`` cuts an image into."""
    image, patch = geometry_of(model)
    patches = (image // patch) ** 2
    too_many = [k for k in budgets or () if k > patches]
    if too_many:
        raise ValueError(f"{option} {','.join(map(str, too_many))}: {model} cuts an image into {patches} patches")


def check_levels(codec: str, asked: dict[str, tuple[int, ...] | None]) -> None:
    """Refuse level options codec pair ``codec`` cannot honour. ``asked``: each option -> the levels it asks for
    (``()``: none in particular, e.g. a bit budget; None: not given). The pair is built to ask its levels."""
    given = {option: levels for option, levels in asked.items() if levels is not None}
    top = pair_levels(codec) if given else None
    if top == 1:
        raise ValueError(f"{', '.join(given)}: codec pair {codec} sends every patch at its one level; drop "
                         f"{' and '.join(given)}")
    for option, levels in given.items() if top is not None else ():
        too_high = [m for m in levels if m > top]
        if too_high:
            raise ValueError(f"{option} {','.join(map(str, too_high))}: codec pair {codec} has levels 1..{top}")


@lru_cache(maxsize=None)
def pair_levels(codec: str) -> int | None:
    """The number of levels of the registered codec pair ``codec`` (built with its defaults), None if it does
    not say (a plug-in pair then refuses a level itself)."""
    from semcomm.rate import create_codec

    return getattr(create_codec(codec), "levels", None)


def check_codec(codec: str | None, edge: str, data: str, instead: str) -> None:
    """Refuse a shipped codec pair fitted to another data set (``data``: the command's) or patch grid (its
    tables and server would not fit); ``instead`` says what to do."""
    from semcomm.rate.zoo import codec_card

    try:
        card = codec_card(codec) if codec else None
    except KeyError:
        return  # registered but not shipped: built for whatever it is given
    if card is not None and (card.dataset != data or geometry_of(card.edge) != geometry_of(edge)):
        raise ValueError(f"codec pair {codec} was fitted to {card.dataset} at the geometry of {card.edge}; it does not "
                         f"fit {edge} on {data}: {instead}")


def check_hint(edge: str) -> None:
    """Fusion needs the edge's hint coder, fitted on its training split."""
    from semcomm.rate.zoo import hint_path

    if not hint_path(edge).is_file():
        raise ValueError(f"no hint coder for edge {edge} (fusion): fit one with `semcomm fit hint --edge {edge} "
                         "--data PATH`, or pass --no-fusion")


def check_classes(model: str, split: ImageSplit) -> None:
    """Refuse a zoo model whose classes are not the data's (its labels would mean other things)."""
    card = zoo_card(model)
    if card is None:
        return
    if card.num_classes != len(split.classes) or (card.classes and card.classes != split.classes):
        raise ValueError(f"{model} classifies {card.num_classes} classes of {card.dataset}, but {split.name} has "
                         f"{len(split.classes)} classes{' (other ones)' if card.num_classes == len(split.classes) else ''}")


def run_dir(args: argparse.Namespace) -> Path:
    """A training run's state directory: --run-dir, else the cache's ``runs/PRESET``."""
    return args.run_dir or default_cache_dir() / "runs" / args.preset
