"""A codec pair: the codec of the patches an edge selects, its edge half and its server half.

A :class:`CodecPair` implements the codec contract (:class:`~semcomm.rate.codec.Codec`) for patches:
on the edge it turns each image's *source* (pixels, or the edge ViT's tokens) into values per patch,
estimates their rates for the level policy and compresses them at their levels into one string per
image; on the server it decompresses each string into a :class:`Received` and classifies those,
fusing the edge's prediction where it came along. The format version of its strings is its own:
``raw8`` writes version 1 (:mod:`semcomm.rate.raw8`), every other pair version 2
(:class:`~semcomm.rate.framed.FramedPair`).

Shapes: images B x 3 x H x W uint8; source B x N x V (V values per patch); mask B x N bool; level
B x N int64 (0 = not sent); a :class:`Received` holds K sent patches of one image.
"""
from __future__ import annotations

from abc import abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from semcomm.core.devices import host
from semcomm.inference import DEFAULT_BATCH, NonFiniteOutputError, autocast
from semcomm.rate.codec import Codec
from semcomm.rate.hint import HintCoder
from semcomm.rate.hint import fuse as fuse_log_probs
from semcomm.rate.policies import FixedLevel, LevelPolicy


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


class CodecPair(Codec):
    """Both halves of one patch codec (see the module docstring).

    Subclasses set ``name``, ``version``, ``num_patches`` and ``levels`` and implement :meth:`source`,
    :meth:`compress`, :meth:`decompress` and :meth:`server_logits`; ``level_costs`` gives the
    per-patch rates that budgeted level policies need.

    Attributes:
        version: the format version of its strings (1 or 2), by which a server decoder picks its reader.
        num_patches: N, the patch grid it codes.
        levels: L, its highest level (level 0 = not sent).
        tap: the edge block whose tokens :meth:`source` needs (None: pixels).
        distortion: (L + 1) measured error of a patch at each level (0: not sent), or None.
        hint_coder: writes and reads the edge's prediction in its strings, or None.
    """

    version: int
    num_patches: int
    levels: int
    tap: int | None = None
    distortion: torch.Tensor | None = None
    hint_coder: HintCoder | None = None
    num_classes: int = 10

    # ---- the edge half ------------------------------------------------------------------------
    def for_edge(self, model) -> CodecPair:
        """This pair as the edge ``model`` uses it (the same pair); ValueError if it codes another patch grid."""
        if self.num_patches != model.num_patches:
            raise ValueError(f"codec {self.name} codes {self.num_patches} patches, the edge has {model.num_patches}")
        return self

    def edge_policy(self, policy: LevelPolicy | None = None, hint: HintCoder | None = None) -> LevelPolicy:
        """The level policy the edge uses with this pair: ``policy``, or every selected patch at the
        pair's middle level. (Pairs whose strings carry neither levels nor a hint refuse both.)"""
        return policy if policy is not None else FixedLevel((self.levels + 1) // 2)

    @abstractmethod
    def source(self, images: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """B x N x V values to code per patch, from uint8 images or the edge's tokens after block ``tap``."""

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
        out = torch.zeros(b, n, self.levels + 1, dtype=torch.float64, device=source.device)
        out[mask] = self.level_costs(source[mask][None])[0].cummax(-1).values
        return out

    def level_costs(self, source: torch.Tensor) -> torch.Tensor:
        """B x N x (L + 1) the codec's own estimate of each patch's payload bits at each level."""
        raise NotImplementedError(f"{self.name} has no per-patch rate model")

    def _check_level(self, level: torch.Tensor, batch: int) -> None:
        """The level map as a tensor: B x N integers for ``batch`` images (its values are checked where
        the string format writes them)."""
        if not isinstance(level, torch.Tensor) or level.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"level must be an int64 tensor, got {type(level).__name__} {getattr(level, 'dtype', '')}")
        if tuple(level.shape) != (batch, self.num_patches):
            raise ValueError(f"level must be B x N = {batch} x {self.num_patches}, got {tuple(level.shape)}")

    # ---- the server half ----------------------------------------------------------------------
    @abstractmethod
    def decompress(self, strings: Sequence[bytes]) -> list[Received]:
        """One :class:`Received` per string; :class:`~semcomm.wire.errors.BitstreamError` if one is malformed."""

    @abstractmethod
    def server_logits(self, values: torch.Tensor, positions: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """B x C logits of the server from B x K x V values at B x K positions and levels."""

    @torch.no_grad()
    def classify(self, received: Sequence[Received | None], batch_size: int = DEFAULT_BATCH,
                 fuse: bool = True) -> torch.Tensor:
        """len(received) x C logits (log-probabilities fused with the edge's hint where one arrived,
        unless ``fuse`` is False); NaN rows for None. Images are batched by their number of patches."""
        logits = torch.full((len(received), self.num_classes), float("nan"), device="cpu")
        by_count = defaultdict(list)
        for i, item in enumerate(received):
            if item is not None:
                by_count[len(item.positions)].append(i)
        for index in by_count.values():
            for start in range(0, len(index), batch_size):
                part = index[start : start + batch_size]
                items = [received[i] for i in part]
                try:
                    with autocast(self.bf16):
                        out = self.server_logits(torch.stack([r.values for r in items]),
                                                 torch.stack([r.positions for r in items]),
                                                 torch.stack([r.level for r in items])).float()
                    out = host(out)
                except NonFiniteOutputError as err:  # name the strings, not the rows of this batch
                    raise err.within(part) from None
                hinted = [j for j, item in enumerate(items) if item.hint is not None and fuse]
                if hinted:
                    edge = self.hint_coder.log_probs(torch.stack([items[j].hint for j in hinted]))
                    out[hinted] = fuse_log_probs(out[hinted], edge, self.hint_coder.weight)
                logits[part] = out
        return logits
