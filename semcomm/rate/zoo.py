"""Shipped codec pairs (their tables and weights, with a card) and the edges' hint coders, in the zoo.

Each pair is ``codecs/<name>.safetensors`` in the shipped checkpoints (integer rANS tables exactly as both
ends code with them, fp16 neural weights, fp32 medians) with ``codecs/<name>.json``, a :class:`CodecCard`:
kind, the edge and server it belongs to, how it was fitted or trained, what was measured, and the SHA-256 of
the tensors file, verified on every load. The edge's hint coder (the code for its predictions, fitted on the
training split) is ``codecs/hint-<edge>.json`` in the user zoo (``semcomm fit hint``) or in the shipped
checkpoints (:func:`semcomm.zoo.zoo_dirs`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from semcomm.rate.hint import HintCoder
from semcomm.zoo import SHIPPED_DIR, Card, load_tensors, save_tensors, write_json, zoo_dirs

ZOO_FOLDER = "codecs"  # codec pairs and hint coders in the zoo: <zoo dir>/codecs/
CODEC_DIR = SHIPPED_DIR / ZOO_FOLDER  # where the shipped pairs are (and where fitting writes by default)


@dataclass
class CodecCard(Card):
    """What is known about a shipped codec pair; ``directory`` is where the card and its tensors are (set when
    read or written, not stored in the JSON)."""

    name: str
    kind: str
    edge: str
    server: str
    dataset: str
    config: dict = field(default_factory=dict)
    measured: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    notes: str = ""
    sha256: str = ""
    directory: Path | None = field(default=None, repr=False, compare=False)

    @property
    def tensors_path(self) -> Path:
        return (self.directory or CODEC_DIR) / f"{self.name}.safetensors"


def list_codec_cards() -> list[CodecCard]:
    """The cards of every shipped codec pair, sorted by name."""
    return [CodecCard.read(path) for path in sorted(CODEC_DIR.glob("*.json")) if not path.name.startswith("hint-")]


def codec_card(name: str) -> CodecCard:
    """The card of the shipped codec pair ``name``; KeyError naming the shipped ones if there is none."""
    path = CODEC_DIR / f"{name}.json"
    if not path.is_file():
        raise KeyError(f"no shipped codec pair named {name!r}; shipped: {[c.name for c in list_codec_cards()]}")
    return CodecCard.read(path)


def save_codec(card: CodecCard, tensors: dict[str, torch.Tensor], directory: Path = CODEC_DIR) -> CodecCard:
    """Write the tensors and the card (its SHA-256 filled in) into ``directory``; returns the card."""
    card.sha256 = save_tensors(tensors, Path(directory) / f"{card.name}.safetensors")
    write_card(card, directory)
    return card


def write_card(card: CodecCard, directory: Path | None = None) -> Path:
    """Write ``card`` as ``<directory>/<name>.json`` (default: the card's own directory, else the shipped
    pairs'); returns the path."""
    return card.write(Path(directory or card.directory or CODEC_DIR) / f"{card.name}.json")


def load_codec_tensors(name: str) -> tuple[CodecCard, dict[str, torch.Tensor]]:
    """A shipped pair's card and tensors, its SHA-256 verified and every float finite."""
    card = codec_card(name)
    return card, load_tensors(card.tensors_path, card.sha256)


def hint_dirs() -> list[Path]:
    """Where hint coders are looked for, first match wins: ``codecs/`` in each user zoo directory
    (``$SEMCOMM_ZOO`` or ``<cache>/zoo``), then the shipped ``codecs/``."""
    return zoo_dirs(ZOO_FOLDER)


def hint_path(edge: str) -> Path:
    """The hint coder file of ``edge``: the first that exists in :func:`hint_dirs`, else where
    :func:`save_hint` would write it."""
    paths = [directory / f"hint-{edge}.json" for directory in hint_dirs()]
    return next((path for path in paths if path.is_file()), paths[0])


def load_hint(edge: str) -> HintCoder:
    """The hint coder of an edge model (the user zoo's, else the shipped one)."""
    path = hint_path(edge)
    if not path.is_file():
        raise KeyError(f"no hint coder for edge {edge!r} (looked in {', '.join(map(str, hint_dirs()))}); "
                       f"fit one with `semcomm fit hint --edge {edge}`")
    data = json.loads(path.read_text())
    return HintCoder(np.asarray(data["counts"]), data["step"], data["weight"])


def save_hint(edge: str, coder: HintCoder, notes: str = "", directory: str | Path | None = None) -> Path:
    """Write ``edge``'s hint coder into ``directory`` (default: the first user zoo's ``codecs/``,
    never the installed package); returns the file written."""
    path = Path(directory or hint_dirs()[0]) / f"hint-{edge}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, dict(edge=edge, counts=coder.counts.tolist(), step=coder.step, weight=coder.weight,
                          code_lengths=[length for _, length in coder.code], notes=notes))
    return path
