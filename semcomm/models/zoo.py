"""Trained ViT checkpoints (shipped and the user's own), and ``create_model(name)``.

Each checkpoint is ``<name>.safetensors`` (fp16 weights) with a model card
``<name>.json`` (:class:`ModelCard`): architecture, data set, classes, recipe,
epochs, measured test accuracy and the weights' SHA-256, verified on every load.
Checkpoints are looked up by name at the top of the zoo folders, first match
wins (:func:`semcomm.zoo.zoo_dirs`):

1. the user zoo: ``$SEMCOMM_ZOO`` (one directory, or several separated by
   ``os.pathsep``) or else ``<cache>/zoo`` (``$SEMCOMM_CACHE/zoo`` or
   ``~/.cache/semcomm/zoo``); exports go to its first directory;
2. the checkpoints shipped inside the package (never written by an export
   unless it is given that folder explicitly).

``create_model`` also takes a card's path (``.../<name>.json``) and builds
any timm ViT/DeiT by name, randomly initialised (nothing is downloaded),
including the project's architectures at any geometry
(``semcomm_vit_<edge|server>_p<patch>_<image>``).

>>> from semcomm.models import create_model, list_checkpoints
>>> edge = create_model("vit-edge-cifar10")  # doctest: +SKIP
>>> edge.num_patches, edge.num_classes  # doctest: +SKIP
(64, 10)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch

from semcomm.models import architectures  # registers the project's architectures with timm
from semcomm.models.adapter import ViTAdapter
from semcomm.models.timm_vit import TimmViT
from semcomm.zoo import (
    SHIPPED_DIR, Card, find_in_zoo, is_shipped, load_state, load_tensors, save_tensors, user_zoo_dirs, verify_sha256,
    zoo_dirs, zoo_entries,
)

WRAPPER_PREFIX = "model."  # TimmViT's state-dict keys: the wrapped timm model's, under this prefix


@dataclass
class ModelCard(Card):
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
        return (self.directory or SHIPPED_DIR) / f"{self.name}.safetensors"

    @property
    def shipped(self) -> bool:
        """True for a checkpoint shipped inside the package."""
        return is_shipped(self.directory or SHIPPED_DIR)


def list_checkpoints() -> list[ModelCard]:
    """Model cards of every checkpoint in the zoo folders (one per name, first match), sorted by name."""
    return [ModelCard.read(path) for path in zoo_entries("*.json").values()]


def model_card(name: str | Path) -> ModelCard:
    """The card of a checkpoint by name (searched in the zoo folders) or by the path of its ``.json`` file."""
    if str(name).endswith(".json"):
        if not Path(name).is_file():
            raise KeyError(f"model card {name} does not exist")
        return ModelCard.read(Path(name))
    path = find_in_zoo(f"{name}.json")
    if path is None:
        raise KeyError(f"no zoo checkpoint named {name!r}; the zoo has {[c.name for c in list_checkpoints()]} "
                       f"(searched {', '.join(str(d) for d in zoo_dirs())})")
    return ModelCard.read(path)


def write_card(card: ModelCard, directory: str | Path | None = None) -> Path:
    """Write ``card`` as ``<directory>/<name>.json`` next to its weights; returns the path.

    ``directory`` defaults to the card's own, else the first user zoo directory.
    """
    return card.write(Path(directory or card.directory or user_zoo_dirs()[0]) / f"{card.name}.json")


def create_model(name: str, num_classes: int | None = None, weights: str | Path | None = None) -> ViTAdapter:
    """Build a model ready for the codec, in eval mode.

    Args:
        name: a zoo checkpoint (``semcomm zoo`` lists them; weights loaded, their SHA-256 verified),
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

    Raises:
        semcomm.zoo.CheckpointError: the file is missing, corrupted, holds NaN / infinities, or does not fit
            ``model``.
    """
    model = _unwrap(model)
    state = load_tensors(path)
    own = model.state_dict()
    if state and all(k.startswith(WRAPPER_PREFIX) for k in state) and not any(k in own for k in state):
        state = {k[len(WRAPPER_PREFIX):]: v for k, v in state.items()}  # saved from a TimmViT's state dict
    load_state(model, state, f"checkpoint {path} does not fit {type(model).__name__}")


def save_weights(model: torch.nn.Module, path: str | Path, dtype: torch.dtype = torch.float16) -> str:
    """Save ``model``'s weights as compact safetensors (fp16 by default); returns the file's SHA-256 (hex).

    ``model`` is a timm model or its :class:`TimmViT` wrapper (saved as the
    timm model it wraps, keys without the ``model.`` prefix), so the file
    loads with ``create_model(architecture, weights=path)``.
    """
    return save_tensors({k: v.detach().to(dtype) for k, v in _unwrap(model).state_dict().items()}, path)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The timm model inside a :class:`TimmViT`, else ``model`` itself."""
    return model.model if isinstance(model, TimmViT) else model
