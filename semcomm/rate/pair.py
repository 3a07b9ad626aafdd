"""A codec pair: what an edge writes into a version-2 string and how its server reads it.

A :class:`CodecPair` owns both halves of one payload format: on the edge, it
turns each image's *source* (pixels, or the edge ViT's tokens) and a level
map into symbols; on the server, it turns symbols back into values and
classifies. The framing (level map, hint, rANS, CRC) is shared by all
pairs and lives here; each pair implements five small methods.

Pairs are registered by name (``@register_codec``), built with
:func:`create_codec` and listed by :func:`list_codecs`, like timm's models.

Shapes: source B x N x V (V values per patch); level B x N int64 (0 = not
sent); a :class:`Received` holds K sent patches of one image.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np
import torch

from semcomm.wire.errors import BitstreamError
from semcomm.inference import autocast
from semcomm.wire import v2 as fmt
from semcomm.wire.bits import pack_fields, unpack_fields, width_for
from semcomm.rate.entropy import SetCosts, SymbolTables, rans_decode, rans_encode
from semcomm.rate.hint import HintCoder, fuse


@dataclass
class Received:
    """What the server recovered of one image.

    Attributes:
        positions: K int64 patch indices (ascending).
        level: K int64 levels (1..L).
        values: K x V float32 dequantized values per patch.
        hint: the edge's C hint symbols (int64), or None.
    """

    positions: torch.Tensor
    level: torch.Tensor
    values: torch.Tensor
    hint: torch.Tensor | None = None


class CodecPair(ABC):
    """Both halves of one version-2 payload format (see the module docstring).

    Subclasses set ``name``, ``layout`` (codec id, N, L, parameters),
    ``tables`` (or ``layout.entropy_coded = False``) and implement
    :meth:`source`, :meth:`symbols`, :meth:`table_indexes`,
    :meth:`dequantize` and :meth:`server_logits`.
    """

    name: str
    layout: fmt.Layout
    tables: SymbolTables | None = None
    distortion: torch.Tensor | None = None  # (L + 1) measured error of a patch at each level (0: not sent)
    hint_coder: HintCoder | None = None
    num_classes: int = 10
    bf16: bool = True

    # ---- the edge half ------------------------------------------------------------------------
    tap: int | None = None  # the edge block whose tokens :meth:`source` needs (None: pixels)

    @abstractmethod
    def source(self, images: torch.Tensor, hidden: torch.Tensor | None) -> torch.Tensor:
        """B x N x V values to code per patch, from uint8 images or the edge's tokens after block ``tap``."""

    @abstractmethod
    def symbols(self, source: torch.Tensor, level: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray, tuple]]:
        """Per image: (symbols, table indexes, codec parameters) of its sent patches, in position order."""

    def rates(self, source: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """B x N x (L + 1) estimated payload bits of each patch at each level (column 0 = 0), for allocation;
        only the patches in ``mask`` (B x N, default all) are estimated, the others read 0.

        Made non-decreasing in the level (a running maximum: where a finer level
        happens to be cheaper for a patch, the budget is charged the coarser
        level's cost), as the allocation solvers require.
        """
        b, n = source.shape[:2]
        if mask is None:
            return self.level_costs(source).cummax(-1).values
        out = torch.zeros(b, n, self.levels + 1, dtype=torch.float64)
        out[mask] = self.level_costs(source[mask][None])[0].cummax(-1).values
        return out

    def level_costs(self, source: torch.Tensor) -> torch.Tensor:
        """B x N x (L + 1) the codec's own estimate of each patch's payload bits at each level."""
        raise NotImplementedError(f"{self.name} has no per-patch rate model")

    # ---- the server half ----------------------------------------------------------------------
    @abstractmethod
    def table_indexes(self, level: np.ndarray, params: tuple) -> np.ndarray:
        """Table index of every payload symbol, in coding order, from the K sent patches' levels."""

    @abstractmethod
    def dequantize(self, symbols: np.ndarray, level: np.ndarray, params: tuple) -> torch.Tensor:
        """K x V float32 values of the sent patches (levels ``level``, K int64) from their symbols."""

    @abstractmethod
    def server_logits(self, values: torch.Tensor, positions: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """B x C logits of the server from B x K x V values at B x K positions and levels."""

    # ---- shared framing -----------------------------------------------------------------------
    @property
    def num_patches(self) -> int:
        return self.layout.num_patches

    @property
    def levels(self) -> int:
        return self.layout.levels

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

    def encode(self, source: torch.Tensor, level: torch.Tensor, hint: torch.Tensor | None = None) -> list[bytes]:
        """One version-2 string per image.

        Args:
            source: B x N x V from :meth:`source`.
            level: B x N levels; every image sends at least one patch.
            hint: B x C hint symbols (:meth:`HintCoder.symbols`), or None for no fusion.
        """
        self._check_level(level, len(source))
        strings = []
        for i, (symbols, indexes, params) in enumerate(self.symbols(source, level)):
            frame = fmt.Frame(self.layout.codec_id, level[i].tolist(), None if hint is None else hint[i], params)
            if self.layout.entropy_coded:
                frame.state_code, frame.payload = rans_encode(self.tables_for(params), symbols, indexes)
            else:
                offsets, widths = self.fixed_length(indexes)
                values = np.clip(symbols - offsets, 0, (1 << widths) - 1)
                frame.payload, frame.payload_bits = pack_fields(values, widths)
            strings.append(fmt.pack(self.layout, frame, self.hint_coder))
        return strings

    def with_hint(self, string: bytes, hint: torch.Tensor | None) -> bytes:
        """The same string with the edge hint ``hint`` (C symbols; None: without one): re-framed, the
        payload untouched, so no re-encoding."""
        frame = fmt.unpack(string, {self.layout.codec_id: self.layout}, self.raw_payload_bits, self.hint_coder,
                           self.num_classes)
        frame.hint = hint
        return fmt.pack(self.layout, frame, self.hint_coder)

    def decode(self, string: bytes) -> Received:
        """Parse and dequantize one string; :class:`BitstreamError` if it is malformed or corrupted."""
        frame = fmt.unpack(string, {self.layout.codec_id: self.layout}, self.raw_payload_bits, self.hint_coder,
                           self.num_classes)
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

    @torch.no_grad()
    def classify(self, received: list[Received | None], batch_size: int = 256, fuse_hint: bool = True) -> torch.Tensor:
        """len(received) x C logits (log-probabilities fused with the edge's hint where one arrived,
        unless ``fuse_hint`` is False); NaN rows for None."""
        logits = torch.full((len(received), self.num_classes), float("nan"))
        by_count = defaultdict(list)
        for i, item in enumerate(received):
            if item is not None:
                by_count[len(item.positions)].append(i)
        for index in by_count.values():
            for start in range(0, len(index), batch_size):
                part = index[start : start + batch_size]
                items = [received[i] for i in part]
                with autocast(self.bf16):
                    out = self.server_logits(torch.stack([r.values for r in items]),
                                             torch.stack([r.positions for r in items]),
                                             torch.stack([r.level for r in items])).float()
                hinted = [j for j, item in enumerate(items) if item.hint is not None and fuse_hint]
                if hinted:
                    edge = self.hint_coder.log_probs(torch.stack([items[j].hint for j in hinted]))
                    out[hinted] = fuse(out[hinted], edge, self.hint_coder.weight)
                logits[part] = out
        return logits

    def _check_level(self, level: torch.Tensor, batch: int) -> None:
        if not isinstance(level, torch.Tensor) or level.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"level must be an int64 tensor, got {type(level).__name__} {getattr(level, 'dtype', '')}")
        if tuple(level.shape) != (batch, self.num_patches):
            raise ValueError(f"level must be B x N = {batch} x {self.num_patches}, got {tuple(level.shape)}")
        if level.numel() and (level.min() < 0 or level.max() > self.levels):
            raise ValueError(f"levels must lie in 0..{self.levels}, got {int(level.min())}..{int(level.max())}")
        if (level.amax(1) == 0).any():
            raise ValueError("every encoded image must send at least one patch (a level above 0)")


class TableCodedPair(CodecPair):
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
        """(... x V) table of each symbol of patches at ``level``."""
        v = self.values_per_patch
        return (level.clamp_min(1) - 1)[..., None] * v + torch.arange(v)

    def symbols(self, source, level):
        q, index, sent = self.quantize(source, level), self.table_index(level), level > 0
        if self.switched:  # the cheapest set for each image's sent symbols
            cost = self._set_costs(q[sent], index[sent]).sum(1)  # M x S
            costs = torch.zeros(len(q), len(self.table_sets), dtype=torch.float64).index_add_(0, sent.nonzero()[:, 0], cost)
            choice = costs.argmin(1).tolist()
        q, index, sent = q.numpy(), index.numpy(), sent.numpy()
        return [(q[i][sent[i]].ravel(), index[i][sent[i]].ravel(),
                 (choice[i],) if self.switched else ()) for i in range(len(q))]

    def level_costs(self, source):
        b, n, _ = source.shape
        level = torch.arange(1, self.levels + 1).expand(b * n, -1).reshape(b, n * self.levels)
        flat = source.repeat_interleave(self.levels, dim=1)  # every patch at every level, in one pass
        cost = self.tables.cost(self.quantize(flat, level), self.table_index(level)).sum(-1).view(b, n, self.levels)
        return torch.cat([torch.zeros(b, n, 1, dtype=torch.float64), cost], -1)

    def table_indexes(self, level, params):
        return ((level - 1)[:, None] * self.values_per_patch + np.arange(self.values_per_patch)).ravel()


_REGISTRY: dict[str, Callable[..., CodecPair]] = {}


def register_codec(fn: Callable[..., CodecPair]) -> Callable[..., CodecPair]:
    """Register a factory ``fn(**kwargs) -> CodecPair`` under its function name (``-`` for ``_``)."""
    _REGISTRY[fn.__name__.replace("_", "-")] = fn
    return fn


def list_codecs() -> list[str]:
    return sorted(_REGISTRY)


def create_codec(name: str, **kwargs) -> CodecPair:
    """Build a registered codec pair by name (``semcomm codecs`` lists them)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown codec {name!r}; registered: {', '.join(list_codecs())}")
    return _REGISTRY[name](**kwargs)
