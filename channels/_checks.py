"""Input validation shared by the blocks: clear errors that say what was wrong and what is accepted."""
from __future__ import annotations

import math
from typing import Optional, Union

import torch

Number = Union[float, int, torch.Tensor]


def as_tensor(data, dtype: Optional[torch.dtype] = None, device=None) -> torch.Tensor:
    """``data`` as a tensor of ``dtype``: a tensor stays on its device unless ``device`` is given; numbers, lists and
    arrays go to ``device``, else the CPU (never to torch's default device, which may be another)."""
    if isinstance(data, torch.Tensor):
        return data.to(dtype=dtype or data.dtype, device=device or data.device)
    return torch.as_tensor(data, dtype=dtype, device=device or "cpu")


def check_finite(name: str, value: Number) -> None:
    """Raise ValueError if ``value`` (a number or tensor) contains NaN or infinity."""
    if isinstance(value, torch.Tensor):
        if not torch.isfinite(value).all():
            raise ValueError(f"{name} must be finite; got a tensor containing NaN or inf")
    elif not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number; got {value!r}")


def check_probability(name: str, p: Number) -> None:
    """Raise ValueError unless every value of ``p`` lies in [0, 1]."""
    t = as_tensor(p, dtype=torch.float64)
    if torch.isnan(t).any() or (t < 0).any() or (t > 1).any():
        raise ValueError(f"{name} must be a probability in [0, 1]; got {p!r}")


def check_positive(name: str, value: Number, allow_zero: bool = False) -> None:
    """Raise ValueError unless ``value`` is finite and > 0 (or >= 0 with ``allow_zero``)."""
    check_finite(name, value)
    t = as_tensor(value, dtype=torch.float64)
    bad = (t < 0).any() if allow_zero else (t <= 0).any()
    if bad:
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be {kind}; got {_describe(t, allow_zero)}")


def _describe(t: torch.Tensor, allow_zero: bool) -> str:
    """A short account of the offending values (never the whole tensor)."""
    if t.dim() == 0:
        return f"{t.item():g}"
    bad = (t < 0) if allow_zero else (t <= 0)
    return f"a tensor of shape {tuple(t.shape)} with {int(bad.sum())} such values (smallest {t.min().item():g})"


def check_bits(bits: torch.Tensor, multiple_of: int = 1, name: str = "bits") -> None:
    """Raise unless ``bits`` is a tensor of 0/1 whose last dimension is a multiple of ``multiple_of``."""
    if not isinstance(bits, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of 0/1 values; got {type(bits).__name__}")
    if bits.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension (..., num_bits); got a scalar")
    if bits.is_complex() or bits.is_floating_point() and not torch.isfinite(bits).all():
        raise ValueError(f"{name} must contain only 0 and 1; got complex or non-finite values")
    if bits.numel() and not ((bits == 0) | (bits == 1)).all():
        raise ValueError(f"{name} must contain only 0 and 1; got other values")
    if bits.shape[-1] % multiple_of != 0:
        raise ValueError(
            f"{name}: last dimension must be a multiple of {multiple_of}; got {bits.shape[-1]}"
        )


def check_choice(name: str, value, accepted) -> None:
    """Raise ValueError unless ``value`` is one of ``accepted``."""
    if value not in accepted:
        raise ValueError(f"{name} must be one of {sorted(accepted, key=str)}; got {value!r}")


def resolve_no(snr_db: Optional[Number], no: Optional[Number], es: float = 1.0) -> torch.Tensor:
    """Noise variance per complex symbol from exactly one of ``snr_db`` (Es/N0 in dB) or ``no``."""
    if (snr_db is None) == (no is None):
        raise ValueError("give exactly one of snr_db (Es/N0 in dB) or no (noise variance per complex symbol)")
    if snr_db is not None:
        check_finite("snr_db", snr_db)
        return es * 10.0 ** (-as_tensor(snr_db, dtype=torch.float32) / 10.0)
    check_positive("no", no, allow_zero=True)
    return as_tensor(no, dtype=torch.float32)
