"""Shipped codec pairs (their tables and weights, with a card) and the edges' hint coders, in the zoo.

Each pair is ``codecs/<name>.safetensors`` in the shipped checkpoints (integer rANS tables exactly as both
ends code with them, fp16 neural weights, fp32 medians) with ``codecs/<name>.json``, a :class:`CodecCard`:
kind, the edge and server it belongs to, how it was fitted or trained, what was measured, and the SHA-256 of
the tensors file, verified on every load. The edge's hint coder (the code for its predictions, fitted on the
training split) is ``codecs/hint-<edge>.json`` (a :class:`HintCard`) in the user zoo (``semcomm fit hint``) or
in the shipped checkpoints (:func:`semcomm.zoo.zoo_dirs`). An edge given by its card's path
(``.../<name>.json``) has the hint coder of its name. Every card and hint file is checked whole when read (a
bad one is a :class:`~semcomm.zoo.CheckpointError` naming the file and the field).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from semcomm.rate.hint import HintCoder, canonical_code
from semcomm.zoo import (
    SHIPPED_DIR, Card, load_tensors, name_problems, read_cards, save_tensors, sha256_problems, zoo_dirs,
)

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

    def problems(self, path: Path) -> list[str]:
        """Named as its file; ``sha256`` hex."""
        return [*name_problems(self.name, path), *sha256_problems(self.sha256)]


@dataclass
class HintCard(Card):
    """An edge's hint coder as stored (``codecs/hint-<edge>.json``): the Huffman code's symbol counts, the
    quantizer step in bits, the fusion weight, the code lengths (for reading; they follow from the counts)."""

    edge: str
    counts: list
    step: float
    weight: float
    code_lengths: list = field(default_factory=list)
    notes: str = ""

    def problems(self, path: Path) -> list[str]:
        """Named as its file; counts non-negative integers; a positive finite step; a weight in [0, 1]; code
        lengths, when given, those of the counts' code."""
        found = [] if path.name == f"hint-{self.edge}.json" else [
            f"field 'edge' is {self.edge!r}, but the file is {path.name} (hint-<edge>.json)"]
        if not self.counts or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 2**53
                                   for c in self.counts):
            found.append("field 'counts' must be a non-empty list of integers in [0, 2^53)")
        elif self.code_lengths and self.code_lengths != [length for _, length in canonical_code(self.counts)]:
            found.append("field 'code_lengths' is not the code its counts give (the file was edited or is damaged)")
        if not (math.isfinite(self.step) and self.step > 0):
            found.append(f"field 'step' must be a positive number of bits, got {self.step}")
        if not 0 <= self.weight <= 1:
            found.append(f"field 'weight' must be a fusion weight in [0, 1], got {self.weight}")
        return found


def list_codec_cards() -> list[CodecCard]:
    """The cards of every shipped codec pair, sorted by name; a card that cannot be read is skipped with a
    :class:`~semcomm.zoo.ZooWarning` naming its file."""
    return read_cards((path for path in sorted(CODEC_DIR.glob("*.json")) if not path.name.startswith("hint-")),
                      CodecCard.read)


def codec_card(name: str | Path) -> CodecCard:
    """The card of the shipped codec pair ``name``, or the card at ``name`` where that is the path of a ``.json``
    file (e.g. one ``semcomm export`` wrote); KeyError naming the shipped ones if there is none."""
    given = Path(name)
    if given.suffix == ".json" and given.is_file():
        return CodecCard.read(given)
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


def hint_name(edge: str | Path) -> str:
    """The name an edge's hint coder is filed under: a zoo name or timm architecture as it is, a model card's
    path (``.../<name>.json``) as its checkpoint's name."""
    return Path(edge).stem if str(edge).endswith(".json") else str(edge)


def hint_path(edge: str | Path) -> Path:
    """The hint coder file of ``edge`` (:func:`hint_name`): the first that exists in :func:`hint_dirs`, else
    where :func:`save_hint` would write it."""
    paths = [directory / f"hint-{hint_name(edge)}.json" for directory in hint_dirs()]
    return next((path for path in paths if path.is_file()), paths[0])


def load_hint(edge: str | Path) -> HintCoder:
    """The hint coder of an edge model (the user zoo's, else the shipped one).

    Raises:
        KeyError: there is none. semcomm.zoo.CheckpointError: its file is not a valid :class:`HintCard`.
    """
    path = hint_path(edge)
    if not path.is_file():
        raise KeyError(f"no hint coder for edge {str(edge)!r} (looked in {', '.join(map(str, hint_dirs()))}); "
                       f"fit one with `semcomm fit hint --edge {edge}`")
    card = HintCard.read(path)
    return HintCoder(np.asarray(card.counts), card.step, card.weight)


def save_hint(edge: str | Path, coder: HintCoder, notes: str = "", directory: str | Path | None = None) -> Path:
    """Write ``edge``'s hint coder (:func:`hint_name`) into ``directory`` (default: the first user zoo's
    ``codecs/``, never the installed package); returns the file written."""
    name = hint_name(edge)
    path = Path(directory or hint_dirs()[0]) / f"hint-{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    card = HintCard(name, coder.counts.tolist(), coder.step, coder.weight, [length for _, length in coder.code], notes)
    return card.write(path)
