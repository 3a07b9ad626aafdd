"""The tuned ViT recipes behind the zoo (:data:`PRESETS`), and recipes for any size x geometry x data set.

Run names are ``vit-<size>-<dataset>[-<image>p<patch>]`` (:func:`parse_run_name`); :func:`recipe` gives the
preset itself at its own geometry, and the preset's (or a family's) hyper-parameters on the architecture at any
other.
"""
from __future__ import annotations

import re
from dataclasses import replace

from semcomm.models.architectures import vit_architecture
from semcomm.train.vit import TrainConfig

PRESETS = {
    "vit-edge-cifar10": TrainConfig("semcomm_vit_edge_p4_32", epochs=30, warmup_epochs=2.0),
    "vit-server-cifar10": TrainConfig("semcomm_vit_server_p4_32", epochs=45, warmup_epochs=3.0,
                                      token_keep=(0.1, 1.0), guide="vit-edge-cifar10", guided_prob=0.5),
}
# the server fine-tuned on what the DCT pair delivers: warm-start it with --init-from vit-server-cifar10.pt weights
PRESETS["vit-server-dct-cifar10"] = replace(PRESETS["vit-server-cifar10"], epochs=6, lr=3e-4, warmup_epochs=0.5,
                                           codec="dct-cifar10", codec_levels=(1, 6))
# ImageNet geometry from scratch on Imagenette (9,469 training images): DeiT's augmentation, stochastic depth, and
# most epochs at 128 x 128 (64 tokens) before the last ones at 224 x 224 (196 tokens)
_IMAGENETTE = dict(augment="deit", warmup_epochs=5.0, eval_images=1000)
PRESETS["vit-edge-imagenette"] = TrainConfig("semcomm_vit_edge_p16_224", epochs=120, low_res=(128, 90), drop_path=0.05,
                                             **_IMAGENETTE)
# the server starts from the trained edge's 6 blocks stacked twice (progressive stacking, semcomm.train.growth):
# from scratch it reached 40% after 10 of 150 planned epochs, about 10 hours of one core from its target
_SERVER_IMAGENETTE = TrainConfig("semcomm_vit_server_p16_224", epochs=150, low_res=(128, 110), drop_path=0.1,
                                 token_keep=(0.25, 1.0), full_image_prob=0.5, **_IMAGENETTE)
PRESETS["vit-server-imagenette"] = replace(_SERVER_IMAGENETTE, epochs=60, lr=5e-4, warmup_epochs=2.0,
                                           low_res=(128, 35), grown_from="vit-edge-imagenette")
# other geometries and data sets start from scratch, with the recipes made for that
_FROM_SCRATCH = {"vit-server-imagenette": _SERVER_IMAGENETTE}
PRESET_DATASETS = {name: name.rsplit("-", 1)[-1] for name in PRESETS}
_RUN_NAME = re.compile(r"vit-(edge|server)-(.+?)(?:-(\d+)p(\d+))?")


def parse_run_name(name: str) -> tuple[str, str, tuple[int, int] | None] | None:
    """(size, data set, (image, patch) or None) of a name ``vit-<size>-<dataset>[-<image>p<patch>]``; None otherwise."""
    match = _RUN_NAME.fullmatch(name)
    if match is None:
        return None
    return match[1], match[2], (int(match[3]), int(match[4])) if match[3] else None


def recipe(size: str, dataset: str, geometry: tuple[int, int], base: str | None = None) -> tuple[str, TrainConfig]:
    """Run name and config for the project's ``size`` ViT at ``geometry`` (image, patch side in pixels) on ``dataset``.

    ``base`` is the preset whose hyper-parameters are used (default
    ``vit-<size>-<dataset>`` if that is a preset). At the preset's own
    geometry the result is the preset itself, under its own name. Otherwise
    the run is named ``vit-<size>-<dataset>-<image>p<patch>`` and uses the
    preset's recipe (for a data set without one: Imagenette's DeiT recipe
    at 64 pixels and up, CIFAR's below; from scratch where the preset is
    grown from another model) on the architecture at that geometry, without
    a guide or a low-resolution phase. ``num_classes`` is left for
    the caller to set from the data.
    """
    architecture = vit_architecture(size, *geometry)
    base = base or f"vit-{size}-{dataset}"
    if base in PRESETS and PRESETS[base].architecture == architecture:
        return base, PRESETS[base]
    if base in PRESETS and PRESETS[base].codec is not None:
        raise ValueError(f"preset {base} trains on what its codec delivers at its own geometry only")
    family = base if base in PRESETS else f"vit-{size}-{'imagenette' if geometry[0] >= 64 else 'cifar10'}"
    config = replace(_FROM_SCRATCH.get(family, PRESETS[family]), architecture=architecture, guide=None, low_res=None)
    return f"vit-{size}-{dataset}-{geometry[0]}p{geometry[1]}", config
