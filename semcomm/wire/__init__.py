"""The wire: every bit format semcomm writes, in one place (FORMAT.md documents each bit).

``bits`` (bit I/O, subset ranks, fixed-length fields, :func:`~semcomm.wire.bits.as_bytes`: the bytes-like
input every reader takes), ``errors`` (:class:`BitstreamError`), ``v1`` (raw 8-bit patches), ``v2`` (one
offloaded image as a string: level map, hint, payload, CRC), ``packets`` (version 3: one offloaded image as
a header packet and data packets, each with the image's identity and under its own CRC), ``side_info`` (the
analog path's control bits).
"""
from semcomm.wire.errors import BitstreamError

__all__ = ["BitstreamError"]
