"""Analog (JSCC-style) transport: the sent patches' codec values as analog symbols over a ``channels`` link.

One offloaded image sends K patches of V values each (the codec pair's
:meth:`~semcomm.rate.pair.CodecPair.source`, unquantized; B x K x V):

1. **whiten**: u = (x - mean_v) / sqrt(var_v) per value dimension v, with
   the source statistics the receiver already knows (fitted once on
   training images by :func:`source_statistics`; never sent);
2. **power**: patch k gets a share p_k of the power
   (:class:`~semcomm.transport.power.PowerAllocation`,
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

**Side information** (:class:`~semcomm.wire.side_info.SideInfo`): which
patches were sent, the edge's hint, the power levels and the amplitude code
travel as bits over a digital control channel
(:class:`~semcomm.transport.control.ControlChannel`: by default CRC-16, a
rate-1/2 convolutional code and BPSK, simulated on the same channel at the
same SNR), whose channel uses are counted with the analog ones; an image whose
side information fails its CRC is answered by the edge.

:meth:`AnalogTransport.send` runs steps 1-5 on B x K x V values;
:meth:`AnalogTransport.carry` carries an edge's offloaded images (the
:class:`~semcomm.transport.base.Transport` contract), and
:func:`~semcomm.transport.over_link.over_link` classifies what arrived with the
codec pair's server, at the level whose measured quantisation error
(``pair.distortion``) is nearest each patch's post-channel error
(:func:`~semcomm.transport.analog_outcome.server_levels`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange

from channels import AWGN, AnalogLink, FlatFading
from semcomm.core.devices import as_tensor
from semcomm.core.seeding import as_generator
from semcomm.edge.encoder import Transmission
from semcomm.rate.pair import CodecPair, Received
from semcomm.transport.analog_outcome import AnalogCarried, server_levels
from semcomm.transport.base import Transport
from semcomm.transport.control import ControlChannel
from semcomm.transport.power import PowerAllocation, check_importance
from semcomm.wire.side_info import SCALE_BITS, SideInfo, pack_side_info, read_side_info

SCALE_STEP = 1 / 32  # octaves of amplitude per code step: d = 2^((code - 128) / 32)
_SCALE_ZERO = 1 << (SCALE_BITS - 1)


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


class AnalogTransport(Transport):
    """The analog link of the module docstring: whitening, power allocation, symbols, channel, LMMSE.

    It wraps a :class:`channels.AnalogLink` (its channel, value-pairs-to-symbols layout and
    channel-use count), but runs the link's channel block itself: ``AnalogLink`` returns only
    equalised symbols and normalises power with a scale it does not count, while the
    per-coefficient LMMSE needs the gain h of every symbol and every amplitude on the wire
    is counted here.

    Args:
        channel: ``channels.AWGN()`` (default) or ``channels.FlatFading(...)`` with csi
            ``"perfect"`` or ``"estimated"``.
        allocation: a :class:`~semcomm.transport.power.PowerAllocation` or its kind (``"uniform"``,
            ``"importance"``, or another registered in ``POWER_ALLOCATIONS``).
        mean, variance: the source statistics per value dimension (V tensors or numbers),
            known to the receiver; see :func:`source_statistics`.
        control: the channel of the side information (positions, hint, power levels, amplitude code).
        min_level: a receiver gate of :meth:`carry`: patches whose level
            (:func:`~semcomm.transport.analog_outcome.server_levels`) falls below it are not given
            to the server, and an image left with none is answered by the edge (1, the default:
            every patch is given to the server).
        send_hint: :meth:`carry` sends the edge's hint (when the pair has a hint coder), which the
            server fuses.

    >>> transport = AnalogTransport(AWGN(), "uniform")
    >>> values = torch.randn(2, 4, 16, generator=torch.Generator().manual_seed(0))
    >>> out = transport.send(values, torch.ones(2, 4), snr_db=20.0, generator=torch.Generator().manual_seed(1))
    >>> out.values.shape, out.channel_uses
    (torch.Size([2, 4, 16]), 32)
    """

    def __init__(self, channel=None, allocation: PowerAllocation | str = "uniform",
                 mean: torch.Tensor | float = 0.0, variance: torch.Tensor | float = 1.0, *,
                 control: ControlChannel = ControlChannel(), min_level: int = 1, send_hint: bool = True):
        self.link = AnalogLink(AWGN() if channel is None else channel, equalizer="zf")
        if isinstance(self.link.channel, FlatFading) and self.link.channel.csi == "none":
            raise ValueError("analog transport needs channel knowledge at the receiver: csi 'perfect' or "
                             "'estimated', got 'none'")
        self.allocation = allocation if isinstance(allocation, PowerAllocation) else PowerAllocation(allocation)
        self.mean = as_tensor(mean, torch.float32)
        self.variance = as_tensor(variance, torch.float32)
        for name, value in (("mean", self.mean), ("variance", self.variance)):
            if value.dim() > 1 or not torch.isfinite(value).all():
                raise ValueError(f"{name} must be a finite number or a V vector, got shape {tuple(value.shape)}")
        if (self.variance <= 0).any():
            raise ValueError("variance must be > 0 in every value dimension")
        if not isinstance(control, ControlChannel):
            raise TypeError(f"control must be a ControlChannel, got {type(control).__name__}")
        if isinstance(min_level, bool) or not isinstance(min_level, int) or min_level < 1:
            raise ValueError(f"min_level must be an integer level >= 1, got {min_level!r}")
        self.control, self.min_level, self.send_hint = control, min_level, bool(send_hint)

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

    def carry(self, sent: Transmission, pair: CodecPair, snr_db: float | None = None,
              generator: torch.Generator | int | None = None, *, source: torch.Tensor | None = None,
              importance: torch.Tensor | None = None, decode_intact: bool = True) -> AnalogCarried:
        """Send every offloaded image's selected patches at Es/N0 ``snr_db`` (``math.inf``: noise-free) and
        give the server each patch's LMMSE estimate at the level its error earns.

        Args:
            sent: the edge's decisions (``offloaded``, ``mask``, ``edge_logits``; its strings are not used).
            pair: the codec pair whose server classifies (needs ``distortion``).
            generator: every noise and fading draw (a seed or None: seed 0).
            source: B x N x V unquantized source values (``pair.source``) of all B images.
            importance: B x N patch importance (e.g. ``EdgeAnalysis.importance["mean"]``).
            decode_intact: not used (no analog image arrives exactly as sent).

        The server reads positions and hint from the control bits as they arrived
        (:func:`~semcomm.wire.side_info.read_side_info`).
        """
        _check_link_inputs(sent, pair, source, importance)
        if self.min_level > pair.levels:
            raise ValueError(f"min_level must be an integer in 1..{pair.levels}, got {self.min_level!r}")
        generator = as_generator(generator)
        b, n = sent.mask.shape
        offloaded = sent.offloaded.nonzero().flatten()
        slot = {i: s for s, i in enumerate(offloaded.tolist())}
        received: list[Received | None] = [None] * len(offloaded)
        hinter = pair.hint_coder if self.send_hint else None
        hints = hinter.symbols(sent.edge_logits) if hinter is not None else None
        power_bits = self.allocation.bits_per_patch
        link_bits, analog_uses, control_uses = (torch.zeros(b, dtype=torch.int64, device="cpu") for _ in range(3))
        level, energy = torch.zeros(b, n, dtype=torch.int64, device="cpu"), torch.zeros(b, device="cpu")
        counts = sent.mask.sum(1)
        for k in sorted(set(counts[offloaded].tolist())):
            rows = offloaded[counts[offloaded] == k]
            positions = sent.mask[rows].nonzero()[:, 1].view(len(rows), k)
            values = source[rows].gather(1, positions[..., None].expand(-1, -1, source.shape[-1])).float()
            reception = self.send(values, importance[rows].gather(1, positions), snr_db, generator)
            patch_level = server_levels(reception.error.sum(-1), pair.distortion)
            patch_level[patch_level < self.min_level] = 0
            messages = [pack_side_info(SideInfo(positions[j], None if hints is None else hints[i],
                                                reception.power_levels[j] if power_bits else None,
                                                int(reception.scale_codes[j])), n, hinter, power_bits)
                        for j, i in enumerate(rows.tolist())]
            arrived, uses = self.control.carry(messages, self.channel, snr_db, generator)
            for j, i in enumerate(rows.tolist()):
                link_bits[i], control_uses[i] = messages[j][1], uses[j]
                got = read_side_info(arrived[j], messages[j][1], k, n, hinter, pair.num_classes, power_bits)
                if got is None:  # the side information was lost: the patches cannot be placed
                    continue
                keep = patch_level[j] > 0
                if keep.any():
                    received[slot[i]] = Received(got.positions[keep], patch_level[j][keep],
                                                 reception.values[j][keep], got.hint)
                level[i, got.positions] = patch_level[j]
            analog_uses[rows], energy[rows] = reception.channel_uses, reception.energy
        missing = counts[offloaded] - (level[offloaded] > 0).sum(1)
        intact = torch.zeros(len(offloaded), dtype=torch.bool, device="cpu")
        return AnalogCarried(received=received, missing=missing, intact=intact,
                             link_bits=link_bits, channel_uses=analog_uses + control_uses, analog_uses=analog_uses,
                             control_uses=control_uses, level=level, energy=energy, control=self.control.label)

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
        check_importance(importance)
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
    check_importance(importance)
    if tuple(importance.shape) != (b, n):
        raise ValueError(f"importance must be B x N = {b} x {n}, got {tuple(importance.shape)}")
