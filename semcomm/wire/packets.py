"""Bitstream version 3: one offloaded image as packets, a protected header and data packets (see FORMAT.md).

This module is the format only: the fields of each packet, its CRC, and parsing. What a data packet
holds (a run of consecutive sent patches, rANS coded on its own) is cut and coded by the rate stage
(:class:`semcomm.rate.packetize.Packetizer`); here a run is an opaque rANS string, its state length
code and its bytes. Fields (MSB first), with w(n) = ceil(log2 n) and N the patch grid:

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

Every packet ends in its own CRC-16; a packet whose CRC fails is rejected (:func:`unpack` raises
:class:`BitstreamError`) before any field is trusted.
"""
from __future__ import annotations

from dataclasses import dataclass

from semcomm.wire import v2
from semcomm.wire.bits import BitReader, BitWriter, width_for
from semcomm.wire.errors import BitstreamError

VERSION = 3
HEADER, DATA = 1, 0
KIND_BITS = 9  # version, kind and codec id at the start of every packet


@dataclass
class HeaderPacket:
    """The fields of a header packet: everything without which nothing of the image decodes.

    Attributes:
        level: N ints, each patch's level (0 = not sent).
        params: the codec's parameter values.
        hint: the edge's C hint symbols, or None.
        packets: the number of data packets the image was cut into (1..N).
    """

    level: list[int]
    params: tuple[int, ...]
    hint: object
    packets: int


@dataclass
class DataPacket:
    """The fields of a data packet: one run of consecutive sent patches, rANS coded on its own.

    Attributes:
        number: the packet's number, 0..packets - 1.
        first: index of the run's first patch among the K sent (position order).
        count: patches in the run (>= 1).
        state_code: the rANS state length code (state bytes - 4).
        payload: the rANS string (:func:`semcomm.rate.entropy.rans_encode`).
    """

    number: int
    first: int
    count: int
    state_code: int
    payload: bytes


def data_field_bits(layout: v2.Layout) -> int:
    """Bits of a data packet before its rANS string: version, kind, codec id, three w(N) fields, state length."""
    return KIND_BITS + 3 * width_for(layout.num_patches) + v2.STATE_LENGTH_BITS


def data_overhead_bytes(layout: v2.Layout) -> int:
    """Bytes of a data packet besides its rANS string, CRC included (an upper bound: padding shares a byte)."""
    return (data_field_bits(layout) + 7) // 8 + v2.CRC_BITS // 8


def pack_header(layout: v2.Layout, header: HeaderPacket, hint_coder=None) -> bytes:
    """A header packet (CRC included); ``hint_coder`` writes ``header.hint``."""
    writer = _start(HEADER, layout)
    v2.write_image_fields(writer, layout, header, hint_coder)
    writer.write(header.packets - 1, width_for(layout.num_patches))
    return v2.seal(writer.to_bytes())


def pack_data(layout: v2.Layout, data: DataPacket) -> bytes:
    """A data packet (CRC included)."""
    writer = _start(DATA, layout)
    w = width_for(layout.num_patches)
    for value in (data.number, data.first, data.count - 1):
        writer.write(value, w)
    v2.write_rans_payload(writer, data.state_code, data.payload)
    return v2.seal(writer.to_bytes())


def unpack(packet: bytes, layout: v2.Layout, hint_coder=None, classes: int = 0) -> HeaderPacket | DataPacket:
    """Parse one packet of ``layout``'s codec; :class:`BitstreamError` naming what is wrong if it is not
    bytes, is truncated, fails its CRC, is of another version or codec, or is malformed."""
    if not isinstance(packet, (bytes, bytearray)):
        raise BitstreamError(f"a packet must be bytes, got {type(packet).__name__}")
    reader = BitReader(v2.unseal(bytes(packet)))
    version = reader.read(4, "version")
    if version != VERSION:
        raise BitstreamError(f"not a packet: format version {version} (packets are version {VERSION})")
    kind = reader.read(1, "kind")
    codec_id = reader.read(4, "codec id")
    if codec_id != layout.codec_id:
        raise BitstreamError(f"a packet of codec id {codec_id}, this decoder reads {layout.codec_id}")
    w = width_for(layout.num_patches)
    if kind == HEADER:
        level, params, hint = v2.read_image_fields(reader, layout, hint_coder, classes)
        packets = reader.read(w, "data packets") + 1
        v2.read_end(reader)
        return HeaderPacket(level, params, hint, packets)
    number, first, count = (reader.read(w, name) for name in ("packet number", "first patch", "count"))
    state_code, payload = v2.read_rans_payload(reader)
    return DataPacket(number, first, count + 1, state_code, payload)


def _start(kind: int, layout: v2.Layout) -> BitWriter:
    writer = BitWriter()
    for value, width in ((VERSION, 4), (kind, 1), (layout.codec_id, 4)):
        writer.write(value, width)
    return writer
