"""Codec pairs whose strings are version-2 frames: level map, hint, entropy-coded payload, CRC.

The framing (:mod:`semcomm.wire.v2`: level map, hint, rANS or fixed-length payload, CRC) is shared
by every such pair and lives in :class:`FramedPair`; each pair implements a few small methods: what
its symbols are (:meth:`FramedPair.symbols`), which table codes each (:meth:`~FramedPair.table_indexes`)
and what they stand for (:meth:`~FramedPair.dequantize`). :class:`TableCodedPair` adds the common case
of V symbols per patch, one table per (level, value), optionally switched among several fitted sets.

Compressing is two steps: :meth:`FramedPair.frames` gives each image's frame fields and symbols
(:class:`FrameSymbols`), :meth:`FramedPair.pack` codes one image's payload whole and frames it. The
edge keeps the first step's output, so that a link cuts packets from the symbols
(:class:`~semcomm.rate.packetize.Packetizer`) without decoding the string.

Shapes: source B x N x V; level B x N int64 (0 = not sent); per image, the K sent patches'
symbols flattened in position order.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import replace
from functools import cached_property
from typing import NamedTuple

import numpy as np
import torch

from semcomm.rate.entropy import SetCosts, SymbolTables, rans_decode, rans_encode
from semcomm.rate.pair import CodecPair, Received
from semcomm.wire import v2 as fmt
from semcomm.wire.bits import pack_fields, unpack_fields, width_for
from semcomm.wire.errors import BitstreamError


class FrameSymbols(NamedTuple):
    """One image as its version-2 string is coded from it, before its payload is coded.

    Attributes:
        frame: its level map (N ints), edge hint (C symbols, or None) and codec parameters; the payload
            fields are left empty.
        symbols: the K x V symbols of its K sent patches, flat (int64), in coding order (position order).
        indexes: the table index of each symbol (int64, same length).
    """

    frame: fmt.Frame
    symbols: np.ndarray
    indexes: np.ndarray


class FramedPair(CodecPair):
    """A codec pair writing version-2 strings (see the module docstring).

    Subclasses set ``name``, ``layout`` (codec id, N, L, parameters), ``tables`` (or
    ``layout.entropy_coded = False``) and implement :meth:`source`, :meth:`symbols`,
    :meth:`table_indexes`, :meth:`dequantize` and :meth:`server_logits`.
    """

    version = fmt.VERSION
    layout: fmt.Layout
    tables: SymbolTables | None = None

    @property
    def num_patches(self) -> int:
        return self.layout.num_patches

    @property
    def levels(self) -> int:
        return self.layout.levels

    # ---- what each pair defines ----------------------------------------------------------------
    @abstractmethod
    def symbols(self, source: torch.Tensor, level: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray, tuple]]:
        """Per image: (symbols, table indexes, codec parameters) of its sent patches, in position order.
        Levels outside 1..L are coded as their nearest level (the string format then refuses the map)."""

    @abstractmethod
    def table_indexes(self, level: np.ndarray, params: tuple) -> np.ndarray:
        """Table index of every payload symbol, in coding order, from the K sent patches' levels."""

    @abstractmethod
    def dequantize(self, symbols: np.ndarray, level: np.ndarray, params: tuple) -> torch.Tensor:
        """K x V float32 values of the sent patches (levels ``level``, K int64) from their symbols."""

    def tables_for(self, params: tuple) -> SymbolTables:
        """The tables an image's payload is coded with (its codec parameters may choose among several)."""
        return self.tables

    def fixed_length(self, indexes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(offsets, widths) of the fixed-length code used when entropy coding is off: each symbol
        is written as ``symbol - offset`` in ``width`` bits, just enough for its table's range
        (values outside it are clipped)."""
        if self.tables is None:
            raise NotImplementedError(f"{self.name} has no tables to size a fixed-length code")
        span = self.tables.lengths.numpy()[indexes].astype(np.int64) - 2
        widths = np.ceil(np.log2(np.maximum(span, 1))).astype(np.int64)
        return self.tables.offsets.numpy()[indexes].astype(np.int64), widths

    def raw_payload_bits(self, layout: fmt.Layout, level: list[int]) -> int:
        """Bits of a fixed-length (not entropy-coded) payload for a level map."""
        sent = np.asarray([m for m in level if m > 0], dtype=np.int64)
        return int(self.fixed_length(self.table_indexes(sent, ()))[1].sum())

    # ---- the contract ----------------------------------------------------------------------------
    def frames(self, source: torch.Tensor, level: torch.Tensor | None = None,
               hint: torch.Tensor | None = None) -> list[FrameSymbols]:
        """What each image's string is coded from, before any payload is coded: its frame and symbols.

        The one check of the level map (a B x N integer tensor) is here; its values are checked where a
        string or packet writes them. :meth:`compress` codes each payload whole; a
        :class:`~semcomm.rate.packetize.Packetizer` cuts the symbols into packets.

        Args:
            source: B x N x V from :meth:`source`.
            level: B x N levels in 0..L; every image sends at least one patch.
            hint: B x C hint symbols (:meth:`HintCoder.symbols`), or None for no fusion.
        """
        self._check_level(level, len(source))
        return [FrameSymbols(fmt.Frame(self.layout.codec_id, level[i].tolist(), None if hint is None else hint[i],
                                       params), symbols, indexes)
                for i, (symbols, indexes, params) in enumerate(self.symbols(source, level))]

    def pack(self, coded: FrameSymbols) -> bytes:
        """The version-2 string of one image (:meth:`frames`): its payload coded whole (rANS, or the
        fixed-length code when entropy coding is off), framed, CRC included."""
        frame, symbols, indexes = coded
        if self.layout.entropy_coded:
            state_code, payload = rans_encode(self.tables_for(frame.params), symbols, indexes)
            frame = replace(frame, state_code=state_code, payload=payload)
        else:
            offsets, widths = self.fixed_length(indexes)
            payload, payload_bits = pack_fields(np.clip(symbols - offsets, 0, (1 << widths) - 1), widths)
            frame = replace(frame, payload=payload, payload_bits=payload_bits)
        return fmt.pack(self.layout, frame, self.hint_coder)

    def compress(self, source: torch.Tensor, level: torch.Tensor | None = None,
                 hint: torch.Tensor | None = None) -> list[bytes]:
        """One version-2 string per image (arguments as :meth:`frames`)."""
        return [self.pack(coded) for coded in self.frames(source, level, hint)]

    def decompress(self, strings: Sequence[bytes]) -> list[Received]:
        """Parse and dequantize each string; :class:`BitstreamError` if one is malformed or corrupted."""
        return [self._received(string) for string in strings]

    def with_hint(self, string: bytes, hint: torch.Tensor | None) -> bytes:
        """The same string with the edge hint ``hint`` (C symbols; None: without one): re-framed, the
        payload untouched, so no re-encoding."""
        frame = self._frame(string)
        frame.hint = hint
        return fmt.pack(self.layout, frame, self.hint_coder)

    def _frame(self, string: bytes) -> fmt.Frame:
        return fmt.unpack(string, {self.layout.codec_id: self.layout}, self.raw_payload_bits, self.hint_coder,
                          self.num_classes)

    def _received(self, string: bytes) -> Received:
        frame = self._frame(string)
        level = np.asarray(frame.level, dtype=np.int64)
        positions = np.flatnonzero(level)
        sent = level[positions]
        indexes = self.table_indexes(sent, frame.params)
        if self.layout.entropy_coded:
            tables = self.tables_for(frame.params)
            symbols = np.asarray(rans_decode(tables, frame.state_code, frame.payload, indexes), dtype=np.int64)
        else:
            offsets, widths = self.fixed_length(indexes)
            symbols = unpack_fields(frame.payload, widths) + offsets
        return Received(torch.from_numpy(positions), torch.from_numpy(sent),
                        self.dequantize(symbols, sent, frame.params), frame.hint)


class TableCodedPair(FramedPair):
    """A pair whose patches are V symbols each, quantized at the patch's level, symbol v of level m
    coded with table (m - 1) V + v. Subclasses set ``values_per_patch`` and implement :meth:`quantize`.

    Switched tables (optional, ``table_sets``): S alternative sets of the same
    L x V tables, each fitted to one class of training images (smooth,
    textured, ...). The edge codes each image with the set that gives its
    sent symbols the fewest bits and writes the set's index as the codec
    parameter (w(S) bits, counted); ``tables`` (one set fitted to all
    images) still sizes the fixed-length code and gives the per-patch rate
    estimates that the allocation solvers budget with.
    """

    values_per_patch: int
    table_sets: list[SymbolTables] | None = None

    @abstractmethod
    def quantize(self, source: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """B x N x V int64 symbols of every patch at ``level`` (B x N; level 0 treated as 1)."""

    @staticmethod
    def switched_widths(table_sets: list[SymbolTables] | None, entropy_coded: bool = True) -> tuple[int, ...]:
        """The codec-parameter field of switched tables: one w(S)-bit set index, or none."""
        return (max(1, width_for(len(table_sets))),) if table_sets and entropy_coded else ()

    @property
    def switched(self) -> bool:
        """Whether strings name one of several table sets (entropy-coded pairs with ``table_sets``)."""
        return bool(self.table_sets) and self.layout.entropy_coded

    @cached_property
    def _set_costs(self) -> SetCosts:
        """Prices a string's symbols under every table set at once (built on first use)."""
        return SetCosts(self.table_sets)

    def tables_for(self, params):
        if not self.switched:
            return self.tables
        if params[0] >= len(self.table_sets):
            raise BitstreamError(f"corrupted: table set {params[0]} of {len(self.table_sets)}")
        return self.table_sets[params[0]]

    def table_index(self, level: torch.Tensor) -> torch.Tensor:
        """(... x V) table of each symbol of patches at ``level`` (levels outside 1..L: the nearest level's)."""
        v = self.values_per_patch
        return (level.clamp(1, self.levels) - 1)[..., None] * v + torch.arange(v, device=level.device)

    def symbols(self, source, level):
        q, index, sent = self.quantize(source, level), self.table_index(level), level > 0
        if self.switched:  # the cheapest set for each image's sent symbols
            cost = self._set_costs(q[sent], index[sent]).sum(1)  # M x S
            costs = torch.zeros(len(q), len(self.table_sets), dtype=torch.float64, device=q.device)
            costs.index_add_(0, sent.nonzero()[:, 0], cost)
            choice = costs.argmin(1).tolist()
        q, index, sent = q.numpy(), index.numpy(), sent.numpy()
        return [(q[i][sent[i]].ravel(), index[i][sent[i]].ravel(),
                 (choice[i],) if self.switched else ()) for i in range(len(q))]

    def level_costs(self, source):
        b, n, _ = source.shape
        level = torch.arange(1, self.levels + 1, device=source.device).expand(b * n, -1).reshape(b, n * self.levels)
        flat = source.repeat_interleave(self.levels, dim=1)  # every patch at every level, in one pass
        cost = self.tables.cost(self.quantize(flat, level), self.table_index(level)).sum(-1).view(b, n, self.levels)
        return torch.cat([torch.zeros(b, n, 1, dtype=torch.float64, device=cost.device), cost], -1)

    def table_indexes(self, level, params):
        return ((level - 1)[:, None] * self.values_per_patch + np.arange(self.values_per_patch)).ravel()
