"""Saved backends: compact fp16 weights and a JSON card in a directory, found by path or by name in the zoo.

A saved backend is a directory holding

* ``weights.safetensors``: the backend's whole state dict, floating-point
  tensors in float16 (loaded back as float32);
* ``backend.json``: its card (:class:`BackendCard`): kind, number of devices,
  the device config and where each stage runs, the class groups, parameters
  per device (and on the host), the structure needed to rebuild it before
  the weights load (every ViT's per-layer heads and MLP units, so pruned
  sub-models come back at their pruned shapes), the measured accuracy and
  latency when known, and the weights' SHA-256.

The card's ``kind`` names the backend class that rebuilds it: every class that can be saved registers itself in
:data:`BACKEND_KINDS` (``@register_backend_kind`` on a :class:`~semcomm.server.backends.base.Backend` subclass
with a ``kind`` attribute), so this module imports none of them.

:func:`load_backend` takes the directory's path or a name, looked up as ``backends/<name>/`` in the zoo folders
(:func:`semcomm.zoo.zoo_dirs`: the user zoo, :data:`semcomm.zoo.USER_ZOO`, then the shipped checkpoints). A
missing file, a card that does not parse or whose fields are not of their types or ranges, weights whose SHA-256 is
not the card's, or weights that do not fit the structure are a :class:`~semcomm.zoo.CheckpointError` naming the
file (and the field); :func:`list_saved_backends` skips such an entry with a :class:`~semcomm.zoo.ZooWarning`
naming it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from semcomm.core.registry import Registry
from semcomm.server.backends.base import Backend
from semcomm.server.backends.devices import DeviceConfig
from semcomm.zoo import (
    Card, CheckpointError, count_problems, find_in_zoo, load_state, load_tensors, read_cards, save_tensors,
    sha256_problems, user_zoo_dirs, zoo_dirs, zoo_entries,
)

FORMAT = 1
CARD_FILE = "backend.json"
WEIGHTS_FILE = "weights.safetensors"
ZOO_FOLDER = "backends"  # saved backends in the zoo: <zoo dir>/backends/<name>/
BACKEND_KINDS: Registry[type[Backend]] = Registry("backend kind")


def register_backend_kind(cls: type[Backend]) -> type[Backend]:
    """Class decorator: register a :class:`Backend` subclass under its ``kind`` (the kind its cards name), so
    :func:`load_backend` can rebuild it (with ``cls.skeleton(modules, devices, placement)``)."""
    BACKEND_KINDS.register(cls.kind, cls)
    return cls


@dataclass
class BackendCard(Card):
    """What is known about a saved backend (``backend.json``).

    Attributes:
        name: its name (the directory's).
        kind: ``monolithic``, ``partitioned``, ``devit`` or ``experts`` (:data:`BACKEND_KINDS`).
        num_devices: N, the devices that run a stage.
        num_classes: C.
        image_size: [H, W] pixels; patch_size: pixels per patch side.
        devices: the device config (``DeviceConfig.to_dict()``); placement: per stage, its device.
        groups: the classes each stage answers for (sub-model groups, student groups, expert subsets).
        parameters_per_device: device name -> parameters of the stages it runs.
        host_parameters: parameters outside the devices (fusion heads on the host; the generalist edge).
        parameters: all of them.
        modules: the structure :meth:`Backend.skeleton` rebuilds.
        accuracy: measured top-1 (``{"dataset", "split", "images", "top1", ...}``) or None.
        latency: measured latency (``{"engine", "batch", "critical_path_ms", ...}``) or None.
        dataset, classes: the data set and its class names, if known.
        recipe: how it was built; notes: free text.
        reads: what its stages take: ``pixels`` or ``latents`` (a latent codec pair's received rows).
        sha256: SHA-256 of ``weights.safetensors``.
        format: the card format.
    """

    name: str
    kind: str
    num_devices: int
    num_classes: int
    image_size: list
    patch_size: int
    devices: dict
    placement: list
    groups: list
    parameters_per_device: dict
    host_parameters: int
    parameters: int
    modules: dict
    accuracy: dict | None = None
    latency: dict | None = None
    dataset: str = ""
    classes: list = field(default_factory=list)
    recipe: dict = field(default_factory=dict)
    notes: str = ""
    reads: str = "pixels"
    sha256: str = ""
    format: int = FORMAT
    directory: Path | None = field(default=None, repr=False, compare=False)

    def problems(self, path: Path) -> list[str]:
        """Counts of devices, classes and parameters in range, an image size of two positive sides, ``sha256``
        hex (the structure itself is checked when the backend is rebuilt from it)."""
        found = [*sha256_problems(self.sha256),
                 *([] if self.reads in ("pixels", "latents") else [f"field 'reads' must be pixels or latents, got "
                                                                   f"{self.reads!r}"]), *count_problems(self, ("num_devices", "num_classes", "patch_size"), 1),
                 *count_problems(self, ("host_parameters", "parameters"))]
        if len(self.image_size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                                                for s in self.image_size):
            found.append(f"field 'image_size' must be [height, width] in pixels, got {self.image_size}")
        return found


def backend_groups(backend: Backend) -> list[list[int]]:
    """The classes each stage of ``backend`` answers for: its ``groups`` (class groups of sub-models or
    students), else its ``classes`` (an expert backend's subsets), else all its classes in one group."""
    for attribute in ("groups", "classes"):
        found = getattr(backend, attribute, None)
        if found is not None:
            return found.to_list()
    return [list(range(backend.num_classes))]


def describe_backend(backend: Backend, name: str) -> BackendCard:
    """The card of ``backend`` (without measurements or checksum)."""
    if getattr(backend, "kind", None) not in BACKEND_KINDS or BACKEND_KINDS.get(backend.kind) is not type(backend):
        raise TypeError(f"only the backends {BACKEND_KINDS.names()} can be saved, got {type(backend).__name__}")
    per_device = {name_: 0 for name_ in backend.placement()}
    on_devices = set()
    for stage in backend.stages:
        per_device[stage.device] += sum(p.numel() for p in stage.module.parameters())
        on_devices |= {id(p) for p in stage.module.parameters()}
    total = sum(p.numel() for p in backend.parameters())
    host = sum(p.numel() for p in backend.parameters() if id(p) not in on_devices)
    return BackendCard(name, backend.kind, len(per_device), backend.num_classes, list(backend.image_size),
                       backend.patch_size, backend.devices.to_dict(), [s.device for s in backend.stages],
                       backend_groups(backend), per_device, host, total, backend.describe(), reads=backend.reads)


def save_backend(backend: Backend, name: str | None = None, directory: str | Path | None = None,
                 accuracy: dict | None = None, latency: dict | None = None, dataset: str = "",
                 classes: list | None = None, recipe: dict | None = None, notes: str = "") -> BackendCard:
    """Write ``backend`` as a directory (module docstring); returns its card.

    Args:
        name: the backend's name (default: the directory's name).
        directory: where to write (default: ``<first user zoo dir>/backends/<name>``).
        accuracy, latency: measurements to record on the card.
    """
    if name is None and directory is None:
        raise ValueError("give the saved backend a name or a directory")
    directory = Path(directory) if directory is not None else user_zoo_dirs()[0] / ZOO_FOLDER / name
    name = name or directory.name
    card = describe_backend(backend, name)
    card.accuracy, card.latency, card.dataset = accuracy, latency, dataset
    card.classes, card.recipe, card.notes = list(classes or []), dict(recipe or {}), notes
    state = {k: v.detach().to(torch.float16) if v.is_floating_point() else v.detach()
             for k, v in backend.state_dict().items()}
    card.sha256 = save_tensors(state, directory / WEIGHTS_FILE)
    card.write(directory / CARD_FILE)
    return card


def saved_backend_dirs() -> list[Path]:
    """Where saved backends are looked up by name, first match wins: ``<user zoo>/backends``, then the shipped."""
    return zoo_dirs(ZOO_FOLDER)


def locate_backend(source: str | Path) -> Path | None:
    """The directory of a saved backend given by path or name, or None when there is none."""
    path = Path(source).expanduser()
    if path.is_dir() or (path / CARD_FILE).exists() or path.name == CARD_FILE:
        return path.parent if path.name == CARD_FILE else path
    if isinstance(source, str) and source and "/" not in source and "\\" not in source:
        card = find_in_zoo(f"{source}/{CARD_FILE}", ZOO_FOLDER)
        return None if card is None else card.parent
    return None


def read_backend_card(source: str | Path) -> BackendCard:
    """The card of a saved backend (by path or name)."""
    directory = locate_backend(source)
    if directory is None:
        raise KeyError(f"no saved backend {str(source)!r}: not a directory, nor a name in "
                       f"{', '.join(str(d) for d in saved_backend_dirs())}")
    path = directory / CARD_FILE
    if not path.is_file():
        raise CheckpointError(f"saved backend {directory} has no {CARD_FILE}")
    card = BackendCard.read(path)
    if card.format != FORMAT:
        raise CheckpointError(f"card {path} has format {card.format}; this semcomm reads format {FORMAT}")
    if card.kind not in BACKEND_KINDS:
        raise CheckpointError(f"card {path} is of unknown kind {card.kind!r}; known: {BACKEND_KINDS.names()}")
    return card


def load_backend(source: str | Path) -> Backend:
    """The saved backend at a directory or under a name (module docstring), in eval mode, float32, named after
    its card (``.name``)."""
    card = read_backend_card(source)
    weights = card.directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"saved backend {card.directory} has no {WEIGHTS_FILE}")
    state = load_tensors(weights, card.sha256)
    try:
        devices = DeviceConfig.from_dict(card.devices)
        backend = BACKEND_KINDS.get(card.kind).skeleton(card.modules, devices, card.placement)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RuntimeError) as err:
        raise CheckpointError(f"card {card.directory / CARD_FILE} does not describe a valid {card.kind} backend: "
                              f"{err}") from err
    load_state(backend, state, f"{weights} does not fit the structure on its card")
    backend.name = card.name  # as results label it (semcomm.models.adapter.model_name)
    return backend.eval()


def list_saved_backends() -> list[BackendCard]:
    """Cards of every saved backend in :func:`saved_backend_dirs` (one per name, first match), by name; an entry
    that cannot be read is skipped with a :class:`~semcomm.zoo.ZooWarning` naming its card."""
    entries = zoo_entries(f"*/{CARD_FILE}", ZOO_FOLDER, name=lambda card: card.parent.name)
    return read_cards((path.parent for path in entries.values()), read_backend_card)
