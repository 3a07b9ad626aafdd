"""Analog (JSCC-style) transport: the sent patches' codec values as analog symbols over a ``channels`` link.

One offloaded image sends K patches of V values each (the codec pair's
:meth:`~semcomm.rate.pair.CodecPair.source`, unquantized; B x K x V):

1. **whiten**: u = (x - mean_v) / sqrt(var_v) per value dimension v, with
   the source statistics the receiver already knows (fitted once on
   training images by :func:`source_statistics`; never sent);
2. **power**: patch k gets a share p_k of the power (:class:`PowerAllocation`,
   mean over the K patches 1), and the image one amplitude correction d,
   a power of 2 sent as an 8-bit code, chosen so that the image's mean
   symbol energy per data channel use is at most the budget Es = 1 and
   within 2^(-1/16) (0.19 dB) of it: each value is sent as
   t = d sqrt(p_k / 2) u;
3. **symbols**: consecutive pairs of values (patch-major) form one complex
   symbol, as in :class:`channels.AnalogLink`: ceil(K V / 2) channel uses
   per image (plus pilots with estimated CSI, from ``AnalogLink.channel_uses``);
4. **channel**: y = h s + n, n ~ CN(0, no), no = 10^(-snr_db / 10) (Es/N0 at
   the budget); h = 1 on AWGN, a Rayleigh / Rician gain on flat fading;
5. **receiver** (per real value, LMMSE): it derotates y by h / |h|, so each
   value reads z = g (x - mean_v) + n' with gain g = |h| d sqrt(p_k / 2) / sqrt(var_v)
   and n' ~ N(0, N), N = no / 2; the estimate is
   x_hat = mean_v + g var_v / (g^2 var_v + N) z, whose error variance is
   var_v N / (g^2 var_v + N).

What the receiver is assumed to know: the source statistics (mean_v, var_v),
the noise variance no, the channel gain h (csi="perfect"; with
csi="estimated" its pilot estimate, taken as the truth; csi="none" is
refused), and, from the side information, each patch's power level and the
image's amplitude code.

**Side information** (:class:`SideInfo`): which patches were sent, the
edge's hint, the power levels and the amplitude code travel as bits over a
separate digital control channel (:class:`ControlChannel`: BPSK with a
rate-1/2 code by default, *assumed error-free*), whose channel uses are
counted with the analog ones. :func:`analog_over_link` runs the whole path
and classifies with the codec pair's server, at the level whose measured
quantisation error (``pair.distortion``) is nearest each patch's post-channel
error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange

from channels import AWGN, AnalogLink, FlatFading

from semcomm.edge.encoder import Transmission, collaborative_predictions
from semcomm.rate.hint import HintCoder
from semcomm.rate.pair import CodecPair, Received
from semcomm.core.seeding import as_generator
from semcomm.transport.over_link import LinkOutcome
from semcomm.wire.side_info import SCALE_BITS, SideInfo, pack_side_info, unpack_side_info

ALLOCATIONS = ("uniform", "importance")
SCALE_STEP = 1 / 32  # octaves of amplitude per code step: d = 2^((code - 128) / 32)
_SCALE_ZERO = 1 << (SCALE_BITS - 1)


# ---- power allocation ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PowerAllocation:
    """How an image's power is shared among its K sent patches.

    * ``uniform``: every patch the same power (p_k = 1); no side information.
    * ``importance``: p_k proportional to (importance_k / max_j importance_j)^alpha,
      quantized to power levels l_k = round(-10 alpha log10(importance_k / max) / step_db),
      clipped to 0..2^bits - 1 (level l is l x step_db dB below the strongest patch),
      then normalised so the mean over the image's K patches is 1, i.e. the
      image's mean power per data channel use equals the budget. The K levels
      (``bits`` each) are side information. alpha = 0.5 minimises the
      importance-weighted MSE at high SNR (sum_k w_k / p_k under sum_k p_k fixed).

    Args:
        kind: ``"uniform"`` or ``"importance"``.
        alpha: exponent (>= 0; 0 gives uniform powers but still sends the levels).
        bits: bits per patch's power level (``importance`` only), >= 1.
        step_db: power step between levels, dB (> 0).

    >>> allocation = PowerAllocation("importance", alpha=1.0)
    >>> importance = torch.tensor([[0.4, 0.2, 0.1, 0.05]])
    >>> allocation.levels(importance)
    tensor([[0, 1, 2, 3]])
    >>> allocation(importance)
    tensor([[2.1296, 1.0673, 0.5349, 0.2681]])
    """

    kind: str = "uniform"
    alpha: float = 0.5
    bits: int = 2
    step_db: float = 3.0

    def __post_init__(self):
        if self.kind not in ALLOCATIONS:
            raise ValueError(f"unknown power allocation {self.kind!r}; choose one of {ALLOCATIONS}")
        if not isinstance(self.alpha, (int, float)) or not math.isfinite(self.alpha) or self.alpha < 0:
            raise ValueError(f"alpha must be a finite number >= 0, got {self.alpha!r}")
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or self.bits < 1:
            raise ValueError(f"bits must be an integer >= 1 (bits per patch's power level), got {self.bits!r}")
        if not isinstance(self.step_db, (int, float)) or not math.isfinite(self.step_db) or self.step_db <= 0:
            raise ValueError(f"step_db must be a positive number of dB, got {self.step_db!r}")

    @property
    def bits_per_patch(self) -> int:
        """Side-information bits per sent patch (0 for uniform)."""
        return self.bits if self.kind == "importance" else 0

    def levels(self, importance: torch.Tensor) -> torch.Tensor:
        """B x K int64 power levels (0 = strongest) of patches of importance B x K (>= 0)."""
        _check_importance(importance)
        if self.kind == "uniform":
            return torch.zeros(importance.shape, dtype=torch.int64)
        top = importance.double().amax(-1, keepdim=True).clamp_min(1e-300)
        ratio_db = 10 * torch.log10((importance.double() / top).pow(self.alpha))
        return (-ratio_db / self.step_db).round().clamp(0, 2**self.bits - 1).long()

    def powers(self, levels: torch.Tensor) -> torch.Tensor:
        """B x K float32 power per channel use of each patch, in units of the budget (mean over K: 1)."""
        relative = 10.0 ** (-levels.double() * self.step_db / 10)
        return (relative / relative.mean(-1, keepdim=True)).float()

    def __call__(self, importance: torch.Tensor) -> torch.Tensor:
        """B x K power per channel use of each patch (mean over K: 1) from B x K importance."""
        return self.powers(self.levels(importance))


def _check_importance(importance: torch.Tensor) -> None:
    if not isinstance(importance, torch.Tensor) or importance.dim() != 2 or importance.is_complex():
        raise ValueError(f"importance must be a real B x K tensor, got {getattr(importance, 'shape', importance)!r}")
    if not torch.isfinite(importance).all() or (importance < 0).any():
        raise ValueError("importance must be finite and >= 0")


# ---- side information ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ControlChannel:
    """The digital channel carrying the side information: BPSK (one coded bit per complex channel use)
    with a code of rate ``rate``, **assumed error-free**: ceil(bits / rate) channel uses.

    The assumption is optimistic where no code of that rate can be error-free:
    :meth:`shannon_limit_db` is the lowest Es/N0 at which BPSK on AWGN carries
    ``rate`` bits per use (an ideal code; real codes need more, fading more still).
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


# ---- the analog link ----------------------------------------------------------------------------
@dataclass
class AnalogReception:
    """What the receiver of :class:`AnalogTransport` estimates of B images of K patches.

    Attributes:
        values: B x K x V float32 LMMSE estimates, in the source's units.
        error: B x K x V float32 error variance of each estimate given what the receiver
            knows (module docstring), in the source's units squared.
        power_levels: B x K int64 power levels (all 0 for uniform allocation).
        scale_codes: B int64 amplitude codes.
        energy: B float32 mean symbol energy per data channel use actually sent (Es units, <= 1).
        channel_uses: complex channel uses per image (data symbols and pilots).
    """

    values: torch.Tensor
    error: torch.Tensor
    power_levels: torch.Tensor
    scale_codes: torch.Tensor
    energy: torch.Tensor
    channel_uses: int


def source_statistics(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, variance), each V float32, of B x N x V source values (e.g. training images' every patch)."""
    if not isinstance(values, torch.Tensor) or values.dim() != 3 or values.shape[0] * values.shape[1] < 2:
        raise ValueError(f"source values must be B x N x V with at least two patches, got "
                         f"{getattr(values, 'shape', values)!r}")
    flat = values.double().reshape(-1, values.shape[-1])
    return flat.mean(0).float(), flat.var(0).float()


def noise_variance(snr_db: float) -> float:
    """Noise variance per complex symbol from Es/N0 ``snr_db`` (dB, Es = 1); ``math.inf`` is noise-free (0)."""
    if isinstance(snr_db, bool) or not isinstance(snr_db, (int, float)):
        raise TypeError(f"snr_db must be a number of dB (Es/N0), got {type(snr_db).__name__}")
    if math.isnan(snr_db) or snr_db == -math.inf:
        raise ValueError(f"snr_db must be a finite number of dB or math.inf (noise-free), got {snr_db}")
    return 10.0 ** (-snr_db / 10)


class AnalogTransport:
    """The analog link of the module docstring: whitening, power allocation, symbols, channel, LMMSE.

    It wraps a :class:`channels.AnalogLink` (its channel, value-pairs-to-symbols layout and
    channel-use count), but runs the link's channel block itself: ``AnalogLink`` returns only
    equalised symbols and normalises power with a scale it does not count, while the
    per-coefficient LMMSE needs the gain h of every symbol and every amplitude on the wire
    is counted here.

    Args:
        channel: ``channels.AWGN()`` (default) or ``channels.FlatFading(...)`` with csi
            ``"perfect"`` or ``"estimated"``.
        allocation: a :class:`PowerAllocation` or its kind (``"uniform"``, ``"importance"``).
        mean, variance: the source statistics per value dimension (V tensors or numbers),
            known to the receiver; see :func:`source_statistics`.

    >>> transport = AnalogTransport(AWGN(), "uniform")
    >>> values = torch.randn(2, 4, 16, generator=torch.Generator().manual_seed(0))
    >>> out = transport.send(values, torch.ones(2, 4), snr_db=20.0, generator=torch.Generator().manual_seed(1))
    >>> out.values.shape, out.channel_uses
    (torch.Size([2, 4, 16]), 32)
    """

    def __init__(self, channel=None, allocation: PowerAllocation | str = "uniform",
                 mean: torch.Tensor | float = 0.0, variance: torch.Tensor | float = 1.0):
        self.link = AnalogLink(AWGN() if channel is None else channel, equalizer="zf")
        if isinstance(self.link.channel, FlatFading) and self.link.channel.csi == "none":
            raise ValueError("analog transport needs channel knowledge at the receiver: csi 'perfect' or "
                             "'estimated', got 'none'")
        self.allocation = allocation if isinstance(allocation, PowerAllocation) else PowerAllocation(allocation)
        self.mean = torch.as_tensor(mean, dtype=torch.float32)
        self.variance = torch.as_tensor(variance, dtype=torch.float32)
        for name, value in (("mean", self.mean), ("variance", self.variance)):
            if value.dim() > 1 or not torch.isfinite(value).all():
                raise ValueError(f"{name} must be a finite number or a V vector, got shape {tuple(value.shape)}")
        if (self.variance <= 0).any():
            raise ValueError("variance must be > 0 in every value dimension")

    @property
    def channel(self):
        return self.link.channel

    def channel_uses(self, patches: int, values_per_patch: int) -> int:
        """Complex channel uses of one image of ``patches`` x ``values_per_patch`` values (pilots included)."""
        return self.link.channel_uses(patches * values_per_patch)

    def send(self, values: torch.Tensor, importance: torch.Tensor, snr_db: float,
             generator: torch.Generator | int | None = None) -> AnalogReception:
        """Send B x K x V ``values`` of patches of B x K ``importance`` at Es/N0 ``snr_db`` (dB;
        ``math.inf``: noise-free) and estimate them at the receiver (every draw from ``generator``,
        a torch.Generator or a seed; None is seed 0)."""
        self._check_values(values, importance)
        no = noise_variance(snr_db)
        _, k, v = values.shape
        sigma = self.variance.sqrt()
        u = (values.float() - self.mean) / sigma
        levels = self.allocation.levels(importance)
        amplitude = self.allocation.powers(levels).div(2).sqrt()  # B x K, per real value at d = 1
        codes = _scale_codes((amplitude[..., None] * u).pow(2).sum((1, 2)) / _data_uses(k * v))
        amplitude = amplitude * _scale(codes)[:, None]
        sent = amplitude[..., None] * u
        received, gain = self._through_channel(sent, no, as_generator(generator))
        g = gain * amplitude[..., None]  # amplitude of u in each received value
        denominator = (g**2 + no / 2).clamp_min(1e-30)
        estimate = self.mean + sigma * (g * received / denominator)
        error = self.variance * (no / 2) / denominator
        return AnalogReception(estimate, error.float(), levels, codes, sent.pow(2).sum((1, 2)) / _data_uses(k * v),
                               self.channel_uses(k, v))

    def _through_channel(self, sent: torch.Tensor, no: float, generator: torch.Generator):
        """(B x K x V received values derotated by h / |h|, B x K x V |h| of each value's symbol)."""
        _, k, v = sent.shape
        flat = rearrange(sent, "b k v -> b (k v)")
        if flat.shape[1] % 2:
            flat = torch.nn.functional.pad(flat, (0, 1))
        symbols = torch.complex(flat[:, 0::2].contiguous(), flat[:, 1::2].contiguous())
        if isinstance(self.channel, AWGN):
            y, h = self.channel(symbols, no=no, generator=generator), torch.ones_like(symbols)
        else:
            out = self.channel(symbols, no=no, generator=generator)
            y, h = out.y, out.h_hat
        magnitude = h.abs()
        z = y * h.conj() / magnitude.clamp_min(1e-30)

        def values_of(pairs: torch.Tensor) -> torch.Tensor:  # B x n x 2 -> B x K x V
            return rearrange(pairs.flatten(1)[:, : k * v], "b (k v) -> b k v", k=k)

        return (values_of(torch.stack((z.real, z.imag), -1)),
                values_of(torch.stack((magnitude, magnitude), -1)))

    def _check_values(self, values: torch.Tensor, importance: torch.Tensor) -> None:
        if (not isinstance(values, torch.Tensor) or values.dim() != 3 or not values.is_floating_point()
                or 0 in values.shape):
            raise ValueError(f"values must be a real floating B x K x V tensor with K, V >= 1, got "
                             f"{getattr(values, 'dtype', type(values).__name__)} {tuple(getattr(values, 'shape', ()))}")
        if not torch.isfinite(values).all():
            raise ValueError("values must be finite; got NaN or inf")
        if self.variance.dim() == 1 and len(self.variance) != values.shape[-1] or \
                self.mean.dim() == 1 and len(self.mean) != values.shape[-1]:
            raise ValueError(f"values have V = {values.shape[-1]} per patch, the source statistics "
                             f"{self.mean.numel()} / {self.variance.numel()}")
        _check_importance(importance)
        if tuple(importance.shape) != tuple(values.shape[:2]):
            raise ValueError(f"importance must be B x K = {tuple(values.shape[:2])}, got {tuple(importance.shape)}")


def _data_uses(values: int) -> int:
    """Complex data symbols carrying ``values`` real values."""
    return -(-values // 2)


def _scale_codes(energy: torch.Tensor) -> torch.Tensor:
    """B int64 codes of the largest d = 2^((code - 128) / 32) with d^2 ``energy`` <= 1 (clipped to 0..255)."""
    octaves = -0.5 * torch.log2(energy.double())
    return (torch.floor(octaves / SCALE_STEP) + _SCALE_ZERO).clamp(0, 2**SCALE_BITS - 1).long()


def _scale(codes: torch.Tensor) -> torch.Tensor:
    """B float32 amplitude corrections d of B codes."""
    return torch.exp2((codes.double() - _SCALE_ZERO) * SCALE_STEP).float()


# ---- end to end ---------------------------------------------------------------------------------
@dataclass(kw_only=True)
class AnalogOutcome(LinkOutcome):
    """A :class:`~semcomm.transport.run.LinkOutcome` of the analog path.

    ``link_bits`` holds the side-information bits per image (0 when answered at
    the edge), ``channel_uses`` the analog and control uses together;
    ``packets_lost`` and ``packets_sent`` are 0 (no packets); ``images_lost``
    counts offloaded images none of whose patches the receiver kept, and
    ``patches_missing`` the sent patches it dropped (``min_level`` of :func:`analog_over_link`).

    Attributes:
        lost: B booleans, True for an offloaded image the edge answered because no patch was kept.
        analog_uses: B int64 complex channel uses of the analog symbols (pilots included).
        control_uses: B int64 channel uses of the side information on the control channel.
        level: B x N int64 level the server was given for each patch (0: not sent or dropped).
        energy: B float32 mean analog symbol energy per data channel use (Es units; 0 when not sent).
        control: how the side information travelled (and that it is assumed error-free).
    """

    lost: torch.Tensor | None = None
    analog_uses: torch.Tensor
    control_uses: torch.Tensor
    level: torch.Tensor
    energy: torch.Tensor
    control: str


def server_levels(error: torch.Tensor, distortion: torch.Tensor) -> torch.Tensor:
    """The level (1..L) whose measured quantisation error is nearest each patch's post-channel error.

    ``error`` (any shape) is a patch's summed error variance over its V values;
    ``distortion`` (L + 1) the codec pair's measured squared error of a patch at
    each level (index 0, not sent, is not a level the server takes). Nearest on
    a log scale (the levels are about a factor 3-4 apart).
    """
    log_error = error.double().clamp_min(1e-12).log()
    return (log_error[..., None] - distortion[1:].double().clamp_min(1e-12).log()).abs().argmin(-1) + 1


def analog_over_link(sent: Transmission, pair: CodecPair, transport: AnalogTransport, snr_db: float,
                     generator: torch.Generator | int | None = None, *, source: torch.Tensor,
                     importance: torch.Tensor, control: ControlChannel = ControlChannel(),
                     min_level: int = 1, batch_size: int = 256, fuse_hint: bool = True) -> AnalogOutcome:
    """Send every offloaded image's selected patches over ``transport`` at ``snr_db`` and classify.

    Args:
        sent: the edge's decisions (``offloaded``, ``mask``, ``edge_logits``; its strings are not used).
        pair: the codec pair whose server classifies (needs ``distortion``).
        transport: the analog link.
        snr_db: Es/N0 in dB of the analog link (``math.inf``: noise-free).
        generator: every noise and fading draw (a seed or None: seed 0).
        source: B x N x V unquantized source values (``pair.source``) of all B images.
        importance: B x N patch importance (e.g. ``EdgeAnalysis.importance["mean"]``).
        control: the channel of the side information (positions, hint, power levels, amplitude code).
        min_level: a receiver gate: patches whose level (:func:`server_levels`) falls below it
            are not given to the server, and an image left with none is answered by the edge
            (1, the default: every patch is given to the server).
        fuse_hint: send the edge's hint (when the pair has a hint coder) and fuse it with the server.

    The server reads positions and hint from the control bits (:func:`unpack_side_info`) and gets
    each patch's LMMSE estimate at the level :func:`server_levels` gives its error.
    """
    _check_link_inputs(sent, pair, source, importance)
    if isinstance(min_level, bool) or not isinstance(min_level, int) or not 1 <= min_level <= pair.levels:
        raise ValueError(f"min_level must be an integer in 1..{pair.levels}, got {min_level!r}")
    generator = as_generator(generator)
    b, n = sent.mask.shape
    offloaded = sent.offloaded.nonzero().flatten()
    slot = {i: s for s, i in enumerate(offloaded.tolist())}
    received: list[Received | None] = [None] * len(offloaded)
    hinter = pair.hint_coder if fuse_hint else None
    hints = hinter.symbols(sent.edge_logits) if hinter is not None else None
    power_bits = transport.allocation.bits_per_patch
    link_bits, analog_uses, control_uses = (torch.zeros(b, dtype=torch.int64) for _ in range(3))
    level, energy = torch.zeros(b, n, dtype=torch.int64), torch.zeros(b)
    counts = sent.mask.sum(1)
    for k in sorted(set(counts[offloaded].tolist())):
        rows = offloaded[counts[offloaded] == k]
        positions = sent.mask[rows].nonzero()[:, 1].view(len(rows), k)
        values = source[rows].gather(1, positions[..., None].expand(-1, -1, source.shape[-1])).float()
        reception = transport.send(values, importance[rows].gather(1, positions), snr_db, generator)
        patch_level = server_levels(reception.error.sum(-1), pair.distortion)
        patch_level[patch_level < min_level] = 0
        for j, i in enumerate(rows.tolist()):
            info = SideInfo(positions[j], None if hints is None else hints[i],
                            reception.power_levels[j] if power_bits else None, int(reception.scale_codes[j]))
            data, bits = pack_side_info(info, n, hinter, power_bits)
            got = unpack_side_info(data, bits, n, hinter, pair.num_classes, power_bits)
            keep = patch_level[j] > 0
            if keep.any():
                received[slot[i]] = Received(got.positions[keep], patch_level[j][keep], reception.values[j][keep],
                                             got.hint)
            level[i, got.positions] = patch_level[j]
            link_bits[i], control_uses[i] = bits, control.channel_uses(bits)
        analog_uses[rows], energy[rows] = reception.channel_uses, reception.energy
    server_logits = pair.classify(received, batch_size, fuse_hint)
    lost = torch.zeros(b, dtype=torch.bool)
    lost[offloaded] = torch.tensor([r is None for r in received], dtype=torch.bool)
    sent_patches = int(counts[offloaded].sum())
    return AnalogOutcome(predictions=collaborative_predictions(sent, server_logits), link_bits=link_bits,
                         channel_uses=analog_uses + control_uses, packets_lost=0, packets_sent=0,
                         images_lost=int(lost.sum()), patches_missing=sent_patches - int((level > 0).sum()),
                         lost=lost, analog_uses=analog_uses,
                         control_uses=control_uses, level=level, energy=energy, control=control.label)


def _check_link_inputs(sent: Transmission, pair: CodecPair, source: torch.Tensor, importance: torch.Tensor) -> None:
    b, n = sent.mask.shape
    if pair.distortion is None:
        raise ValueError(f"codec pair {pair.name} has no measured distortion per level; the analog path needs it "
                         "to give the server a level")
    if n != pair.num_patches:
        raise ValueError(f"the edge selected among {n} patches, codec pair {pair.name} codes {pair.num_patches}")
    if not isinstance(source, torch.Tensor) or source.dim() != 3 or tuple(source.shape[:2]) != (b, n):
        raise ValueError(f"source must be B x N x V = {b} x {n} x V (pair.source of all B images), got "
                         f"{tuple(getattr(source, 'shape', ()))}")
    _check_importance(importance)
    if tuple(importance.shape) != (b, n):
        raise ValueError(f"importance must be B x N = {b} x {n}, got {tuple(importance.shape)}")
