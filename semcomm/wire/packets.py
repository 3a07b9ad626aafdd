"""A version-2 string as packets: a protected header and independently decodable data packets.

A link loses or corrupts packets, not whole images. :class:`Packetizer`
re-packs one version-2 string of an entropy-coded codec pair (see FORMAT.md)
into

* ``header_copies`` identical **header packets**: everything without which
  nothing decodes (codec id, positions, level map, codec parameters, the
  edge hint) and the number of data packets; protected by repetition;
* **data packets** of at most ``packet_bytes`` bytes, each holding a run of
  consecutive sent patches (in position order) as its own rANS string, so a
  lost data packet costs the patches it carried and nothing else.

Every packet ends in its own CRC-16; a packet whose CRC fails counts as
lost. Fields (MSB first), with w(n) = ceil(log2 n) and N the patch grid:

==========  ============================================================
bits        header packet
==========  ============================================================
4           format version: 3 (packets)
1           kind: 1 = header
4           codec id
1           hint flag
...         the level map exactly as in a version-2 string
...         codec parameters, then the edge hint if flagged
w(N)        data packets - 1
16          CRC-16/CCITT-FALSE of the bytes before it (after zero padding)
==========  ============================================================

==========  ============================================================
bits        data packet
==========  ============================================================
4, 1, 4     version 3, kind 0, codec id
w(N)        packet number
w(N)        first sent patch it carries (index among the K sent, position order)
w(N)        patches it carries - 1
3           rANS state length - 4
8 x bytes   rANS string of those patches' symbols; zero padding; CRC-16
==========  ============================================================

Every bit of every packet counts on the link: :attr:`Arrival` reports
what arrived, and ``sum(8 * len(p) for p in packets)`` is what was sent.

Independent packets cost bits: each data packet carries its fields, a rANS
state and a CRC, and each header copy fills a link block of its own (about
a third more channel uses than the string itself on CIFAR-10; BENCHMARKS.md).
:class:`WholeString` is the other framing, the one the image codecs get:
the version-2 string as one packet, all or nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from semcomm.wire.errors import BitstreamError
from semcomm.wire import v2 as fmt
from semcomm.wire.bits import BitReader, BitWriter, width_for
from semcomm.wire.v2 import STATE_LENGTH_BITS
from semcomm.rate.entropy import rans_decode, rans_encode
from semcomm.rate.pair import CodecPair, Received

VERSION = 3
HEADER, DATA = 1, 0


@dataclass
class Arrival:
    """What the server recovered of one image's packets.

    Attributes:
        received: the arrived patches (positions, levels, values, hint), or
            None when no header or no data packet arrived (the edge answers).
        missing: positions (int64) of patches sent but lost with their packets.
        packets_lost: packets that did not arrive or failed their CRC.
    """

    received: Received | None
    missing: torch.Tensor
    packets_lost: int


class Packetizer:
    """Splits version-2 strings of ``pair`` into packets and joins what arrives (module docstring).

    Args:
        pair: an entropy-coded codec pair whose patches are ``values_per_patch`` symbols each.
        packet_bytes: the largest data packet, in bytes (fields, payload and CRC).
        header_copies: how many times the header packet is sent.
    """

    def __init__(self, pair: CodecPair, packet_bytes: int = 64, header_copies: int = 2):
        if not pair.layout.entropy_coded or not hasattr(pair, "values_per_patch"):
            raise ValueError(f"packets need an entropy-coded pair with fixed symbols per patch; {pair.name} is not")
        if isinstance(packet_bytes, bool) or not isinstance(packet_bytes, int) or packet_bytes < 1:
            raise ValueError(f"packet_bytes must be a positive integer, got {packet_bytes!r}")
        if isinstance(header_copies, bool) or not isinstance(header_copies, int) or header_copies < 1:
            raise ValueError(f"header_copies must be a positive integer, got {header_copies!r}")
        self.pair, self.packet_bytes, self.header_copies = pair, packet_bytes, header_copies
        n = pair.num_patches
        self._w = width_for(n)
        self._data_fields = 9 + 3 * self._w + STATE_LENGTH_BITS  # bits before a data packet's payload
        minimum = (self._data_fields + 7) // 8 + 4 + 2  # fields, the smallest rANS state, CRC
        if packet_bytes < minimum:
            raise ValueError(f"packet_bytes {packet_bytes} is smaller than a data packet's fields, rANS state and "
                             f"CRC ({minimum} bytes)")

    # ---- edge ------------------------------------------------------------------------------------
    def split(self, string: bytes) -> list[bytes]:
        """The packets of one version-2 string: ``header_copies`` header packets, then the data packets."""
        pair = self.pair
        frame = fmt.unpack(string, {pair.layout.codec_id: pair.layout}, hint_coder=pair.hint_coder,
                           classes=pair.num_classes)
        sent = np.asarray([m for m in frame.level if m > 0], dtype=np.int64)
        indexes = pair.table_indexes(sent, frame.params).reshape(len(sent), -1)
        tables = pair.tables_for(frame.params)
        symbols = np.asarray(rans_decode(tables, frame.state_code, frame.payload, indexes.ravel()),
                             dtype=np.int64).reshape(len(sent), -1)
        runs = self._runs(tables, symbols, indexes)
        data = [self._data(frame.codec_id, number, first, count, coded)
                for number, (first, count, coded) in enumerate(runs)]
        return [self._header(frame, len(runs))] * self.header_copies + data

    def _runs(self, tables, symbols: np.ndarray, indexes: np.ndarray) -> list[tuple[int, int, tuple[int, bytes]]]:
        """(first, count, rANS-coded run) of consecutive sent patches, each run as long as fits one data packet."""
        fields = (self._data_fields + 7) // 8 + 2  # bytes besides the rANS string (an upper bound), CRC included

        def code(first, count):
            return rans_encode(tables, symbols[first : first + count].ravel(), indexes[first : first + count].ravel())

        runs, first = [], 0
        while first < len(symbols):
            count, coded = 1, code(first, 1)
            if fields + len(coded[1]) > self.packet_bytes:
                raise ValueError(f"one patch does not fit a data packet of {self.packet_bytes} bytes")
            while first + count < len(symbols):
                longer = code(first, count + 1)
                if fields + len(longer[1]) > self.packet_bytes:
                    break
                count, coded = count + 1, longer
            runs.append((first, count, coded))
            first += count
        return runs

    def _header(self, frame: fmt.Frame, packets: int) -> bytes:
        writer = self._start(HEADER, frame.codec_id)
        fmt.write_image_fields(writer, self.pair.layout, frame, self.pair.hint_coder)
        writer.write(packets - 1, self._w)
        return fmt.seal(writer.to_bytes())

    def _data(self, codec_id: int, number: int, first: int, count: int, coded: tuple[int, bytes]) -> bytes:
        writer = self._start(DATA, codec_id)
        for value in (number, first, count - 1):
            writer.write(value, self._w)
        fmt.write_rans_payload(writer, *coded)
        return fmt.seal(writer.to_bytes())

    @staticmethod
    def _start(kind: int, codec_id: int) -> BitWriter:
        writer = BitWriter()
        for value, width in ((VERSION, 4), (kind, 1), (codec_id, 4)):
            writer.write(value, width)
        return writer

    # ---- server ----------------------------------------------------------------------------------
    def join(self, packets: list[bytes | None]) -> Arrival:
        """What arrived of one image (lost packets as None, or corrupted ones, in any order)."""
        pair = self.pair
        header, lost, data = None, 0, {}
        for packet in packets:
            parsed = self._parse(packet)
            if parsed is None:
                lost += 1
            elif parsed[0] == HEADER:
                header = header or parsed[1]
            else:
                data[parsed[1]["number"]] = parsed[1]
        if header is None:
            return Arrival(None, torch.zeros(0, dtype=torch.int64), lost)
        level = np.asarray(header["level"], dtype=np.int64)
        positions = np.flatnonzero(level)
        sent = level[positions]
        arrived = np.zeros(len(positions), dtype=bool)
        symbols = np.zeros((len(positions), pair.values_per_patch), dtype=np.int64)
        tables = pair.tables_for(header["params"])
        for part in data.values():
            first, count = part["first"], part["count"]
            if part["number"] >= header["packets"] or first + count > len(positions):
                lost += 1  # a packet that does not belong to this header
                continue
            indexes = pair.table_indexes(sent[first : first + count], header["params"])
            try:
                values = rans_decode(tables, part["state_code"], part["payload"], indexes)
            except BitstreamError:
                lost += 1
                continue
            symbols[first : first + count] = np.asarray(values, dtype=np.int64).reshape(count, -1)
            arrived[first : first + count] = True
        missing = torch.from_numpy(positions[~arrived])
        if not arrived.any():
            return Arrival(None, missing, lost)
        values = pair.dequantize(symbols[arrived].ravel(), sent[arrived], header["params"])
        received = Received(torch.from_numpy(positions[arrived]), torch.from_numpy(sent[arrived]), values,
                            header["hint"])
        return Arrival(received, missing, lost)

    def _parse(self, packet: bytes | None):
        """(kind, fields) of a packet, or None if it is missing, corrupted or not one of this pair's."""
        if not isinstance(packet, (bytes, bytearray)):
            return None
        pair = self.pair
        try:
            reader = BitReader(fmt.unseal(packet))
            if reader.read(4, "version") != VERSION:
                return None
            kind = reader.read(1, "kind")
            if reader.read(4, "codec id") != pair.layout.codec_id:
                return None
            if kind == HEADER:
                level, params, hint = fmt.read_image_fields(reader, pair.layout, pair.hint_coder, pair.num_classes)
                packets = reader.read(self._w, "data packets") + 1
                fmt.read_end(reader)
                pair.tables_for(params)  # a set index out of range is corruption
                return HEADER, dict(level=level, params=params, hint=hint, packets=packets)
            number, first, count = (reader.read(self._w, name) for name in ("packet number", "first patch", "count"))
            state_code, payload = fmt.read_rans_payload(reader)
            return DATA, dict(number=number, first=first, count=count + 1, state_code=state_code, payload=payload)
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

    def split(self, string: bytes) -> list[bytes]:
        """``[string]``: one packet."""
        return [bytes(string)]

    def join(self, packets: list[bytes | None]) -> Arrival:
        """The decoded string if its packet arrived intact, else nothing (``received`` None)."""
        nothing = torch.zeros(0, dtype=torch.int64)
        if len(packets) == 1 and isinstance(packets[0], (bytes, bytearray)):
            try:
                return Arrival(self.pair.decode(bytes(packets[0])), nothing, 0)
            except BitstreamError:
                pass
        return Arrival(None, nothing, max(len(packets), 1))
