"""Uncoded transmission and an ideal (capacity-achieving) code abstraction for upper bounds."""
from __future__ import annotations

from typing import Union

import torch

from .._checks import as_tensor, check_bits, check_positive

Number = Union[float, torch.Tensor]


class Uncoded:
    """Identity "code" with k = n, so links can run without FEC.

    Args:
        k: bits per block.
    """

    def __init__(self, k: int) -> None:
        if int(k) != k or k < 1:
            raise ValueError(f"k must be a positive integer; got {k!r}")
        self.k = self.n = int(k)
        self.coderate = 1.0

    def __repr__(self) -> str:
        return f"Uncoded(k={self.k})"

    def encode(self, bits: torch.Tensor) -> torch.Tensor:
        """(..., k) -> (..., k) float32."""
        check_bits(bits)
        if bits.shape[-1] != self.k:
            raise ValueError(f"expected blocks of k={self.k} bits; got {bits.shape[-1]}")
        return bits.float()

    def decode(self, llr: torch.Tensor) -> torch.Tensor:
        """Hard decisions (llr < 0) (..., k) float32."""
        if llr.shape[-1] != self.k:
            raise ValueError(f"expected k={self.k} LLRs; got {llr.shape[-1]}")
        return (llr < 0).float()


class IdealCode:
    """A code that works exactly when its rate is below the channel's capacity.

    A block is lost iff ``rate`` > C, where C is the capacity seen by that block in bits per
    channel use: for a Gaussian-input channel, the mean of log2(1 + snr_i) over the block's
    channel uses (so block fading and fast fading are both handled by passing per-use SNRs).

    Args:
        rate: information bits per channel use (> 0), e.g. 2 * 0.5 for rate-1/2 coded QPSK.
    """

    def __init__(self, rate: float) -> None:
        check_positive("rate", rate)
        self.rate = float(rate)

    def __repr__(self) -> str:
        return f"IdealCode(rate={self.rate})"

    def capacity(self, snr: torch.Tensor) -> torch.Tensor:
        """Mean log2(1 + snr) over the last dimension: (..., uses) linear SNRs -> (...) bits/use."""
        check_positive("snr", snr, allow_zero=True)
        return torch.log2(1.0 + as_tensor(snr, dtype=torch.float64)).mean(-1)

    def block_lost(self, snr: torch.Tensor) -> torch.Tensor:
        """Bool (...): True where rate > capacity of the block's per-use linear SNRs (..., uses)."""
        return self.rate > self.capacity(snr)

    def lost_given_capacity(self, capacity: Number) -> torch.Tensor:
        """Bool: True where rate > ``capacity`` (bits per use; e.g. 1 - h2(p) for a BSC)."""
        return self.rate > as_tensor(capacity, dtype=torch.float64)
