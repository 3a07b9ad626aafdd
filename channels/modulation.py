"""Gray-mapped BPSK, QPSK and square M-QAM with unit average energy; mapper and demappers.

Bit labelling: a symbol carries ``m = log2(M)`` bits ``(b_0, ..., b_{m-1})``; its integer label
is ``sum b_i 2^(m-1-i)`` (b_0 is the most significant bit).  Square QAM is the product of two
Gray-coded PAMs: the first m/2 bits choose the in-phase level, the last m/2 the quadrature level.
An all-zero PAM label is the most positive level, so BPSK maps 0 -> +1, 1 -> -1 and QPSK maps
(b0, b1) -> ((1 - 2 b0) + j (1 - 2 b1)) / sqrt(2).

LLR sign convention (used everywhere in this package):

    LLR = log P(b = 0 | y) / P(b = 1 | y)

so a positive LLR favours bit 0 and the hard decision is ``b = (LLR < 0)``.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch

from ._checks import as_tensor, check_bits, check_choice, check_finite, check_positive

SUPPORTED_ORDERS = (2, 4, 16, 64, 256)
DEMAP_METHODS = ("exact", "maxlog", "hard")


def _gray_pam(num_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unnormalised PAM amplitude for every Gray label and the label bits.

    Returns ``amp`` (L,) with ``amp[label]`` the level of that label, and ``bits`` (L, num_bits).
    Level index k (0 = most positive, amplitude L-1-2k) carries Gray label k ^ (k >> 1).
    """
    L = 2**num_bits
    k = torch.arange(L, device="cpu")
    labels = k ^ (k >> 1)
    amp = torch.empty(L, dtype=torch.float64, device="cpu")
    amp[labels] = (L - 1 - 2 * k).to(torch.float64)
    shifts = torch.arange(num_bits - 1, -1, -1, device="cpu")
    bits = (torch.arange(L, device="cpu")[:, None] >> shifts) & 1
    return amp, bits


class Constellation:
    """A Gray-mapped unit-energy constellation: BPSK (M=2), QPSK (4) or square QAM (16, 64, 256).

    Attributes:
        order: M, number of points.
        bits_per_symbol: m = log2(M).
        points: complex64 tensor (M,), ``points[label]``; average energy 1.
        labels_bits: int64 tensor (M, m), bits of every label (b_0 first).
        pam: float32 tensor (L,), per-dimension amplitude by PAM label (scaled for unit energy).
    """

    def __init__(self, order: int) -> None:
        check_choice("modulation order", order, SUPPORTED_ORDERS)
        self.order = int(order)
        self.bits_per_symbol = int(round(math.log2(order)))
        self.is_real = order == 2
        m_dim = 1 if self.is_real else self.bits_per_symbol // 2
        self.bits_per_dim = m_dim
        amp, pam_bits = _gray_pam(m_dim)
        if self.is_real:
            scale = 1.0
        else:
            # E|x|^2 = 2 * mean(amp^2) = 2 (L^2 - 1) / 3 = 2 (M - 1) / 3
            scale = math.sqrt(2.0 * (self.order - 1) / 3.0)
        self.pam = (amp / scale).to(torch.float32)
        self.pam_bits = pam_bits
        m = self.bits_per_symbol
        lab = torch.arange(self.order, device="cpu")
        self.labels_bits = (lab[:, None] >> torch.arange(m - 1, -1, -1, device="cpu")) & 1
        if self.is_real:
            zeros = torch.zeros(2, dtype=torch.float64, device="cpu")
            self.points = torch.complex(self.pam.double(), zeros).to(torch.complex64)
        else:
            i_lab = lab >> m_dim
            q_lab = lab & (2**m_dim - 1)
            self.points = torch.complex(self.pam[i_lab].double(), self.pam[q_lab].double()).to(torch.complex64)
        # For the demappers: per bit of a PAM label, the levels where that bit is 0 / 1.
        L = 2**m_dim
        idx = torch.arange(L, device="cpu")
        self._idx0 = torch.stack([idx[pam_bits[:, i] == 0] for i in range(m_dim)])  # (m_dim, L/2)
        self._idx1 = torch.stack([idx[pam_bits[:, i] == 1] for i in range(m_dim)])
        # Hard slicing: level index k -> Gray label.
        k = torch.arange(L, device="cpu")
        self._label_of_level = k ^ (k >> 1)
        self._step = float(2.0 / scale)  # distance between neighbouring levels

    def __repr__(self) -> str:
        return f"Constellation(order={self.order})"


def _as_constellation(c: Union[int, Constellation]) -> Constellation:
    return c if isinstance(c, Constellation) else Constellation(c)


class Mapper:
    """Bits to unit-energy complex symbols.

    Args:
        constellation: a :class:`Constellation` or a modulation order M in {2, 4, 16, 64, 256}.

    Call: ``bits`` (..., n * m) of 0/1 (any integer/float/bool dtype) -> complex64 symbols (..., n).
    """

    def __init__(self, constellation: Union[int, Constellation]) -> None:
        self.constellation = _as_constellation(constellation)

    def __call__(self, bits: torch.Tensor) -> torch.Tensor:
        c = self.constellation
        m = c.bits_per_symbol
        check_bits(bits, m)
        b = bits.to(torch.int64).reshape(*bits.shape[:-1], bits.shape[-1] // m, m)
        weights = 2 ** torch.arange(m - 1, -1, -1, device=bits.device)
        labels = (b * weights).sum(-1)
        return c.points.to(bits.device)[labels]


class Demapper:
    """Complex symbols to bit LLRs or hard bits.

    LLR = log P(b=0|y) / P(b=1|y) (positive favours 0).  Square QAM is demapped per real
    dimension (exact, because the Gray product labelling and the circular noise factorise), so
    the exact LLR of 256-QAM costs a log-sum-exp over 8 levels per bit, vectorised.

    Args:
        constellation: a :class:`Constellation` or an order M in {2, 4, 16, 64, 256}.
        method: ``"exact"`` (log-sum-exp), ``"maxlog"`` (max-log approximation) or ``"hard"``
            (nearest point; returns 0/1 bits as float32).

    Call: ``y`` complex (..., n), ``no`` noise variance per complex symbol (float or tensor
    broadcastable to y, e.g. the per-symbol effective variance no/|h|^2 after equalisation)
    -> float32 (..., n * m).  ``no`` is ignored by the hard demapper.
    """

    def __init__(self, constellation: Union[int, Constellation], method: str = "exact") -> None:
        check_choice("method", method, DEMAP_METHODS)
        self.constellation = _as_constellation(constellation)
        self.method = method

    def __call__(self, y: torch.Tensor, no: Optional[Union[float, torch.Tensor]] = None) -> torch.Tensor:
        c = self.constellation
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"received symbols y must be a torch.Tensor; got {type(y).__name__}")
        check_finite("received symbols y", y)
        if not torch.is_complex(y):
            y = torch.complex(y.float(), torch.zeros_like(y, dtype=torch.float32))
        dims = [y.real] if c.is_real else [y.real, y.imag]
        if self.method == "hard":
            res = torch.cat([self._hard_dim(d) for d in dims], dim=-1)
        else:
            if no is None:
                raise ValueError("the soft demappers need the noise variance `no` (per complex symbol)")
            check_positive("no", no)
            no_t = as_tensor(no, dtype=torch.float32, device=y.device)
            inv_no = 1.0 / (no_t.item() if no_t.dim() == 0 else torch.broadcast_to(no_t, y.shape))
            res = torch.stack([bit for d in dims for bit in self._llr_dim(d.float(), inv_no)], dim=-1)
        # (..., n, m) -> (..., n * m)
        return res.reshape(*y.shape[:-1], y.shape[-1] * c.bits_per_symbol)

    def _llr_dim(self, d: torch.Tensor, inv_no: Union[float, torch.Tensor]) -> list[torch.Tensor]:
        """LLRs of the bits of one real dimension, a list of bits_per_dim tensors (..., n).

        Per level a, log p(d | a) = -(d - a)^2 / no + const; the d^2 term is common to every
        level and cancels in an LLR, which leaves the linear metric (2 a d - a^2) / no.
        """
        c = self.constellation
        metric = [(d * (2.0 * a) - a * a) * inv_no for a in c.pam.tolist()]
        reduce = _logsumexp if self.method == "exact" else _max
        return [reduce([metric[i] for i in zeros]) - reduce([metric[i] for i in ones])
                for zeros, ones in zip(c._idx0.tolist(), c._idx1.tolist())]

    def _hard_dim(self, d: torch.Tensor) -> torch.Tensor:
        """Nearest-level bits (..., n, bits_per_dim) of one real dimension."""
        c = self.constellation
        L = c.pam.numel()
        k = torch.round((c.pam[0].item() - d.float()) / c._step).clamp(0, L - 1).long()
        labels = c._label_of_level.to(d.device)[k]
        return c.pam_bits.to(d.device)[labels].to(torch.float32)


def _max(values: list[torch.Tensor]) -> torch.Tensor:
    """Elementwise maximum of a list of tensors, reduced pairwise (log2(len) levels)."""
    while len(values) > 1:
        values = [torch.maximum(a, b) for a, b in zip(values[::2], values[1::2])] + values[len(values) & ~1:]
    return values[0]


def _logsumexp(values: list[torch.Tensor]) -> torch.Tensor:
    """Elementwise log(sum(exp(v))) of a list of tensors: max + log(sum(exp(v - max))).

    One log per output instead of a log1p per pair (torch.logaddexp): the sum is in
    [1, len(values)], so nothing overflows and the log is exact to float32 rounding.
    """
    top = _max(values)
    total = torch.exp(values[0] - top)
    for v in values[1:]:
        total += torch.exp(v - top)
    return top + torch.log(total)


def hard_decisions(llr: torch.Tensor) -> torch.Tensor:
    """Bits from LLRs under the package convention (LLR > 0 favours 0): ``(llr < 0)`` as float32."""
    return (llr < 0).to(torch.float32)
