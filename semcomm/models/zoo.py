"""Trained checkpoints (shipped and the user's own), and ``create_model(name)``.

Each checkpoint is ``<name>.safetensors`` (fp16 weights) with a model card
``<name>.json``: architecture, data set, classes, recipe, epochs and
measured test accuracy. Checkpoints are looked up by name in the zoo
directories, first match wins (:func:`zoo_dirs`):

1. the user zoo: ``$SEMCOMM_ZOO`` (one directory, or several separated by
   ``os.pathsep``) or else ``<cache>/zoo`` (``$SEMCOMM_CACHE/zoo`` or
   ``~/.cache/semcomm/zoo``); exports go to its first directory;
2. the checkpoints shipped inside the package (never written by an export
   unless it is given that folder explicitly).

``create_model`` also takes a card's path (``.../<name>.json``) and builds
any timm ViT/DeiT by name, randomly initialised (nothing is downloaded),
including the project's architectures at any geometry
(``semcomm_vit_<edge|server>_p<patch>_<image>``).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from semcomm.core.paths import default_cache_dir
from semcomm.models import architectures  # registers the project's architectures with timm
from semcomm.models.adapter import ViTAdapter
from semcomm.models.timm_vit import TimmViT

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
WRAPPER_PREFIX = "model."  # TimmViT's state-dict keys: the wrapped timm model's, under this prefix


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or does not fit its architecture."""


@dataclass
class ModelCard:
    """What is known about a checkpoint (the JSON next to its weights).

    ``classes`` names the classes in logit order (empty on cards written
    before it was recorded); ``directory`` is where the card and its weights
    are (set when read or written, not stored in the JSON).
    """

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
    classes: list = field(default_factory=list)
    directory: Path | None = field(default=None, repr=False, compare=False)

    @property
    def weights_path(self) -> Path:
        return (self.directory or CHECKPOINT_DIR) / f"{self.name}.safetensors"

    @property
    def shipped(self) -> bool:
        """True for a checkpoint shipped inside the package."""
        return (self.directory or CHECKPOINT_DIR).resolve() == CHECKPOINT_DIR.resolve()

    def to_dict(self) -> dict:
        """The card as stored in its JSON file (without ``directory``)."""
        data = asdict(self)
        del data["directory"]
        return data


def user_zoo_dirs() -> list[Path]:
    """The user's zoo directories: ``$SEMCOMM_ZOO`` (``os.pathsep``-separated) or else ``<cache>/zoo``."""
    listed = [Path(p).expanduser() for p in os.environ.get("SEMCOMM_ZOO", "").split(os.pathsep) if p]
    return listed or [default_cache_dir() / "zoo"]


def zoo_dirs() -> list[Path]:
    """Every directory searched for checkpoints, first match wins: the user zoo, then the shipped checkpoints."""
    return [*user_zoo_dirs(), CHECKPOINT_DIR]


def list_checkpoints() -> list[ModelCard]:
    """Model cards of every checkpoint in the zoo directories (one per name, first match), sorted by name."""
    cards: dict[str, ModelCard] = {}
    for directory in zoo_dirs():
        for path in sorted(directory.glob("*.json")) if directory.is_dir() else ():
            cards.setdefault(path.stem, _read_card(path))
    return [cards[name] for name in sorted(cards)]


def model_card(name: str | Path) -> ModelCard:
    """The card of a checkpoint by name (searched in :func:`zoo_dirs`) or by the path of its ``.json`` file."""
    if str(name).endswith(".json"):
        if not Path(name).is_file():
            raise KeyError(f"model card {name} does not exist")
        return _read_card(Path(name))
    for directory in zoo_dirs():
        if (directory / f"{name}.json").is_file():
            return _read_card(directory / f"{name}.json")
    raise KeyError(f"no zoo checkpoint named {name!r}; the zoo has {[c.name for c in list_checkpoints()]} "
                   f"(searched {', '.join(str(d) for d in zoo_dirs())})")


def write_card(card: ModelCard, directory: str | Path | None = None) -> Path:
    """Write ``card`` as ``<directory>/<name>.json`` next to its weights; returns the path.

    ``directory`` defaults to the card's own, else the first user zoo directory.
    """
    card.directory = Path(directory or card.directory or user_zoo_dirs()[0])
    path = card.directory / f"{card.name}.json"
    write_json(path, card.to_dict())
    return path


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
    card = read_card(ModelCard, path)
    card.directory = path.parent
    return card


def create_model(name: str, num_classes: int | None = None, weights: str | Path | None = None) -> ViTAdapter:
    """Build a model ready for the codec, in eval mode.

    Args:
        name: a zoo checkpoint (``semcomm zoo`` lists them; weights loaded),
            the path of a checkpoint's ``.json`` card, or any timm ViT/DeiT
            architecture name (random initialisation), including
            ``semcomm_vit_<edge|server>_p<patch>_<image>`` at any geometry.
        num_classes: classifier size for a timm architecture; default: the
            checkpoint's or timm's.
        weights: a safetensors file to load instead of the zoo's weights.
    """
    zoo_names = [c.name for c in list_checkpoints()]
    if name in zoo_names or str(name).endswith(".json"):
        card = model_card(name)
        architectures.register_architecture(card.architecture)
        model = timm.create_model(card.architecture, num_classes=card.num_classes)
        if weights is None:
            verify_sha256(card.weights_path, card.sha256)
        load_weights(model, weights or card.weights_path)
    elif architectures.register_architecture(name) or name in timm.list_models():
        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        model = timm.create_model(name, pretrained=False, **kwargs)
        if weights is not None:
            load_weights(model, weights)
    else:
        raise KeyError(
            f"unknown model {name!r}: not a zoo checkpoint ({', '.join(zoo_names) or 'none in the zoo'}) "
            "nor a timm architecture (see timm.list_models('*vit*'))"
        )
    return TimmViT(model).eval()


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load a safetensors file into ``model`` (any float dtype is cast to the model's).

    ``model`` is a timm model or its :class:`TimmViT` wrapper; a file written
    from a wrapper's state dict (keys ``model.*``) loads into either.
    """
    model = _unwrap(model)
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
    if state and all(k.startswith(WRAPPER_PREFIX) for k in state) and not any(k in own for k in state):
        state = {k[len(WRAPPER_PREFIX):]: v for k, v in state.items()}  # saved from a TimmViT's state dict
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
    """Save ``model``'s weights as compact safetensors (fp16 by default).

    ``model`` is a timm model or its :class:`TimmViT` wrapper (saved as the
    timm model it wraps, keys without the ``model.`` prefix), so the file
    loads with ``create_model(architecture, weights=path)``.
    """
    state = {k: v.detach().to(dtype).contiguous() for k, v in _unwrap(model).state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp))
    tmp.replace(path)  # readers never see a half-written file


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The timm model inside a :class:`TimmViT`, else ``model`` itself."""
    return model.model if isinstance(model, TimmViT) else model
