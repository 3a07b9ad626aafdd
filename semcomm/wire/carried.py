"""What a transport carries of a WebP or AVIF file: the coded frame without its constant container.

A receiver that knows the format, the image size and the encoder's settings rebuilds everything else, so an
honest anchor counts only the coded frame, plus the framing fields our own strings pay (a codec id and a CRC).
The file is rebuilt byte for byte (:func:`rebuild`), then decoded as usual. FORMAT.md ("Image-codec anchors")
lists every byte.

**WebP (lossy)**: RIFF ``WEBP`` with one ``VP8 `` chunk holding a VP8 key frame, whose 10-byte header is a
3-byte frame tag (key-frame flag, version, show flag, first partition's size), the start code ``9d 01 2a``
and the width and height (14 bits and 2 scale bits each). Carried: the frame tag and every byte after the
dimensions. Rebuilt: ``RIFF``, the two sizes, ``WEBPVP8 ``, the start code, the dimensions, the chunk's
padding byte.

**AVIF**: ISOBMFF boxes ``ftyp``, ``meta`` (handler, primary item, item location ``iloc``, item info,
properties: ``ispe``, ``pixi``, ``av1C``, ``colr``) and ``mdat`` holding the image item's AV1 OBUs: a temporal
delimiter, the sequence header and the frame OBU. Carried: the OBUs after the sequence header, as in the file
(each with its header and size field). Rebuilt: every box (the item's length in ``iloc`` and the ``mdat``
size recomputed), the temporal delimiter, and the sequence header when it is the configuration's own (the one
a reference encode of the same size and settings writes); a string whose sequence header differs carries it
(codec id :data:`AV1_WITH_SEQUENCE_HEADER`).

A carried string: 8 bits of codec id (:data:`VP8`, :data:`AV1`, :data:`AV1_WITH_SEQUENCE_HEADER`), the
payload, and a CRC-16/GENIBUS of both (poly 0x1021, init 0xFFFF, final XOR 0xFFFF: appended bytes change it).
"""
from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass

from semcomm.wire.errors import BitstreamError

VP8, AV1, AV1_WITH_SEQUENCE_HEADER = 0xF1, 0xF2, 0xF3  # codec ids: high nibble 15, "an image codec's frame"
FRAMING_BYTES = 3  # codec id and CRC-16
_WEBP_HEADER = 20  # RIFF size WEBP, 'VP8 ' size
_OBU_TEMPORAL_DELIMITER, _OBU_SEQUENCE_HEADER = 2, 1


def crc16(data: bytes) -> int:
    """CRC-16/GENIBUS of ``data`` (check value of b"123456789": 0xD64E)."""
    return binascii.crc_hqx(data, 0xFFFF) ^ 0xFFFF


def frame(codec_id: int, payload: bytes) -> bytes:
    """The carried string: ``codec_id``, ``payload``, CRC-16 (big-endian)."""
    body = bytes([codec_id]) + payload
    return body + crc16(body).to_bytes(2, "big")


def unframe(string: bytes, accepted: tuple[int, ...]) -> tuple[int, bytes]:
    """``(codec_id, payload)`` of a carried string; BitstreamError if it is short, its CRC fails or its id is not
    one of ``accepted``."""
    string = bytes(string)
    if len(string) < FRAMING_BYTES:
        raise BitstreamError(f"truncated: a carried frame has at least {FRAMING_BYTES} bytes, got {len(string)}")
    if crc16(string[:-2]) != int.from_bytes(string[-2:], "big"):
        raise BitstreamError("corrupted: the carried frame's CRC-16 does not match")
    if string[0] not in accepted:
        raise BitstreamError(f"codec id {string[0]:#04x} is not one of {', '.join(f'{a:#04x}' for a in accepted)}")
    return string[0], string[1:-2]


@dataclass(frozen=True)
class WebPContainer:
    """The constant parts of a lossy WebP file of one size, taken from a reference file of that size."""

    dimensions: bytes  # start code and the 4 bytes of width and height

    @classmethod
    def of(cls, reference: bytes) -> "WebPContainer":
        _check_webp(reference)
        return cls(reference[_WEBP_HEADER + 3 : _WEBP_HEADER + 10])

    def strip(self, file: bytes) -> bytes:
        """The carried string of ``file``; ValueError if it is not a simple lossy WebP of this size."""
        _check_webp(file)
        if file[_WEBP_HEADER + 3 : _WEBP_HEADER + 10] != self.dimensions:
            raise ValueError("the WebP file's size differs from the configuration's")
        size = int.from_bytes(file[16:20], "little")
        data = file[_WEBP_HEADER : _WEBP_HEADER + size]
        return frame(VP8, data[:3] + data[10:])

    def rebuild(self, string: bytes) -> bytes:
        """The WebP file a carried string was cut from; BitstreamError if the string is damaged."""
        _, payload = unframe(string, (VP8,))
        if len(payload) < 3:
            raise BitstreamError("truncated: a VP8 frame has a 3-byte frame tag")
        data = payload[:3] + self.dimensions + payload[3:]
        pad = b"\0" * (len(data) % 2)
        chunk = b"VP8 " + len(data).to_bytes(4, "little") + data + pad
        return b"RIFF" + (4 + len(chunk)).to_bytes(4, "little") + b"WEBP" + chunk


def _check_webp(file: bytes) -> None:
    if file[:4] != b"RIFF" or file[8:16] != b"WEBPVP8 " or file[_WEBP_HEADER + 3 : _WEBP_HEADER + 6] != b"\x9d\x01\x2a":
        raise ValueError("not a simple lossy WebP file (RIFF, WEBP, one 'VP8 ' chunk)")
    if int.from_bytes(file[16:20], "little") + _WEBP_HEADER + int.from_bytes(file[16:20], "little") % 2 != len(file):
        raise ValueError("the WebP file holds more than its 'VP8 ' chunk")


@dataclass(frozen=True)
class AVIFContainer:
    """The constant parts of an AVIF file of one size and encoder setting, taken from a reference file.

    Attributes:
        head: the file up to its item's data (``ftyp``, ``meta``, the ``mdat`` box header).
        length_at: offsets in ``head`` of the ``iloc`` extent length and of the ``mdat`` size (4 bytes each).
        delimiter, sequence_header: the first two OBUs of the reference's item.
    """

    head: bytes
    length_at: tuple[int, int]
    delimiter: bytes
    sequence_header: bytes

    @classmethod
    def of(cls, reference: bytes) -> "AVIFContainer":
        head, length_at, data = _split_avif(reference)
        units = _obus(data)
        if [t for t, _ in units[:2]] != [_OBU_TEMPORAL_DELIMITER, _OBU_SEQUENCE_HEADER]:
            raise ValueError("the AVIF item does not start with a temporal delimiter and a sequence header")
        return cls(head, length_at, units[0][1], units[1][1])

    def strip(self, file: bytes) -> bytes:
        """The carried string of ``file``; ValueError if its container differs from the configuration's."""
        head, length_at, data = _split_avif(file)
        if length_at != self.length_at or _blank(head, length_at) != _blank(self.head, self.length_at):
            raise ValueError("the AVIF file's container differs from the configuration's")
        units = _obus(data)
        if [t for t, _ in units[:2]] != [_OBU_TEMPORAL_DELIMITER, _OBU_SEQUENCE_HEADER] or units[0][1] != self.delimiter:
            raise ValueError("the AVIF item does not start with a temporal delimiter and a sequence header")
        frames = b"".join(unit for _, unit in units[2:])
        if units[1][1] == self.sequence_header:
            return frame(AV1, frames)
        return frame(AV1_WITH_SEQUENCE_HEADER, units[1][1] + frames)

    def rebuild(self, string: bytes) -> bytes:
        """The AVIF file a carried string was cut from; BitstreamError if the string is damaged."""
        codec_id, payload = unframe(string, (AV1, AV1_WITH_SEQUENCE_HEADER))
        try:
            units = _obus(payload)
        except ValueError as err:
            raise BitstreamError(f"corrupted: {err}") from err
        if codec_id == AV1:
            data = self.delimiter + self.sequence_header + payload
        elif units and units[0][0] == _OBU_SEQUENCE_HEADER:
            data = self.delimiter + payload
        else:
            raise BitstreamError("corrupted: codec id 0xf3 promises a sequence header first")
        head = bytearray(self.head)
        iloc, mdat = self.length_at
        head[iloc : iloc + 4] = len(data).to_bytes(4, "big")
        head[mdat : mdat + 4] = (8 + len(data)).to_bytes(4, "big")
        return bytes(head) + data


def anatomy(file: bytes) -> list[tuple[str, int, bool]]:
    """The parts of a lossy WebP or AVIF file in order: ``(name, bytes, carried)``, carried True for what a
    carried string holds (FORMAT.md's table; the string adds 3 bytes of framing)."""
    if file[:4] == b"RIFF":
        _check_webp(file)
        size = int.from_bytes(file[16:20], "little")
        return [("RIFF header: 'RIFF', size, 'WEBP'", 12, False), ("chunk header: 'VP8 ', size", 8, False),
                ("VP8 frame tag", 3, True), ("start code and dimensions", 7, False),
                ("VP8 frame data", size - 10, True), ("chunk padding", size % 2, False)]
    head, _, data = _split_avif(file)
    parts = [(f"box '{kind.decode()}'", size, False) for kind, _, size in _boxes(file, 0, len(head) - 8)]
    names = {_OBU_TEMPORAL_DELIMITER: "OBU: temporal delimiter", _OBU_SEQUENCE_HEADER: "OBU: sequence header"}
    units = _obus(data)
    return parts + [("box 'mdat' header", 8, False)] + [
        (names.get(kind, f"OBU: type {kind}" + (" (frame)" if kind == 6 else "")), len(unit), i >= 2)
        for i, (kind, unit) in enumerate(units)]


def _blank(head: bytes, length_at: tuple[int, int]) -> bytes:
    out = bytearray(head)
    for at in length_at:
        out[at : at + 4] = bytes(4)
    return bytes(out)


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, offset, size) of the ISOBMFF boxes in ``data[start:end]`` (32-bit sizes only)."""
    out, at = [], start
    while at < end:
        if at + 8 > end:
            raise ValueError("an ISOBMFF box header runs past its parent")
        size, kind = struct.unpack_from(">I4s", data, at)
        if size < 8 or at + size > end:
            raise ValueError(f"the ISOBMFF box {kind!r} has an impossible size {size}")
        out.append((kind, at, size))
        at += size
    return out


def _split_avif(file: bytes) -> tuple[bytes, tuple[int, int], bytes]:
    """(head, offsets of the iloc extent length and the mdat size, the item's data) of a one-item AVIF file
    whose ``mdat`` is its last box and holds exactly the item."""
    try:
        top = _boxes(file, 0, len(file))
    except ValueError as err:
        raise ValueError(f"not an AVIF file: {err}") from None
    kinds = [k for k, _, _ in top]
    if kinds[:1] != [b"ftyp"] or kinds[-1:] != [b"mdat"] or b"meta" not in kinds:
        raise ValueError(f"not an AVIF file of ftyp, meta, mdat boxes (got {kinds})")
    _, meta_at, meta_size = top[kinds.index(b"meta")]
    inner = {k: (at, size) for k, at, size in _boxes(file, meta_at + 12, meta_at + meta_size)}  # meta is a FullBox
    if b"iloc" not in inner:
        raise ValueError("the AVIF file has no item location box")
    at, _ = inner[b"iloc"]
    version, sizes, base_sizes = file[at + 8], file[at + 12], file[at + 13]
    offset_size, length_size, base_size = sizes >> 4, sizes & 15, base_sizes >> 4
    count_at = at + 14
    if version not in (0, 1) or (offset_size, length_size, base_size) != (4, 4, 0):
        raise ValueError("the AVIF item location box is not version 0/1 with 4-byte offsets and lengths")
    if int.from_bytes(file[count_at : count_at + 2], "big") != 1:
        raise ValueError("the AVIF file holds more than one item")
    extent_count_at = count_at + 2 + 2 + (2 if version == 1 else 0) + 2  # item id, construction method, data ref
    if int.from_bytes(file[extent_count_at : extent_count_at + 2], "big") != 1:
        raise ValueError("the AVIF item has more than one extent")
    offset_at = extent_count_at + 2
    offset = int.from_bytes(file[offset_at : offset_at + 4], "big")
    length = int.from_bytes(file[offset_at + 4 : offset_at + 8], "big")
    _, mdat_at, mdat_size = top[-1]
    if offset != mdat_at + 8 or length != mdat_size - 8:
        raise ValueError("the AVIF item is not exactly the mdat box's data")
    return file[:offset], (offset_at + 4, mdat_at), file[offset:]


def _leb128(data: bytes, at: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        if at + i >= len(data):
            raise ValueError("an OBU size field runs past the data")
        value |= (data[at + i] & 0x7F) << (7 * i)
        if not data[at + i] & 0x80:
            return value, at + i + 1
    raise ValueError("an OBU size field is longer than 8 bytes")


def _obus(data: bytes) -> list[tuple[int, bytes]]:
    """(type, bytes) of each OBU in ``data``, every OBU with its size field."""
    out, at = [], 0
    while at < len(data):
        header = data[at]
        if header & 0x80 or not header & 0x02:
            raise ValueError("an OBU header has its forbidden bit set or no size field")
        body, end = _leb128(data, at + 1 + ((header >> 2) & 1))
        if end + body > len(data):
            raise ValueError("an OBU runs past the data")
        out.append(((header >> 3) & 15, data[at : end + body]))
        at = end + body
    return out
