"""Flat Rayleigh / Rician fading with fast or block fading, and the receiver's channel knowledge.

y = h x + n with E|h|^2 = 1 and n ~ CN(0, no).  The gain h is drawn once per block of
``coherence`` consecutive symbols along the last dimension (``coherence=1``: fast, per-symbol
fading; ``coherence=None``: one gain for the whole last dimension).

Channel state information at the receiver (``csi``):

* ``"perfect"``: the receiver knows h.
* ``"estimated"``: least-squares estimate from ``num_pilots`` unit-energy pilots per block,
  h_hat = h + e with e ~ CN(0, no / num_pilots); the pilots cost ``num_pilots`` channel uses per
  block (see :meth:`FlatFading.pilot_uses`).  The receiver then treats h_hat as the truth
  (mismatched detection).
* ``"none"``: the receiver gets no h (``h_hat`` is None) and detects y as it is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import torch

from ._checks import as_tensor, check_choice, check_positive, resolve_no
from .awgn import complex_noise

Number = Union[float, torch.Tensor]
CSI_MODES = ("perfect", "estimated", "none")
KINDS = ("rayleigh", "rician")


@dataclass
class FadingOutput:
    """Output of :class:`FlatFading`.

    Attributes:
        y: received symbols, complex64 (..., n).
        h: true channel gains, complex64 (..., n).
        h_hat: the receiver's channel knowledge (..., n) (h, its estimate) or None for csi="none".
        no: noise variance per complex symbol (tensor).
    """

    y: torch.Tensor
    h: torch.Tensor
    h_hat: Optional[torch.Tensor]
    no: torch.Tensor


class FlatFading:
    """Flat fading channel.

    Args:
        kind: ``"rayleigh"`` or ``"rician"``.
        k_factor: Rician K, the linear power ratio of the line-of-sight to the scattered part
            (>= 0; 0 is Rayleigh).  The LoS component has phase 0.
        coherence: symbols per fading block (positive int) or None for one block over the whole
            last dimension.  1 is fast (per-symbol) fading.
        csi: receiver knowledge, ``"perfect"``, ``"estimated"`` or ``"none"``.
        num_pilots: pilots per block for ``csi="estimated"`` (positive int).

    Call: ``x`` complex (..., n), exactly one of ``snr_db`` (Es/N0, dB) or ``no`` (noise variance
    per complex symbol), optional ``generator`` -> :class:`FadingOutput`.
    """

    def __init__(self, kind: str = "rayleigh", k_factor: float = 0.0, coherence: Optional[int] = 1,
                 csi: str = "perfect", num_pilots: int = 1) -> None:
        check_choice("kind", kind, KINDS)
        check_choice("csi", csi, CSI_MODES)
        check_positive("k_factor", k_factor, allow_zero=True)
        if coherence is not None and (int(coherence) != coherence or coherence < 1):
            raise ValueError(f"coherence must be a positive integer (symbols per block) or None; got {coherence!r}")
        if int(num_pilots) != num_pilots or num_pilots < 1:
            raise ValueError(f"num_pilots must be a positive integer; got {num_pilots!r}")
        self.kind = kind
        self.k_factor = float(k_factor) if kind == "rician" else 0.0
        self.coherence = None if coherence is None else int(coherence)
        self.csi = csi
        self.num_pilots = int(num_pilots)

    def num_blocks(self, n: int) -> int:
        """Fading blocks covering ``n`` symbols."""
        return 1 if self.coherence is None else -(-n // self.coherence)

    def pilot_uses(self, n: int) -> int:
        """Pilot channel uses spent per ``n`` data symbols (0 unless csi="estimated")."""
        return self.num_blocks(n) * self.num_pilots if self.csi == "estimated" else 0

    def gains(self, shape, generator: Optional[torch.Generator] = None,
              device: Optional[torch.device] = None) -> torch.Tensor:
        """Independent channel gains, complex64 of ``shape``, E|h|^2 = 1."""
        scatter = complex_noise(shape, torch.tensor(1.0, device="cpu"), generator, device)
        if self.k_factor == 0.0:
            return scatter
        k = self.k_factor
        return math.sqrt(k / (k + 1)) + math.sqrt(1 / (k + 1)) * scatter

    def _expand(self, hb: torch.Tensor, n: int) -> torch.Tensor:
        if self.coherence is None:
            return hb.expand(*hb.shape[:-1], n)
        return hb.repeat_interleave(self.coherence, dim=-1)[..., :n]

    def __call__(self, x: torch.Tensor, snr_db: Optional[Number] = None, no: Optional[Number] = None,
                 generator: Optional[torch.Generator] = None) -> FadingOutput:
        if x.dim() == 0:
            raise ValueError("x must have shape (..., n); got a scalar")
        no_t = resolve_no(snr_db, no).to(x.device)
        if not torch.is_complex(x):
            x = torch.complex(x.float(), torch.zeros_like(x, dtype=torch.float32))
        n = x.shape[-1]
        nb = self.num_blocks(n)
        hb = self.gains((*x.shape[:-1], nb), generator, x.device)
        h = self._expand(hb, n)
        y = h * x + complex_noise(x.shape, no_t, generator, x.device)
        if self.csi == "perfect":
            h_hat = h
        elif self.csi == "estimated":
            err = complex_noise(hb.shape, no_t / self.num_pilots, generator, x.device)
            h_hat = self._expand(hb + err, n)
        else:
            h_hat = None
        return FadingOutput(y=y, h=h, h_hat=h_hat, no=no_t)


class Equalizer:
    """One-tap equaliser for flat channels.

    Args:
        method: ``"zf"`` (x_hat = y / h, effective noise variance no / |h|^2; exact for LLRs) or
            ``"mmse"`` (x_hat = conj(h) y / (|h|^2 + no), for unit-energy symbols; biased, meant
            for analog links).

    Call: ``y`` complex (..., n), ``h_hat`` complex (..., n) or None (no CSI: y is returned as is),
    ``no`` noise variance per complex symbol -> ``(x_hat, no_eff)``, where ``no_eff`` (..., n) is
    the noise variance of x_hat around the symbol (ZF: no / |h|^2; MMSE: the error variance
    no / (|h|^2 + no)).
    """

    def __init__(self, method: str = "zf") -> None:
        check_choice("method", method, ("zf", "mmse"))
        self.method = method

    def __call__(self, y: torch.Tensor, h_hat: Optional[torch.Tensor], no: Number):
        no_t = as_tensor(no, dtype=torch.float32, device=y.device)
        if h_hat is None:
            return y, torch.broadcast_to(no_t, y.shape)
        g = h_hat.real**2 + h_hat.imag**2
        if self.method == "zf":
            g = g.clamp_min(1e-30)
            return y * h_hat.conj() / g, no_t / g
        return y * h_hat.conj() / (g + no_t), no_t / (g + no_t)
