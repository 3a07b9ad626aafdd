"""Bitstream version 3: one offloaded image as packets, a protected header and data packets (see FORMAT.md).

This module is the format only: the fields of each packet, its CRC, and parsing. What a data packet
holds (a run of consecutive sent patches, rANS coded on its own) is cut and coded by the rate stage
(:class:`semcomm.rate.packetize.Packetizer`); here a run is an opaque rANS string, its state length
code and its bytes. Fields (MSB first), with w(n) = ceil(log2 n) and N the patch grid:

==========  ============================================================
bits        every packet begins with
==========  ============================================================
4           format version: 3 (packets)
1           kind: 1 = header, 0 = data
4           codec id
16          image identity: the CRC-16 of the image's version-2 string
==========  ============================================================

==========  ============================================================
bits        then a header packet
==========  ============================================================
1           hint flag
...         the level map exactly as in a version-2 string
...         codec parameters, then the edge hint if flagged
w(N)        data packets - 1
==========  ============================================================

==========  ============================================================
bits        or a data packet
==========  ============================================================
w(N)        packet number
w(N)        first sent patch it carries (index among the K sent, position order)
w(N)        patches it carries - 1
3           rANS state length - 4
8 x bytes   rANS string of those patches' symbols
==========  ============================================================

and ends in zero padding to a whole byte and the CRC-16/CCITT-FALSE of the bytes before it. A packet
whose CRC fails is rejected (:func:`unpack` raises :class:`BitstreamError`) before any field is trusted.

The identity ties every packet to its image: a receiver joins only the packets whose identity is its
header's, so another image's packet is refused unless the two images' identities are equal (about 2^-16
for two different strings, whose CRC-16s collide that rarely; identical strings give identical packets).
"""
from __future__ import annotations

from dataclasses import dataclass

from semcomm.wire import v2
from semcomm.wire.bits import BitReader, BitWriter, as_bytes, width_for
from semcomm.wire.errors import BitstreamError

VERSION = 3
HEADER, DATA = 1, 0
KIND_BITS = 9  # version, kind and codec id at the start of every packet
IDENTITY_BITS = 16  # the image identity, after them in every packet


@dataclass
class HeaderPacket:
    """The fields of a header packet: everything without which nothing of the image decodes.

    Attributes:
        level: N ints, each patch's level (0 = not sent).
        params: the codec's parameter values.
        hint: the edge's C hint symbols, or None.
        packets: the number of data packets the image was cut into (1..N).
        identity: the image's identity (:func:`string_identity`), 0..2^16 - 1.
    """

    level: list[int]
    params: tuple[int, ...]
    hint: object
    packets: int
    identity: int


@dataclass
class DataPacket:
    """The fields of a data packet: one run of consecutive sent patches, rANS coded on its own.

    Attributes:
        number: the packet's number, 0..packets - 1.
        first: index of the run's first patch among the K sent (position order).
        count: patches in the run (>= 1).
        state_code: the rANS state length code (state bytes - 4).
        payload: the rANS string (:func:`semcomm.rate.entropy.rans_encode`).
        identity: the image's identity, as in its header.
    """

    number: int
    first: int
    count: int
    state_code: int
    payload: bytes
    identity: int


def string_identity(string: bytes) -> int:
    """The identity of the image whose version-2 string is ``string``: its CRC-16 (its last 16 bits)."""
    string = as_bytes(string)
    if len(string) < 3:
        raise BitstreamError(f"truncated: {len(string)} bytes, shorter than any version-2 string")
    return int.from_bytes(string[-2:], "big")


def data_field_bits(layout: v2.Layout) -> int:
    """Bits of a data packet before its rANS string: version, kind, codec id, identity, three w(N) fields,
    state length."""
    return KIND_BITS + IDENTITY_BITS + 3 * width_for(layout.num_patches) + v2.STATE_LENGTH_BITS


def data_overhead_bytes(layout: v2.Layout) -> int:
    """Bytes of a data packet besides its rANS string, CRC included (an upper bound: padding shares a byte)."""
    return (data_field_bits(layout) + 7) // 8 + v2.CRC_BITS // 8


def pack_header(layout: v2.Layout, header: HeaderPacket, hint_coder=None) -> bytes:
    """A header packet (CRC included); ``hint_coder`` writes ``header.hint``."""
    writer = _start(HEADER, layout, header.identity)
    v2.write_image_fields(writer, layout, header, hint_coder)
    writer.write(header.packets - 1, width_for(layout.num_patches))
    return v2.seal(writer.to_bytes())


def pack_data(layout: v2.Layout, data: DataPacket) -> bytes:
    """A data packet (CRC included)."""
    writer = _start(DATA, layout, data.identity)
    w = width_for(layout.num_patches)
    for value in (data.number, data.first, data.count - 1):
        writer.write(value, w)
    v2.write_rans_payload(writer, data.state_code, data.payload)
    return v2.seal(writer.to_bytes())


def unpack(packet: bytes, layout: v2.Layout, hint_coder=None, classes: int = 0,
           trace: list | None = None) -> HeaderPacket | DataPacket:
    """Parse one packet (any bytes-like object) of ``layout``'s codec; ``trace``, a list, is filled with
    (field, first bit, width, value) of every field read.

    Raises:
        BitstreamError: naming what is wrong: the packet is missing (None), is not a packet (another
            format version), is truncated, fails its CRC, is of another codec, or is malformed.
        TypeError: ``packet`` is neither bytes-like nor None.
    """
    if packet is None:
        raise BitstreamError("missing: no packet (None)")
    packet = as_bytes(packet, "a packet")
    if packet and packet[0] >> 4 != VERSION:
        raise BitstreamError(f"not a packet: format version {packet[0] >> 4} (packets are version {VERSION})")
    reader = BitReader(v2.unseal(packet), trace=trace)
    reader.read(4, "version")
    kind = reader.read(1, "kind")
    codec_id = reader.read(4, "codec id")
    if codec_id != layout.codec_id:
        raise BitstreamError(f"a packet of codec id {codec_id}, this decoder reads {layout.codec_id}")
    identity = reader.read(IDENTITY_BITS, "identity")
    w = width_for(layout.num_patches)
    if kind == HEADER:
        level, params, hint = v2.read_image_fields(reader, layout, hint_coder, classes)
        packets = reader.read(w, "data packets - 1") + 1
        v2.read_end(reader)
        parsed = HeaderPacket(level, params, hint, packets, identity)
    else:
        number, first, count = (reader.read(w, name) for name in ("packet number", "first patch", "patches - 1"))
        state_code, payload = v2.read_rans_payload(reader)
        parsed = DataPacket(number, first, count + 1, state_code, payload, identity)
    if trace is not None:
        trace.append(("CRC-16", 8 * len(packet) - v2.CRC_BITS, v2.CRC_BITS, int.from_bytes(packet[-2:], "big")))
    return parsed


def dissect(packet: bytes, layout: v2.Layout, hint_coder=None, classes: int = 0) -> list[dict]:
    """Every field of a packet: name, first bit, width in bits and value (as :func:`semcomm.wire.v2.dissect`)."""
    trace: list = []
    unpack(packet, layout, hint_coder, classes, trace)
    return v2.trace_rows(trace)


def _start(kind: int, layout: v2.Layout, identity: int) -> BitWriter:
    writer = BitWriter()
    for value, width in ((VERSION, 4), (kind, 1), (layout.codec_id, 4), (identity, IDENTITY_BITS)):
        writer.write(value, width)
    return writer
