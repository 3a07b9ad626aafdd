"""Fitting the parts of a codec pair that are statistics of the training split, and exporting pairs.

* :func:`fit_hint`: the Huffman code of an edge model's quantized predictions.
* :func:`fit_dct`: the DCT pair's rANS tables (one per level and coefficient).
* :func:`export_latent`: a trained latent codec's weights and its integer tables.

Each writes into ``checkpoints/codecs/`` with a card (:mod:`semcomm.rate.zoo`).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from ..data import ImageSplit
from ..inference import predict_logits
from ..models import create_model
from .dct import DCTPair
from .entropy import SymbolTables
from .hint import HintCoder
from .latent import LatentCodec, LatentConfig
from .zoo import CodecCard, save_codec, save_hint


def fit_hint(edge: str, train_split: ImageSplit, step: float = 2.0, levels: int = 3) -> HintCoder:
    """Fit and ship the hint coder of zoo edge ``edge`` on ``train_split`` (edge in fp32, as the encoder runs it)."""
    logits = predict_logits(create_model(edge), train_split.images, bf16=False, desc=f"{edge} on {train_split.name}")
    coder = HintCoder.fit(logits, levels=levels, step=step)
    save_hint(edge, coder, notes=f"fitted on {train_split.name} ({len(train_split)} images), edge in fp32")
    return coder


def fit_dct(name: str, train_split: ImageSplit, edge: str, server: str, levels: int = 6) -> CodecCard:
    """Fit and ship the DCT pair's tables on ``train_split``."""
    pair = DCTPair(create_model(server), levels=levels)
    tables = pair.fit_tables(train_split.images)
    card = CodecCard(name=name, kind="dct", edge=edge, server=server, dataset=train_split.name.split("/")[0],
                     config=dict(levels=levels, patch_size=pair.patch_size, codec_id=pair.layout.codec_id),
                     notes=f"rANS tables fitted on {train_split.name} ({len(train_split)} images), every patch at "
                           "every level")
    return save_codec(card, tables.state_dict("tables."))


def latent_tables(codec: LatentCodec) -> SymbolTables:
    """The integer rANS tables of a latent codec's entropy models (quantiles searched first)."""
    for model in codec.entropy.models:
        model.update(force=True, update_quantiles=True)
    return SymbolTables.from_entropy_bottlenecks(codec.entropy.models)


def export_latent(name: str, run_dir: str | Path, edge: str, measured: dict | None = None) -> CodecCard:
    """Ship a latent-codec training run: fp16 weights, fp32 medians and integer tables, and its card."""
    state = torch.load(Path(run_dir) / "state.pt", weights_only=False)
    config = LatentConfig(**state["config"]["codec"])
    codec = LatentCodec(config)
    codec.load_state_dict(state["model"], strict=False)
    tables = latent_tables(codec)
    tensors = {f"weights.{k}": v.detach().half() for k, v in codec.state_dict().items()
               if v.is_floating_point() and not k.startswith("entropy.")}
    tensors["medians"] = codec.entropy.medians().detach().float()
    tensors.update(tables.state_dict("tables."))
    card = CodecCard(name=name, kind="latent", edge=edge, server=f"{name} (its own)", dataset="cifar10",
                     config=dict(codec=asdict(config), train=state["config"]), measured=measured or {},
                     history=state["history"], notes="`semcomm train latent-cifar10 --export`")
    return save_codec(card, tensors)
