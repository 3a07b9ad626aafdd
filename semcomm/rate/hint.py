"""The edge's prediction as side information, and edge-server fusion.

An offloaded image may carry the edge's class probabilities so the server
can fuse them with its own (log p = w log p_edge + (1 - w) log p_server,
renormalised). Each class's -log2 p is quantized to ``step`` bits and
clipped at ``levels - 1`` steps; the C symbols are written with a canonical
Huffman code fitted to the edge's predictions on the training split. The
same code serves the semantic codec and the image-codec baselines, so fusion
costs both the same bits.

Shapes: logits B x C; symbols B x C int64 in 0..levels-1.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np
import torch

from semcomm.core.devices import as_tensor
from semcomm.wire.bits import BitReader, BitWriter
from semcomm.wire.errors import BitstreamError

DEFAULT_WEIGHT = 0.3


def fuse(server_logits: torch.Tensor, edge_log_probs: torch.Tensor, weight: float = DEFAULT_WEIGHT) -> torch.Tensor:
    """B x C fused log-probabilities: ``weight`` x log p_edge + (1 - weight) x log p_server, renormalised.

    Rows of ``server_logits`` that are NaN (nothing usable arrived) stay NaN.
    """
    if not 0 <= weight <= 1:
        raise ValueError(f"fusion weight must lie in [0, 1], got {weight}")
    mixed = weight * edge_log_probs.float() + (1 - weight) * server_logits.float().log_softmax(-1)
    return mixed.log_softmax(-1)


def canonical_code(counts: np.ndarray) -> list[tuple[int, int]]:
    """(code, length) per symbol of a canonical Huffman code for ``counts`` (every symbol codable)."""
    weights = np.asarray(counts, dtype=np.float64) + 0.5
    if len(weights) == 1:
        return [(0, 1)]
    heap = [(w, i, (i,)) for i, w in enumerate(weights)]
    heapq.heapify(heap)
    lengths = [0] * len(weights)
    tie = len(weights)
    while len(heap) > 1:
        w1, _, a = heapq.heappop(heap)
        w2, _, b = heapq.heappop(heap)
        for s in a + b:
            lengths[s] += 1
        heapq.heappush(heap, (w1 + w2, tie, a + b))
        tie += 1
    code, previous, table = 0, 0, [None] * len(weights)
    for length, symbol in sorted((l, s) for s, l in enumerate(lengths)):
        code <<= length - previous
        table[symbol] = (code, length)
        code, previous = code + 1, length
    return table


@dataclass
class HintCoder:
    """Quantizes, writes and reads the edge's class probabilities.

    Attributes:
        counts: symbol counts (``levels`` values) the Huffman code is fitted to.
        step: quantizer step of -log2 p, in bits.
        weight: the edge's weight in :func:`fuse`.
    """

    counts: np.ndarray
    step: float = 0.5
    weight: float = DEFAULT_WEIGHT

    def __post_init__(self):
        self.counts = np.asarray(self.counts, dtype=np.int64)
        self.code = canonical_code(self.counts)
        self._decode = {(length, code): s for s, (code, length) in enumerate(self.code)}
        self._max_length = max(length for _, length in self.code)

    @property
    def levels(self) -> int:
        return len(self.counts)

    @classmethod
    def fit(cls, edge_logits: torch.Tensor, levels: int = 16, step: float = 0.5,
            weight: float = DEFAULT_WEIGHT) -> "HintCoder":
        """A coder fitted to B x C edge logits (e.g. the training split's)."""
        symbols = quantize_log_probs(edge_logits, step, levels)
        return cls(np.bincount(symbols.flatten().numpy(), minlength=levels), step, weight)

    def symbols(self, edge_logits: torch.Tensor) -> torch.Tensor:
        return quantize_log_probs(edge_logits, self.step, self.levels)

    def log_probs(self, symbols: torch.Tensor) -> torch.Tensor:
        """B x C log-probabilities the server reconstructs from the symbols (renormalised)."""
        return (-symbols.double() * self.step * math.log(2)).log_softmax(-1).float()

    def bits(self, symbols: torch.Tensor) -> torch.Tensor:
        """B int64: exact bits each row's hint occupies."""
        lengths = torch.tensor([length for _, length in self.code])
        return lengths[symbols].sum(-1)

    def write(self, writer: BitWriter, row: torch.Tensor) -> None:
        for s in row.tolist():
            code, length = self.code[s]
            writer.write(code, length)

    def read(self, reader: BitReader, classes: int) -> torch.Tensor:
        out = []
        for _ in range(classes):
            code, length = 0, 0
            while (length, code) not in self._decode:
                if length >= self._max_length:
                    raise BitstreamError("corrupted: invalid code in the edge hint")
                code = (code << 1) | reader.read(1, "edge hint")
                length += 1
            out.append(self._decode[(length, code)])
        return torch.tensor(out, dtype=torch.int64, device="cpu")

    def state_dict(self, prefix: str = "hint.") -> dict[str, torch.Tensor]:
        return {f"{prefix}counts": as_tensor(self.counts),
                f"{prefix}params": torch.tensor([self.step, self.weight], dtype=torch.float64)}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], prefix: str = "hint.") -> "HintCoder":
        step, weight = state[f"{prefix}params"].tolist()
        return cls(state[f"{prefix}counts"].numpy(), step, weight)


def quantize_log_probs(logits: torch.Tensor, step: float, levels: int) -> torch.Tensor:
    """B x C symbols: round(-log2 p / step), clipped to 0..levels-1."""
    if logits.ndim != 2:
        raise ValueError(f"edge logits must be B x C, got shape {tuple(logits.shape)}")
    if not torch.isfinite(logits).all():
        raise ValueError("edge logits contain NaN or infinite values")
    neg_log2 = -logits.double().log_softmax(-1) / math.log(2)
    return (neg_log2 / step).round().clamp(0, levels - 1).long()
