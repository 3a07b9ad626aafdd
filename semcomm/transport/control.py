"""The analog transport's control channel: the digital channel its side information travels on."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ControlChannel:
    """The digital channel carrying the side information: BPSK (one coded bit per complex channel use)
    with a code of rate ``rate``, **assumed error-free**: ceil(bits / rate) channel uses.

    The assumption is optimistic where no code of that rate can be error-free:
    :meth:`shannon_limit_db` is the lowest Es/N0 at which BPSK on AWGN carries
    ``rate`` bits per use (an ideal code; real codes need more, fading more still).

    >>> control = ControlChannel(0.5)
    >>> control.channel_uses(101), round(control.shannon_limit_db(), 2)
    (202, -2.82)
    """

    rate: float = 0.5

    def __post_init__(self):
        if not isinstance(self.rate, (int, float)) or not 0 < self.rate <= 1:
            raise ValueError(f"control channel code rate must lie in (0, 1], got {self.rate!r}")

    def channel_uses(self, bits: int) -> int:
        """Complex channel uses for ``bits`` information bits."""
        return math.ceil(bits / self.rate)

    @property
    def label(self) -> str:
        return f"BPSK rate {self.rate:g}, assumed error-free"

    def shannon_limit_db(self) -> float:
        """Es/N0 (dB) at which the BPSK-input AWGN capacity equals ``rate`` (bisection, 0.001 dB)."""
        low, high = -40.0, 40.0
        while high - low > 1e-3:
            middle = (low + high) / 2
            low, high = (low, middle) if bpsk_capacity(middle) >= self.rate else (middle, high)
        return high


def bpsk_capacity(snr_db: float, nodes: int = 96) -> float:
    """Bits per channel use of BPSK (+-1, Es = 1) on AWGN at Es/N0 ``snr_db``, by Gauss-Hermite quadrature:
    1 - E[log2(1 + exp(-2 y / s2))], y ~ N(1, s2), s2 = no / 2 (one real dimension)."""
    s2 = 10.0 ** (-snr_db / 10) / 2
    x, w = np.polynomial.hermite.hermgauss(nodes)
    y = 1 + math.sqrt(2 * s2) * x
    return float(1 - (w * np.logaddexp(0, -2 * y / s2)).sum() / math.sqrt(math.pi) / math.log(2))
