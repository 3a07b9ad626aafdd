"""The backend contract: what arrived at the server -> B x C logits over all classes.

A backend is the server side of the codec. It takes what the server
received, either B x 3 x H x W images with B x K positions of the patches
that arrived (the rest of each image is ignored), whole decoded images, or
the received B x K x P patch values themselves with their positions
(:meth:`Backend.run_patches`: no image is made on the way), and returns
B x C logits over *all* the data set's classes, whatever runs behind it:
one ViT (:class:`~semcomm.server.backends.monolithic.MonolithicBackend`)
or several sub-models on several simulated devices whose outputs a fusion
network combines (:class:`~semcomm.server.backends.partitioned.PartitionedBackend`).

Internally a backend is a list of :class:`Stage` s, each a module placed on
one device of its :class:`~semcomm.server.backends.devices.DeviceConfig`, that maps
the request to a tensor, and a :meth:`Backend.fuse` that the host runs on
the stages' outputs (a routed backend overrides :meth:`Backend.prepare`,
:meth:`Backend.dispatch` and :meth:`Backend.combine` instead, so each image
reaches one stage only). An
engine (:class:`~semcomm.server.backends.engine.LocalEngine` in this process,
:class:`~semcomm.server.backends.ray_engine.RayEngine` with one Ray actor per
device) executes the stages and reports each request's
critical-path latency and the bytes exchanged.

A backend has the attributes and the two forwards of a pixel server ViT
(``image_size``, ``patch_size``, ``grid_size``, ``num_patches``,
``num_classes``, ``forward(images)``, ``forward_tokens(images, positions)``),
so it can stand wherever the codec takes one: ``ServerDecoder(backend)`` for
format version 1, a pixel codec pair's ``server`` for version 2 (where
:meth:`Backend.classify_patches` takes the decoded patches as they are).

A backend whose ``reads`` is ``latents`` stands where a latent codec pair's server stands instead: it takes the
received latent rows, their levels and positions (:meth:`Backend.run_latents`,
:class:`~semcomm.server.backends.request.LatentRequest`) and no pixels; each kind of backend refuses the other's
input by name.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from semcomm.inference import autocast, batches
from semcomm.models.adapter import PatchGrid, ViTAdapter
from semcomm.server.backends.devices import DeviceConfig
from semcomm.server.backends.request import LatentRequest, Request


@dataclass(frozen=True)
class Stage:
    """One module of a backend placed on one device.

    Attributes:
        name: unique within the backend (e.g. ``"group0"``).
        module: ``module(images, positions) -> B x F`` tensor (images B x 3 x H x W, positions B x K or None).
        device: the name of the device in the backend's config that runs it.
    """

    name: str
    module: nn.Module
    device: str


class ViTStage(nn.Module):
    """A ViT as a stage: ``(images, positions) -> B x C`` logits (all patches when ``positions`` is None)."""

    def __init__(self, vit: ViTAdapter):
        super().__init__()
        if not isinstance(vit, ViTAdapter):
            raise TypeError(f"a ViT stage wraps a semcomm ViTAdapter, got {type(vit).__name__}")
        self.vit = vit

    def forward(self, images: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        return self.vit(images) if positions is None else self.vit.forward_tokens(images, positions)


class Backend(PatchGrid, nn.Module, ABC):
    """Server side of the codec (see the module docstring).

    Subclasses call ``__init__`` with the geometry, the number of classes and
    the devices, register their modules, and implement :attr:`stages` and
    :meth:`fuse` (or :meth:`dispatch` and :meth:`combine`). Inference only: engines run under ``torch.no_grad``.

    Args:
        image_size: (H, W) pixels.
        patch_size: pixels per patch side.
        num_classes: C, the classes the logits cover.
        devices: where the stages run.
        engine: the default engine of :meth:`classify` (None: a :class:`LocalEngine`).

    Attributes:
        reads: what its stages take: ``pixels`` (images or received patches) or ``latents`` (a latent codec
            pair's received rows).
    """

    reads: str = "pixels"

    def __init__(self, image_size: tuple[int, int], patch_size: int, num_classes: int, devices: DeviceConfig,
                 engine=None):
        super().__init__()
        if not isinstance(devices, DeviceConfig):
            raise TypeError(f"devices must be a DeviceConfig, got {type(devices).__name__}")
        self.image_size, self.patch_size = tuple(image_size), int(patch_size)
        self.num_classes, self.devices = int(num_classes), devices
        self._engine = engine

    # ---- what subclasses provide --------------------------------------------------------------
    @property
    @abstractmethod
    def stages(self) -> list[Stage]:
        """The stages, in the order their outputs reach :meth:`fuse`."""

    def fuse(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """B x C logits from the stages' outputs (one tensor per stage, in :attr:`stages` order), on the host.

        Every backend whose stages all run on the whole request implements it; a routed backend implements
        :meth:`combine` instead."""
        raise NotImplementedError(f"{type(self).__name__} implements neither fuse nor combine")

    def request(self, images: torch.Tensor, positions: torch.Tensor | None = None, **inputs):
        """What the host ships to each device for B images (see :mod:`~semcomm.server.backends.request`); a stage is
        called as ``module(*request.unpack())``. ``inputs``: what else :meth:`prepare` takes."""
        self._check_reads("pixels", "images")
        return self.prepare(Request.pack(images, positions, self.image_size, self.patch_size), **inputs)

    def patch_request(self, patches: torch.Tensor, positions: torch.Tensor, **inputs):
        """The same for B images of which only the B x K x P ``patches`` at B x K ``positions`` arrived (see
        :meth:`~semcomm.server.backends.request.Request.from_patches`), made without an image."""
        self._check_reads("pixels", "pixel patches")
        return self.prepare(Request.from_patches(patches, positions, self.image_size, self.patch_size), **inputs)

    def latent_request(self, values: torch.Tensor, positions: torch.Tensor, level: torch.Tensor, **inputs):
        """The same for B images' received latent rows (B x K x C values, B x K positions and levels: see
        :class:`~semcomm.server.backends.request.LatentRequest`), for a backend that reads latents."""
        self._check_reads("latents", "latent rows")
        return self.prepare(LatentRequest.make(values, positions, level, self.image_size, self.patch_size), **inputs)

    def _check_reads(self, kind: str, given: str) -> None:
        if self.reads != kind:
            wanted = ("a latent codec pair's received rows (run_latents)" if self.reads == "latents"
                      else "pixels: images or received patches (run, run_patches)")
            raise ValueError(f"{type(self).__name__} reads {wanted}, not {given}: it cannot stand behind this codec")

    def prepare(self, request: Request):
        """The request as the engine dispatches it: ``request`` itself; a routed backend adds each image's route
        (from the extra inputs it takes, e.g. ``edge_logits``)."""
        return request

    def dispatch(self, request) -> dict[str, tuple[tuple[str, ...], Request]]:
        """Device name -> (the stages it runs, the request it is sent) for one request. By default every device
        runs all its stages on the whole request; a routed backend sends each device only its images."""
        return {device: (tuple(s.name for s in stages), request) for device, stages in self.placement().items()}

    def combine(self, outputs: dict[str, torch.Tensor], request) -> torch.Tensor:
        """B x C logits on the host from the outputs of the stages that ran (stage name -> output); by default
        :meth:`fuse` on them in :attr:`stages` order."""
        return self.fuse([outputs[s.name] for s in self.stages])

    # ---- the contract -------------------------------------------------------------------------
    @property
    def engine(self):
        """The engine :meth:`classify` uses unless given one (its ``history`` logs every request)."""
        if self._engine is None:
            from semcomm.server.backends.engine import LocalEngine

            self._engine = LocalEngine()
        return self._engine

    @engine.setter
    def engine(self, engine) -> None:
        self._engine = engine

    def run(self, images: torch.Tensor, positions: torch.Tensor | None = None, engine=None, **inputs):
        """Classify and report: an :class:`~semcomm.server.backends.engine.Execution` (logits, latency, bytes).

        Args:
            images: B x 3 x H x W, uint8 or float in [0, 1].
            positions: B x K int64 indices of the patches that arrived (row-major), or None for whole images.
            engine: the engine to run on (default :attr:`engine`).
            inputs: what else this backend's :meth:`request` takes (e.g. ``edge_logits`` for expert routing).
        """
        return (engine or self.engine).run(self, images, positions, **inputs)

    def classify(self, images: torch.Tensor, positions: torch.Tensor | None = None, engine=None,
                 **inputs) -> torch.Tensor:
        """B x C logits over all classes from what arrived (see :meth:`run`)."""
        return self.run(images, positions, engine, **inputs).logits

    def run_patches(self, patches: torch.Tensor, positions: torch.Tensor, engine=None, **inputs):
        """:meth:`run` on the received patches themselves: the same logits and bytes as on images holding them.

        Args:
            patches: B x K x P values of the patches that arrived (P = 3 patch_size^2, patchify order), uint8 or
                float in [0, 1].
            positions: B x K int64 indices of those patches (row-major).
            engine, inputs: as in :meth:`run`.
        """
        return (engine or self.engine).run_patches(self, patches, positions, **inputs)

    def classify_patches(self, patches: torch.Tensor, positions: torch.Tensor, engine=None,
                         **inputs) -> torch.Tensor:
        """B x C logits over all classes from the received patches (see :meth:`run_patches`)."""
        return self.run_patches(patches, positions, engine, **inputs).logits

    def run_latents(self, values: torch.Tensor, positions: torch.Tensor, level: torch.Tensor, engine=None,
                    **inputs):
        """:meth:`run` on a latent codec pair's received rows: B x K x C dequantized ``values`` at B x K
        ``positions`` and ``level`` s, for a backend that reads latents."""
        return (engine or self.engine).run_latents(self, values, positions, level, **inputs)

    def classify_latents(self, values: torch.Tensor, positions: torch.Tensor, level: torch.Tensor, engine=None,
                         **inputs) -> torch.Tensor:
        """B x C logits over all classes from received latent rows (see :meth:`run_latents`)."""
        return self.run_latents(values, positions, level, engine, **inputs).logits

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """B x C logits of whole B x 3 x H x W images (the ViT adapter's ``forward``)."""
        return self.classify(images)

    def forward_tokens(self, images: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """B x C logits from the patches at B x K ``positions`` (the ViT adapter's ``forward_tokens``)."""
        return self.classify(images, positions)

    def placement(self) -> dict[str, list[Stage]]:
        """Device name -> the stages it runs (devices without a stage left out), in config order."""
        by_device = {d.name: [] for d in self.devices}
        for stage in self.stages:
            by_device[stage.device].append(stage)
        return {name: stages for name, stages in by_device.items() if stages}

    def check_stages(self, bytes_per_param: int = 4) -> None:
        """Raise unless stage names are unique, every stage's device exists, and each device's stages fit its
        memory (parameters at ``bytes_per_param`` bytes each)."""
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        known = {d.name for d in self.devices}
        for stage in self.stages:
            if stage.device not in known:
                raise ValueError(f"stage {stage.name!r} is placed on unknown device {stage.device!r}; "
                                 f"the config has {sorted(known)}")
        for name, stages in self.placement().items():
            need = sum(parameter_bytes(s.module, bytes_per_param) for s in stages)
            if need > self.devices[name].memory_bytes:
                raise ValueError(f"device {name!r} holds {need / 1e6:.3f} MB of parameters "
                                 f"({', '.join(s.name for s in stages)}) but its memory_mb is "
                                 f"{self.devices[name].memory_mb}")

    @torch.no_grad()
    def stage_outputs(self, images: torch.Tensor, positions: torch.Tensor | None = None, batch_size: int = 256,
                      bf16: bool = False, desc: str | None = None) -> list[torch.Tensor]:
        """Per stage, its outputs on all N images (in this process, ``batch_size`` at a time, float32), e.g. to
        train a fusion on them; ``positions`` N x K or None as in :meth:`run`; ``desc``: a progress bar's label."""
        outs = [[] for _ in self.stages]
        for part in tqdm(list(batches(len(images), batch_size)), desc=desc, disable=desc is None, leave=False):
            with autocast(bf16):
                for i, stage in enumerate(self.stages):
                    outs[i].append(stage.module(images[part], None if positions is None else positions[part]).float())
        return [torch.cat(o) for o in outs]

    def check_dataset(self, num_classes: int, what: str = "the data set") -> None:
        """Raise a ValueError unless ``what`` has as many classes as the backend's logits."""
        if int(num_classes) != self.num_classes:
            raise ValueError(f"{type(self).__name__} gives logits over {self.num_classes} classes but {what} has "
                             f"{num_classes}; build the backend for that data set")


def check_members(members: Sequence, kind: type, what: str, placement: Sequence[str],
                  reference: ViTAdapter | None = None, reference_name: str = "") -> ViTAdapter:
    """Raise unless ``members`` (sub-models, students, experts: each with a ``vit``) is a non-empty sequence of
    ``kind`` reading one geometry (``reference``'s, else the first member's), with one ``placement`` entry each;
    returns the ViT whose geometry they share."""
    if not members or not all(isinstance(m, kind) for m in members):
        raise TypeError(f"{what}s must be a non-empty list of {kind.__name__}")
    first = reference if reference is not None else members[0].vit
    name = reference_name or f"{what} 0"
    for i, member in enumerate(members):
        vit = member.vit
        if (vit.image_size, vit.patch_size) != (first.image_size, first.patch_size):
            raise ValueError(f"{what} {i} reads {vit.image_size} images in {vit.patch_size}-pixel patches, {name} "
                             f"{first.image_size} in {first.patch_size}; they must agree")
    if len(placement) != len(members):
        raise ValueError(f"placement names {len(placement)} devices for {len(members)} {what}s")
    return first


def parameter_bytes(module: nn.Module, bytes_per_param: int = 4) -> int:
    """Bytes of ``module``'s parameters when each takes ``bytes_per_param`` bytes (4: float32)."""
    return bytes_per_param * sum(p.numel() for p in module.parameters())


def check_labels(labels: torch.Tensor, num_classes: int, what: str = "labels") -> torch.Tensor:
    """``labels`` as int64 if it is a 1-D tensor of class indices in [0, num_classes), else a clear error."""
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.is_floating_point():
        raise TypeError(f"{what} must be a 1-D integer tensor of class indices, got "
                        f"{getattr(labels, 'dtype', type(labels).__name__)} {tuple(getattr(labels, 'shape', ()))}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{what} hold classes {int(labels.min())}..{int(labels.max())} but the backend has "
                         f"{num_classes} classes (0..{num_classes - 1}): mismatched class counts between the "
                         "backend and the data set")
    return labels.long()
