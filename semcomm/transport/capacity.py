"""Separate source-channel coding at capacity: the upper reference of every digital scheme over a link.

A capacity-achieving code (``channels.IdealCode``: a block arrives exactly when its rate is below the capacity
it sees) with Gaussian inputs sends each offloaded image's packets, B bits in all, in

* AWGN: ceil(B / log2(1 + snr)) channel uses, every bit arriving;
* Rayleigh fading (E|h|^2 = 1), a code spanning many fades: ceil(B / C_erg) channel uses at the ergodic
  capacity C_erg = E[log2(1 + |h|^2 snr)] = exp(1/snr) E1(1/snr) / ln 2 (E1 the exponential integral), every bit
  arriving. One image in one fading block cannot reach it (a fixed rate meets outage); it is the reference
  of the fast-fading channel and the limit of coding across images.

snr is Es/N0 (linear). No real code reaches these counts at finite block length; a measured scheme that needs
fewer channel uses than this reference at equal accuracy would be a bug. The packets are the framing's, so a
string's framing overhead is counted as on the real links.
"""
from __future__ import annotations

import math

import torch

from scipy.special import exp1

from semcomm.transport.digital import Delivery, DigitalTransport


class CapacityTransport(DigitalTransport):
    """A :class:`~semcomm.transport.digital.DigitalTransport` whose blocks all arrive and whose channel uses are
    those of a capacity-achieving code (module docstring).

    Args:
        link: the link whose packets (framing) are carried; its modulation and code are not used.
        fading: Rayleigh fading at its ergodic capacity instead of AWGN.
    """

    def __init__(self, link, fading: bool = False, **options):
        super().__init__(link, ideal=True, **options)  # every packet arrives as sent: nothing goes through the link
        self.fading = bool(fading)

    def capacity(self, snr_db: float) -> float:
        """Bits per channel use at Es/N0 ``snr_db``: log2(1 + snr), or Rayleigh's ergodic capacity."""
        snr = 10.0 ** (snr_db / 10)
        if not self.fading:
            return math.log2(1 + snr)
        return float(math.exp(1 / snr) * exp1(1 / snr) / math.log(2)) if snr > 1e-3 else snr / math.log(2)

    def send(self, packets: list[list[bytes]], snr_db: float | None = None,
             generator: torch.Generator | None = None) -> Delivery:
        """Every packet arrives; each image costs ceil(its bits / the capacity it sees) channel uses."""
        if snr_db is None or not math.isfinite(snr_db):
            raise ValueError(f"a capacity link needs a finite Es/N0 in dB, got {snr_db!r}")
        blocks = torch.tensor([sum(self.blocks_for(p) for p in image) for image in packets], dtype=torch.int64,
                              device="cpu")
        bits = torch.tensor([sum(8 * len(p) for p in image) for image in packets], dtype=torch.float64, device="cpu")
        uses = torch.ceil(bits / self.capacity(snr_db))
        return Delivery([list(image) for image in packets], blocks, uses.to(torch.int64))
