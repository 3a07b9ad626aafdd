"""The analog transports' control channel: the digital link their side information travels on.

By default the side information is *simulated* on the same channel and SNR as the analog symbols: each image's
bits get a CRC-16 and a zero-terminated K = 7 convolutional code (``channels.ConvolutionalCode``, (133, 171)
octal, rate 1/2, 2/3 or 3/4 by puncturing), BPSK (or QPSK) symbols, the channel (its pilots counted), and a
Viterbi decoder; an image whose CRC fails has lost its side information (the receiver cannot place its patches:
the edge's answer stands). ``coded=False`` is the reference of earlier measurements: ceil(bits / rate) channel
uses, *assumed error-free*.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from channels import AWGN, ConvolutionalCode, DigitalLink

CONVOLUTIONAL_RATES = {0.5: "1/2", 2 / 3: "2/3", 0.75: "3/4"}
CRC_BITS = 16


@dataclass(frozen=True)
class ControlChannel:
    """The digital channel carrying the side information (module docstring).

    Attributes:
        rate: the code's nominal rate (coded: 1/2, 2/3 or 3/4; the tail makes it a little lower).
        coded: simulate the coded link (True) or assume it error-free at ``rate`` (False).
        modulation: 2 (BPSK) or 4 (QPSK) coded bits per channel use (coded only).

    >>> control = ControlChannel()
    >>> control.channel_uses(101), ControlChannel(0.5, coded=False).channel_uses(101)
    (246, 202)
    >>> round(control.shannon_limit_db(), 2)
    -2.82
    """

    rate: float = 0.5
    coded: bool = True
    modulation: int = 2

    def __post_init__(self):
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)) or not 0 < self.rate <= 1:
            raise ValueError(f"control channel code rate must lie in (0, 1], got {self.rate!r}")
        if self.coded and self._rate_name is None:
            raise ValueError(f"a coded control channel's rate is one of 1/2, 2/3, 3/4 (convolutional code), got "
                             f"{self.rate!r}")
        if self.modulation not in (2, 4):
            raise ValueError(f"control channel modulation must be 2 (BPSK) or 4 (QPSK), got {self.modulation!r}")

    @property
    def _rate_name(self) -> str | None:
        return next((name for value, name in CONVOLUTIONAL_RATES.items() if math.isclose(self.rate, value)), None)

    def link(self, bits: int, channel=None) -> DigitalLink:
        """The ``channels.DigitalLink`` carrying one image's ``bits`` of side information as one CRC'd block."""
        code = ConvolutionalCode(bits + CRC_BITS, self._rate_name)
        return DigitalLink(code, self.modulation, AWGN() if channel is None else channel, crc="crc16")

    def channel_uses(self, bits: int, channel=None) -> int:
        """Complex channel uses for ``bits`` information bits (over ``channel``: its pilots counted)."""
        if not self.coded:
            return math.ceil(bits / self.rate)
        return self.link(bits, channel).uses_per_packet

    def message_uses(self, messages: list[tuple[bytes, int]], channel=None) -> list[int]:
        """Channel uses of each (bytes, bit count) message over ``channel`` (one link built per length)."""
        per_length = {bits: self.channel_uses(bits, channel) for bits in {bits for _, bits in messages}}
        return [per_length[bits] for _, bits in messages]

    @property
    def label(self) -> str:
        if not self.coded:
            return f"BPSK rate {self.rate:g}, assumed error-free"
        return (f"{'BPSK' if self.modulation == 2 else 'QPSK'}, CRC-16 + K=7 convolutional code rate "
                f"{self._rate_name}, simulated on the data channel")

    def carry(self, messages: list[tuple[bytes, int]], channel, snr_db: float,
              generator: torch.Generator) -> tuple[list[bytes | None], list[int]]:
        """Each (bytes, bit count) message over ``channel`` at Es/N0 ``snr_db`` (``math.inf``: noise-free):
        (what arrived, None where the CRC failed; channel uses of each). Error-free when not ``coded``."""
        uses = self.message_uses(messages, channel)
        if not self.coded or snr_db == math.inf:  # assumed error-free, or noise-free
            return [data for data, _ in messages], uses
        arrived: list[bytes | None] = [None] * len(messages)
        by_length: dict[int, list[int]] = {}
        for i, (_, bits) in enumerate(messages):
            by_length.setdefault(bits, []).append(i)
        for bits, rows in sorted(by_length.items()):
            sent = np.stack([np.unpackbits(np.frombuffer(messages[i][0], dtype=np.uint8))[:bits] for i in rows])
            link = self.link(bits, channel)
            out = link(torch.from_numpy(sent.astype(np.float32)), snr_db=snr_db, generator=generator)
            got = out.bits.numpy() > 0.5
            for j, i in enumerate(rows):
                if bool(out.crc_ok[j].all()):
                    arrived[i] = np.packbits(got[j]).tobytes()
        return arrived, uses

    def shannon_limit_db(self) -> float:
        """Es/N0 (dB) at which the BPSK-input AWGN capacity equals ``rate`` (bisection, 0.001 dB): below it no
        code of that rate is error-free."""
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



