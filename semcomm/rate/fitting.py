"""Fitting the parts of a codec pair that are statistics of the training split, and exporting pairs.

* :func:`fit_hint`: the Huffman code of an edge model's quantized predictions.
* :func:`fit_dct`: the DCT pair's rANS tables (one per level and coefficient).
* :func:`export_latent`: a trained latent codec's weights and its integer tables.

Each writes into ``checkpoints/codecs/`` with a card (:mod:`semcomm.rate.zoo`).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..data import ImageSplit
from ..inference import predict_logits
from ..models import create_model
from .dct import DCTPair
from .entropy import SymbolTables
from .hint import HintCoder
from .latent import LatentCodec, LatentConfig
from .latent_training import edge_view
from .zoo import CodecCard, save_codec, save_hint, write_card


def fit_hint(edge: str, train_split: ImageSplit, step: float = 2.0, levels: int = 3) -> HintCoder:
    """Fit and ship the hint coder of zoo edge ``edge`` on ``train_split`` (edge in fp32, as the encoder runs it)."""
    logits = predict_logits(create_model(edge), train_split.images, bf16=False, desc=f"{edge} on {train_split.name}")
    coder = HintCoder.fit(logits, levels=levels, step=step)
    save_hint(edge, coder, notes=f"fitted on {train_split.name} ({len(train_split)} images), edge in fp32")
    return coder


def fit_dct(name: str, train_split: ImageSplit, edge: str, server: str, levels: int = 6,
            test_split: ImageSplit | None = None) -> CodecCard:
    """Fit and ship the DCT pair's tables on ``train_split``; the card records :func:`measure_pair`
    (with ``server``) on ``test_split`` when given."""
    pair = DCTPair(create_model(server), levels=levels)
    tables = pair.fit_tables(train_split.images)
    tensors = {**tables.state_dict("tables."), "distortion": pair.distortion}
    card = CodecCard(name=name, kind="dct", edge=edge, server=server, dataset=train_split.name.split("/")[0],
                     config=dict(levels=levels, patch_size=pair.patch_size, codec_id=pair.layout.codec_id),
                     notes=f"rANS tables fitted on {train_split.name} ({len(train_split)} images), every patch at "
                           "every level")
    card = save_codec(card, tensors)
    if test_split is not None:
        card.measured = measure_pair(pair, edge, test_split)
        write_card(card)
    return card


def latent_tables(codec: LatentCodec) -> SymbolTables:
    """The integer rANS tables of a latent codec's own entropy models (quantiles searched first)."""
    for model in codec.entropy.models:
        model.update(force=True, update_quantiles=True)
    return SymbolTables.from_entropy_bottlenecks(codec.entropy.models)


@torch.no_grad()
def fit_latent_tables(codec: LatentCodec, edge, images: torch.Tensor,
                      batch: int = 250) -> tuple[SymbolTables, torch.Tensor]:
    """Tables fitted to the symbols the codec actually produces on ``images``, one per (level, channel),
    and the (L + 1) mean squared error of a patch's latent at each level (level 0, not sent: its
    spread about the mean latent), for importance-aware allocation.

    Symbols are centred on the entropy models' medians, as in training; the
    counts, not the trained densities, set the probabilities (the densities
    fit the latents poorly at the coarse levels: they start wide and learn slowly).
    """
    config = codec.config
    medians = codec.entropy.medians().detach().double()
    symbols, indexes, latents = [], [], []
    error = torch.zeros(config.levels + 1, dtype=torch.float64)
    for start in range(0, len(images), batch):
        y = codec.bottleneck(edge_view(edge, images[start : start + batch], config)[2].float()).double()
        latents.append(y.reshape(-1, config.channels))
        for m in range(1, config.levels + 1):
            gain = config.gain(m)
            q = torch.round(y * gain - medians[m - 1])
            error[m] += ((q + medians[m - 1]) / gain - y).pow(2).sum(-1).sum()
            symbols.append(q.long().flatten().numpy())
            indexes.append(((m - 1) * config.channels + torch.arange(config.channels)).expand_as(q).flatten().numpy())
    y = torch.cat(latents)
    error[0] = (y - y.mean(0)).pow(2).sum()
    tables = SymbolTables.fit(np.concatenate(symbols), np.concatenate(indexes), config.levels * config.channels)
    return tables, (error / len(y)).float()


@torch.no_grad()
def measure_pair(pair, edge_name: str, test_split: ImageSplit) -> dict:
    """Top-1 of the pair's server alone and real bits per image with every patch of every image of
    ``test_split`` sent, at each level (no hint): what a card records."""
    from ..codec import EdgeEncoder, ServerDecoder
    from ..selection import TopK
    from .policies import FixedLevel

    edge = create_model(edge_name)
    encoder = EdgeEncoder(edge, TopK(edge.num_patches), gate=None, codec=pair)
    analysis = encoder.analyze(test_split.images)
    measured = dict(test_images=len(test_split), note="every patch sent, server alone (no fusion), bits as sent")
    for level in range(1, pair.levels + 1):
        encoder.policy = FixedLevel(level)
        sent = encoder.encode(test_split.images, analysis=analysis)
        logits = ServerDecoder(codec=pair).classify(sent.strings)
        measured[f"L{level}"] = dict(top1=float((logits.argmax(-1) == test_split.labels).float().mean()),
                                     bits_per_image=float(sent.bits.float().mean()))
    return measured


def export_latent(name: str, run_dir: str | Path, edge: str, train_split: ImageSplit,
                  test_split: ImageSplit | None = None) -> CodecCard:
    """Ship a latent-codec training run: fp16 weights, fp32 medians, integer tables fitted on
    ``train_split``; the card records :func:`measure_pair` on ``test_split`` when given."""
    state = torch.load(Path(run_dir) / "state.pt", weights_only=False)
    config = LatentConfig.from_dict(state["config"]["codec"])
    codec = LatentCodec(config)
    codec.load_state_dict(state["model"], strict=False)
    codec.eval()
    shipped = {k: v.detach().half() for k, v in codec.state_dict().items()
               if v.is_floating_point() and not k.startswith("entropy.")}
    codec.load_state_dict({k: v.float() for k, v in shipped.items()}, strict=False)  # fit on what ships
    tables, distortion = fit_latent_tables(codec, create_model(edge), train_split.images)
    tensors = {f"weights.{k}": v for k, v in shipped.items()}
    tensors["medians"] = codec.entropy.medians().detach().float()
    tensors["distortion"] = distortion
    tensors.update(tables.state_dict("tables."))
    card = CodecCard(name=name, kind="latent", edge=edge, server=f"{name} (its own)", dataset=train_split.name.split("/")[0],
                     config=dict(codec=asdict(config), codec_id=3, train=state["config"]), history=state["history"],
                     notes=f"`semcomm train {name} --export`; tables fitted on {train_split.name} ({len(train_split)} images)")
    card = save_codec(card, tensors)
    if test_split is not None:
        from .latent import LatentPair

        card.measured = measure_pair(LatentPair.from_zoo(name, hint=False), edge, test_split)
        write_card(card)
    return card
