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

:func:`load_backend` takes the directory's path or a name, looked up as
``<zoo>/backends/<name>/`` in the user zoo (``$SEMCOMM_ZOO`` or
``~/.cache/semcomm/zoo``, see :func:`semcomm.models.zoo.user_zoo_dirs`), then
among the backends shipped in ``semcomm/backends/checkpoints/<name>/``. A
missing file, a card that does not parse, weights whose SHA-256 is not the
card's, or weights that do not fit the structure are a
:class:`~semcomm.models.zoo.CheckpointError` naming the file.
"""
from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from semcomm.models.zoo import CheckpointError, file_sha256, user_zoo_dirs, write_json
from semcomm.server.backends.base import Backend
from semcomm.server.backends.decomposed import DecomposedBackend
from semcomm.server.backends.devices import DeviceConfig
from semcomm.server.backends.experts import ExpertBackend
from semcomm.server.backends.monolithic import MonolithicBackend
from semcomm.server.backends.partitioned import PartitionedBackend

FORMAT = 1
CARD_FILE = "backend.json"
WEIGHTS_FILE = "weights.safetensors"
SHIPPED_DIR = Path(__file__).parent / "checkpoints"
KINDS: dict[str, type] = {cls.kind: cls for cls in (MonolithicBackend, PartitionedBackend, DecomposedBackend,
                                                    ExpertBackend)}


@dataclass
class BackendCard:
    """What is known about a saved backend (``backend.json``).

    Attributes:
        name: its name (the directory's).
        kind: ``monolithic``, ``partitioned``, ``devit`` or ``experts``.
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
    sha256: str = ""
    format: int = FORMAT
    directory: Path | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        data = asdict(self)
        del data["directory"]
        return data


def backend_groups(backend: Backend) -> list[list[int]]:
    """The classes each stage of ``backend`` answers for."""
    if isinstance(backend, ExpertBackend):
        return backend.classes.to_list()
    if isinstance(backend, (PartitionedBackend, DecomposedBackend)):
        return backend.groups.to_list()
    return [list(range(backend.num_classes))]


def describe_backend(backend: Backend, name: str) -> BackendCard:
    """The card of ``backend`` (without measurements or checksum)."""
    if type(backend) not in KINDS.values():
        raise TypeError(f"only the backends {sorted(KINDS)} can be saved, got {type(backend).__name__}")
    per_device = {name_: 0 for name_ in backend.placement()}
    on_devices = set()
    for stage in backend.stages:
        per_device[stage.device] += sum(p.numel() for p in stage.module.parameters())
        on_devices |= {id(p) for p in stage.module.parameters()}
    total = sum(p.numel() for p in backend.parameters())
    host = sum(p.numel() for p in backend.parameters() if id(p) not in on_devices)
    return BackendCard(name, backend.kind, len(per_device), backend.num_classes, list(backend.image_size),
                       backend.patch_size, backend.devices.to_dict(), [s.device for s in backend.stages],
                       backend_groups(backend), per_device, host, total, backend.describe())


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
    directory = Path(directory) if directory is not None else user_zoo_dirs()[0] / "backends" / name
    name = name or directory.name
    card = describe_backend(backend, name)
    card.accuracy, card.latency, card.dataset = accuracy, latency, dataset
    card.classes, card.recipe, card.notes = list(classes or []), dict(recipe or {}), notes
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous()
             for k, v in backend.state_dict().items()}
    weights = directory / WEIGHTS_FILE
    tmp = weights.with_suffix(".tmp")
    save_file(state, str(tmp))
    tmp.replace(weights)
    card.sha256 = file_sha256(weights)
    write_json(directory / CARD_FILE, card.to_dict())
    card.directory = directory
    return card


def saved_backend_dirs() -> list[Path]:
    """Where saved backends are looked up by name, first match wins: ``<user zoo>/backends``, then the shipped."""
    return [*(d / "backends" for d in user_zoo_dirs()), SHIPPED_DIR]


def locate_backend(source: str | Path) -> Path | None:
    """The directory of a saved backend given by path or name, or None when there is none."""
    path = Path(source).expanduser()
    if path.is_dir() or (path / CARD_FILE).exists() or path.name == CARD_FILE:
        return path.parent if path.name == CARD_FILE else path
    if isinstance(source, str) and source and "/" not in source and "\\" not in source:
        for root in saved_backend_dirs():
            if (root / source / CARD_FILE).is_file():
                return root / source
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
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"card {path} is not valid JSON: {err}") from err
    known = {f.name for f in fields(BackendCard)} - {"directory"}
    required = {f.name for f in fields(BackendCard) if f.default is MISSING and f.default_factory is MISSING}
    if not isinstance(data, dict) or set(data) - known or required - set(data):
        raise CheckpointError(f"card {path} is malformed: unknown fields {sorted(set(data) - known)}, missing "
                              f"{sorted(required - set(data))}")
    card = BackendCard(**data)
    card.directory = directory
    if card.format != FORMAT:
        raise CheckpointError(f"card {path} has format {card.format}; this semcomm reads format {FORMAT}")
    if card.kind not in KINDS:
        raise CheckpointError(f"card {path} is of unknown kind {card.kind!r}; known: {sorted(KINDS)}")
    return card


def load_backend(source: str | Path) -> Backend:
    """The saved backend at a directory or under a name (module docstring), in eval mode, float32."""
    card = read_backend_card(source)
    weights = card.directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"saved backend {card.directory} has no {WEIGHTS_FILE}")
    if not card.sha256:
        raise CheckpointError(f"card {card.directory / CARD_FILE} records no SHA-256; save the backend again")
    actual = file_sha256(weights)
    if actual != card.sha256:
        raise CheckpointError(f"{weights} is corrupted or was replaced: its SHA-256 {actual[:16]}... does not match "
                              f"the card's {card.sha256[:16]}...")
    try:
        devices = DeviceConfig.from_dict(card.devices)
        backend = KINDS[card.kind].skeleton(card.modules, devices, card.placement)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"card {card.directory / CARD_FILE} does not describe a valid {card.kind} backend: "
                              f"{err}") from err
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights} is not a readable safetensors file: {err}") from err
    own = backend.state_dict()
    state = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}
    try:
        backend.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{weights} does not fit the structure on its card: {err}") from err
    return backend.eval()


def list_saved_backends() -> list[BackendCard]:
    """Cards of every saved backend in :func:`saved_backend_dirs` (one per name, first match), by name."""
    cards: dict[str, BackendCard] = {}
    for root in saved_backend_dirs():
        for path in sorted(root.glob(f"*/{CARD_FILE}")) if root.is_dir() else ():
            if path.parent.name not in cards:
                try:
                    cards[path.parent.name] = read_backend_card(path.parent)
                except CheckpointError:
                    continue  # a broken entry is reported when it is loaded, not when listing
    return [cards[name] for name in sorted(cards)]
