"""Engines run a backend's stages on its devices and report each request.

An engine builds the request (``backend.request(images, positions, **inputs)``,
or ``backend.patch_request(patches, positions, **inputs)`` from the received
patches themselves: a :class:`~semcomm.server.backends.request.Request`,
with its route for a routed backend), asks the
backend which device gets what (``backend.dispatch(request)``: by default
every device that runs a stage gets the whole request; a routed backend
sends each device only the images routed to it), each device runs its
stages one after the other and sends their outputs back, and the host
combines them (``backend.combine``). What each request costs is reported in
a :class:`RequestReport`:

* ``bytes_exchanged``: the bytes of what each device was sent plus every
  stage output's bytes (raw tensor sizes, no framing);
* ``latency_s``, the critical path: devices work in parallel, so it is the
  slowest device's (transfer in + compute / speed + transfer out) plus the
  host's fusion time. Compute times are measured on this machine (in this
  process for :class:`LocalEngine`, inside each device's actor for
  :class:`~semcomm.server.backends.ray_engine.RayEngine`) and divided by the
  device's relative ``speed``; transfers take bytes x 8 / ``link_mbps``.

Both engines run the same modules on the same request, so they give the same
logits (to float rounding); :class:`LocalEngine` runs the devices one after
another in this process, which is simplest for sweeps and debugging.
"""
from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from semcomm.core.devices import autocast_as, autocast_in_force, host
from semcomm.server.backends.request import Request, tensor_bytes


class EngineError(RuntimeError):
    """A device or the engine failed to run a request (the request has no answer)."""


@dataclass(frozen=True)
class DeviceReport:
    """One device's share of a request.

    Attributes:
        device: its name.
        stages: the stages it ran.
        images: how many of the request's images it ran them on.
        compute_s: measured seconds of its stages on this machine (request unpacking included).
        simulated_compute_s: ``compute_s`` / the device's speed.
        bytes_in: request bytes sent to it.
        bytes_out: output bytes it sent back.
        transfer_s: seconds on its link, both ways.
        latency_s: transfer_s + simulated_compute_s.
    """

    device: str
    stages: tuple[str, ...]
    images: int
    compute_s: float
    simulated_compute_s: float
    bytes_in: int
    bytes_out: int
    transfer_s: float
    latency_s: float


@dataclass(frozen=True)
class RequestReport:
    """What one request (a batch of B images) cost; units in the module docstring.

    Attributes:
        engine: the engine's name.
        batch: B.
        latency_s: critical path in seconds (slowest device + fusion).
        bytes_exchanged: bytes between the host and the devices.
        fusion_s: the host's fusion time in seconds.
        wall_s: wall-clock seconds of the whole request in this process.
        devices: one report per device that ran a stage.
    """

    engine: str
    batch: int
    latency_s: float
    bytes_exchanged: int
    fusion_s: float
    wall_s: float
    devices: tuple[DeviceReport, ...]

    @property
    def critical_device(self) -> str:
        """The device on the critical path."""
        return max(self.devices, key=lambda d: d.latency_s).device


@dataclass
class Execution:
    """A request's answer: B x C ``logits``, its :class:`RequestReport`, and for a routed backend the B int64
    indices of the stage each image was sent to (``route``, else None)."""

    logits: torch.Tensor
    report: RequestReport
    route: torch.Tensor | None = None


@dataclass
class DeviceResult:
    """What a device sends back: its stages' outputs (stage name -> B x F), its compute seconds, the
    fingerprint of the weights it ran."""

    outputs: dict[str, torch.Tensor]
    compute_s: float
    fingerprint: str


@torch.no_grad()
def run_stages(modules: dict[str, nn.Module], names: Sequence[str], request: Request,
               autocasts: dict[str, torch.dtype], fingerprint: str) -> DeviceResult:
    """A device's work: unpack ``request`` and run the stages ``names`` one after the other, timed, under the
    caller's ``autocasts`` (device type -> dtype, :func:`~semcomm.core.devices.autocast_in_force`)."""
    start = time.perf_counter()
    inputs = request.unpack()  # (images, positions) for a pixel Request; (values, positions, level) for latents
    outputs = {}
    with autocast_as(autocasts):
        for name in names:
            outputs[name] = host(modules[name](*inputs).float())  # shipped back to the host
    return DeviceResult(outputs, time.perf_counter() - start, fingerprint)


def fingerprint(modules: dict[str, nn.Module]) -> str:
    """SHA-1 of the stages' names and state tensors: a device answering with other weights is caught."""
    digest = hashlib.sha1()
    for name in sorted(modules):
        digest.update(name.encode())
        for key, tensor in modules[name].state_dict().items():
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class Engine(ABC):
    """Runs backends (see the module docstring); ``history`` keeps the :class:`RequestReport` of every request."""

    name: str = "engine"

    def __init__(self):
        self.history: list[RequestReport] = []

    def shutdown(self) -> None:
        """Release what the engine holds (actors, a Ray instance it started); nothing for an in-process engine."""

    def run(self, backend, images: torch.Tensor, positions: torch.Tensor | None = None, **inputs) -> Execution:
        """Classify B images on ``backend``: :class:`Execution` with B x C logits and the request's report.

        Args:
            backend: a :class:`~semcomm.server.backends.base.Backend`.
            images: B x 3 x H x W, uint8 or float in [0, 1].
            positions: B x K int64 indices of the patches that arrived, or None for whole images.
            inputs: what else the backend's ``request`` takes (e.g. ``edge_logits`` of a routed backend).
        """
        return self.submit(backend, images, positions, **inputs).result()

    def submit(self, backend, images: torch.Tensor, positions: torch.Tensor | None = None, **inputs) -> "Pending":
        """Start a request; :meth:`Pending.result` waits for its :class:`Execution`."""
        start = time.perf_counter()
        return self._send(backend, backend.request(images, positions, **inputs), start)

    def run_patches(self, backend, patches: torch.Tensor, positions: torch.Tensor, **inputs) -> Execution:
        """:meth:`run` on the received B x K x P ``patches`` at B x K ``positions`` themselves, without images (see
        :meth:`~semcomm.server.backends.base.Backend.run_patches`)."""
        return self.submit_patches(backend, patches, positions, **inputs).result()

    def submit_patches(self, backend, patches: torch.Tensor, positions: torch.Tensor, **inputs) -> "Pending":
        """Start a request of received patches (see :meth:`run_patches`)."""
        start = time.perf_counter()
        return self._send(backend, backend.patch_request(patches, positions, **inputs), start)

    def run_latents(self, backend, values: torch.Tensor, positions: torch.Tensor, level: torch.Tensor,
                    **inputs) -> Execution:
        """:meth:`run` on a latent codec pair's received rows (see
        :meth:`~semcomm.server.backends.base.Backend.run_latents`)."""
        start = time.perf_counter()
        return self._send(backend, backend.latent_request(values, positions, level, **inputs), start).result()

    def _send(self, backend, request, start: float) -> "Pending":
        """Dispatch a prepared request to the devices; ``start``: when the request began (perf_counter seconds)."""
        jobs = backend.dispatch(request)
        waiting = self._start(backend, jobs, autocast_in_force())
        return Pending(self, backend, jobs, request, waiting, start)

    @abstractmethod
    def _start(self, backend, jobs: dict[str, tuple[tuple[str, ...], Request]], autocasts: dict[str, torch.dtype]):
        """Start the devices' work (device -> its stages and the request it gets) under the caller's
        ``autocasts``; returns what :meth:`_wait` needs."""

    @abstractmethod
    def _wait(self, backend, waiting) -> dict[str, DeviceResult]:
        """Device name -> its :class:`DeviceResult`, once every device has answered (or :class:`EngineError`)."""

    def _finish(self, backend, jobs, request, results: dict[str, DeviceResult], start: float) -> Execution:
        reports = []
        for device_name, (names, sent) in jobs.items():
            device, result = backend.devices[device_name], results[device_name]
            bytes_out = sum(tensor_bytes(result.outputs[n]) for n in names)
            transfer = device.transfer_s(sent.nbytes) + device.transfer_s(bytes_out)
            simulated = result.compute_s / device.speed
            reports.append(DeviceReport(device_name, names, sent.batch, result.compute_s, simulated, sent.nbytes,
                                        bytes_out, transfer, transfer + simulated))
        outputs = {name: out for device in jobs for name, out in results[device].outputs.items()}
        fusion_start = time.perf_counter()
        with torch.no_grad():
            logits = host(backend.combine(outputs, request).float())
        fusion_s = time.perf_counter() - fusion_start
        expected = (request.batch, backend.num_classes)
        if tuple(logits.shape) != expected:
            raise EngineError(f"{type(backend).__name__} combined its outputs to shape {tuple(logits.shape)}, "
                              f"expected B x C = {expected}")
        slowest = max((r.latency_s for r in reports), default=0.0)
        report = RequestReport(self.name, request.batch, slowest + fusion_s,
                               sum(r.bytes_in + r.bytes_out for r in reports), fusion_s,
                               time.perf_counter() - start, tuple(reports))
        self.history.append(report)
        return Execution(logits, report, getattr(request, "route", None))


@dataclass
class Pending:
    """A request under way on an engine; :meth:`result` waits for it."""

    engine: Engine
    backend: object
    jobs: dict
    request: object
    waiting: object
    start: float
    _done: Execution | None = field(default=None, repr=False)

    def result(self) -> Execution:
        if self._done is None:
            results = self.engine._wait(self.backend, self.waiting)
            self._done = self.engine._finish(self.backend, self.jobs, self.request, results, self.start)
        return self._done


class LocalEngine(Engine):
    """Every device's stages in this process, one device after another (reported as if in parallel).

    >>> from semcomm.server.backends import MonolithicBackend
    >>> from semcomm.models import create_model
    >>> backend = MonolithicBackend(create_model("semcomm_vit_edge_p4_32"))
    >>> out = LocalEngine().run(backend, torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.tensor([[0, 1], [2, 3]]))
    >>> out.logits.shape, out.report.bytes_exchanged   # 2 x 2 x 48 uint8 values + 2 x 2 int64, then 2 x 10 float32
    (torch.Size([2, 10]), 304)
    """

    name = "local"

    def _start(self, backend, jobs, autocasts):
        return jobs, autocasts

    def _wait(self, backend, waiting):
        jobs, autocasts = waiting
        modules = {s.name: s.module for s in backend.stages}
        return {device: run_stages(modules, names, sent, autocasts, "") for device, (names, sent) in jobs.items()}
