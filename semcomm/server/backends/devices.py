"""Simulated devices that run a backend's sub-models, described in a config.

A device has a memory budget for parameters, a relative compute speed, the
CPUs a Ray actor standing in for it may use, and a link to the host (the
node that received the bits and fuses the sub-models' outputs).

Units: ``memory_mb`` in megabytes (10^6 bytes) of parameters; ``speed``
relative to this machine (2.0 computes twice as fast: a measured compute
time is divided by it); ``cpus`` Ray CPUs (fractions allowed); ``link_mbps``
megabits (10^6 bits) per second each way between the device and the host
(``inf``: transfers take no time, their bytes are still counted).

>>> config = DeviceConfig.from_dict({"devices": [{"name": "phone", "memory_mb": 4, "speed": 0.5},
...                                               {"name": "laptop", "memory_mb": 16}]})
>>> [d.name for d in config], config["phone"].memory_bytes
(['phone', 'laptop'], 4000000)
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Device:
    """One simulated device (units in the module docstring)."""

    name: str
    memory_mb: float
    speed: float = 1.0
    cpus: float = 0.25
    link_mbps: float = math.inf

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(f"device name must be a non-empty string of letters, digits, '_', '.', '-', "
                             f"got {self.name!r}")
        for name, finite in (("memory_mb", True), ("speed", True), ("cpus", True), ("link_mbps", False)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value <= 0 \
                    or (finite and math.isinf(value)):
                raise ValueError(f"device {self.name!r}: {name} must be a positive{' finite' if finite else ''} "
                                 f"number, got {value!r}")

    @property
    def memory_bytes(self) -> int:
        """The parameter budget in bytes."""
        return int(self.memory_mb * 1e6)

    @property
    def resource(self) -> str:
        """The Ray custom resource that pins this device's actor (one unit per device)."""
        return f"semcomm_device_{self.name}"

    def transfer_s(self, nbytes: int) -> float:
        """Seconds to move ``nbytes`` bytes over this device's link (0 on an infinite link)."""
        return 0.0 if math.isinf(self.link_mbps) else 8 * nbytes / (self.link_mbps * 1e6)


@dataclass(frozen=True)
class DeviceConfig:
    """An ordered set of devices with distinct names."""

    devices: tuple[Device, ...]

    def __post_init__(self):
        devices = tuple(self.devices)
        if not devices:
            raise ValueError("a device config needs at least one device")
        if not all(isinstance(d, Device) for d in devices):
            raise TypeError(f"DeviceConfig holds Device objects, got {[type(d).__name__ for d in devices]}")
        names = [d.name for d in devices]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"device names must be distinct; repeated: {repeated}")
        object.__setattr__(self, "devices", devices)

    @classmethod
    def from_dict(cls, data: dict | Sequence[dict]) -> "DeviceConfig":
        """From ``{"devices": [{"name": ..., "memory_mb": ..., ...}, ...]}`` (or the bare list)."""
        entries = data.get("devices") if isinstance(data, dict) else data
        if not isinstance(entries, (list, tuple)):
            raise ValueError('a device config is {"devices": [{"name": ..., "memory_mb": ...}, ...]}, '
                             f"got {type(data).__name__}")
        known = {f.name for f in fields(Device)}
        devices = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ValueError(f"device {i} must be a mapping of {sorted(known)}, got {entry!r}")
            unknown = sorted(set(entry) - known)
            missing = sorted({"name", "memory_mb"} - set(entry))
            if unknown or missing:
                raise ValueError(f"device {i} ({entry.get('name', '?')}): unknown fields {unknown}, missing {missing}; "
                                 f"accepted fields: {sorted(known)}")
            devices.append(Device(**entry))
        return cls(tuple(devices))

    @classmethod
    def from_json(cls, path: str | Path) -> "DeviceConfig":
        """Read a JSON file in the :meth:`from_dict` form."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def uniform(cls, n: int, memory_mb: float, speed: float = 1.0, cpus: float = 0.25,
                link_mbps: float = math.inf, prefix: str = "device") -> "DeviceConfig":
        """``n`` identical devices named ``<prefix>0 .. <prefix>{n-1}``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        return cls(tuple(Device(f"{prefix}{i}", memory_mb, speed, cpus, link_mbps) for i in range(n)))

    def to_dict(self) -> dict:
        return {"devices": [asdict(d) for d in self.devices]}

    def ray_resources(self) -> dict[str, float]:
        """Custom resources to declare on a Ray node (``ray.init(resources=...)``): one unit per device."""
        return {d.resource: 1.0 for d in self.devices}

    def __getitem__(self, name: str) -> Device:
        for device in self.devices:
            if device.name == name:
                return device
        raise KeyError(f"no device named {name!r}; the config has {[d.name for d in self.devices]}")

    def __iter__(self) -> Iterator[Device]:
        return iter(self.devices)

    def __len__(self) -> int:
        return len(self.devices)


def host_device() -> DeviceConfig:
    """One device standing for the server itself (unbounded memory, this machine's speed)."""
    return DeviceConfig((Device("server", memory_mb=1e9, speed=1.0, cpus=1.0),))
