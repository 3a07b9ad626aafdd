"""Torch devices: which one a run uses, where a model lives, and mixed precision on each.

The library's device contract:

* a model computes on its own device (``model.to("cuda")``); images and other inputs given on any device are moved
  to it at the model's boundary (:class:`~semcomm.models.adapter.ViTAdapter`, the codecs' networks);
* what the library returns (logits, masks, bits, predictions, decoded values) is on the CPU, where the labels, the
  byte strings and the results live: the entropy coders (CompressAI's rANS, the static tables), Pillow's codecs and
  byte packing run on the CPU, and data cross to it at one boundary, :func:`host`;
* every random draw is made by a CPU ``torch.Generator`` and then moved, so that the same seed gives the same
  result on every device;
* mixed precision is the device's own (:func:`autocast`): bf16 on a CPU that computes it natively, bf16 on a CUDA
  device that supports it (else fp16), fp16 on MPS.
"""
from __future__ import annotations

import contextlib
import functools
import re

import torch
from torch import nn

KNOWN = ("cpu", "cuda", "cuda:N", "mps", "auto")
_SPEC = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


class DeviceError(ValueError):
    """A device string that is not a device, or names one this machine does not have."""


def resolve_device(spec: str | torch.device | None = None) -> torch.device:
    """The torch device ``spec`` names, checked against this machine.

    Args:
        spec: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``, a ``torch.device``, or None / ``"auto"``: CUDA
            when available, else the CPU (MPS is used only when asked for).

    Raises:
        DeviceError: an unknown device string, or a device this machine (or this torch build) lacks, naming it
            and the devices that exist here.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if spec is None or spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = str(spec).strip().lower() if not isinstance(spec, torch.device) else str(spec)
    if not _SPEC.match(text):
        raise DeviceError(f"unknown device {spec!r}: expected one of {', '.join(KNOWN)}")
    device = torch.device(text)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"device {spec!r}: this machine has no CUDA device (torch {torch.__version__}, "
                              f"torch.cuda.is_available() is False); available: {', '.join(available_devices())}")
        if device.index is not None and device.index >= count:
            raise DeviceError(f"device {spec!r}: this machine has {count} CUDA device{'s' if count > 1 else ''} "
                              f"(cuda:0 to cuda:{count - 1})")
    if device.type == "mps" and not _mps_available():
        raise DeviceError(f"device {spec!r}: MPS (Apple silicon) is not available here; "
                          f"available: {', '.join(available_devices())}")
    return device


def available_devices() -> list[str]:
    """The devices this machine has: ``cpu`` always, then ``cuda:N`` and ``mps`` where present."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        found.append("mps")
    return found


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def module_device(module: nn.Module | None) -> torch.device:
    """The device of ``module``'s first parameter or buffer (the CPU for a module without either, or None)."""
    if module is not None:
        for tensor in module.parameters():
            return tensor.device
        for tensor in module.buffers():
            return tensor.device
    return torch.device("cpu")


def host(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` on the CPU (itself when already there): the one crossing to the entropy coders, Pillow and the
    results."""
    return tensor if tensor.device.type == "cpu" else tensor.cpu()


@functools.cache
def native_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX).

    Elsewhere torch emulates bf16: the server's forward took 8.4x longer in bf16 than in
    float32 on a 2-core AMD EPYC without AVX-512 (``benchmarks/bf16_speed.py``).
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def autocast_dtype(device: str | torch.device) -> torch.dtype | None:
    """The reduced precision ``device`` computes fast (None: none, compute in float32)."""
    kind = torch.device(device).type
    if kind == "cpu":
        return torch.bfloat16 if native_bf16() else None
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if kind == "mps":
        return torch.float16
    return None


@contextlib.contextmanager
def autocast(enabled: bool = True):
    """Mixed precision on every device this machine has, each in its own reduced precision
    (:func:`autocast_dtype`); float32 everywhere when ``enabled`` is False.

    Autocast of one device type leaves operations on the others alone, so a model on the GPU and a codec on the
    CPU each get their device's precision.
    """
    with contextlib.ExitStack() as stack:
        if enabled:
            for kind in _device_types():
                dtype = autocast_dtype(kind)
                if dtype is not None:
                    stack.enter_context(torch.autocast(kind, dtype=dtype))
        yield


@contextlib.contextmanager
def full_precision():
    """float32 on every device, inside an :func:`autocast` region (likelihoods, symbols, channels)."""
    with contextlib.ExitStack() as stack:
        for kind in _device_types():
            stack.enter_context(torch.autocast(kind, enabled=False))
        yield


def autocast_in_force() -> dict[str, torch.dtype]:
    """Device type -> the autocast dtype in force here, for each device type of this machine with autocast on:
    what work handed to another thread or process must enter again (:func:`autocast_as`; autocast is per thread)."""
    return {kind: torch.get_autocast_dtype(kind) for kind in _device_types() if torch.is_autocast_enabled(kind)}


@contextlib.contextmanager
def autocast_as(dtypes: dict[str, torch.dtype]):
    """Autocast in the dtype of each device type of ``dtypes`` (from :func:`autocast_in_force`), off on this
    machine's others (a device type this machine lacks is left out)."""
    with contextlib.ExitStack() as stack:
        for kind in _device_types():
            stack.enter_context(torch.autocast(kind, dtype=dtypes.get(kind), enabled=kind in dtypes))
        yield


def _device_types() -> tuple[str, ...]:
    return ("cpu",) + (("cuda",) if torch.cuda.is_available() else ()) + (("mps",) if _mps_available() else ())


def as_tensor(data, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``data`` as a tensor of ``dtype``: a tensor keeps its device, numbers, lists and arrays become CPU tensors
    (``torch.as_tensor`` would put them, and move a tensor, to torch's default device)."""
    if isinstance(data, torch.Tensor):
        return data if dtype is None else data.to(dtype)
    return torch.as_tensor(data, dtype=dtype, device="cpu")
