"""Trained checkpoints shipped with semcomm, and ``create_model(name)``.

Each checkpoint is ``checkpoints/<name>.safetensors`` (fp16 weights) with a
model card ``checkpoints/<name>.json``: architecture, data set, recipe,
epochs and measured test accuracy. ``create_model`` also builds any timm
ViT/DeiT by name, randomly initialised (nothing is downloaded).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import architectures  # noqa: F401  (registers the project's architectures with timm)
from .adapter import ViTAdapter
from .timm_vit import TimmViT

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or does not fit its architecture."""


@dataclass
class ModelCard:
    """What is known about a shipped checkpoint (the JSON next to its weights)."""

    name: str
    architecture: str
    dataset: str
    num_classes: int
    params: int
    epochs: int
    test_top1: float | None
    test_images: int | None
    recipe: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    notes: str = ""
    sha256: str = ""

    @property
    def weights_path(self) -> Path:
        return CHECKPOINT_DIR / f"{self.name}.safetensors"


def list_checkpoints() -> list[ModelCard]:
    """Model cards of every shipped checkpoint, sorted by name."""
    return [_read_card(path) for path in sorted(CHECKPOINT_DIR.glob("*.json"))]


def model_card(name: str) -> ModelCard:
    path = CHECKPOINT_DIR / f"{name}.json"
    if not path.is_file():
        raise KeyError(f"no zoo checkpoint named {name!r}; shipped: {[c.name for c in list_checkpoints()]}")
    return _read_card(path)


def write_card(card: ModelCard) -> None:
    """Write ``card`` as ``checkpoints/<name>.json`` next to its weights."""
    write_json(CHECKPOINT_DIR / f"{card.name}.json", asdict(card))


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON; readers never see a half-written file."""
    tmp = path.with_suffix(".jsontmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def read_card(cls, path: Path):
    """A card dataclass ``cls`` from its JSON file; :class:`CheckpointError` if it does not fit."""
    try:
        return cls(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as err:
        raise CheckpointError(f"card {path} is malformed: {err}") from err


def _read_card(path: Path) -> ModelCard:
    return read_card(ModelCard, path)


def create_model(name: str, num_classes: int | None = None, weights: str | Path | None = None) -> ViTAdapter:
    """Build a model ready for the codec, in eval mode.

    Args:
        name: a zoo checkpoint (``semcomm zoo`` lists them; weights loaded) or
            any timm ViT/DeiT architecture name (random initialisation).
        num_classes: classifier size for a timm architecture; default: the
            checkpoint's or timm's.
        weights: a safetensors file to load instead of the zoo's weights.
    """
    zoo_names = [c.name for c in list_checkpoints()]
    if name in zoo_names:
        card = model_card(name)
        model = timm.create_model(card.architecture, num_classes=card.num_classes)
        if weights is None:
            verify_sha256(card.weights_path, card.sha256)
        load_weights(model, weights or card.weights_path)
    elif name in timm.list_models():
        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        model = timm.create_model(name, pretrained=False, **kwargs)
        if weights is not None:
            load_weights(model, weights)
    else:
        raise KeyError(
            f"unknown model {name!r}: not a zoo checkpoint ({', '.join(zoo_names) or 'none shipped'}) "
            "nor a timm architecture (see timm.list_models('*vit*'))"
        )
    return TimmViT(model).eval()


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load a safetensors file into ``model`` (any float dtype is cast to the model's)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupted or not a safetensors file: {err}") from err
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"checkpoint {path} holds NaN or infinite weights in {bad[:3]}{'...' if len(bad) > 3 else ''}")
    own = model.state_dict()
    state = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path} does not fit {type(model).__name__}: {err}") from err


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> None:
    """Raise :class:`CheckpointError` unless ``path`` hashes to ``expected`` (a card's record)."""
    if not expected:
        raise CheckpointError(f"the model card of {path} records no SHA-256; re-export it")
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    actual = file_sha256(path)
    if actual != expected:
        raise CheckpointError(f"checkpoint {path} is corrupted: SHA-256 {actual[:16]}... does not match its card's "
                              f"{expected[:16]}...")


def save_weights(model: torch.nn.Module, path: str | Path, dtype: torch.dtype = torch.float16) -> None:
    """Save ``model``'s weights as compact safetensors (fp16 by default)."""
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp))
    tmp.replace(path)  # readers never see a half-written file
