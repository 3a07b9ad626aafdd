"""Bit-level writing and reading, and enumerative coding of patch subsets.

:class:`BitWriter` / :class:`BitReader` pack unsigned fields of any width
most significant bit first, with no alignment between fields. Subsets are
coded by their rank in the combinatorial number system: a set of K of N
positions costs exactly ceil(log2 C(N, K)) bits, the least any code can
spend when every subset is equally likely. :class:`HintCode` is what the
formats need of the variable-length code of the edge's hint; :func:`as_bytes`
is how every reader takes its input (any bytes-like object of single bytes).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

import numpy as np

from semcomm.wire.errors import BitstreamError

if TYPE_CHECKING:
    import torch


BYTES_LIKE = "bytes, bytearray, memoryview or a 1-D numpy uint8 array"


def as_bytes(data: object, what: str = "a string") -> bytes:
    """``data`` as ``bytes``: any bytes-like object of single bytes (:data:`BYTES_LIKE`: a buffer of
    one dimension whose items are unsigned bytes), copied once unless it already is ``bytes``.

    Raises:
        TypeError: naming ``what`` and the accepted types, for anything else (``str``, a list of ints,
            a tensor, a numpy array of another dtype or shape, ...). A wrong type is a caller's mistake,
            not damage on a link, so it is never a :class:`BitstreamError`.
    """
    if isinstance(data, bytes):
        return data
    try:
        view = memoryview(data)
    except TypeError:
        view = None
    if view is None or view.ndim != 1 or view.format not in ("B", "c"):
        detail = "" if view is None else f" ({view.ndim}-D, items of format {view.format!r})"
        raise TypeError(f"{what} must be bytes-like ({BYTES_LIKE}), got {type(data).__name__}{detail}")
    return view.tobytes()


class BitWriter:
    """Accumulates fields MSB first; :meth:`to_bytes` zero-pads to a whole byte."""

    def __init__(self) -> None:
        self._value = 0
        self.bits = 0

    def write(self, value: int, width: int) -> None:
        value = int(value)
        if width < 0 or value < 0 or value >> width:
            raise ValueError(f"{value} does not fit in {width} bits")
        self._value = (self._value << width) | value
        self.bits += width

    def write_bytes(self, data: bytes) -> None:
        self.write(int.from_bytes(data, "big"), 8 * len(data))

    def pad_bits(self) -> int:
        """Zero bits :meth:`to_bytes` appends to reach a whole byte."""
        return -self.bits % 8

    def to_bytes(self) -> bytes:
        pad = self.pad_bits()
        return (self._value << pad).to_bytes((self.bits + pad) // 8, "big")


class BitReader:
    """Reads fields MSB first from ``data``; running past the end raises :class:`BitstreamError`."""

    def __init__(self, data: bytes, bits: int | None = None, trace: list | None = None) -> None:
        self._value = int.from_bytes(data, "big")
        self._total = 8 * len(data)
        self.limit = self._total if bits is None else bits
        self.position = 0
        self.trace = trace  # when a list: (field, start bit, width, value) of every read

    @property
    def remaining(self) -> int:
        return self.limit - self.position

    def read(self, width: int, field: str = "field") -> int:
        if width > self.remaining:
            raise BitstreamError(f"truncated: {field} needs {width} bits, {self.remaining} left")
        self.position += width
        value = (self._value >> (self._total - self.position)) & ((1 << width) - 1)
        if self.trace is not None:
            self.trace.append((field, self.position - width, width, value))
        return value

    def read_bytes(self, count: int, field: str = "field") -> bytes:
        return self.read(8 * count, field).to_bytes(count, "big")


class HintCode(Protocol):
    """The code of the edge's hint as the string formats use it (:class:`semcomm.rate.hint.HintCoder` is one):
    a row of C class symbols written as codewords, and read back."""

    def write(self, writer: BitWriter, row: torch.Tensor) -> None:
        """Append the codewords of ``row`` (C int64 symbols)."""

    def read(self, reader: BitReader, classes: int) -> torch.Tensor:
        """``classes`` int64 symbols; :class:`BitstreamError` on an invalid codeword."""


def pack_fields(values: np.ndarray, widths: np.ndarray) -> tuple[int, int]:
    """(value, bits): unsigned ``values[i]`` in ``widths[i]`` bits each (0 allowed), MSB first, concatenated
    into one integer of ``bits = sum(widths)`` bits (what :meth:`BitWriter.write` would build, in numpy)."""
    values, widths = np.asarray(values, dtype=np.int64).ravel(), np.asarray(widths, dtype=np.int64).ravel()
    if values.shape != widths.shape:
        raise ValueError(f"{len(values)} values but {len(widths)} widths")
    if len(values) and (widths.min() < 0 or widths.max() > 62 or values.min() < 0 or (values >> widths).any()):
        raise ValueError("every value must be unsigned and fit its width (0..62 bits)")
    bits = int(widths.sum())
    if bits == 0:
        return 0, 0
    top = int(widths.max())
    shifts = np.arange(top - 1, -1, -1)  # MSB first within the widest field
    planes = (values[:, None] >> shifts) & 1  # fields x top
    kept = shifts < widths[:, None]  # a field of width w keeps its last w columns
    packed = np.packbits(planes[kept].astype(np.uint8))
    return int.from_bytes(packed.tobytes(), "big") >> (-bits % 8), bits


def unpack_fields(value: int, widths: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_fields`: the int64 fields of ``widths`` bits each from a ``sum(widths)``-bit value."""
    widths = np.asarray(widths, dtype=np.int64).ravel()
    bits = int(widths.sum())
    if bits == 0:
        return np.zeros(len(widths), dtype=np.int64)
    pad = -bits % 8
    stream = np.unpackbits(np.frombuffer((value << pad).to_bytes((bits + pad) // 8, "big"), dtype=np.uint8))
    top = int(widths.max())
    shifts = np.arange(top - 1, -1, -1)
    kept = shifts < widths[:, None]
    planes = np.zeros((len(widths), top), dtype=np.int64)
    planes[kept] = stream[:bits]
    return (planes << shifts).sum(1)


def width_for(count: int) -> int:
    """Bits of a field holding one of ``count`` values (0 when there is only one)."""
    return max(0, (count - 1).bit_length())


@lru_cache(maxsize=None)
def _binomial(n: int, k: int) -> int:
    return math.comb(n, k)


def subset_bits(n: int, k: int) -> int:
    """ceil(log2 C(n, k)): the size of the rank of a k-subset of n."""
    return width_for(_binomial(n, k))


def subset_rank(positions: list[int], n: int) -> int:
    """Rank in [0, C(n, k)) of ascending ``positions`` (a k-subset of range(n)), lexicographic order.

    The subsets whose i-th element is some j between the previous element and
    ``positions[i]`` come first: sum over those j of C(n - j - 1, k - i - 1),
    which telescopes (hockey stick) to C(n - prev - 1, k - i) - C(n - p_i, k - i).
    """
    rank, previous = 0, -1
    k = len(positions)
    for i, p in enumerate(positions):
        rank += _binomial(n - previous - 1, k - i) - _binomial(n - p, k - i)
        previous = p
    return rank


def subset_unrank(rank: int, n: int, k: int) -> list[int]:
    """Inverse of :func:`subset_rank`; a rank out of range raises :class:`BitstreamError`."""
    if not 0 <= rank < _binomial(n, k):
        raise BitstreamError(f"corrupted: subset rank {rank} is out of range for {k} of {n} positions")
    positions, candidate = [], 0
    for i in range(k):
        while True:
            block = _binomial(n - candidate - 1, k - i - 1)
            if rank < block:
                break
            rank -= block
            candidate += 1
        positions.append(candidate)
        candidate += 1
    return positions
