"""Greedy assignment of sub-models to heterogeneous devices, and each one's memory budget.

Objective (stated): finish the slowest device as early as possible, subject
to memory. Each sub-model has a ``work`` (for class-partitioned sub-models,
the number of classes it answers for: its share of the label space) and a
smallest size it can be pruned to. Sub-models are placed largest work
first (ties: lower index); each goes to the device, among those whose free
memory still holds its smallest size, that would finish earliest,
(load + work) / speed; ties go to the device holding fewer sub-models (a
shared device must shrink each of them), then to more free memory, then to
the earlier one in the config. The largest sub-model goes to the fastest
device; a much faster device takes a second one when it would still finish
before a slow device running it alone.

Each device's memory is then split among its sub-models: every one gets its
smallest size, and the rest is shared in proportion to work; a sub-model's
budget is capped at its unpruned size.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from semcomm.server.backends.devices import DeviceConfig


@dataclass(frozen=True)
class Assignment:
    """Where each sub-model runs and how many bytes of parameters it may have.

    Attributes:
        devices: per sub-model, the name of its device.
        budgets: per sub-model, its parameter budget in bytes.
    """

    devices: tuple[str, ...]
    budgets: tuple[int, ...]


def assign_greedy(work: Sequence[float], min_bytes: Sequence[int], devices: DeviceConfig,
                  max_bytes: Sequence[int] | None = None) -> Assignment:
    """Place sub-models on devices (see the module docstring).

    Args:
        work: per sub-model, its relative work (> 0).
        min_bytes: per sub-model, the bytes of its smallest pruned form.
        devices: the devices.
        max_bytes: per sub-model, the bytes of its unpruned form (caps its budget; default: no cap).

    Raises:
        ValueError: when a sub-model fits on no device (naming it, its size and every device's free memory).
    """
    n = len(work)
    if n == 0 or len(min_bytes) != n or (max_bytes is not None and len(max_bytes) != n):
        raise ValueError(f"need one work, min_bytes (and max_bytes) per sub-model, got {len(work)}, "
                         f"{len(min_bytes)}{'' if max_bytes is None else f', {len(max_bytes)}'}")
    if any(w <= 0 for w in work):
        raise ValueError(f"work must be positive, got {list(work)}")
    free = {d.name: d.memory_bytes for d in devices}
    load = {d.name: 0.0 for d in devices}
    speed = {d.name: d.speed for d in devices}
    order = {d.name: i for i, d in enumerate(devices)}
    count = {d.name: 0 for d in devices}
    placed: list[str | None] = [None] * n
    for i in sorted(range(n), key=lambda i: (-work[i], i)):
        fits = [name for name in free if free[name] >= min_bytes[i]]
        if not fits:
            largest = max(d.memory_bytes for d in devices)
            what = "any sub-model" if min(min_bytes) > largest else f"sub-model {i}"
            raise ValueError(f"the device config cannot hold {what}: sub-model {i} needs at least "
                             f"{min_bytes[i] / 1e6:.3f} MB even pruned to one head and one MLP unit per layer, "
                             f"free memory is " + ", ".join(f"{k} {v / 1e6:.3f} MB" for k, v in free.items()))
        best = min(fits, key=lambda name: ((load[name] + work[i]) / speed[name], count[name], -free[name],
                                           order[name]))
        count[best] += 1
        placed[i] = best
        load[best] += work[i]
        free[best] -= min_bytes[i]
    budgets = [0] * n
    for device in devices:
        mine = [i for i in range(n) if placed[i] == device.name]
        if not mine:
            continue
        spare = device.memory_bytes - sum(min_bytes[i] for i in mine)
        total = sum(work[i] for i in mine)
        for i in mine:
            budget = min_bytes[i] + int(spare * work[i] / total)
            budgets[i] = budget if max_bytes is None else min(budget, max_bytes[i])
    return Assignment(tuple(placed), tuple(budgets))
