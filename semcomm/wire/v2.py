"""Bitstream version 2: one offloaded image as a string, every field counted (see ``FORMAT.md``).

Fields, most significant bit first, with no alignment between them:

====================  =====================================================
bits                  field
====================  =====================================================
4                     format version (2)
4                     codec id: the codec pair (patch grid, levels, tables)
1                     hint flag: the edge's prediction travels in the payload
w(N)                  K - 1, the number of patches sent minus one
ceil(log2 C(N, K))    positions: rank of the K-subset of the N patches
1                     uniform flag: every sent patch at the same level
w(L)                  if uniform: that level - 1
level map             otherwise, for m = 2..L: K_m, the patches at level m
                      or above, in w(K_{m-1} + 1) bits, then the rank of that
                      K_m-subset of the K_{m-1} patches at level m - 1 or above
codec parameters      fixed-width fields the codec declares (may be none)
hint                  if the hint flag is set: the edge's C class symbols,
                      each a codeword of a canonical Huffman code
3                     rANS state length - 4 (entropy-coded codecs only)
8 x bytes             payload: the rANS string of the patches' symbols, or
                      the codec's raw bits
0..7                  zero padding to a whole byte
16                    CRC-16/CCITT-FALSE of all bytes before it
====================  =====================================================

w(n) = ceil(log2 n) is the width of a field holding one of n values; L is
the codec's number of levels (level 0 = not sent). A string whose CRC fails
is rejected as corrupted before any field is trusted.
"""
from __future__ import annotations

import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from semcomm.wire.bits import (
    BitReader, BitWriter, HintCode, as_bytes, subset_bits, subset_rank, subset_unrank, width_for,
)
from semcomm.wire.errors import BitstreamError

VERSION = 2
CRC_BITS = 16
STATE_LENGTH_BITS = 3  # the field holding (rANS state bytes - 4)


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF; check value 0x29B1), as ``channels``' ``CRC("crc16")``."""
    return binascii.crc_hqx(data, 0xFFFF)


@dataclass(frozen=True)
class Layout:
    """What the format needs to know of a codec to lay out or parse its strings.

    Attributes:
        codec_id: 0..15, written in the string.
        num_patches: N, the patch grid's size.
        levels: L, the highest level (level 0 = not sent).
        param_widths: widths of the codec's per-image parameter fields.
        entropy_coded: payload is a rANS string (else raw bits of
            ``raw_payload_bits(levels)``).
    """

    codec_id: int
    num_patches: int
    levels: int
    param_widths: tuple[int, ...] = ()
    entropy_coded: bool = True

    def __post_init__(self):
        if not 0 <= self.codec_id < 16:
            raise ValueError(f"codec id must be in 0..15, got {self.codec_id}")


PayloadBits = Callable[[Layout, list[int]], int]  # (layout, level map) -> bits of a raw payload


@dataclass
class Frame:
    """A parsed (or to-be-written) version-2 string.

    Attributes:
        codec_id: the codec pair.
        level: N ints, each patch's level (0 = not sent).
        hint: the edge's C hint symbols (see :class:`~semcomm.wire.bits.HintCode`), or None.
        params: the codec's parameter values.
        state_code: rANS state length code (entropy-coded payloads).
        payload: rANS bytes, or an int of ``payload_bits`` raw bits.
        payload_bits: bits of a raw payload.
    """

    codec_id: int
    level: list[int]
    hint: object = None
    params: tuple[int, ...] = ()
    state_code: int = 0
    payload: bytes | int = b""
    payload_bits: int = 0

    @property
    def positions(self) -> list[int]:
        return [i for i, m in enumerate(self.level) if m > 0]


def read_version(string: bytes) -> int:
    """The format version in a string's first 4 bits (1, 2 or 3 today); ``string`` any bytes-like object
    (:func:`~semcomm.wire.bits.as_bytes`: TypeError for anything else)."""
    string = as_bytes(string)
    if not string:
        raise BitstreamError("truncated: empty string")
    return string[0] >> 4


def pack(layout: Layout, frame: Frame, hint_coder: HintCode | None = None) -> bytes:
    """Write ``frame`` as a version-2 string (CRC included); ``hint_coder`` writes ``frame.hint``."""
    writer = BitWriter()
    writer.write(VERSION, 4)
    writer.write(layout.codec_id, 4)
    write_image_fields(writer, layout, frame, hint_coder)
    if layout.entropy_coded:
        write_rans_payload(writer, frame.state_code, frame.payload)
    else:
        writer.write(frame.payload, frame.payload_bits)
    return seal(writer.to_bytes())


def check_level_map(level: Sequence[int], layout: Layout) -> None:
    """ValueError unless ``level`` is a level map of ``layout``: N levels in 0..L, at least one patch sent."""
    if len(level) != layout.num_patches:
        raise ValueError(f"level map must hold {layout.num_patches} levels, got {len(level)}")
    low, high = min(level), max(level)
    if low < 0 or high > layout.levels:
        raise ValueError(f"level map: levels must lie in 0..{layout.levels}, got {low}..{high}")
    if high == 0:
        raise ValueError("an offloaded image must send at least one patch (a level above 0)")


def write_image_fields(writer: BitWriter, layout: Layout, frame: Frame, hint_coder: HintCode | None = None) -> None:
    """What every decoder needs before a payload: hint flag, level map, codec parameters and the hint.
    The one check of a level map before it is written (:func:`check_level_map`)."""
    level = [int(m) for m in frame.level]
    check_level_map(level, layout)
    if len(frame.params) != len(layout.param_widths):
        raise ValueError(f"codec {layout.codec_id} takes {len(layout.param_widths)} parameters, "
                         f"got {len(frame.params)}")
    writer.write(int(frame.hint is not None), 1)
    write_level_map(writer, level, layout)
    for value, width in zip(frame.params, layout.param_widths):
        writer.write(value, width)
    if frame.hint is not None:
        if hint_coder is None:
            raise ValueError("a frame with a hint needs the hint coder")
        hint_coder.write(writer, frame.hint)


def read_image_fields(reader: BitReader, layout: Layout, hint_coder: HintCode | None = None,
                      classes: int = 0) -> tuple[list[int], tuple[int, ...], object]:
    """Inverse of :func:`write_image_fields`: (level map, codec parameters, hint or None)."""
    has_hint = bool(reader.read(1, "hint flag"))
    level = read_level_map(reader, layout)
    params = tuple(reader.read(w, "codec parameter") for w in layout.param_widths)
    hint = None
    if has_hint:
        if hint_coder is None:
            raise BitstreamError("the string carries an edge hint but this decoder has no hint coder")
        hint = hint_coder.read(reader, classes)
    return level, params, hint


def write_rans_payload(writer: BitWriter, state_code: int, payload: bytes) -> None:
    """The rANS state length field and the compacted rANS string (:func:`~semcomm.rate.entropy.rans_encode`)."""
    writer.write(state_code, STATE_LENGTH_BITS)
    writer.write_bytes(payload)


def read_rans_payload(reader: BitReader) -> tuple[int, bytes]:
    """(state code, payload bytes) up to the final zero padding, which is checked (:func:`read_end`)."""
    state_code = reader.read(STATE_LENGTH_BITS, "rANS state length")
    payload_bits = reader.remaining - (-reader.position % 8)  # the payload, then padding to a whole byte
    if payload_bits < 0 or payload_bits % 8:
        raise BitstreamError(f"corrupted: {reader.remaining} bits left for the payload and padding")
    payload = reader.read_bytes(payload_bits // 8, "payload")
    read_end(reader)
    return state_code, payload


def read_end(reader: BitReader) -> None:
    """Only zero padding (fewer than 8 bits) may follow the last field."""
    if reader.remaining >= 8 or (reader.remaining and reader.read(reader.remaining, "padding")):
        raise BitstreamError("corrupted: trailing bits after the payload")


def seal(body: bytes) -> bytes:
    """``body`` followed by its CRC-16."""
    return body + crc16(body).to_bytes(2, "big")


def unseal(string: bytes) -> bytes:
    """The body of a sealed string; :class:`BitstreamError` if it is too short or its CRC-16 fails."""
    if len(string) < 3:
        raise BitstreamError(f"truncated: {len(string)} bytes, shorter than any sealed string")
    body = string[:-2]
    if crc16(body) != int.from_bytes(string[-2:], "big"):
        raise BitstreamError("corrupted: CRC-16 mismatch")
    return body


def unpack(string: bytes, layouts: dict[int, Layout], raw_payload_bits: PayloadBits | None = None,
           hint_coder: HintCode | None = None, classes: int = 0, trace: list | None = None) -> Frame:
    """Parse a version-2 string (any bytes-like object); raise :class:`BitstreamError` naming what is wrong.

    An entropy-coded payload is every byte between the fields and the padding; that it is exactly what
    its symbols code to, with nothing appended, is checked where it is decoded
    (:func:`semcomm.rate.entropy.rans_decode`). A raw payload has the length its level map fixes.

    Args:
        layouts: codec id -> :class:`Layout` of every codec the decoder knows.
        raw_payload_bits: for raw payloads, a function (layout, level map) -> payload bits.
        hint_coder, classes: read a hint of ``classes`` symbols when the flag is set.
        trace: a list to fill with (field, start bit, width, value) of every field read.
    """
    string = as_bytes(string)
    if read_version(string) != VERSION:
        raise BitstreamError(f"unknown format: version {read_version(string)} (this parser reads {VERSION})")
    body = unseal(string)
    reader = BitReader(body, trace=trace)
    reader.read(4, "version")
    codec_id = reader.read(4, "codec id")
    if codec_id not in layouts:
        raise BitstreamError(f"unknown codec id {codec_id}; this decoder knows {sorted(layouts)}")
    layout = layouts[codec_id]
    level, params, hint = read_image_fields(reader, layout, hint_coder, classes)
    frame = Frame(codec_id, level, hint, params)
    if layout.entropy_coded:
        frame.state_code, frame.payload = read_rans_payload(reader)
    else:
        frame.payload_bits = raw_payload_bits(layout, level)
        frame.payload = reader.read(frame.payload_bits, "payload")
        read_end(reader)
    if trace is not None:
        trace.append(("CRC-16", 8 * len(body), CRC_BITS, int.from_bytes(string[-2:], "big")))
    return frame


def dissect(string: bytes, layout: Layout, hint_coder: HintCode | None = None, classes: int = 0,
            raw_payload_bits: PayloadBits | None = None) -> list[dict]:
    """Every field of a version-2 string: name, first bit, width in bits and value (the payload as hex)."""
    trace: list = []
    unpack(string, {layout.codec_id: layout}, raw_payload_bits, hint_coder, classes, trace)
    return trace_rows(trace)


def trace_rows(trace: list) -> list[dict]:
    """The rows of :func:`dissect` from a parser's trace of (field, first bit, width, value): a Huffman-coded
    hint (read bit by bit) as one row, a payload as hex, a hint as its bits."""
    merged: list[list] = []
    for name, start, width, value in trace:  # a Huffman-coded hint is read bit by bit: one row
        if merged and name == "edge hint" and merged[-1][0] == name:
            merged[-1][2] += width
            merged[-1][3] = (merged[-1][3] << width) | value
        else:
            merged.append([name, start, width, value])
    rows = []
    for name, start, width, value in merged:
        if name == "payload":
            shown = f"0x{value:0{max(1, (width + 3) // 4)}x}"
        elif name == "edge hint":
            shown = f"{value:0{width}b}"
        else:
            shown = value
        rows.append(dict(field=name, start=start, bits=width, value=shown))
    return rows


def write_level_map(writer: BitWriter, level: list[int], layout: Layout) -> None:
    """The patch count, positions and levels of a level map (N levels, 0 = not sent; checked by
    :func:`check_level_map`), as in the table above."""
    n = layout.num_patches
    sent = [i for i, m in enumerate(level) if m > 0]
    writer.write(len(sent) - 1, width_for(n))
    writer.write(subset_rank(sent, n), subset_bits(n, len(sent)))
    levels = {level[i] for i in sent}
    writer.write(int(len(levels) == 1), 1)
    if len(levels) == 1:
        writer.write(levels.pop() - 1, width_for(layout.levels))
        return
    above = sent
    for m in range(2, layout.levels + 1):
        chosen = [j for j, i in enumerate(above) if level[i] >= m]
        writer.write(len(chosen), width_for(len(above) + 1))
        writer.write(subset_rank(chosen, len(above)), subset_bits(len(above), len(chosen)))
        above = [above[j] for j in chosen]


def read_level_map(reader: BitReader, layout: Layout) -> list[int]:
    """Inverse of :func:`write_level_map`; malformed fields raise :class:`BitstreamError`."""
    n = layout.num_patches
    k = reader.read(width_for(n), "patch count") + 1
    if k > n:
        raise BitstreamError(f"corrupted: {k} patches sent, the grid has {n}")
    above = subset_unrank(reader.read(subset_bits(n, k), "positions"), n, k)
    level = [0] * n
    if reader.read(1, "uniform flag"):
        common = reader.read(width_for(layout.levels), "uniform level") + 1
        if common > layout.levels:
            raise BitstreamError(f"corrupted: level {common} of a codec with {layout.levels} levels")
        for i in above:
            level[i] = common
        return level
    for i in above:
        level[i] = 1
    for m in range(2, layout.levels + 1):
        count = reader.read(width_for(len(above) + 1), "level count")
        if count > len(above):
            raise BitstreamError(f"corrupted: {count} patches at level {m}, only {len(above)} at level {m - 1}")
        chosen = subset_unrank(reader.read(subset_bits(len(above), count), "level map"), len(above), count)
        above = [above[j] for j in chosen]
        for i in above:
            level[i] = m
    return level
