"""Links by name: what a user asks for ("rayleigh, 16-QAM, LDPC 3/4") built from ``channels``.

A :class:`LinkSpec` names the channel, the modulation and the code; a
channel *condition* sets how bad it is, on one axis per channel:

=====================  =====================================================  ==========================
channel                model                                                   condition
=====================  =====================================================  ==========================
``ideal``              every block arrives (channel uses as on ``awgn``)        ignored
``awgn``               AWGN                                                    Es/N0 in dB
``rayleigh``           Rayleigh block fading, one gain per code block          Es/N0 in dB
``rayleigh-fast``      Rayleigh fading, a new gain every symbol                Es/N0 in dB
``bsc``                binary symmetric channel, no modulation                 crossover probability
``bec``                binary erasure channel, no modulation                   erasure probability
``gilbert-elliott``    bursty loss of whole code blocks (Gilbert channel,      mean block loss rate
                       mean burst ``burst`` blocks) on an error-free link
=====================  =====================================================  ==========================

The code is IEEE 802.11n LDPC (``n`` = 648, 1296 or 1944; rate 1/2, 2/3,
3/4 or 5/6) with a CRC-16 per block, soft sum-product decoding; fading
receivers use perfect CSI unless ``csi`` says otherwise.

Link adaptation (``adaptive=True``, SNR channels only): at each SNR the
transmitter uses the fastest modulation and code of :data:`MCS_TABLE` whose
block error rate at that (mean) SNR, measured by Monte Carlo on the same
channel (:class:`LinkAdaptation`), is at most ``target_bler``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

from channels import AWGN, BEC, BSC, DigitalLink, FlatFading, GilbertElliott, LDPC80211n, run_ber

from semcomm.transport.digital import DigitalTransport

CHANNELS = ("ideal", "awgn", "rayleigh", "rayleigh-fast", "bsc", "bec", "gilbert-elliott")
SNR_CHANNELS = ("awgn", "rayleigh", "rayleigh-fast")
MODULATIONS = (2, 4, 16, 64, 256)
CODE_RATES = ("1/2", "2/3", "3/4", "5/6")
BLOCK_LENGTHS = (648, 1296, 1944)
# modulation and code rate pairs of the adaptive link, slowest first (802.11n-like)
MCS_TABLE = ((2, "1/2"), (4, "1/2"), (4, "3/4"), (16, "1/2"), (16, "3/4"), (64, "2/3"), (64, "3/4"), (64, "5/6"))
# one receive condition per channel kind; the sweep's x axis
CONDITION_NAMES = {"ideal": "none", "awgn": "SNR (dB)", "rayleigh": "SNR (dB)", "rayleigh-fast": "SNR (dB)",
                   "bsc": "crossover probability", "bec": "erasure probability",
                   "gilbert-elliott": "block loss rate"}


@dataclass(frozen=True)
class LinkSpec:
    """A digital link by name (see the module docstring).

    Attributes:
        channel: one of :data:`CHANNELS`.
        modulation: QAM order (2 = BPSK, 4 = QPSK, 16, 64, 256); unused on ``bsc`` / ``bec``.
        code_rate: LDPC rate, ``"1/2"``, ``"2/3"``, ``"3/4"`` or ``"5/6"``.
        block: LDPC code length n in bits.
        csi: fading receivers' channel knowledge, ``perfect``, ``estimated`` or ``none``.
        burst: mean burst length in blocks (``gilbert-elliott`` only).
        adaptive: pick modulation and code rate from the SNR (module docstring); ``modulation``
            and ``code_rate`` are then ignored.
        target_bler: the block error rate link adaptation aims under.
    """

    channel: str = "awgn"
    modulation: int = 4
    code_rate: str = "1/2"
    block: int = 648
    csi: str = "perfect"
    burst: float = 5.0
    adaptive: bool = False
    target_bler: float = 0.01

    def __post_init__(self):
        if self.channel not in CHANNELS:
            raise ValueError(f"unknown channel {self.channel!r}; choose from {', '.join(CHANNELS)}")
        if isinstance(self.modulation, bool) or self.modulation not in MODULATIONS:
            raise ValueError(f"unsupported modulation order {self.modulation!r}; choose from "
                             f"{', '.join(map(str, MODULATIONS))} (2 = BPSK, 4 = QPSK, 16/64/256-QAM)")
        if self.code_rate not in CODE_RATES:
            raise ValueError(f"unsupported code rate {self.code_rate!r}; the 802.11n LDPC codes have "
                             f"{', '.join(CODE_RATES)}")
        if self.block not in BLOCK_LENGTHS:
            raise ValueError(f"unsupported LDPC block length {self.block!r}; choose from {BLOCK_LENGTHS}")
        if not (isinstance(self.burst, (int, float)) and math.isfinite(self.burst) and self.burst >= 1):
            raise ValueError(f"burst must be a mean burst length of at least 1 block, got {self.burst!r}")
        if self.adaptive and self.channel not in SNR_CHANNELS:
            raise ValueError(f"link adaptation needs an SNR channel ({', '.join(SNR_CHANNELS)}), not {self.channel!r}")
        check_probability("target_bler", self.target_bler)

    @property
    def label(self) -> str:
        """E.g. ``"awgn QPSK LDPC(648, 1/2)"``."""
        names = {2: "BPSK", 4: "QPSK"}
        if self.adaptive:
            return f"{self.channel} adaptive (BLER <= {self.target_bler:g}) LDPC({self.block})"
        mod = "" if self.channel in ("bsc", "bec") else f" {names.get(self.modulation, f'{self.modulation}-QAM')}"
        return f"{self.channel}{mod} LDPC({self.block}, {self.code_rate})"

    @property
    def condition_name(self) -> str:
        return CONDITION_NAMES[self.channel]

    def transport(self, condition: float | None = None) -> tuple[DigitalTransport, float | None]:
        """The transport for this link at ``condition``, and the SNR to call it with (None off the SNR axis).

        Raises a ValueError naming the problem for a NaN / infinite SNR or a
        probability outside [0, 1].
        """
        if self.adaptive:
            modulation, rate = LinkAdaptation(self).choose(check_snr(condition))
            return replace(self, adaptive=False, modulation=modulation, code_rate=rate).transport(condition)
        code = LDPC80211n(n=self.block, rate=self.code_rate)
        if self.channel in SNR_CHANNELS:
            check_snr(condition)
            channel = AWGN() if self.channel == "awgn" else FlatFading(
                "rayleigh", coherence=None if self.channel == "rayleigh" else 1, csi=self.csi)
            return DigitalTransport(DigitalLink(code, self.modulation, channel, crc="crc16")), float(condition)
        if self.channel == "ideal":
            return DigitalTransport(DigitalLink(code, self.modulation, AWGN(), crc="crc16"), ideal=True), None
        p = check_probability(self.condition_name, condition)
        if self.channel == "bsc":
            return DigitalTransport(DigitalLink(code, channel=BSC(p), crc="crc16")), None
        if self.channel == "bec":
            return DigitalTransport(DigitalLink(code, channel=BEC(p), crc="crc16")), None
        return DigitalTransport(DigitalLink(code, self.modulation, AWGN(), crc="crc16"), ideal=True,
                                erasures=gilbert_channel(p, self.burst)), None


class LinkAdaptation:
    """Chooses a modulation and code rate for a link's SNR from measured block error rates.

    Each candidate of :data:`MCS_TABLE`, fastest first, is simulated on the
    link's channel at the SNR (Monte Carlo through ``channels.run_ber``, random
    payloads, a fixed seed: up to ``max_blocks`` blocks, stopping early after 50
    block errors); the first whose block error rate is at most
    ``spec.target_bler`` is chosen, else the slowest. Results are cached per
    (link, SNR).
    """

    def __init__(self, spec: LinkSpec, max_blocks: int = 1000, seed: int = 0):
        self.spec, self.max_blocks, self.seed = spec, max_blocks, seed

    def bler(self, modulation: int, code_rate: str, snr_db: float) -> float:
        """Measured block error rate of one modulation and code at ``snr_db``."""
        return _measured_bler(replace(self.spec, adaptive=False, modulation=modulation, code_rate=code_rate),
                              float(snr_db), self.max_blocks, self.seed)

    def choose(self, snr_db: float) -> tuple[int, str]:
        """(modulation order, code rate) for ``snr_db``."""
        for modulation, rate in reversed(MCS_TABLE):
            if self.bler(modulation, rate, snr_db) <= self.spec.target_bler:
                return modulation, rate
        return MCS_TABLE[0]


@lru_cache(maxsize=512)
def _measured_bler(spec: LinkSpec, snr_db: float, max_blocks: int, seed: int) -> float:
    transport, _ = spec.transport(snr_db)
    point = run_ber(transport.link, [snr_db], batch_size=100, target_bit_errors=None, target_block_errors=50,
                    max_blocks=max_blocks, seed=seed).points[0]
    return point.bler


def gilbert_channel(loss_rate: float, burst: float) -> GilbertElliott:
    """The Gilbert channel (every block lost in the Bad state) with mean loss ``loss_rate`` and mean burst ``burst``."""
    p_bg = 1.0 / burst
    if loss_rate >= 1:
        return GilbertElliott(1.0, 0.0)
    return GilbertElliott(p_gb=loss_rate * p_bg / (1 - loss_rate), p_bg=p_bg)


def check_snr(snr_db) -> float:
    """``snr_db`` as a float; a ValueError for None, NaN or infinity."""
    if snr_db is None or isinstance(snr_db, bool) or not isinstance(snr_db, (int, float)) or not math.isfinite(snr_db):
        raise ValueError(f"SNR must be a finite number of dB, got {snr_db!r}")
    return float(snr_db)


def check_probability(name: str, value) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)
