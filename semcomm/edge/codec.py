"""The codec as the edge encoder sees it, and the registry of codecs by name.

The edge encoder drives a codec pair's edge half (:class:`semcomm.rate.pair.CodecPair`) through the
calls below (:class:`EdgeCodec`, and :class:`FramedCodec` where the pair offers its frames) and nothing
else, so the edge imports nothing from the rate stage: it takes the pair as an object, or looks its
name up in :data:`CODECS` at run time. The rate stage fills the registry (``raw8``, ``pixel-iaq``,
``dct-cifar10``, ``latent-cifar10``, ...) when :mod:`semcomm.rate` is imported; each entry is a
factory ``fn(**kwargs) -> CodecPair``.

Shapes: images B x 3 x H x W uint8; hidden B x N x D edge tokens; source B x N x V; mask B x N bool;
rates B x N x (L + 1) bits; level B x N int64 (0 = not sent); hint B x C int64 symbols.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from semcomm.core.registry import Registry

CODECS: Registry[Callable[..., Any]] = Registry("codec")


class LevelPolicy(Protocol):
    """What the edge needs of a level policy (:class:`semcomm.rate.policies.LevelPolicy`)."""

    needs_rates: bool

    def __call__(self, mask: torch.Tensor, importance: torch.Tensor, rates: torch.Tensor | None,
                 distortion: torch.Tensor | None = None) -> torch.Tensor:
        """B x N levels (0 outside ``mask``)."""


class HintSymbols(Protocol):
    """What the edge needs of a hint coder (:class:`semcomm.rate.hint.HintCoder`)."""

    def symbols(self, edge_logits: torch.Tensor) -> torch.Tensor:
        """B x C hint symbols of B x C edge logits."""


class EdgeCodec(Protocol):
    """The edge half of a codec pair, as :class:`~semcomm.edge.encoder.EdgeEncoder` calls it."""

    name: str
    num_patches: int
    tap: int | None  # the edge block whose tokens :meth:`source` reads (None: pixels only)
    distortion: torch.Tensor | None  # (L + 1) measured error of a patch at each level, or None

    def for_edge(self, model: Any) -> EdgeCodec:
        """This pair as the edge ``model`` uses it; ValueError if it codes another patch grid."""

    def edge_policy(self, policy: LevelPolicy | None = None, hint: HintSymbols | None = None) -> LevelPolicy:
        """``policy``, or the pair's default; ValueError if its strings cannot carry levels or a hint."""

    def source(self, images: torch.Tensor, hidden: torch.Tensor | None) -> torch.Tensor:
        """B x N x V values to code per patch."""

    def rates(self, source: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """B x N x (L + 1) estimated payload bits of each patch at each level."""

    def compress(self, source: torch.Tensor, level: torch.Tensor | None = None,
                 hint: torch.Tensor | None = None) -> list[bytes]:
        """One string per image."""


class FramedCodec(EdgeCodec, Protocol):
    """An edge codec whose strings are coded from per-image frames (:class:`semcomm.rate.framed.FramedPair`).

    The edge compresses in its two steps and keeps the frames in the
    :class:`~semcomm.edge.encoder.Transmission`, so that a link cuts packets from their symbols
    without decoding the strings. The edge never looks inside a frame.
    """

    def frames(self, source: torch.Tensor, level: torch.Tensor | None = None,
               hint: torch.Tensor | None = None) -> list[Any]:
        """What each image's string is coded from (its frame fields and symbols), before any coding."""

    def pack(self, coded: Any) -> bytes:
        """The string of one image from its frame (:meth:`frames`): ``compress`` is ``pack`` of each."""
