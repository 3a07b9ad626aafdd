"""The wire: every bit format semcomm writes, in one place (FORMAT.md documents each bit).

``bits`` (bit I/O, subset ranks, fixed-length fields), ``errors`` (:class:`BitstreamError`), ``v1`` (raw
8-bit patches), ``v2`` (one offloaded image as a string: level map, hint, payload, CRC), ``packets``
(version 3: a version-2 string as independently decodable packets), ``side_info`` (the analog path's
control bits).
"""
from semcomm.wire.errors import BitstreamError
from semcomm.wire.packets import Arrival, Packetizer, WholeString

__all__ = ["Arrival", "BitstreamError", "Packetizer", "WholeString"]
