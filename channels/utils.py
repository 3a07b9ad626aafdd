"""Unit conversions and closed-form references (Q-function, capacities).

Conventions (used across the package, as in Sionna):

* ``snr_db`` is Es/N0 per complex symbol in dB; constellations have unit energy, Es = 1.
* ``no`` is the noise variance per complex symbol, E|n|^2 = no (no/2 per real dimension).
* ``ebno_db`` is Eb/N0 in dB per information bit.
"""
from __future__ import annotations

import math
from typing import Union

import torch

from ._checks import as_tensor, check_finite, check_positive, check_probability

Number = Union[float, int, torch.Tensor]


def db2lin(x_db: Number) -> torch.Tensor:
    """10^(x_db/10) (dB to linear power ratio)."""
    check_finite("x_db", x_db)
    return 10.0 ** (as_tensor(x_db, dtype=torch.float64) / 10.0)


def lin2db(x: Number) -> torch.Tensor:
    """10 log10(x) (linear power ratio to dB)."""
    check_positive("x", x)
    return 10.0 * torch.log10(as_tensor(x, dtype=torch.float64))


def snrdb2no(snr_db: Number, es: float = 1.0) -> torch.Tensor:
    """Noise variance per complex symbol for Es/N0 = ``snr_db`` dB and symbol energy ``es``."""
    return es / db2lin(snr_db)


def ebnodb2no(ebno_db: Number, bits_per_symbol: int, coderate: float = 1.0, es: float = 1.0) -> torch.Tensor:
    """Noise variance per complex symbol for a given Eb/N0.

    Es/N0 = Eb/N0 * bits_per_symbol * coderate, so no = es / (ebno * bits_per_symbol * coderate).

    Args:
        ebno_db: Eb/N0 per information bit, dB.
        bits_per_symbol: coded bits carried by one complex symbol (1 for BPSK, 2 for QPSK, ...).
        coderate: information bits per coded bit, in (0, 1].
        es: average symbol energy (1 for the package's constellations).
    """
    if int(bits_per_symbol) != bits_per_symbol or bits_per_symbol < 1:
        raise ValueError(f"bits_per_symbol must be a positive integer; got {bits_per_symbol!r}")
    check_finite("coderate", coderate)
    if not 0 < coderate <= 1:
        raise ValueError(f"coderate must be in (0, 1]; got {coderate!r}")
    return es / (db2lin(ebno_db) * bits_per_symbol * coderate)


def ebnodb2snrdb(ebno_db: Number, bits_per_symbol: int, coderate: float = 1.0) -> torch.Tensor:
    """Es/N0 in dB for Eb/N0 ``ebno_db`` dB: ebno_db + 10 log10(bits_per_symbol * coderate)."""
    return lin2db(1.0 / ebnodb2no(ebno_db, bits_per_symbol, coderate))


def qfunc(x: Number) -> torch.Tensor:
    """Gaussian tail Q(x) = P(N(0,1) > x) = erfc(x/sqrt 2)/2, float64."""
    return 0.5 * torch.special.erfc(as_tensor(x, dtype=torch.float64) / math.sqrt(2.0))


def binary_entropy(p: Number) -> torch.Tensor:
    """h2(p) = -p log2 p - (1-p) log2(1-p) in bits, with h2(0) = h2(1) = 0."""
    check_probability("p", p)
    p = as_tensor(p, dtype=torch.float64)
    return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p)) / math.log(2.0)


def awgn_capacity(snr: Number) -> torch.Tensor:
    """Gaussian-input capacity log2(1 + snr) in bits per complex channel use (``snr`` linear)."""
    return torch.log2(1.0 + as_tensor(snr, dtype=torch.float64))


def bsc_capacity(p: Number) -> torch.Tensor:
    """Capacity 1 - h2(p) of the binary symmetric channel, bits per use."""
    return 1.0 - binary_entropy(p)


def bec_capacity(e: Number) -> torch.Tensor:
    """Capacity 1 - e of the binary erasure channel, bits per use."""
    check_probability("e", e)
    return 1.0 - as_tensor(e, dtype=torch.float64)
