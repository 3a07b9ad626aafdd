"""End-to-end links: a digital link (bits in, bits out) and an analog link (real tensors in and out).

Digital link, per packet:  payload -> CRC -> FEC encoder -> (zero padding to whole symbols)
-> mapper -> channel -> (equaliser) -> demapper -> FEC decoder -> CRC check.

Channels accepted: :class:`~channels.awgn.AWGN`, :class:`~channels.fading.FlatFading` (fading
blocks run along each packet's symbols; packets fade independently), or the bit channels
:class:`~channels.discrete.BSC` / :class:`~channels.discrete.BEC` (no modulation, one bit per use).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import torch

from ._checks import as_tensor, check_bits, check_choice, check_finite, resolve_no
from .awgn import AWGN
from .discrete import BEC, BSC
from .fading import Equalizer, FlatFading
from .fec.crc import CRC
from .fec.ideal import Uncoded
from .modulation import Constellation, Demapper, Mapper

Number = Union[float, torch.Tensor]
_LLR_CLIP = 50.0  # LLR magnitude used for error-free bit-channel outputs


@dataclass
class DigitalResult:
    """Output of :class:`DigitalLink`.

    Attributes:
        bits: decoded payload bits, float32 (..., num_bits).
        crc_ok: bool (..., num_packets), True where the packet's CRC verified (all True without CRC).
        channel_uses: complex channel uses (bit-channel uses for BSC/BEC) per leading-batch item,
            pilots included.
    """

    bits: torch.Tensor
    crc_ok: torch.Tensor
    channel_uses: int


class DigitalLink:
    """Bits in, bits out over a coded, modulated channel.

    Args:
        code: FEC with ``k``, ``n``, ``encode`` and ``decode`` (e.g. ``LDPC80211n``,
            ``ConvolutionalCode``, ``Uncoded(k)``).
        modulation: order M in {2, 4, 16, 64, 256} or a :class:`Constellation` (ignored for BSC/BEC).
        channel: ``AWGN()``, ``FlatFading(...)``, ``BSC(p)`` or ``BEC(e)``.
        crc: ``"crc8"``, ``"crc16"``, ``"crc32"`` or None; it occupies ``width`` of the code's k bits.
        demapper: ``"exact"`` or ``"maxlog"`` LLRs.

    Attributes:
        payload_bits: information bits per packet (code.k - CRC width).
        symbols_per_packet, uses_per_packet: data symbols and channel uses (with pilots) per packet.
        rate: payload bits per channel use.

    Call: ``bits`` (..., num_bits) with num_bits a multiple of ``payload_bits``; noise as exactly
    one of ``snr_db`` (Es/N0, dB), ``ebno_db`` (Eb/N0 per payload bit, dB; the energy of CRC,
    parity, padding and pilots is charged to the payload) or ``no``; optional ``generator``
    -> :class:`DigitalResult`.  Bit channels (BSC/BEC) take no noise argument.
    """

    def __init__(self, code, modulation: Union[int, Constellation] = 4, channel=None,
                 crc: Optional[str] = "crc16", demapper: str = "exact") -> None:
        check_choice("demapper", demapper, ("exact", "maxlog"))
        self.code = code
        self.channel = AWGN() if channel is None else channel
        if not isinstance(self.channel, (AWGN, FlatFading, BSC, BEC)):
            raise TypeError(f"channel must be AWGN, FlatFading, BSC or BEC; got {type(channel).__name__}")
        self.crc = CRC(crc) if crc is not None else None
        crc_w = self.crc.width if self.crc else 0
        if code.k <= crc_w:
            raise ValueError(f"code.k={code.k} leaves no payload after a {crc_w}-bit CRC")
        self.payload_bits = code.k - crc_w
        self.bit_channel = isinstance(self.channel, (BSC, BEC))
        if self.bit_channel:
            self.constellation = None
            self.symbols_per_packet = code.n
            self._pad = 0
            self.uses_per_packet = code.n
        else:
            self.constellation = modulation if isinstance(modulation, Constellation) else Constellation(modulation)
            m = self.constellation.bits_per_symbol
            self.symbols_per_packet = -(-code.n // m)
            self._pad = self.symbols_per_packet * m - code.n
            self.mapper = Mapper(self.constellation)
            self.demapper = Demapper(self.constellation, demapper)
            pilots = self.channel.pilot_uses(self.symbols_per_packet) if isinstance(self.channel, FlatFading) else 0
            self.uses_per_packet = self.symbols_per_packet + pilots
        self.rate = self.payload_bits / self.uses_per_packet
        self.equalizer = Equalizer("zf")

    def __repr__(self) -> str:
        return (f"DigitalLink(code={self.code!r}, modulation={getattr(self.constellation, 'order', None)}, "
                f"channel={type(self.channel).__name__}, crc={getattr(self.crc, 'name', None)!r})")

    def noise_variance(self, snr_db: Optional[Number] = None, ebno_db: Optional[Number] = None,
                       no: Optional[Number] = None) -> torch.Tensor:
        """Noise variance per complex symbol from exactly one of snr_db, ebno_db, no."""
        given = [v is not None for v in (snr_db, ebno_db, no)]
        if sum(given) != 1:
            raise ValueError("give exactly one of snr_db (Es/N0, dB), ebno_db (Eb/N0, dB) or no")
        if ebno_db is not None:
            check_finite("ebno_db", ebno_db)
            # Es/N0 = Eb/N0 * payload bits per channel use
            return 1.0 / (10.0 ** (as_tensor(ebno_db, dtype=torch.float32) / 10.0) * self.rate)
        return resolve_no(snr_db, no)

    def __call__(self, bits: torch.Tensor, snr_db: Optional[Number] = None, ebno_db: Optional[Number] = None,
                 no: Optional[Number] = None, generator: Optional[torch.Generator] = None) -> DigitalResult:
        check_bits(bits, self.payload_bits)
        lead = bits.shape[:-1]
        num_packets = bits.shape[-1] // self.payload_bits
        pk = bits.reshape(*lead, num_packets, self.payload_bits)
        word = self.crc.encode(pk) if self.crc else pk
        cw = self.code.encode(word)  # (..., P, n)
        if self.bit_channel:
            if any(v is not None for v in (snr_db, ebno_db, no)):
                raise ValueError("BSC/BEC links take no snr_db/ebno_db/no; set p or e on the channel")
            rx = self.channel(cw, generator)
            llr = (self.channel.llr(rx) if isinstance(self.channel, BSC) else BEC.llr(rx)).clamp(-_LLR_CLIP, _LLR_CLIP)
        else:
            no_t = self.noise_variance(snr_db, ebno_db, no)
            cw_p = torch.nn.functional.pad(cw, (0, self._pad)) if self._pad else cw
            x = self.mapper(cw_p)
            if isinstance(self.channel, AWGN):
                y, no_eff = self.channel(x, no=no_t, generator=generator), no_t
            else:
                out = self.channel(x, no=no_t, generator=generator)
                y, no_eff = self.equalizer(out.y, out.h_hat, out.no)
            llr = self.demapper(y, no_eff)[..., : self.code.n]
        dec = self.code.decode(llr)  # (..., P, k)
        if self.crc:
            ok = self.crc.check(dec)
            dec = dec[..., : self.payload_bits]
        else:
            ok = torch.ones(dec.shape[:-1], dtype=torch.bool, device=dec.device)
        return DigitalResult(bits=dec.reshape(*lead, num_packets * self.payload_bits), crc_ok=ok,
                             channel_uses=num_packets * self.uses_per_packet)


@dataclass
class AnalogResult:
    """Output of :class:`AnalogLink`.

    Attributes:
        x_hat: received real tensor, same shape as the input.
        channel_uses: complex channel uses per leading-batch item (pilots included).
        cbr: channel bandwidth ratio, channel uses per real source value.
    """

    x_hat: torch.Tensor
    channel_uses: int
    cbr: float


class AnalogLink:
    """Real tensors through a channel as unit-power complex symbols (uncoded analog transmission).

    Pairs of consecutive values on the last dimension form one complex symbol (zero-padded to an
    even length); each leading-batch item is scaled to unit average symbol power, and the scale is
    assumed known at the receiver (side information, not counted), which undoes it.

    Args:
        channel: ``AWGN()`` or ``FlatFading(...)``.
        equalizer: ``"zf"`` or ``"mmse"`` (for AWGN, MMSE shrinks y by 1 / (1 + no)).

    Call: ``x`` real (..., d), exactly one of ``snr_db`` (Es/N0, dB) or ``no``, optional
    ``generator`` -> :class:`AnalogResult`; channel uses = ceil(d / 2) (+ pilots).
    """

    def __init__(self, channel=None, equalizer: str = "mmse") -> None:
        self.channel = AWGN() if channel is None else channel
        if not isinstance(self.channel, (AWGN, FlatFading)):
            raise TypeError(f"channel must be AWGN or FlatFading; got {type(channel).__name__}")
        self.equalizer = Equalizer(equalizer)

    def channel_uses(self, d: int) -> int:
        """Channel uses for d real values."""
        n = -(-d // 2)
        return n + (self.channel.pilot_uses(n) if isinstance(self.channel, FlatFading) else 0)

    def __call__(self, x: torch.Tensor, snr_db: Optional[Number] = None, no: Optional[Number] = None,
                 generator: Optional[torch.Generator] = None) -> AnalogResult:
        if not isinstance(x, torch.Tensor) or x.is_complex() or x.dim() == 0:
            raise ValueError("x must be a real tensor of shape (..., d)")
        if not torch.isfinite(x).all():
            raise ValueError("x must be finite; got NaN or inf")
        no_t = resolve_no(snr_db, no).to(x.device)
        d = x.shape[-1]
        xf = x.float()
        if d % 2:
            xf = torch.nn.functional.pad(xf, (0, 1))
        z = torch.complex(xf[..., 0::2], xf[..., 1::2])
        scale = torch.sqrt((z.abs() ** 2).mean(-1, keepdim=True)).clamp_min(1e-12)
        s = z / scale
        if isinstance(self.channel, AWGN):
            y = self.channel(s, no=no_t, generator=generator)
            h_hat = torch.ones_like(y)
        else:
            out = self.channel(s, no=no_t, generator=generator)
            y, h_hat = out.y, out.h_hat
        s_hat, _ = self.equalizer(y, h_hat, no_t)
        z_hat = s_hat * scale
        xr = torch.stack([z_hat.real, z_hat.imag], -1).reshape(*x.shape[:-1], -1)[..., :d]
        uses = self.channel_uses(d)
        return AnalogResult(x_hat=xr.to(x.dtype) if x.is_floating_point() else xr, channel_uses=uses, cbr=uses / d)
