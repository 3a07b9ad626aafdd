"""Fitting the parts of a codec pair that are statistics of the training split, and exporting pairs.

* :func:`fit_hint`: the Huffman code of an edge model's quantized predictions.
* :func:`fit_dct`: the DCT pair's rANS tables (one per level and coefficient).
* :func:`export_latent`: a trained latent codec's weights and its integer tables.

A pair is written into the shipped ``codecs/`` folder of the zoo with its card, a hint coder into the user
zoo's (:mod:`semcomm.rate.zoo`); :func:`measure_pair` is what a card records.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from semcomm.data import ImageSplit
from semcomm.edge.encoder import EdgeEncoder
from semcomm.edge.selection import TopK
from semcomm.inference import predict_logits
from semcomm.models import create_model
from semcomm.rate.dct import DCTPair
from semcomm.rate.entropy import SetCosts, SymbolTables
from semcomm.rate.hint import HintCoder
from semcomm.rate.latent import WEIGHTS_PREFIX, LatentCodec, LatentConfig, LatentPair
from semcomm.rate.policies import FixedLevel
from semcomm.rate.zoo import CodecCard, save_codec, save_hint, write_card
from semcomm.server.decoder import ServerDecoder
from semcomm.train.latent import edge_view

MEASURE_CHUNK = 1024  # test images encoded and decoded at a time by measure_pair


def fit_hint(edge: str, train_split: ImageSplit, step: float = 2.0, levels: int = 3,
             directory: str | Path | None = None) -> HintCoder:
    """Fit the hint coder of zoo edge ``edge`` on ``train_split`` (edge in fp32, as the encoder runs it) and
    save it into ``directory`` (default: the user zoo; see :func:`~semcomm.rate.zoo.save_hint`)."""
    logits = predict_logits(create_model(edge), train_split.images, bf16=False, desc=f"{edge} on {train_split.name}")
    coder = HintCoder.fit(logits, levels=levels, step=step)
    save_hint(edge, coder, notes=f"fitted on {train_split.name} ({len(train_split)} images), edge in fp32",
              directory=directory)
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


@dataclass
class LatentStatistics:
    """What a latent pair ships besides its weights, fitted on a training split.

    Attributes:
        tables: L x C tables (level-major), fitted to every image's symbols.
        distortion: (L + 1) mean squared error of a patch's latent at each level
            (level 0, not sent: its spread about the mean latent).
        table_sets: ``sets`` switched sets of L x C tables, or None for one set.
        classes: the training images' set (B int64), or None.
    """

    tables: SymbolTables
    distortion: torch.Tensor
    table_sets: list[SymbolTables] | None = None
    classes: np.ndarray | None = None


@torch.no_grad()
def fit_latent_tables(codec: LatentCodec, edge, images: torch.Tensor, sets: int = 1,
                      batch: int = 250) -> LatentStatistics:
    """Tables fitted to the symbols the codec actually produces on ``images`` at every level, one per
    (level, channel), the distortion per level for importance-aware allocation, and with ``sets`` > 1
    switched table sets (:func:`fit_switched_tables`).

    Symbols are centred on the entropy models' medians, as in training; the
    counts, not the trained densities, set the probabilities (the densities
    fit the latents poorly at the coarse levels: they start wide and learn slowly).
    """
    config = codec.config
    medians = codec.entropy.medians().detach().double()
    symbols, latents = [], []
    error = torch.zeros(config.levels + 1, dtype=torch.float64)
    for start in range(0, len(images), batch):
        y = codec.bottleneck(edge_view(edge, images[start : start + batch], config)[2].float()).double()
        latents.append(y.reshape(-1, config.channels))
        per_level = []
        for m in range(1, config.levels + 1):
            gain = config.gain(m)
            q = torch.round(y * gain - medians[m - 1])
            error[m] += ((q + medians[m - 1]) / gain - y).pow(2).sum(-1).sum()
            per_level.append(q.to(torch.int32))
        symbols.append(torch.stack(per_level, 1).numpy())  # b x L x N x C
    y = torch.cat(latents)
    error[0] = (y - y.mean(0)).pow(2).sum()
    symbols = np.concatenate(symbols)
    index = _level_channel_index(symbols.shape)
    tables = SymbolTables.fit(symbols, np.broadcast_to(index, symbols.shape), config.levels * config.channels)
    stats = LatentStatistics(tables, (error / len(y)).float())
    if sets > 1:
        stats.table_sets, stats.classes = fit_switched_tables(symbols, sets)
    return stats


def _level_channel_index(shape: tuple[int, ...]) -> np.ndarray:
    """1 x L x 1 x C table index (m - 1) C + c of symbols laid out B x L x N x C."""
    _, levels, _, channels = shape
    return (np.arange(levels)[:, None] * channels + np.arange(channels))[None, :, None, :]


def fit_switched_tables(symbols: np.ndarray, sets: int, iterations: int = 6,
                        chunk: int = 200) -> tuple[list[SymbolTables], np.ndarray]:
    """``sets`` sets of L x C tables for switched coding, and each image's set (B int64).

    A k-means on code length: images start in ``sets`` classes by the
    magnitude of their symbols at the middle level; then, ``iterations``
    times, each class's tables are fitted to its images' symbols (every
    level) and each image moves to the set that codes all its symbols in
    the fewest bits.

    Args:
        symbols: B x L x N x C int symbols of every image's patches at every level.
    """
    b, levels, _, channels = symbols.shape
    per_set = levels * channels
    index = _level_channel_index(symbols.shape)  # 1 x L x 1 x C
    table_index = torch.from_numpy(index)
    energy = np.abs(symbols[:, levels // 2]).sum((1, 2))
    classes = np.searchsorted(np.quantile(energy, np.linspace(0, 1, sets + 1)[1:-1]), energy)
    for _ in range(iterations):
        labels = classes[:, None, None, None] * per_set + index
        table_sets = SymbolTables.fit(symbols, np.broadcast_to(labels, symbols.shape), sets * per_set).split(sets)
        set_costs = SetCosts(table_sets)
        costs = []
        for a in range(0, b, chunk):
            part = torch.from_numpy(symbols[a : a + chunk])
            costs.append(set_costs(part, table_index.expand(part.shape)).flatten(1, -2).sum(1))  # chunk x S
        classes = torch.cat(costs).argmin(1).numpy()
    return table_sets, classes


@torch.no_grad()
def measure_pair(pair, edge_name: str, test_split: ImageSplit, chunk: int = MEASURE_CHUNK) -> dict:
    """Top-1 of the pair's server alone and real bits per image with every patch of every image of
    ``test_split`` sent, at each level (no hint): what a card records.

    The images are encoded and decoded ``chunk`` at a time (a split left on disk is read so); each image's bits
    and prediction do not depend on the chunking.
    """
    edge = create_model(edge_name)
    encoder = EdgeEncoder(edge, TopK(edge.num_patches), gate=None, codec=pair)
    decoder = ServerDecoder(codec=pair)
    correct = {level: [] for level in range(1, pair.levels + 1)}  # per level, N booleans
    bits = {level: [] for level in correct}  # per level, N bits
    for start in range(0, len(test_split), chunk):
        images, labels = test_split.images[start : start + chunk], test_split.labels[start : start + chunk]
        analysis = encoder.analyze(images)
        for level in correct:
            encoder.policy = FixedLevel(level)
            sent = encoder.encode(images, analysis=analysis)
            correct[level].append(decoder.classify(sent.strings).argmax(-1) == labels)
            bits[level].append(sent.bits)
    measured = dict(test_images=len(test_split), note="every patch sent, server alone (no fusion), bits as sent")
    for level in correct:
        measured[f"L{level}"] = dict(top1=float(torch.cat(correct[level]).float().mean()),
                                     bits_per_image=float(torch.cat(bits[level]).float().mean()))
    return measured


def export_latent(name: str, run_dir: str | Path, edge: str, train_split: ImageSplit,
                  test_split: ImageSplit | None = None, table_sets: int = 16) -> CodecCard:
    """Ship a latent-codec training run: fp16 weights, fp32 medians, integer tables (and ``table_sets``
    switched sets) fitted on ``train_split``; the card records :func:`measure_pair` on ``test_split``
    when given."""
    state = torch.load(Path(run_dir) / "state.pt", weights_only=False, map_location="cpu")
    config = LatentConfig.from_dict(state["config"]["codec"])
    codec = LatentCodec(config)
    codec.load_state_dict(state["model"], strict=False)
    codec.eval()
    shipped = {k: v.detach().half() for k, v in codec.state_dict().items()
               if v.is_floating_point() and not k.startswith("entropy.")}
    codec.load_state_dict({k: v.float() for k, v in shipped.items()}, strict=False)  # fit on what ships
    stats = fit_latent_tables(codec, create_model(edge), train_split.images, sets=table_sets)
    tensors = {f"{WEIGHTS_PREFIX}{k}": v for k, v in shipped.items()}
    tensors["medians"] = codec.entropy.medians().detach().float()
    tensors["distortion"] = stats.distortion
    tensors.update(stats.tables.state_dict("tables."))
    if stats.table_sets:
        tensors.update(SymbolTables.concat(*stats.table_sets).state_dict("switched."))
    card = CodecCard(name=name, kind="latent", edge=edge, server=f"{name} (its own)",
                     dataset=train_split.name.split("/")[0],
                     config=dict(codec=asdict(config), codec_id=3, table_sets=table_sets, train=state["config"]),
                     history=state["history"],
                     notes=f"`semcomm train {name} --export`; tables ({table_sets} switched sets) fitted on "
                           f"{train_split.name} ({len(train_split)} images)")
    card = save_codec(card, tensors)
    if test_split is not None:
        card.measured = measure_pair(LatentPair.from_zoo(name, hint=False), edge, test_split)
        write_card(card)
    return card
