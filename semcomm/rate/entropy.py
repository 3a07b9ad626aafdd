"""Static probability tables and CompressAI's rANS coder, with every bit counted.

A :class:`SymbolTables` holds T quantized CDFs (16-bit precision, CompressAI's
layout: each table covers ``length - 2`` symbols starting at ``offset``, plus
an escape symbol through which out-of-range values are coded exactly). The
tables come from a trained ``EntropyBottleneck`` or are fitted to symbol
counts on a training split; either way they belong to the codec pair and
ship with it, so both ends code with identical tables.

CompressAI's rANS writes its 64-bit final state as 8 bytes ahead of its
32-bit words. The state always lies in [2^31, 2^64), so :func:`rans_encode`
stores it in 4..8 bytes with its length (3 bits) in the caller's header
instead: about 2 bytes saved per string. What remains of the coder's
overhead, 31 bits per string (the initial state it flushes) plus rounding
to a whole byte, is real and counted (:meth:`SymbolTables.string_bits`).

Two guards around the compiled coder: its encoder sizes its output buffer
at one 32-bit word per symbol and overflows the heap on strings of fewer
than about four symbols, so every string ends in :data:`PAD_SYMBOLS`
near-certain symbols (2^-16 of a bit each) from a table of their own; and
its decoder reads words without bounds checks, so it is handed the data
followed by one zero word per symbol.

The compiled decoder reads only the words it needs and reports neither how
many it read nor its final state, so words appended to a string (or any
other bytes that decode to the same symbols) would pass unseen. A string
is accepted only as exactly what the encoder writes for the symbols it
decodes to (:func:`check_exact`): its payload is consumed exactly and the
decoder ends in the encoder's initial state. The encoder is deterministic,
so every string it wrote passes.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

with warnings.catch_warnings():  # CompressAI's import pulls in torch_geometric, which calls torch.jit.script
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)
    from compressai import ans
    from compressai.entropy_models.entropy_models import pmf_to_quantized_cdf

from semcomm.core.devices import as_tensor
from semcomm.wire.errors import BitstreamError

PRECISION = 16
PAD_SYMBOLS = 4
# the largest value CompressAI's coder bypasses correctly: its encoder counts the 4-bit groups of a raw int32 value
# with a shift that is undefined (and loops forever) from 32 bits up, and its decoder builds values that overflow
MAX_BYPASS = 2 ** 28 - 1
# what rans_encode writes beyond -sum log2 p: the coder starts from the state 2^31, whose 31 bits carry no
# information, and the compacted state ends on a whole byte (0..7 bits, about 4 on average)
FLUSH_BITS = 31
MEAN_ROUNDING_BITS = 4
_PAD_CDF = [0, 2 ** PRECISION - 1, 2 ** PRECISION]  # one symbol (0) with probability 1 - 2^-16, and the escape
_ENCODER, _DECODER = ans.RansEncoder(), ans.RansDecoder()


@dataclass
class SymbolTables:
    """T quantized CDFs for CompressAI's rANS coder.

    Attributes:
        cdfs: T x S int32, each row a CDF in 16-bit precision padded with
            its last value (row ``t`` is valid up to ``lengths[t]``).
        lengths: T int32, CDF lengths (symbols + escape + 1).
        offsets: T int32, the symbol value of each table's first entry.
    """

    cdfs: torch.Tensor
    lengths: torch.Tensor
    offsets: torch.Tensor

    def __post_init__(self) -> None:
        # the coder's own (ragged) lists, with the padding table last (index T); the coder converts
        # them on every call, so no row carries padding
        cdfs = [row[:length] for row, length in zip(self.cdfs.tolist(), self.lengths.tolist())]
        self._lists = (cdfs + [_PAD_CDF], self.lengths.tolist() + [len(_PAD_CDF)], self.offsets.tolist() + [0])
        widths = (self.cdfs[:, 1:] - self.cdfs[:, :-1]).double()
        # bits of every in-range symbol (and the escape) of every table, flat: table t's start at _starts[t]
        cost = -torch.log2(widths.clamp_min(1) / 2 ** PRECISION)
        spans = self.lengths.long() - 1
        self._starts = torch.cat([spans.new_zeros(1), spans.cumsum(0)[:-1]])
        self._flat_cost = torch.cat([cost[t, : int(n)] for t, n in enumerate(spans)]).float()
        self._offsets_long, self._last = self.offsets.long(), self.lengths.long() - 2

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def from_pmfs(cls, pmfs: list[torch.Tensor], offsets: list[int]) -> "SymbolTables":
        """Tables from probability vectors (each over consecutive symbols from its offset).

        Every symbol keeps a non-zero probability and an escape symbol gets
        2^-16 at least, so any value stays codable.
        """
        cdfs = []
        for pmf in pmfs:
            pmf = pmf.double().clamp_min(0)
            pmf = pmf / pmf.sum()
            cdfs.append(pmf_to_quantized_cdf(torch.cat([pmf, pmf.new_tensor([2.0 ** -PRECISION])]).float(), PRECISION))
        return cls.from_cdfs(cdfs, offsets)

    @classmethod
    def fit(cls, symbols: np.ndarray, indexes: np.ndarray, tables: int, prior: float = 0.05) -> "SymbolTables":
        """``tables`` tables fitted to observed symbols (each with its table index): each table spans
        the values seen for it, every value in that span gets ``prior`` more than its count (so
        unseen inner values stay cheap to code), values outside go through the escape."""
        symbols, indexes = np.asarray(symbols, dtype=np.int64).ravel(), np.asarray(indexes, dtype=np.int64).ravel()
        if len(symbols) != len(indexes) or (indexes < 0).any() or (indexes >= tables).any():
            raise ValueError(f"symbols and table indexes (in 0..{tables - 1}) must pair up")
        lows = np.full(tables, np.iinfo(np.int64).max)
        highs = np.full(tables, np.iinfo(np.int64).min)
        np.minimum.at(lows, indexes, symbols)
        np.maximum.at(highs, indexes, symbols)
        unseen = lows > highs
        lows[unseen], highs[unseen] = 0, 0
        spans = highs - lows + 1
        starts = np.concatenate([[0], np.cumsum(spans)[:-1]])
        counts = np.bincount(starts[indexes] + symbols - lows[indexes], minlength=int(spans.sum())).astype(np.float64)
        pmfs = [torch.from_numpy(counts[a : a + n] + prior) for a, n in zip(starts, spans)]
        return cls.from_pmfs(pmfs, lows.tolist())

    @classmethod
    def from_cdfs(cls, cdfs: list[torch.Tensor], offsets: list[int]) -> "SymbolTables":
        width = max(len(c) for c in cdfs)
        table = torch.stack([torch.cat([c, c[-1:].expand(width - len(c))]) for c in cdfs]).int()
        return cls(table, torch.tensor([len(c) for c in cdfs], dtype=torch.int32, device=table.device),
                   torch.tensor(offsets, dtype=torch.int32, device=table.device))

    @classmethod
    def from_entropy_bottlenecks(cls, models) -> "SymbolTables":
        """The tables of CompressAI ``EntropyBottleneck`` s (``update()``-d), one per channel, in order."""
        cdfs, offsets = [], []
        for model in models:
            model.update(force=True)
            for c in range(model.channels):
                cdfs.append(model._quantized_cdf[c, : int(model._cdf_length[c])])
                offsets.append(int(model._offset[c]))
        return cls.from_cdfs(cdfs, offsets)

    @classmethod
    def concat(cls, *tables: "SymbolTables") -> "SymbolTables":
        """One set of tables from several (indexes of the later ones shift by the earlier sizes)."""
        cdfs = [t.cdfs[i, : int(t.lengths[i])] for t in tables for i in range(len(t))]
        return cls.from_cdfs(cdfs, [int(o) for t in tables for o in t.offsets])

    def split(self, parts: int) -> list["SymbolTables"]:
        """``parts`` sets of len(self) / parts consecutive tables each (the inverse of :meth:`concat`)."""
        if parts < 1 or len(self) % parts:
            raise ValueError(f"{len(self)} tables do not split into {parts} equal sets")
        size = len(self) // parts
        return [SymbolTables.from_cdfs([self.cdfs[i, : int(self.lengths[i])] for i in range(a, a + size)],
                                       self.offsets[a : a + size].tolist()) for a in range(0, len(self), size)]

    def state_dict(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tables as three int32 tensors: every CDF back to back (no padding), lengths, offsets."""
        flat = torch.cat([self.cdfs[i, : int(n)] for i, n in enumerate(self.lengths)])
        return {f"{prefix}cdfs": flat.int(), f"{prefix}lengths": self.lengths, f"{prefix}offsets": self.offsets}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], prefix: str) -> "SymbolTables":
        flat, lengths, offsets = (state[f"{prefix}{k}"].int() for k in ("cdfs", "lengths", "offsets"))
        if int(lengths.sum()) != len(flat) or (lengths < 3).any():
            raise ValueError(f"tables {prefix!r}: CDF lengths do not add up to the stored CDF values")
        return cls.from_cdfs(list(flat.split(lengths.tolist())), offsets.tolist())

    def cost(self, symbols: torch.Tensor, indexes: torch.Tensor) -> torch.Tensor:
        """Ideal code length in bits (-log2 p) of each symbol under its table (same shape); a value
        outside a table's range costs its escape symbol plus the coder's bypass bits (:func:`bypass_bits`).
        An estimate, not what :func:`rans_encode` writes."""
        symbols, indexes = as_tensor(symbols, torch.long), as_tensor(indexes, torch.long)
        value = symbols - self._offsets_long[indexes]
        last = self._last[indexes]
        outside = (value < 0) | (value >= last)
        cost = self._flat_cost[self._starts[indexes] + torch.where(outside, last, value)].double()
        if outside.any():
            v, top = value[outside], last[outside]
            cost[outside] += bypass_bits(torch.where(v < 0, -2 * v - 1, 2 * (v - top)))
        return cost

    def estimated_bits(self, symbols, indexes) -> float:
        """Sum of :meth:`cost`: the model's estimate of a payload's bits (coder overhead excluded)."""
        return float(self.cost(symbols, indexes).sum()) if len(symbols) else 0.0

    def string_bits(self, symbols, indexes) -> float:
        """The model's estimate of the payload :func:`rans_encode` writes for these symbols, in bits:
        :meth:`estimated_bits` plus the coder's flush (:data:`FLUSH_BITS`) and mean byte rounding
        (real strings land within 4 bits of it); 0 for no symbols."""
        return self.estimated_bits(symbols, indexes) + FLUSH_BITS + MEAN_ROUNDING_BITS if len(symbols) else 0.0

    def encode(self, symbols, indexes) -> tuple[int, bytes]:
        """(state length code, bytes) of the symbols; see :func:`rans_encode`."""
        return rans_encode(self, symbols, indexes)

    def decode(self, state_code: int, data: bytes, indexes) -> list[int]:
        return rans_decode(self, state_code, data, indexes)


class SetCosts:
    """Code lengths of symbols under each of S sets of T tables at once, for choosing a set per string.

    Holds, for every table index t, the cost of every value v in the window
    spanned by t in any set, under each set (float32, T x W x S; escape and
    bypass bits included), so one gather prices a symbol under all S sets;
    values beyond the window fall back to :meth:`SymbolTables.cost`.
    """

    def __init__(self, sets: list[SymbolTables]):
        self.sets, tables = len(sets), len(sets[0])
        self._stacked = SymbolTables.concat(*sets)
        offsets = torch.stack([t.offsets.long() for t in sets])  # S x T
        tops = torch.stack([t.offsets.long() + t.lengths.long() - 2 for t in sets])
        self._low = offsets.amin(0)  # T
        width = int((tops.amax(0) - self._low).max()) + 1
        values = self._low[:, None] + torch.arange(width, device=offsets.device)  # T x W
        shift = tables * torch.arange(self.sets, device=offsets.device)
        index = torch.arange(tables, device=offsets.device)[None, :, None] + shift[:, None, None]
        dense = self._stacked.cost(values[None].expand(self.sets, -1, -1), index.expand(-1, -1, width))
        self._dense = dense.permute(1, 2, 0).reshape(tables * width, self.sets).float().contiguous()
        self._width, self._tables = width, tables

    def __call__(self, symbols: torch.Tensor, indexes: torch.Tensor) -> torch.Tensor:
        """(... x S) bits of each symbol under each set (float64)."""
        symbols, indexes = as_tensor(symbols, torch.long), as_tensor(indexes, torch.long)
        slot = symbols - self._low[indexes]
        inside = (slot >= 0) & (slot < self._width)
        cost = self._dense[indexes * self._width + slot.clamp(0, self._width - 1)].double()
        if not inside.all():
            shift = self._tables * torch.arange(self.sets, device=indexes.device)
            v, t = symbols[~inside][:, None], indexes[~inside][:, None] + shift
            cost[~inside] = self._stacked.cost(v.expand_as(t), t)
        return cost


def bypass_bits(raw: torch.Tensor) -> torch.Tensor:
    """Bits CompressAI's coder spends on an escaped value beyond its escape symbol: the folded value
    ``raw`` (``-2 v - 1`` below the table, ``2 (v - top)`` above) in n 4-bit chunks, after n itself
    in 4-bit chunks of at most 15 (float64, same shape)."""
    raw = raw.double()
    nibbles = torch.where(raw > 0, torch.floor(torch.log2(raw.clamp_min(1)) / 4) + 1, 0.0)
    return 4 * (torch.floor(nibbles / 15) + 1) + 4 * nibbles


def rans_encode(tables: SymbolTables, symbols, indexes) -> tuple[int, bytes]:
    """Code ``symbols`` (each with the table of the same position in ``indexes``).

    Returns ``(state_code, data)``: ``data`` is the compacted rANS string and
    ``state_code`` in 0..4 its state's byte length minus 4, which the caller
    stores in a :data:`~semcomm.wire.v2.STATE_LENGTH_BITS`-bit field. No symbols: ``(0, b"")``.
    """
    symbols, indexes = np.asarray(symbols, dtype=np.int64).tolist(), np.asarray(indexes, dtype=np.int64).tolist()
    if len(symbols) != len(indexes):
        raise ValueError(f"{len(symbols)} symbols but {len(indexes)} table indexes")
    if not symbols:
        return 0, b""
    if min(indexes) < 0 or max(indexes) >= len(tables):
        raise ValueError(f"table indexes must lie in [0, {len(tables)})")
    check_codable(tables, symbols, indexes)
    local, cdfs, lengths, offsets = used_tables(tables, indexes + [len(tables)] * PAD_SYMBOLS)
    raw = _ENCODER.encode_with_indexes(symbols + [0] * PAD_SYMBOLS, local, cdfs, lengths, offsets)
    state = int.from_bytes(raw[:8], "little")
    size = max(4, (state.bit_length() + 7) // 8)
    return size - 4, state.to_bytes(size, "big") + raw[8:]


def rans_decode(tables: SymbolTables, state_code: int, data: bytes, indexes) -> list[int]:
    """Inverse of :func:`rans_encode`; malformed data raises :class:`BitstreamError`.

    A corrupted string mostly decodes to wrong symbols rather than failing (the
    bitstream's CRC is what detects it); a string that is not exactly what the
    encoder writes for the symbols it decodes to, e.g. with words appended,
    raises (:func:`check_exact`).
    """
    indexes = np.asarray(indexes, dtype=np.int64).tolist()
    if not indexes:
        if data:
            raise BitstreamError(f"corrupted: {len(data)} payload bytes where no symbols are expected")
        return []
    stream = decoder_stream(state_code, data, len(indexes))
    if max(indexes) >= len(tables) or min(indexes) < 0:
        raise BitstreamError("corrupted: a symbol refers to a table that does not exist")
    indexes = indexes + [len(tables)] * PAD_SYMBOLS
    local, cdfs, lengths, offsets = used_tables(tables, indexes)
    values = _DECODER.decode_with_indexes(stream, local, cdfs, lengths, offsets)
    if values[-PAD_SYMBOLS:] != [0] * PAD_SYMBOLS:
        raise BitstreamError("corrupted: the rANS payload does not end in its padding symbols")
    check_exact(tables, values[:-PAD_SYMBOLS], indexes[:-PAD_SYMBOLS], state_code, data)
    return values[:-PAD_SYMBOLS]


def decoder_stream(state_code: int, data: bytes, symbols: int) -> bytes:
    """What CompressAI's decoder reads for a compacted string of ``symbols`` symbols (padding symbols aside):
    the state back in 8 little-endian bytes, the words, and a zero guard (the compiled decoder reads words
    without bounds checks). :class:`BitstreamError` where the state or the word count is malformed."""
    size = state_code + 4
    if not 0 <= state_code <= 4 or len(data) < size or (len(data) - size) % 4:
        raise BitstreamError(f"corrupted: rANS payload of {len(data)} bytes with a {size}-byte state")
    state = int.from_bytes(data[:size], "big")
    if state < 2 ** 31:
        raise BitstreamError("corrupted: rANS state below its lower bound")
    return state.to_bytes(8, "little") + bytes(data[size:]) + bytes(4 * (symbols + PAD_SYMBOLS))


def used_tables(tables: SymbolTables, indexes: list[int]) -> tuple[list[int], list, list, list]:
    """``indexes`` renumbered over the tables they use (the padding table is index ``len(tables)``), and those
    tables' CDFs, lengths and offsets: the compiled coder converts every table it is given on each call, and
    the bits depend only on each symbol's own table."""
    used, local = np.unique(np.asarray(indexes, dtype=np.int64), return_inverse=True)
    cdfs, lengths, offsets = tables._lists
    return local.tolist(), [cdfs[t] for t in used], [lengths[t] for t in used], [offsets[t] for t in used]


def check_codable(tables: SymbolTables, symbols: list[int], indexes: list[int]) -> None:
    """ValueError unless every symbol is in its table's range or escapes it by at most :data:`MAX_BYPASS` (folded:
    below the range ``-2 v - 1``, above it ``2 (v - top)``), the values the coder writes and reads back exactly."""
    value = np.asarray(symbols, dtype=np.int64) - np.asarray(tables._lists[2], dtype=np.int64)[indexes]
    top = np.asarray(tables._lists[1], dtype=np.int64)[indexes] - 2
    raw = np.where(value < 0, -2 * value - 1, np.where(value >= top, 2 * (value - top), 0))
    if len(raw) and raw.max() > MAX_BYPASS:
        worst = int(raw.argmax())
        raise ValueError(f"symbol {symbols[worst]} (table {indexes[worst]}) lies beyond what the entropy coder "
                         f"bypasses exactly (folded escape value {int(raw[worst])} > {MAX_BYPASS})")


def check_exact(tables: SymbolTables, symbols, indexes, state_code: int, data: bytes) -> None:
    """:class:`BitstreamError` unless ``(state_code, data)`` is exactly what :func:`rans_encode` writes for
    ``symbols`` (decoded from it, each with its table index): no bytes after the last word the decoder
    needs, no state in more bytes than it takes, nothing the encoder would not have written."""
    symbols, indexes = np.asarray(symbols, dtype=np.int64).tolist(), np.asarray(indexes, dtype=np.int64).tolist()
    try:
        check_codable(tables, symbols, indexes)
    except ValueError as err:  # a value no encoder writes: decoded from damaged or forged bytes
        raise BitstreamError(f"corrupted: {err}") from None
    if rans_encode(tables, symbols, indexes) != (state_code, bytes(data)):
        raise BitstreamError(f"corrupted: the {len(data)}-byte rANS payload is not the one its symbols code to "
                             f"(bytes after its last word, or a state longer than it needs)")


def ideal_bits(probabilities: torch.Tensor) -> float:
    """-sum log2 p: the ideal code length of events with these probabilities (an estimate)."""
    return float(-torch.log2(probabilities.double()).sum()) if probabilities.numel() else 0.0


