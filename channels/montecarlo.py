"""Monte-Carlo BER/BLER simulation over a list of SNR points, with early stopping.

The runner calls ``simulate(snr_db, batch_size, generator) -> (bits, bits_hat)`` (both
(batch_size, block_len); one row is one block) until a target number of bit or block errors
or a budget of bits/blocks is reached.  :func:`run_ber` accepts a :class:`~channels.link.DigitalLink`
directly (one packet = one block).

Confidence intervals are exact two-sided 95% Clopper-Pearson intervals.  For BER they treat
bits as independent, which decoders with bursty errors (Viterbi, BP) violate: read the BER
interval as optimistic and the BLER interval as the honest one.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from scipy.stats import beta

from ._checks import check_finite

Simulate = Callable[[float, int, torch.Generator], Tuple[torch.Tensor, torch.Tensor]]


def clopper_pearson(errors: int, trials: int, level: float = 0.95) -> Tuple[float, float]:
    """Exact binomial confidence interval (lo, hi) for errors / trials."""
    if trials == 0:
        return 0.0, 1.0
    a = (1 - level) / 2
    lo = 0.0 if errors == 0 else float(beta.ppf(a, errors, trials - errors + 1))
    hi = 1.0 if errors == trials else float(beta.ppf(1 - a, errors + 1, trials - errors))
    return lo, hi


@dataclass
class SNRPoint:
    """Result at one SNR: counts, rates, 95% intervals and wall time (seconds)."""

    snr_db: float
    ber: float
    bler: float
    bit_errors: int
    bits: int
    block_errors: int
    blocks: int
    ber_ci: Tuple[float, float]
    bler_ci: Tuple[float, float]
    runtime_s: float


@dataclass
class BERResult:
    """Results of a sweep; ``str()`` gives a printable table, :meth:`to_dicts` plain data."""

    points: List[SNRPoint] = field(default_factory=list)
    snr_label: str = "SNR (dB)"

    def to_dicts(self) -> List[dict]:
        return [asdict(p) for p in self.points]

    @property
    def snr_db(self) -> List[float]:
        return [p.snr_db for p in self.points]

    @property
    def ber(self) -> List[float]:
        return [p.ber for p in self.points]

    @property
    def bler(self) -> List[float]:
        return [p.bler for p in self.points]

    def __str__(self) -> str:
        head = (f"{self.snr_label:>9} {'BER':>10} {'BER 95% CI':>23} {'BLER':>10} {'BLER 95% CI':>23} "
                f"{'bit err':>8} {'bits':>11} {'blk err':>8} {'blocks':>8} {'time (s)':>9}")
        lines = [head, "-" * len(head)]
        for p in self.points:
            lines.append(
                f"{p.snr_db:9.2f} {p.ber:10.3e} [{p.ber_ci[0]:9.3e}, {p.ber_ci[1]:9.3e}] {p.bler:10.3e} "
                f"[{p.bler_ci[0]:9.3e}, {p.bler_ci[1]:9.3e}] {p.bit_errors:8d} {p.bits:11d} "
                f"{p.block_errors:8d} {p.blocks:8d} {p.runtime_s:9.2f}")
        return "\n".join(lines)


def run_ber(simulate, snr_dbs: Sequence[float], batch_size: int = 100, target_bit_errors: Optional[int] = 1000,
            target_block_errors: Optional[int] = 100, max_bits: int = 10**7, max_blocks: Optional[int] = None,
            seed: int = 0, stop_when_error_free: bool = True, snr_label: str = "SNR (dB)") -> BERResult:
    """Monte-Carlo BER/BLER at every SNR point.

    Args:
        simulate: a :class:`~channels.link.DigitalLink` (SNR is Es/N0 in dB; pass
            ``snr_label="Eb/N0 (dB)"`` with a wrapper to sweep Eb/N0) or a callable
            ``(snr_db, batch_size, generator) -> (bits, bits_hat)`` with rows as blocks.
        snr_dbs: SNR points in dB (finite).
        batch_size: blocks per call.
        target_bit_errors, target_block_errors: stop a point once either count is reached
            (None disables that criterion).
        max_bits, max_blocks: budgets per point.
        seed: seed of the ``torch.Generator`` shared by the whole sweep (reproducible).
        stop_when_error_free: skip the remaining (higher) SNR points after a point with no error.
        snr_label: column title for the printed table.
    """
    from .link import DigitalLink

    if isinstance(simulate, DigitalLink):
        link = simulate

        def simulate(snr_db, n, g):  # noqa: F811 - wrap the link
            bits = torch.randint(0, 2, (n, link.payload_bits), generator=g)
            return bits, link(bits, snr_db=snr_db, generator=g).bits

    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    for s in snr_dbs:
        check_finite("snr_db", s)
    g = torch.Generator().manual_seed(seed)
    result = BERResult(snr_label=snr_label)
    for snr in snr_dbs:
        t0 = time.perf_counter()
        be = bits = ble = blocks = 0
        while True:
            b, b_hat = simulate(float(snr), batch_size, g)
            err = (b.reshape(b.shape[0], -1).float() != b_hat.reshape(b.shape[0], -1).float())
            be += int(err.sum())
            bits += err.numel()
            ble += int(err.any(-1).sum())
            blocks += err.shape[0]
            if target_bit_errors is not None and be >= target_bit_errors:
                break
            if target_block_errors is not None and ble >= target_block_errors:
                break
            if bits >= max_bits or (max_blocks is not None and blocks >= max_blocks):
                break
        result.points.append(SNRPoint(
            snr_db=float(snr), ber=be / bits, bler=ble / blocks, bit_errors=be, bits=bits, block_errors=ble,
            blocks=blocks, ber_ci=clopper_pearson(be, bits), bler_ci=clopper_pearson(ble, blocks),
            runtime_s=time.perf_counter() - t0))
        if stop_when_error_free and be == 0:
            break
    return result
