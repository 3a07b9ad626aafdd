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

A card is checked whole when read (:class:`ModelCard`; a bad one is a
:class:`~semcomm.zoo.CheckpointError` naming the file and the field), and
:func:`list_checkpoints` skips it with a :class:`~semcomm.zoo.ZooWarning`
naming the file: one bad file in the user zoo hides nothing else. Weights
are loaded only with a SHA-256 to check them against (:func:`create_model`).

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
    SHIPPED_DIR, Card, CheckpointError, count_problems, file_sha256, find_in_zoo, is_shipped, load_state, load_tensors,
    name_problems, read_cards, save_tensors, sha256_problems, user_zoo_dirs, zoo_dirs, zoo_entries,
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

    def problems(self, path: Path) -> list[str]:
        """Named as its file; a known architecture; at least one class, and ``classes`` empty or one name per
        class; counts not negative; ``test_top1`` an accuracy or null; ``sha256`` hex."""
        found = [*name_problems(self.name, path), *sha256_problems(self.sha256),
                 *count_problems(self, ("num_classes",), 1), *count_problems(self, ("params", "epochs", "test_images"))]
        if not _is_architecture(self.architecture):
            found.append(f"field 'architecture' is {self.architecture!r}, no timm architecture "
                         "(semcomm_vit_<edge|server>_p<patch>_<image>, or see timm.list_models('*vit*'))")
        if self.test_top1 is not None and not 0 <= self.test_top1 <= 1:
            found.append(f"field 'test_top1' must be an accuracy in [0, 1] or null, got {self.test_top1}")
        named = all(isinstance(c, str) for c in self.classes)
        if self.classes and (len(self.classes) != self.num_classes or not named):
            found.append(f"field 'classes' must be empty or name each of the {self.num_classes} classes "
                         f"(num_classes), got {len(self.classes)} entries")
        return found

    @property
    def shipped(self) -> bool:
        """True for a checkpoint shipped inside the package."""
        return is_shipped(self.directory or SHIPPED_DIR)


def list_checkpoints() -> list[ModelCard]:
    """Model cards of every checkpoint in the zoo folders (one per name, first match), sorted by name; a card
    that cannot be read is skipped with a :class:`~semcomm.zoo.ZooWarning` naming its file."""
    return read_cards(zoo_entries("*.json").values(), ModelCard.read)


def checkpoint_names() -> list[str]:
    """The names of the zoo's checkpoints (their cards' file names; no card is read), sorted."""
    return list(zoo_entries("*.json"))


def model_card(name: str | Path) -> ModelCard:
    """The card of a checkpoint by name (searched in the zoo folders) or by the path of its ``.json`` file.

    Raises:
        KeyError: no such card. semcomm.zoo.CheckpointError: the card is not valid (naming the file and field).
    """
    path = _card_path(name)
    if path is None:
        raise KeyError(_no_card(name) if str(name).endswith(".json") else
                       f"no zoo checkpoint named {str(name)!r}; the zoo has {checkpoint_names()} "
                       f"(searched {', '.join(str(d) for d in zoo_dirs())})")
    return ModelCard.read(path)


def find_model(name: str | Path) -> ModelCard | None:
    """What ``name`` is to :func:`create_model`: a checkpoint's card (by zoo name or card path, checked whole),
    or None for a timm architecture; nothing is built.

    Raises:
        KeyError: ``name`` is none of them (the message lists the zoo). semcomm.zoo.CheckpointError: its card
            is not valid.
    """
    card_path = _card_path(name)
    if card_path is not None:
        return ModelCard.read(card_path)
    if str(name).endswith(".json"):
        raise KeyError(_no_card(name))
    if not _is_architecture(str(name)):
        zoo = ", ".join(checkpoint_names()) or "none in the zoo"
        raise KeyError(f"unknown model {str(name)!r}: not a zoo checkpoint ({zoo}), a model card (.json) nor a timm "
                       "architecture (see timm.list_models('*vit*'))")
    return None


def _no_card(path: str | Path) -> str:
    return f"model card {path} does not exist"


def _card_path(name: str | Path) -> Path | None:
    """The card file of a checkpoint name or card path, or None when there is none."""
    if str(name).endswith(".json"):
        return Path(name) if Path(name).is_file() else None
    if not str(name) or any(sep in str(name) for sep in ("/", "\\")):
        return None
    return find_in_zoo(f"{name}.json")


def write_card(card: ModelCard, directory: str | Path | None = None) -> Path:
    """Write ``card`` as ``<directory>/<name>.json`` next to its weights; returns the path.

    ``directory`` defaults to the card's own, else the first user zoo directory.
    """
    return card.write(Path(directory or card.directory or user_zoo_dirs()[0]) / f"{card.name}.json")


def create_model(name: str, num_classes: int | None = None, weights: str | Path | None = None,
                 sha256: str | None = None) -> ViTAdapter:
    """Build a model ready for the codec, in eval mode, named (``.name``, as results label it) after its
    checkpoint, else its architecture.

    Args:
        name: a zoo checkpoint (``semcomm zoo`` lists them; weights loaded, their SHA-256 verified),
            the path of a checkpoint's ``.json`` card, or any timm ViT/DeiT
            architecture name (random initialisation), including
            ``semcomm_vit_<edge|server>_p<patch>_<image>`` at any geometry.
        num_classes: classifier size for a timm architecture; default: the
            checkpoint's or timm's.
        weights: a safetensors file to load instead of the zoo's weights. With a checkpoint's name or card,
            the file is checked by SHA-256: against ``sha256`` when given, else against the card's (the card's
            own weights, wherever they were copied); weights no SHA-256 vouches for are refused. With a timm
            architecture the file is checked against ``sha256`` when given; without it, only that it is a
            safetensors file whose tensors are finite and fit the architecture (names and shapes).
        sha256: the hex SHA-256 ``weights`` must have (:func:`save_weights` returns it).

    Raises:
        KeyError: ``name`` is no checkpoint, card nor timm architecture.
        ValueError: ``name`` is a timm architecture but no ViT.
        semcomm.zoo.CheckpointError: a card that is not valid (its architecture and classes are counted, on the
            meta device, against the parameters it records, before the model is built), or weights that are
            missing, not safetensors,
            hold NaN / infinities, do not fit, or whose SHA-256 is not the expected one (naming the file).
    """
    card = find_model(name)
    if card is not None:  # the card and the weights are checked before anything is built
        _check_parameters(card)
        path = card.weights_path if weights is None else weights
        state = load_tensors(path, _expected_sha256(card, weights, sha256))
        model = timm.create_model(card.architecture, num_classes=card.num_classes)
        _load_state(model, state, path)
    else:
        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        model = timm.create_model(name, pretrained=False, **kwargs)
        if weights is not None:
            load_weights(model, weights, sha256=sha256)
    try:
        return TimmViT(model, name=None if card is None else card.name).eval()
    except TypeError as err:
        raise ValueError(f"model {str(name)!r} is not a ViT the codec can run: {err}") from err


def _is_architecture(name: str) -> bool:
    """True for a timm architecture name (the project's registered on first use at any valid geometry)."""
    try:
        return architectures.register_architecture(name) or timm.is_model(name)
    except ValueError:  # semcomm_vit_* at a geometry that does not exist
        return False


def _check_parameters(card: ModelCard) -> None:
    """Refuse a card whose architecture and classes do not have the parameters it records (counted on the meta
    device, so that no card makes a huge model before it is refused)."""
    with torch.device("meta"):
        skeleton = timm.create_model(card.architecture, num_classes=card.num_classes)
    count = sum(p.numel() for p in skeleton.parameters())
    if count != card.params:
        raise CheckpointError(f"card {card.directory / (card.name + '.json')} is malformed: fields 'params', "
                              f"'architecture' and 'num_classes' disagree: {card.architecture} with {card.num_classes} "
                              f"classes has {count:,} parameters, not {card.params:,}")


def _expected_sha256(card: ModelCard, weights: str | Path | None, sha256: str | None) -> str:
    """The SHA-256 that ``weights`` (default: the card's own) must have to load with ``card``'s architecture."""
    if weights is None or sha256 is not None:
        return card.sha256 if weights is None else sha256
    if Path(weights).is_file() and file_sha256(weights) != card.sha256:
        raise CheckpointError(f"weights {weights} are not the weights of card {card.directory / (card.name + '.json')} "
                              "(their SHA-256 is not the card's): load them with their own card, or pass sha256= "
                              "(save_weights returns it) to vouch for them")
    return card.sha256


def load_weights(model: torch.nn.Module, path: str | Path, sha256: str | None = None) -> None:
    """Load a safetensors file into ``model`` (any float dtype is cast to the model's).

    ``model`` is a timm model or its :class:`TimmViT` wrapper; a file written
    from a wrapper's state dict (keys ``model.*``) loads into either. With
    ``sha256`` the file's SHA-256 is verified first.

    Raises:
        semcomm.zoo.CheckpointError: the file is missing, corrupted (SHA-256, or not safetensors), holds NaN /
            infinities, or does not fit ``model``.
    """
    _load_state(_unwrap(model), load_tensors(path, sha256), path)


def _load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load the tensors of file ``path`` into a timm model (a wrapper's ``model.*`` keys unwrapped)."""
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
