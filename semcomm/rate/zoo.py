"""Shipped codec pairs: their tables and weights, with a card, next to the model zoo.

Each pair is ``checkpoints/codecs/<name>.safetensors`` (integer rANS tables
exactly as both ends code with them, fp16 neural weights, fp32 medians) and
``<name>.json``, a :class:`CodecCard`: kind, the edge and server it belongs
to, how it was fitted or trained, what was measured, and the SHA-256 of the
tensors file, verified on every load. The edge's hint coder (the code for its
predictions, fitted on the training split) is ``codecs/hint-<edge>.json`` in the user zoo
(``semcomm fit hint``) or in the shipped ``checkpoints``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from semcomm.models.zoo import (
    CHECKPOINT_DIR, CheckpointError, file_sha256, read_card, user_zoo_dirs, verify_sha256, write_json,
)
from semcomm.rate.hint import HintCoder

CODEC_DIR = CHECKPOINT_DIR / "codecs"


@dataclass
class CodecCard:
    """What is known about a shipped codec pair."""

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

    @property
    def tensors_path(self) -> Path:
        return CODEC_DIR / f"{self.name}.safetensors"


def list_codec_cards() -> list[CodecCard]:
    return [_read(path) for path in sorted(CODEC_DIR.glob("*.json")) if not path.name.startswith("hint-")]


def codec_card(name: str) -> CodecCard:
    path = CODEC_DIR / f"{name}.json"
    if not path.is_file():
        raise KeyError(f"no shipped codec pair named {name!r}; shipped: {[c.name for c in list_codec_cards()]}")
    return _read(path)


def _read(path: Path) -> CodecCard:
    return read_card(CodecCard, path)


def save_codec(card: CodecCard, tensors: dict[str, torch.Tensor], directory: Path = CODEC_DIR) -> CodecCard:
    """Write the tensors and the card (its SHA-256 filled in); returns the card."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{card.name}.safetensors"
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)
    card.sha256 = file_sha256(path)
    write_card(card, directory)
    return card


def write_card(card: CodecCard, directory: Path = CODEC_DIR) -> None:
    write_json(directory / f"{card.name}.json", asdict(card))


def load_codec_tensors(name: str) -> tuple[CodecCard, dict[str, torch.Tensor]]:
    """A shipped pair's card and tensors, its SHA-256 verified and every float finite."""
    card = codec_card(name)
    verify_sha256(card.tensors_path, card.sha256)
    try:
        tensors = load_file(str(card.tensors_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"codec {name}: {card.tensors_path} is not a readable safetensors file: {err}") from err
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"codec {name} holds NaN or infinite values in {bad[:3]}")
    return card, tensors


def hint_dirs() -> list[Path]:
    """Where hint coders are looked for, first match wins: ``codecs/`` in each user zoo directory
    (``$SEMCOMM_ZOO`` or ``<cache>/zoo``), then the shipped ``checkpoints/codecs``."""
    return [directory / "codecs" for directory in user_zoo_dirs()] + [CODEC_DIR]


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
    path.write_text(json.dumps(dict(edge=edge, counts=coder.counts.tolist(), step=coder.step, weight=coder.weight,
                                    code_lengths=[length for _, length in coder.code], notes=notes), indent=2) + "\n")
    return path
