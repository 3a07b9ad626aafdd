"""Packets over a digital link of ``channels``: bits become link blocks and channel uses.

A :class:`DigitalTransport` carries an edge's strings (:meth:`~DigitalTransport.carry`) cut into packets by
its *framing* (:class:`~semcomm.rate.packetize.Packetizer` or :class:`~semcomm.rate.packetize.WholeString`;
packets are cut from the codec's symbols that the edge kept, not from the finished strings), and joins
what arrives; :meth:`~DigitalTransport.send` carries any packets (an image codec's files too).

Each packet's bytes (MSB first) are zero-padded to whole link blocks
(``link.payload_bits`` information bits each) and sent through a
:class:`channels.DigitalLink` (code, modulation, AWGN / fading / BSC / BEC,
the link's own CRC). A packet arrives when every block of it passes the
link's CRC (or, on a link without CRC, always, possibly damaged: then the
packet's own CRC-16 decides, at the framing's ``join``).
Channel uses per image are its blocks times the link's uses per block.

Two variants share the accounting: ``ideal=True`` delivers every block
unaltered (channel uses still those of ``link``), and ``erasures`` (a
:class:`channels.PacketErasure`, e.g. Gilbert-Elliott) additionally loses
whole blocks, drawn over all blocks in the order they are sent.

Blocks go through the link ``chunk_blocks`` at a time (one batch of the
decoder), which bounds memory: belief propagation keeps several message
tables of about 10 kB per 648-bit block each.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from channels import DigitalLink, PacketErasure
from semcomm.edge.encoder import Transmission
from semcomm.rate.framed import FrameSymbols
from semcomm.rate.packetize import Arrival
from semcomm.rate.pair import CodecPair
from semcomm.transport.base import Carried, Transport


class Framing(Protocol):
    """How a codec pair's strings become packets and what arrives becomes patches
    (:class:`~semcomm.rate.packetize.Packetizer`, :class:`~semcomm.rate.packetize.WholeString`)."""

    pair: CodecPair

    def split(self, string: bytes, coded: FrameSymbols | None = None) -> list[bytes]:
        """One image's packets, from what ``string`` was coded from when given (no decoding), else the string."""

    def join(self, packets: list[bytes | None]) -> Arrival: ...


@dataclass
class Delivery:
    """What a link delivered of a batch of images' packets.

    Attributes:
        packets: per image, per packet, the bytes that arrived or None (lost).
        blocks: link blocks sent per image (int64).
        channel_uses: complex channel uses per image (bit-channel uses on BSC/BEC; int64).
    """

    packets: list[list[bytes | None]]
    blocks: torch.Tensor
    channel_uses: torch.Tensor


class DigitalTransport(Transport):
    """Sends packets over ``link`` (a :class:`channels.DigitalLink`); see the module docstring.

    Args:
        link: the coded, modulated link.
        ideal: deliver every block unaltered (channel uses still those of ``link``).
        erasures: loses whole blocks besides the link (e.g. ``channels.GilbertElliott``).
        chunk_blocks: blocks per pass through the link (bounds memory).
        framing: how :meth:`carry` cuts a codec pair's strings into packets and joins them
            (see :meth:`with_framing`); :meth:`send` needs none.

    >>> from channels import BSC, Uncoded
    >>> transport = DigitalTransport(DigitalLink(Uncoded(256), channel=BSC(0.01)))
    >>> transport.send([[bytes(40)], [bytes(10), bytes(80)]]).blocks.tolist()  # 256-bit blocks: 240 payload bits
    [2, 4]
    """

    def __init__(self, link: DigitalLink, ideal: bool = False, erasures: PacketErasure | None = None,
                 chunk_blocks: int = 4096, framing: Framing | None = None):
        if not isinstance(link, DigitalLink):
            raise TypeError(f"link must be a channels.DigitalLink, got {type(link).__name__}")
        if erasures is not None and not isinstance(erasures, PacketErasure):
            raise TypeError(f"erasures must be a channels.PacketErasure, got {type(erasures).__name__}")
        if isinstance(chunk_blocks, bool) or not isinstance(chunk_blocks, int) or chunk_blocks < 1:
            raise ValueError(f"chunk_blocks must be a positive integer, got {chunk_blocks!r}")
        self.link, self.ideal, self.erasures, self.chunk_blocks = link, ideal, erasures, chunk_blocks
        self.framing = framing

    def with_framing(self, framing: Framing) -> DigitalTransport:
        """The same link carrying a codec pair's strings as ``framing`` cuts them (a copy; this one is unchanged)."""
        framed = copy.copy(self)
        framed.framing = framing
        return framed

    def carry(self, sent: Transmission, pair: CodecPair, snr_db: float | None = None,
              generator: torch.Generator | None = None, *, source: torch.Tensor | None = None,
              importance: torch.Tensor | None = None, decode_intact: bool = True) -> Carried:
        """Every offloaded image's string as packets of the framing, in one pass through the link, and what
        arrived joined (``source`` and ``importance`` are not used; see :meth:`Transport.carry`).

        The packets are cut from the symbols each string was coded from where the edge kept them
        (``sent.frames``), and from the string itself (its payload decoded) where not: the same bytes."""
        if self.framing is None:
            raise ValueError("a digital transport carries a codec pair's strings as packets: give it a framing, "
                             "e.g. transport.with_framing(Packetizer(pair))")
        if self.framing.pair is not pair:
            raise ValueError(f"the framing cuts strings of codec pair {self.framing.pair.name}, not of {pair.name}")
        offloaded = sent.offloaded.nonzero().flatten().tolist()
        frames = sent.frames or [None] * len(sent.strings)
        packets = [self.framing.split(sent.strings[i], frames[i]) for i in offloaded]
        delivery = self.send(packets, snr_db=snr_db, generator=generator)
        intact = [got == image for got, image in zip(delivery.packets, packets)]
        arrivals = [None if whole and not decode_intact else self.framing.join(arrived)
                    for whole, arrived in zip(intact, delivery.packets)]
        counts = (sent.level[offloaded] > 0).sum(1).tolist()  # the patches each offloaded image sent
        missing = [0 if a is None else a.patches_missing(k) for a, k in zip(arrivals, counts)]
        link_bits = torch.zeros(len(sent.strings), dtype=torch.int64, device="cpu")
        channel_uses = torch.zeros(len(sent.strings), dtype=torch.int64, device="cpu")
        if offloaded:
            link_bits[offloaded] = torch.tensor([sum(8 * len(p) for p in image) for image in packets], device="cpu")
            channel_uses[offloaded] = delivery.channel_uses
        return Carried(received=[None if a is None else a.received for a in arrivals],
                       missing=torch.tensor(missing, dtype=torch.int64, device="cpu"),
                       intact=torch.tensor(intact, dtype=torch.bool, device="cpu"), link_bits=link_bits,
                       channel_uses=channel_uses,
                       packets_lost=sum(a.packets_lost for a in arrivals if a is not None),
                       packets_sent=sum(map(len, packets)))

    def blocks_for(self, packet: bytes) -> int:
        """Link blocks one packet occupies."""
        return -(-8 * len(packet) // self.link.payload_bits)

    def send(self, packets: list[list[bytes]], snr_db: float | None = None,
             generator: torch.Generator | None = None) -> Delivery:
        """Send every image's packets in one pass through the link (``snr_db`` Es/N0 in dB; none on BSC/BEC)."""
        k = self.link.payload_bits
        flat = [p for image in packets for p in image]
        counts = [self.blocks_for(p) for p in flat]
        if not flat:
            zeros = torch.zeros(len(packets), dtype=torch.int64, device="cpu")
            return Delivery([[] for _ in packets], zeros, zeros)
        bits = np.zeros((sum(counts), k), dtype=np.float32).reshape(-1)
        start = 0
        for packet, blocks in zip(flat, counts):
            raw = np.unpackbits(np.frombuffer(packet, dtype=np.uint8)).astype(np.float32)
            bits[start : start + len(raw)] = raw
            start += blocks * k
        if self.ideal:
            received, ok = bits > 0.5, np.ones(sum(counts), dtype=bool)
        else:
            received, ok = self._through_link(bits, snr_db, generator)
        if self.erasures is not None:
            ok = ok & ~self.erasures.sample((sum(counts),), generator).numpy()
        arrived, start, block = [], 0, 0
        for packet, blocks in zip(flat, counts):
            if ok[block : block + blocks].all():
                arrived.append(np.packbits(received[start : start + 8 * len(packet)]).tobytes())
            else:
                arrived.append(None)
            start, block = start + blocks * k, block + blocks
        per_image, blocks_per_image, i = [], [], 0
        for image in packets:
            per_image.append(arrived[i : i + len(image)])
            blocks_per_image.append(sum(counts[i : i + len(image)]))
            i += len(image)
        blocks = torch.tensor(blocks_per_image, dtype=torch.int64, device="cpu")
        return Delivery(per_image, blocks, blocks * self.link.uses_per_packet)

    def _through_link(self, bits: np.ndarray, snr_db, generator) -> tuple[np.ndarray, np.ndarray]:
        """Blocks' bits (flat, float32) through the link in chunks of ``chunk_blocks`` (bounded memory):
        the received bits (bool, flat) and each block's CRC verdict (bool, one per block)."""
        k = self.link.payload_bits
        noise = {} if self.link.bit_channel else {"snr_db": snr_db}
        received, ok = [], []
        for start in range(0, len(bits), self.chunk_blocks * k):
            out = self.link(torch.from_numpy(bits[start : start + self.chunk_blocks * k]), generator=generator, **noise)
            received.append(out.bits.reshape(-1).numpy() > 0.5)
            ok.append(out.crc_ok.reshape(-1).numpy() if self.link.crc is not None
                      else np.ones(out.crc_ok.numel(), dtype=bool))
        return np.concatenate(received), np.concatenate(ok)
