"""Format version 1 as a codec pair: raw 8-bit pixel patches (no levels, no hint, no entropy coding, no CRC).

The edge half writes each image's selected patches as they are (:mod:`semcomm.wire.v1`), the server
half reads them back and its pixel server classifies them. The strings carry positions and pixels
only: every sent patch is at level 1, and the pair refuses level policies and the edge hint.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from semcomm.core.patches import patchify
from semcomm.edge.codec import CODECS
from semcomm.models import ViTAdapter, create_model
from semcomm.rate.hint import HintCoder
from semcomm.rate.pair import Received
from semcomm.rate.pixels import PixelPair
from semcomm.rate.policies import FixedLevel, LevelPolicy
from semcomm.wire import v1


class Raw8(PixelPair):
    """Raw 8-bit pixel patches for a pixel server (format version 1).

    Args:
        server: the pixel server ViT that classifies, and whose patch grid the strings use; None for a
            pair that only writes strings, on the grid of ``patch_size`` and ``grid_size``, or of the edge
            that uses it (:meth:`for_edge`).
        patch_size, grid_size: the patch grid of a pair without a server (pixels per side; rows, columns).

    >>> pair = Raw8(patch_size=4, grid_size=(8, 8))
    >>> images = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    >>> level = torch.zeros(1, 64, dtype=torch.int64)
    >>> level[0, :8] = 1
    >>> 8 * len(pair.compress(pair.source(images), level)[0])  # header, 8 x 6-bit positions, 8 x 48 bytes
    3144
    """

    name = "raw8"
    version = v1.VERSION
    levels = 1

    def __init__(self, server: ViTAdapter | None = None, patch_size: int | None = None,
                 grid_size: tuple[int, int] | None = None):
        if server is not None:
            super().__init__(server)
        else:
            self.server, self.patch_size, self.grid_size = None, patch_size, grid_size
        self.num_patches = None if self.grid_size is None else self.grid_size[0] * self.grid_size[1]

    # ---- the edge half ------------------------------------------------------------------------
    def for_edge(self, model) -> Raw8:
        """A pair without a patch grid takes the edge's; one with a grid checks it."""
        if self.grid_size is None:
            return Raw8(patch_size=model.patch_size, grid_size=model.grid_size)
        return super().for_edge(model)

    def edge_policy(self, policy: LevelPolicy | None = None, hint: HintCoder | None = None) -> LevelPolicy:
        """Every selected patch at level 1; a ``policy`` or ``hint`` is refused (version 1 has neither)."""
        if policy is not None or hint is not None:
            raise ValueError("raw8 writes format version 1 (8-bit pixels: no levels, no hint); level policies and "
                             "hints need a codec pair (version-2 strings)")
        return FixedLevel(1)

    def source(self, images, hidden=None):
        """B x N x P uint8 pixels of B x 3 x H x W uint8 images, patchify order."""
        return patchify(images, self.patch_size)

    def compress(self, source: torch.Tensor, level: torch.Tensor | None = None,
                 hint: torch.Tensor | None = None) -> list[bytes]:
        """One version-1 string per image: the patches at level 1 in ``level`` (B x N, 0 or 1)."""
        self._check_level(level, len(source))
        if hint is not None:
            raise ValueError("raw8 strings (format version 1) carry no hint; hints need a codec pair "
                             "(version-2 strings)")
        if level.numel() and (level.min() < 0 or level.max() > 1):
            raise ValueError(f"raw8 strings carry no levels: level must be 0 (not sent) or 1, got "
                             f"{int(level.min())}..{int(level.max())}")
        patches, sent = source.numpy(), level.numpy() > 0
        return [v1.pack(np.flatnonzero(sent[i]), patches[i][sent[i]], self.num_patches) for i in range(len(patches))]

    # ---- the server half ----------------------------------------------------------------------
    def decompress(self, strings: Sequence[bytes]) -> list[Received]:
        """The positions and pixels (float32, 0..255) of each string, every patch at level 1."""
        out = []
        for string in strings:
            positions, patches = v1.unpack(string, self.num_patches, self.patch_values)
            positions = torch.from_numpy(positions)
            out.append(Received(positions, torch.ones_like(positions), torch.from_numpy(patches.astype(np.float32))))
        return out

    def server_logits(self, values, positions, level):
        if self.server is None:
            raise ValueError("this raw8 pair only writes strings: build it with a server to classify "
                             "(create_codec('raw8', server=model))")
        return super().server_logits(values, positions, level)


@CODECS.register("raw8")
def raw8(server: str | ViTAdapter | None = None) -> Raw8:
    """Raw 8-bit patches (format version 1) with a zoo or user pixel server; without one, a pair that
    only writes strings, on the patch grid of the edge encoder that uses it."""
    return Raw8(create_model(server) if isinstance(server, str) else server)
