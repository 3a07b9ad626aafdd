"""The hyperlatent pair's held-out numbers during training (real strings), and its export into the zoo.

* :func:`evaluate_pair`: top-1 of the pair's server (no fusion) and real bits per image (8 x the bytes of its
  version-2 strings, hint excluded) at a few budgets, through compress / decompress / classify.
* :func:`export_e2e`: fp16 weights, integer tables (the payload's refitted to the symbols the codec produces on
  the training split, every patch at every level), z's medians, the scale table and the measured distortion
  per level, with a card (SHA-256 of the tensors) in the user zoo's ``codecs/`` (or a folder given), and the
  card's measurement on the test split (:func:`~semcomm.train.fitting.measure_pair`).

A budget is ``all@M`` (every patch at level M), ``spreadK@M`` or ``topK@M`` (spread-top-k / top-k K patches by
the edge's mean attention, at level M).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from semcomm.core.devices import host
from semcomm.data import ImageSplit
from semcomm.edge.selection import SpreadTopK, TopK
from semcomm.inference import autocast
from semcomm.models import ViTAdapter, create_model
from semcomm.rate.hyperlatent import CODEC_ID, WEIGHTS_PREFIX, HyperLatentPair, TableCounts
from semcomm.rate.hyperprior import HyperConfig, HyperLatentCodec, edge_pass
from semcomm.rate.zoo import ZOO_FOLDER, CodecCard, save_codec, write_card
from semcomm.train.fitting import measure_pair
from semcomm.zoo import user_zoo_dirs

_SETTING = re.compile(r"(all|spread|top)(\d*)@(\d+)")


def parse_setting(setting: str, levels: int) -> tuple[object, int]:
    """(selection rule or None for every patch, level) of a budget ``all@M``, ``spreadK@M`` or ``topK@M``."""
    match = _SETTING.fullmatch(setting)
    if match is None or (match[1] == "all") == bool(match[2]) or not 1 <= int(match[3]) <= levels:
        raise ValueError(f"a budget is all@M, spreadK@M or topK@M with M in 1..{levels}, got {setting!r}")
    rule = None if match[1] == "all" else (SpreadTopK if match[1] == "spread" else TopK)(int(match[2]))
    return rule, int(match[3])


@torch.no_grad()
def evaluate_pair(codec: HyperLatentCodec, edge: ViTAdapter, split: ImageSplit, settings: tuple[str, ...],
                  bf16: bool = True, batch_size: int = 250, per_image: bool = False) -> dict:
    """Per budget: top-1 of the pair's server alone and real bits per image over ``split``, every image sent;
    ``per_image``: also ``correct`` (B bool) and ``bits`` (B int64, the strings' lengths) of each image."""
    codec.eval()
    pair = HyperLatentPair.from_codec(codec, bf16=bf16)
    parsed = {s: parse_setting(s, codec.config.levels) for s in settings}
    correct = {s: [] for s in settings}
    bits = {s: [] for s in settings}
    for start in range(0, len(split), batch_size):
        images, labels = split.images[start : start + batch_size], split.labels[start : start + batch_size]
        with autocast(bf16):
            _, importance, hidden = edge_pass(edge, images, codec.config)
        importance = host(importance.float())
        source = pair.source(images, None if hidden is None else hidden.float())
        for setting, (rule, level) in parsed.items():
            mask = torch.ones_like(importance, dtype=torch.bool) if rule is None else rule(importance.float(),
                                                                                              edge.grid_size)
            strings = pair.compress(source, torch.where(mask, level, 0))
            logits = pair.classify(pair.decompress(strings), fuse=False)
            correct[setting].append(logits.argmax(-1) == labels)
            bits[setting].append(torch.tensor([8 * len(s) for s in strings]))
    results = {}
    for s in settings:
        right, length = torch.cat(correct[s]), torch.cat(bits[s])
        results[s] = dict(top1=right.sum().item() / len(split), bits_per_image=length.sum().item() / len(split))
        if per_image:
            results[s].update(correct=right, bits=length)
    return results


def load_run(run_dir: str | Path) -> tuple[HyperLatentCodec, dict]:
    """The codec of an end-to-end run's saved state (fp32, eval mode, on the CPU) and the rest of what the state
    records: ``config`` (the run's config as saved, its edge's zoo name under ``edge``), ``history`` (one record per
    finished epoch) and ``epoch``."""
    path = Path(run_dir) / "state.pt"
    if not path.is_file():
        raise ValueError(f"no end-to-end run state in {run_dir}: train it first (semcomm train NAME)")
    state = torch.load(path, weights_only=False, map_location="cpu")
    codec = HyperLatentCodec(HyperConfig.from_dict(state["config"]["codec"]))
    codec.load_state_dict(state["model"])
    return codec.eval(), {key: state[key] for key in ("config", "history", "epoch")}


@torch.no_grad()
def export_e2e(name: str, run_dir: str | Path, train_split: ImageSplit, test_split: ImageSplit | None = None,
               directory: str | Path | None = None, batch_size: int = 250) -> CodecCard:
    """Ship a run as a hyperlatent pair into ``directory`` (default: the user zoo's ``codecs/``): its fp16
    weights, the payload tables refitted to its symbols and the distortion per level, both on ``train_split``;
    the card records :func:`~semcomm.train.fitting.measure_pair` on ``test_split`` when given."""
    codec, state = load_run(run_dir)
    config, edge_name = codec.config, state["config"]["edge"]
    shipped = {k: v.detach().half() for k, v in codec.state_dict().items()
               if v.is_floating_point() and not k.startswith(("hyper_entropy.", "gaussian."))}
    codec.load_state_dict({k: v.float() for k, v in shipped.items()}, strict=False)  # measure what ships
    pair = HyperLatentPair.from_codec(codec, bf16=False)
    edge = create_model(edge_name)
    total = torch.zeros(config.levels + 1, dtype=torch.float64)
    counts = TableCounts(pair.scale_table)
    for start in range(0, len(train_split), batch_size):
        images = train_split.images[start : start + batch_size]
        _, _, hidden = edge_pass(edge, images, config)
        source = pair.source(images, hidden)
        total += pair.measure_distortion(source) * len(images)
        for level in range(1, config.levels + 1):  # every patch at every level, as coded
            for symbols, indexes, _ in pair.symbols(source, torch.full(source.shape[:2], level)):
                counts.add(symbols[config.hyper_channels :], indexes[config.hyper_channels :] - config.hyper_channels)
    pair = HyperLatentPair.from_codec(codec, pair.scale_table, counts.tables(), bf16=False,
                                      distortion=(total / len(train_split)).float())
    tensors = {**{f"{WEIGHTS_PREFIX}{k}": v for k, v in shipped.items()}, **pair.shipped_tensors()}
    card = CodecCard(name=name, kind="hyperlatent", edge=edge_name, server=f"{name} (its own)",
                     dataset=train_split.name.split("/")[0],
                     config=dict(codec=config.to_dict(), codec_id=CODEC_ID, train=state["config"]),
                     history=state["history"],
                     notes=f"`semcomm export {name}` after {state['epoch']} epochs; "
                           f"distortion measured on {train_split.name} ({len(train_split)} images)")
    directory = Path(directory) if directory is not None else user_zoo_dirs()[0] / ZOO_FOLDER
    directory.mkdir(parents=True, exist_ok=True)
    card = save_codec(card, tensors, directory)
    if test_split is not None:
        card.measured = measure_pair(HyperLatentPair.from_card(directory / f"{name}.json", hint=False), edge_name,
                                     test_split)
        write_card(card)
    return card
