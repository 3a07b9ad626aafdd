"""An offloaded image as packets: runs of its codec symbols, each rANS coded on its own (FORMAT.md, version 3).

A link loses or corrupts packets, not whole images. :class:`Packetizer`
cuts one image of an entropy-coded codec pair into

* ``header_copies`` identical **header packets**: everything without which
  nothing decodes (codec id, positions, level map, codec parameters, the
  edge hint) and the number of data packets; protected by repetition;
* **data packets** of at most ``packet_bytes`` bytes, each holding a run of
  consecutive sent patches (in position order) as its own rANS string, so a
  lost data packet costs the patches it carried and nothing else.

The runs are cut from the symbols the codec produced (:meth:`Packetizer.packets`,
:meth:`Packetizer.compress`, or :meth:`Packetizer.split` of a string given what it
was coded from, as the edge keeps it), before any rANS coding: each run is as long
as fits one data packet. A finished version-2 string alone can be packetized too
(:meth:`Packetizer.split`: its payload is decoded back to the same symbols), and
gives the same bytes. The packets' fields and CRC are :mod:`semcomm.wire.packets`.

Every packet carries its image's identity (16 bits: the CRC-16 of its version-2 string), so
:meth:`Packetizer.join` refuses another image's packets (unless the two identities collide, about
2^-16), as it refuses damaged ones.

Every bit of every packet counts on the link: :class:`Arrival` reports
what arrived, and ``sum(8 * len(p) for p in packets)`` is what was sent.

Independent packets cost bits: each data packet carries its fields, a rANS
state and a CRC, and each header copy fills a link block of its own (about
a third more channel uses than the string itself on CIFAR-10; BENCHMARKS.md).
:class:`WholeString` is the other framing, the one the image codecs get:
the version-2 string as one packet, all or nothing.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from semcomm.rate.entropy import SymbolTables, rans_decode, rans_encode
from semcomm.rate.framed import FramedPair, FrameSymbols
from semcomm.rate.pair import CodecPair, Received
from semcomm.wire import packets as v3
from semcomm.wire import v2
from semcomm.wire.bits import as_bytes
from semcomm.wire.errors import BitstreamError


@dataclass
class Arrival:
    """What the server recovered of one image's packets.

    Attributes:
        received: the arrived patches (positions, levels, values, hint), or
            None when no header or no data packet arrived (the edge answers).
        missing: positions (int64) of patches sent but lost with their packets, as the header names
            them; empty when no header arrived (``header_lost``): the receiver then knows no positions,
            and every patch the image sent is missing (:meth:`patches_missing`).
        packets_lost: packets that did not arrive or were refused: failed their CRC, were another
            image's, or did not fit its header (:meth:`Packetizer.join`).
        header_lost: no header arrived (with :class:`WholeString`: the string did not arrive intact).
    """

    received: Received | None
    missing: torch.Tensor
    packets_lost: int
    header_lost: bool = False

    def patches_missing(self, sent: int) -> int:
        """How many of the image's ``sent`` patches (its K, which the sender knows and a header tells the
        receiver) did not reach the server: all of them when no header arrived, else ``len(missing)``."""
        return max(sent - (0 if self.received is None else len(self.received.positions)), 0)


class Packetizer:
    """Cuts images of ``pair`` into packets and joins what arrives (module docstring).

    Args:
        pair: an entropy-coded codec pair whose patches are ``values_per_patch`` symbols each.
        packet_bytes: the largest data packet, in bytes (fields, payload and CRC).
        header_copies: how many times the header packet is sent.

    >>> from semcomm.rate import create_codec
    >>> pair = create_codec("latent-cifar10")
    >>> level = torch.zeros(1, 64, dtype=torch.int64)
    >>> level[0, :8] = 3
    >>> source = torch.randn(1, 64, pair.values_per_patch, generator=torch.Generator().manual_seed(0))
    >>> packetizer = Packetizer(pair, packet_bytes=32, header_copies=2)
    >>> (packets,) = packetizer.compress(source, level)
    >>> packets == packetizer.split(pair.compress(source, level)[0]), packetizer.join(packets).packets_lost
    (True, 0)
    """

    def __init__(self, pair: FramedPair, packet_bytes: int = 64, header_copies: int = 2):
        if not pair.layout.entropy_coded or not hasattr(pair, "values_per_patch"):
            raise ValueError(f"packets need an entropy-coded pair with fixed symbols per patch; {pair.name} is not")
        if isinstance(packet_bytes, bool) or not isinstance(packet_bytes, int) or packet_bytes < 1:
            raise ValueError(f"packet_bytes must be a positive integer, got {packet_bytes!r}")
        if isinstance(header_copies, bool) or not isinstance(header_copies, int) or header_copies < 1:
            raise ValueError(f"header_copies must be a positive integer, got {header_copies!r}")
        self.pair, self.packet_bytes, self.header_copies = pair, packet_bytes, header_copies
        self._overhead = v3.data_overhead_bytes(pair.layout)
        minimum = self._overhead + 4  # fields, the smallest rANS state, CRC
        if packet_bytes < minimum:
            raise ValueError(f"packet_bytes {packet_bytes} is smaller than a data packet's fields, rANS state and "
                             f"CRC ({minimum} bytes)")

    # ---- edge ------------------------------------------------------------------------------------
    def compress(self, source: torch.Tensor, level: torch.Tensor,
                 hint: torch.Tensor | None = None) -> list[list[bytes]]:
        """The packets of B images, cut from the codec's symbols: as :meth:`CodecPair.compress`, with packets
        in place of each version-2 string (``source`` B x N x V, ``level`` B x N, ``hint`` B x C or None)."""
        return [self.packets(*coded) for coded in self.pair.frames(source, level, hint)]

    def split(self, string: bytes, coded: FrameSymbols | None = None) -> list[bytes]:
        """The packets of one finished version-2 string.

        Args:
            string: the string.
            coded: what ``string`` was coded from (:meth:`FramedPair.frames`, as the edge keeps it in
                ``Transmission.frames``), or None: then the string's payload is decoded back to its symbols.
                Given, the packets are cut from its symbols and of the string only its CRC-16 (the image
                identity) is read (the same bytes).
        """
        pair = self.pair
        if coded is not None:
            if coded.frame.codec_id != pair.layout.codec_id:
                raise ValueError(f"the symbols are of codec id {coded.frame.codec_id}; this packetizer cuts "
                                 f"{pair.name} (codec id {pair.layout.codec_id})")
            return self.packets(*coded, v3.string_identity(string))
        frame = v2.unpack(string, {pair.layout.codec_id: pair.layout}, hint_coder=pair.hint_coder,
                          classes=pair.num_classes)
        sent = np.asarray([m for m in frame.level if m > 0], dtype=np.int64)
        indexes = pair.table_indexes(sent, frame.params)
        symbols = rans_decode(pair.tables_for(frame.params), frame.state_code, frame.payload, indexes)
        return self.packets(frame, symbols, indexes, v3.string_identity(string))

    def packets(self, frame: v2.Frame, symbols: np.ndarray, indexes: np.ndarray,
                identity: int | None = None) -> list[bytes]:
        """One image's packets: ``header_copies`` header packets, then the data packets.

        Args:
            frame: the image's level map, codec parameters and hint (its payload fields are not read).
            symbols, indexes: the K x V symbols of its sent patches and their table indexes, flat, in
                coding order (position order, as :meth:`FramedPair.symbols` gives them).
            identity: the image's identity, the CRC-16 of its version-2 string
                (:func:`~semcomm.wire.packets.string_identity`), or None: the string is coded to find it.
        """
        k, v = sum(1 for m in frame.level if m > 0), self.pair.values_per_patch
        if identity is None:
            identity = v3.string_identity(self.pair.pack(FrameSymbols(frame, symbols, indexes)))
        symbols = np.asarray(symbols, dtype=np.int64).reshape(k, v)
        indexes = np.asarray(indexes, dtype=np.int64).reshape(k, v)
        runs = self._runs(self.pair.tables_for(frame.params), symbols, indexes)
        layout = self.pair.layout
        header = v3.pack_header(layout, v3.HeaderPacket(frame.level, frame.params, frame.hint, len(runs), identity),
                                self.pair.hint_coder)
        data = [v3.pack_data(layout, v3.DataPacket(number, first, count, *coded, identity))
                for number, (first, count, coded) in enumerate(runs)]
        return [header] * self.header_copies + data

    def _runs(self, tables: SymbolTables, symbols: np.ndarray,
              indexes: np.ndarray) -> list[tuple[int, int, tuple[int, bytes]]]:
        """(first, count, rANS-coded run) of consecutive sent patches, each run as long as fits one data packet."""

        def code(first, count):
            return rans_encode(tables, symbols[first : first + count].ravel(), indexes[first : first + count].ravel())

        runs, first = [], 0
        while first < len(symbols):
            count, coded = 1, code(first, 1)
            if self._overhead + len(coded[1]) > self.packet_bytes:
                raise ValueError(f"one patch does not fit a data packet of {self.packet_bytes} bytes")
            while first + count < len(symbols):
                longer = code(first, count + 1)
                if self._overhead + len(longer[1]) > self.packet_bytes:
                    break
                count, coded = count + 1, longer
            runs.append((first, count, coded))
            first += count
        return runs

    # ---- server ----------------------------------------------------------------------------------
    def join(self, packets: list[bytes | None]) -> Arrival:
        """What arrived of one image: its packets in any order, lost ones as None, damaged, duplicated or
        another image's among them (bytes-like objects; TypeError for anything else).

        The image is the identity that most data packets carry, then most header copies: packets of any
        other identity are refused, and so is every packet when two identities tie (which is the image's
        cannot be told: it is lost). Its data packets that do not fit its header, repeat a number or
        overlap another's patches are refused too; each refused packet counts in ``packets_lost``. An
        exact duplicate of a packet that arrived adds nothing.
        """
        pair, packets = self.pair, list(packets)
        lost = sum(packet is None for packet in packets)
        copies = Counter(as_bytes(packet, "a packet") for packet in packets if packet is not None)
        headers, data = {}, {}  # identity -> [(header, copies)], [data packet], in order of first arrival
        for packet, n in copies.items():
            parsed = self._parse(packet)
            if parsed is None:
                lost += n
            elif isinstance(parsed, v3.HeaderPacket):
                headers.setdefault(parsed.identity, []).append((parsed, n))
            else:
                data.setdefault(parsed.identity, []).append(parsed)
        score = {i: (len(data.get(i, ())), sum(n for _, n in headers.get(i, ()))) for i in {*headers, *data}}
        top = max(score.values(), default=None)
        best = [i for i, value in score.items() if value == top]
        identity = best[0] if len(best) == 1 else None  # None: no packet, or a tie (which image is unknown)
        # refused: every other identity's packets, and its own headers that differ from the first
        lost += sum(n for i, found in headers.items() for _, n in (found[1:] if i == identity else found))
        lost += sum(len(parts) for i, parts in data.items() if i != identity)
        if identity not in headers:  # no header of the image arrived (or which image it is is unknown)
            return Arrival(None, torch.zeros(0, dtype=torch.int64, device="cpu"), lost, header_lost=True)
        header = headers[identity][0][0]
        level = np.asarray(header.level, dtype=np.int64)
        positions = np.flatnonzero(level)
        sent = level[positions]
        arrived = np.zeros(len(positions), dtype=bool)
        symbols = np.zeros((len(positions), pair.values_per_patch), dtype=np.int64)
        tables, numbers = pair.tables_for(header.params), set()
        for part in data.get(identity, ()):
            first, count = part.first, part.count
            if (part.number >= header.packets or part.number in numbers or first + count > len(positions)
                    or arrived[first : first + count].any()):
                lost += 1  # does not fit this header, or repeats a packet already taken
                continue
            indexes = pair.table_indexes(sent[first : first + count], header.params)
            try:
                values = rans_decode(tables, part.state_code, part.payload, indexes)
            except BitstreamError:
                lost += 1
                continue
            symbols[first : first + count] = np.asarray(values, dtype=np.int64).reshape(count, -1)
            arrived[first : first + count] = True
            numbers.add(part.number)
        missing = torch.from_numpy(positions[~arrived])
        if not arrived.any():
            return Arrival(None, missing, lost)
        values = pair.dequantize(symbols[arrived].ravel(), sent[arrived], header.params)
        received = Received(torch.from_numpy(positions[arrived]), torch.from_numpy(sent[arrived]), values,
                            header.hint)
        return Arrival(received, missing, lost)

    def _parse(self, packet: bytes) -> v3.HeaderPacket | v3.DataPacket | None:
        """The fields of a packet, or None if it is corrupted or not one of this pair's."""
        pair = self.pair
        try:
            parsed = v3.unpack(packet, pair.layout, pair.hint_coder, pair.num_classes)
            if isinstance(parsed, v3.HeaderPacket):
                pair.tables_for(parsed.params)  # a set index out of range is corruption
            return parsed
        except BitstreamError:
            return None


class WholeString:
    """The version-2 string as one packet, all or nothing (the framing the image codecs' files get).

    Same interface as :class:`Packetizer`: no header copies, no per-packet
    fields, so no bits beyond the string; a packet lost or damaged anywhere
    loses the image (the edge answers).
    """

    def __init__(self, pair: CodecPair):
        self.pair = pair

    def compress(self, source: torch.Tensor, level: torch.Tensor,
                 hint: torch.Tensor | None = None) -> list[list[bytes]]:
        """``[[string]]``: each image's version-2 string (:meth:`CodecPair.compress`) as one packet."""
        return [[string] for string in self.pair.compress(source, level, hint)]

    def split(self, string: bytes, coded: FrameSymbols | None = None) -> list[bytes]:
        """``[string]``: one packet (``coded``, what it was coded from, is not needed)."""
        return [as_bytes(string)]

    def join(self, packets: list[bytes | None]) -> Arrival:
        """The decoded string if its one packet arrived intact, else nothing (``received`` None,
        ``header_lost``: every sent patch is missing)."""
        nothing = torch.zeros(0, dtype=torch.int64, device="cpu")
        if len(packets) == 1 and packets[0] is not None:
            try:
                return Arrival(self.pair.decompress([as_bytes(packets[0], "a packet")])[0], nothing, 0)
            except BitstreamError:
                pass
        return Arrival(None, nothing, max(len(packets), 1), header_lost=True)
