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
``awgn-capacity``      separate source-channel coding's upper reference: a     Es/N0 in dB
                       capacity-achieving code on AWGN, every bit arrives
                       (:mod:`semcomm.transport.capacity`)
``rayleigh-capacity``  the same on Rayleigh block fading, each image coded at  Es/N0 in dB
                       its channel's capacity (gain known at the transmitter)
=====================  =====================================================  ==========================

Channels are registered by name in :data:`CHANNELS` (one
:class:`~semcomm.core.registry.Registry`); each entry builds the link's
:class:`~semcomm.transport.digital.DigitalTransport` from the spec and the checked
condition, and is registered with ``condition``, what its condition is
(:data:`SNR`: Es/N0 in dB, given to the link when called; :data:`NO_CONDITION`:
ignored; any other name: a probability in [0, 1], given to the builder), and
``modulated=False`` for bit channels that take no modulation. A plug-in adds its own::

    from channels import FlatFading
    from semcomm.transport.capacity import CapacityTransport
from semcomm.transport.digital import DigitalTransport
    from semcomm.transport.links import CHANNELS, SNR

    @CHANNELS.register("rician", condition=SNR)
    def rician(spec, snr_db):
        return DigitalTransport(spec.digital_link(FlatFading("rician", k_factor=3.0, coherence=None, csi=spec.csi)))

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
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

from channels import AWGN, BEC, BSC, DigitalLink, FlatFading, GilbertElliott, LDPC80211n, run_ber
from semcomm.core.registry import Registry
from semcomm.transport.capacity import CapacityTransport
from semcomm.transport.digital import DigitalTransport

ChannelBuilder = Callable[["LinkSpec", "float | None"], DigitalTransport]
CHANNELS: Registry[ChannelBuilder] = Registry("channel")
SNR = "SNR (dB)"  # the condition of channels whose condition is Es/N0
NO_CONDITION = "none"  # the condition of channels that take none
MODULATIONS = (2, 4, 16, 64, 256)
CODE_RATES = ("1/2", "2/3", "3/4", "5/6")
BLOCK_LENGTHS = (648, 1296, 1944)
# modulation and code rate pairs of the adaptive link, slowest first (802.11n-like)
MCS_TABLE = ((2, "1/2"), (4, "1/2"), (4, "3/4"), (16, "1/2"), (16, "3/4"), (64, "2/3"), (64, "3/4"), (64, "5/6"))


@dataclass(frozen=True)
class LinkSpec:
    """A digital link by name (see the module docstring).

    Attributes:
        channel: a name registered in :data:`CHANNELS`.
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
        if not isinstance(self.channel, str) or self.channel not in CHANNELS:
            raise ValueError(f"unknown channel {self.channel!r}; choose from {CHANNELS.help()}")
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
        if self.adaptive and CHANNELS.info(self.channel).get("capacity"):
            raise ValueError(f"link adaptation does not apply to {self.channel!r}: it codes at capacity")
        if self.adaptive and self.condition_name != SNR:
            snr_channels = ", ".join(name for name in CHANNELS if CHANNELS.info(name).get("condition", SNR) == SNR
                                     and not CHANNELS.info(name).get("capacity"))
            raise ValueError(f"link adaptation needs an SNR channel ({snr_channels}), not {self.channel!r}")
        check_probability("target_bler", self.target_bler)

    @property
    def label(self) -> str:
        """E.g. ``"awgn QPSK LDPC(648, 1/2)"``."""
        names = {2: "BPSK", 4: "QPSK"}
        if CHANNELS.info(self.channel).get("capacity"):
            return f"{self.channel} (capacity-achieving code, Gaussian inputs)"
        if self.adaptive:
            return f"{self.channel} adaptive (BLER <= {self.target_bler:g}) LDPC({self.block})"
        modulated = CHANNELS.info(self.channel).get("modulated", True)
        mod = f" {names.get(self.modulation, f'{self.modulation}-QAM')}" if modulated else ""
        return f"{self.channel}{mod} LDPC({self.block}, {self.code_rate})"

    @property
    def condition_name(self) -> str:
        """What the channel's condition is: :data:`SNR`, :data:`NO_CONDITION` or a probability's name."""
        return CHANNELS.info(self.channel).get("condition", SNR)

    def digital_link(self, channel) -> DigitalLink:
        """The spec's coded link over ``channel`` (a ``channels`` channel): 802.11n LDPC, its modulation
        (ignored by bit channels), a CRC-16 per block."""
        return DigitalLink(LDPC80211n(n=self.block, rate=self.code_rate), self.modulation, channel, crc="crc16")

    def transport(self, condition: float | None = None) -> tuple[DigitalTransport, float | None]:
        """The transport for this link at ``condition``, and the SNR to call it with (None off the SNR axis).

        Raises a ValueError naming the problem for a NaN / infinite SNR or a
        probability outside [0, 1].
        """
        if self.adaptive:
            modulation, rate = LinkAdaptation(self).choose(check_snr(condition))
            return replace(self, adaptive=False, modulation=modulation, code_rate=rate).transport(condition)
        build, name = CHANNELS.get(self.channel), self.condition_name
        if name == SNR:
            snr_db = check_snr(condition)
            return build(self, snr_db), snr_db
        return build(self, None if name == NO_CONDITION else check_probability(name, condition)), None


@CHANNELS.register("ideal", condition=NO_CONDITION)
def _ideal(spec: LinkSpec, condition: None) -> DigitalTransport:
    return DigitalTransport(spec.digital_link(AWGN()), ideal=True)


@CHANNELS.register("awgn", condition=SNR)
def _awgn(spec: LinkSpec, snr_db: float) -> DigitalTransport:
    return DigitalTransport(spec.digital_link(AWGN()))


@CHANNELS.register("rayleigh", condition=SNR)
def _rayleigh(spec: LinkSpec, snr_db: float) -> DigitalTransport:
    return DigitalTransport(spec.digital_link(FlatFading("rayleigh", coherence=None, csi=spec.csi)))


@CHANNELS.register("rayleigh-fast", condition=SNR)
def _rayleigh_fast(spec: LinkSpec, snr_db: float) -> DigitalTransport:
    return DigitalTransport(spec.digital_link(FlatFading("rayleigh", coherence=1, csi=spec.csi)))


@CHANNELS.register("bsc", condition="crossover probability", modulated=False)
def _bsc(spec: LinkSpec, p: float) -> DigitalTransport:
    return DigitalTransport(spec.digital_link(BSC(p)))


@CHANNELS.register("bec", condition="erasure probability", modulated=False)
def _bec(spec: LinkSpec, p: float) -> DigitalTransport:
    return DigitalTransport(spec.digital_link(BEC(p)))


@CHANNELS.register("gilbert-elliott", condition="block loss rate")
def _gilbert_elliott(spec: LinkSpec, loss_rate: float) -> DigitalTransport:
    return DigitalTransport(spec.digital_link(AWGN()), ideal=True, erasures=gilbert_channel(loss_rate, spec.burst))


@CHANNELS.register("awgn-capacity", condition=SNR, capacity=True)
def _awgn_capacity(spec: LinkSpec, snr_db: float) -> DigitalTransport:
    return CapacityTransport(spec.digital_link(AWGN()))


@CHANNELS.register("rayleigh-capacity", condition=SNR, capacity=True)
def _rayleigh_capacity(spec: LinkSpec, snr_db: float) -> DigitalTransport:
    return CapacityTransport(spec.digital_link(AWGN()), fading=True)


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


SNR_RANGE_DB = (-50.0, 100.0)  # Es/N0 a link takes: from every block lost to error-free, with margin


def check_snr(snr_db) -> float:
    """``snr_db`` as a float; a ValueError for None, NaN, infinity or a value outside :data:`SNR_RANGE_DB`
    (beyond it the noise variance underflows or nothing arrives: no simulation needs it)."""
    if snr_db is None or isinstance(snr_db, bool) or not isinstance(snr_db, (int, float)) or not math.isfinite(snr_db):
        raise ValueError(f"SNR must be a finite number of dB, got {snr_db!r}")
    if not SNR_RANGE_DB[0] <= snr_db <= SNR_RANGE_DB[1]:
        raise ValueError(f"SNR must lie in {SNR_RANGE_DB[0]:g}..{SNR_RANGE_DB[1]:g} dB, got {snr_db!r}")
    return float(snr_db)


def check_probability(name: str, value) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)
