"""Split execution on Ray: each simulated device is a Ray actor with its own resources.

Importing this module does not import Ray; the first request does. With no
address the engine starts (or joins, if this process already called
``ray.init``) a local Ray instance with a bounded object store; a user with
a cluster passes its address (``"host:port"``, ``"ray://host:port"`` or
``"auto"``) and must have semcomm installed on the nodes and each device's
custom resource declared (:meth:`DeviceConfig.ray_resources
<semcomm.server.backends.devices.DeviceConfig.ray_resources>`, e.g.
``ray start --resources='{"semcomm_device_phone": 1}'``).

Each device's actor asks for the device's ``cpus`` (fractions allowed, torch
then uses one thread) and a share of the device's custom resource (which
pins it to the node that declares the device; several backends may use one
device), and is
built from a copy of its stages' modules, so Ray can restart it after a
crash (``max_restarts``) and retry the request that was under way
(``max_task_retries``): the restarted actor holds the same weights. Every
answer carries a fingerprint of the weights the actor ran; an answer from
other weights, an actor that died beyond its restarts, or a request that
took longer than ``timeout_s`` raises :class:`~semcomm.server.backends.engine.EngineError`,
never a silent wrong answer. Changing the backend's weights in place
(training) is noticed and the actors are rebuilt before the next request.
"""
from __future__ import annotations

import os

import torch

from channels.montecarlo import import_ray as channels_import_ray
from channels.montecarlo import join_ray
from semcomm.server.backends.engine import DeviceResult, Engine, EngineError, fingerprint, run_stages

RESOURCE_SHARE = 0.01  # of a device's custom resource per actor: pins the actor to it, lets backends share it


class DeviceActor:
    """What runs inside one device's Ray actor: its stages' modules, in eval mode."""

    def __init__(self, modules: dict, threads: int):
        torch.set_num_threads(threads)
        self.modules = {name: module.eval() for name, module in modules.items()}
        self.fingerprint = fingerprint(self.modules)

    def run(self, names, request, autocasts) -> DeviceResult:
        return run_stages(self.modules, names, request, autocasts, self.fingerprint)

    def pid(self) -> int:
        """The actor's process id."""
        return os.getpid()


class _Deployment:
    """The actors serving one backend, and what they were built from."""

    def __init__(self, backend, actors: dict, fingerprints: dict[str, str], versions: tuple[int, ...], weights: list,
                 session: str):
        self.backend, self.actors, self.fingerprints, self.versions = backend, actors, fingerprints, versions
        self.weights = weights  # object references of the actors' constructor arguments
        self.session = session  # the Ray connection the actors belong to


def import_ray():
    """The ``ray`` module, or an ImportError saying how to install it."""
    return channels_import_ray("the Ray engine")


def _session(ray) -> str | None:
    """The current Ray connection (None when Ray is not running): actors of another one are gone."""
    return ray.get_runtime_context().get_job_id() if ray.is_initialized() else None


def _versions(backend) -> tuple[int, ...]:
    """In-place change counters of the backend's tensors (they move when an optimiser or a load writes them)."""
    return tuple(t._version for t in (*backend.parameters(), *backend.buffers()))


class RayEngine(Engine):
    """One Ray actor per device (see the module docstring).

    Args:
        address: a Ray cluster's address; None runs on this machine.
        object_store_memory: bytes of object store of a local instance the engine starts.
        num_cpus: CPUs of that local instance (None: Ray's default, all of them).
        max_restarts: times Ray may restart a device's actor after it dies.
        max_task_retries: times a request under way on a dead actor is retried on its restart.
        timeout_s: seconds a request may take before it fails.
        connect_timeout_s: seconds to wait for a TCP connection to ``address``.
        deploy_timeout_s: seconds the actors of a backend may take to start.
        devices: devices whose custom resources a local instance should declare up front (besides those of
            the first backend run).

    >>> engine = RayEngine()                                       # doctest: +SKIP
    >>> out = engine.run(backend, images, positions)                # doctest: +SKIP
    >>> out.report.latency_s, out.report.bytes_exchanged            # doctest: +SKIP
    >>> engine.shutdown()                                           # doctest: +SKIP
    """

    name = "ray"

    def __init__(self, address: str | None = None, object_store_memory: int = 200 * 2 ** 20,
                 num_cpus: int | None = None, max_restarts: int = 1, max_task_retries: int = 1,
                 timeout_s: float = 600.0, connect_timeout_s: float = 5.0, deploy_timeout_s: float = 120.0,
                 devices=None):
        super().__init__()
        if address is not None and (not isinstance(address, str) or not address):
            raise ValueError(f"address must be a non-empty string such as '127.0.0.1:6379', got {address!r}")
        if max_restarts < 0 or max_task_retries < 0 or timeout_s <= 0 or object_store_memory < 75 * 2 ** 20:
            raise ValueError("need max_restarts >= 0, max_task_retries >= 0, timeout_s > 0 and "
                             "object_store_memory >= 75 MiB (Ray's minimum)")
        self.address, self.object_store_memory, self.num_cpus = address, int(object_store_memory), num_cpus
        self.max_restarts, self.max_task_retries = max_restarts, max_task_retries
        self.timeout_s, self.connect_timeout_s, self.deploy_timeout_s = timeout_s, connect_timeout_s, deploy_timeout_s
        self._resources = {} if devices is None else dict(devices.ray_resources())
        self._deployments: dict[int, _Deployment] = {}
        self._started = False

    # ---- the cluster ----------------------------------------------------------------------------
    def connect(self, devices=None):
        """Join or start Ray (once); returns the ``ray`` module."""
        try:
            ray, joined = join_ray(self.address, self.connect_timeout_s, "the Ray engine")
        except (ValueError, ConnectionError) as err:
            raise EngineError(str(err)) from None
        if joined:
            return ray
        resources = {**self._resources, **({} if devices is None else devices.ray_resources())}
        ray.init(num_cpus=self.num_cpus, object_store_memory=self.object_store_memory, include_dashboard=False,
                 resources=resources, log_to_driver=False)
        self._started = True
        return ray

    def deploy(self, backend) -> dict:
        """Start (or restart) one actor per device of ``backend``; returns device name -> actor handle."""
        ray = self.connect(backend.devices)
        self.release(backend)
        available = ray.cluster_resources()
        placement = backend.placement()
        missing = [backend.devices[d].resource for d in placement if backend.devices[d].resource not in available]
        if missing:
            raise EngineError(f"the Ray cluster declares no resource {missing}; declare one unit per device, e.g. "
                              f"ray.init(resources=devices.ray_resources()) or `ray start --resources=...`")
        cpus = sum(backend.devices[d].cpus for d in placement)
        if cpus > available.get("CPU", 0):
            raise EngineError(f"the devices ask for {cpus:g} CPUs but the Ray cluster has "
                              f"{available.get('CPU', 0):g}; lower the devices' cpus")
        remote = ray.remote(DeviceActor)
        actors, prints, weights = {}, {}, []
        for device_name, stages in placement.items():
            device = backend.devices[device_name]
            modules = {s.name: s.module for s in stages}
            prints[device_name] = fingerprint(modules)
            weights.append(ray.put(modules))  # held by the deployment, so a restart can always rebuild the actor
            actors[device_name] = remote.options(
                num_cpus=device.cpus, resources={device.resource: RESOURCE_SHARE}, max_restarts=self.max_restarts,
                max_task_retries=self.max_task_retries,
            ).remote(weights[-1], max(1, int(device.cpus)))
        self._deployments[id(backend)] = _Deployment(backend, actors, prints, _versions(backend), weights,
                                                     _session(ray))
        waiting = {actor.pid.remote(): name for name, actor in actors.items()}
        ready, late = ray.wait(list(waiting), num_returns=len(waiting), timeout=self.deploy_timeout_s)
        try:
            ray.get(ready)
        except Exception as err:
            self.release(backend)
            raise EngineError(f"a device's actor failed to start: {err}") from err
        if late:
            self.release(backend)
            raise EngineError(f"the actors of devices {sorted(waiting[r] for r in late)} did not start within "
                              f"{self.deploy_timeout_s:g} s: Ray could not place them (CPUs in use by other "
                              "actors or tasks?) or they fail while loading")
        return dict(actors)

    def actors(self, backend) -> dict:
        """Device name -> the Ray actor serving ``backend`` (deploying it first if needed)."""
        deployment = self._deployments.get(id(backend))
        if deployment is None or deployment.session != _session(import_ray()):
            return self.deploy(backend)
        return dict(deployment.actors)

    def release(self, backend) -> None:
        """Stop the actors serving ``backend`` (if any)."""
        deployment = self._deployments.pop(id(backend), None)
        if deployment is not None:
            ray = import_ray()
            if deployment.session != _session(ray):
                return  # Ray was shut down or restarted since: those actors are gone
            for actor in deployment.actors.values():
                ray.kill(actor, no_restart=True)

    def shutdown(self) -> None:
        """Stop every actor, and the local Ray instance if this engine started it."""
        if not self._deployments and not self._started:
            return
        ray = import_ray()
        for deployment in list(self._deployments.values()):
            self.release(deployment.backend)
        if self._started:
            ray.shutdown()
            self._started = False

    # ---- requests -------------------------------------------------------------------------------
    def _start(self, backend, jobs, autocasts):
        ray = import_ray()
        deployment = self._deployments.get(id(backend))
        if deployment is None or deployment.versions != _versions(backend) or deployment.session != _session(ray):
            self.deploy(backend)
            deployment = self._deployments[id(backend)]
        refs = {}  # one object per distinct request (usually the same one for every device)
        for _, sent in jobs.values():
            if id(sent) not in refs:
                refs[id(sent)] = ray.put(sent)
        return deployment, {device: deployment.actors[device].run.remote(names, refs[id(sent)], autocasts)
                            for device, (names, sent) in jobs.items()}

    def _wait(self, backend, waiting) -> dict[str, DeviceResult]:
        ray = import_ray()
        from ray import exceptions as rx

        deployment, refs = waiting
        results = {}
        for device, ref in refs.items():
            try:
                results[device] = ray.get(ref, timeout=self.timeout_s)
            except rx.RayActorError as err:
                self.release(backend)
                raise EngineError(f"device {device!r}: its Ray actor died and was not brought back (max_restarts="
                                  f"{self.max_restarts}, max_task_retries={self.max_task_retries}); the request "
                                  f"has no answer. The next request starts new actors. Ray said: "
                                  f"{str(err).splitlines()[0]}") from err
            except rx.GetTimeoutError as err:
                raise EngineError(f"device {device!r} did not answer within {self.timeout_s:g} s") from err
            except rx.RayTaskError as err:
                raise EngineError(f"device {device!r} failed on the request: {err.cause!r}") from err
            if results[device].fingerprint != deployment.fingerprints[device]:
                raise EngineError(f"device {device!r} answered with weights that differ from the backend's "
                                  "(fingerprint mismatch); the answer was discarded")
        return results
