"""Images as patches and back: the patch grid is row-major, each patch in (row, column, channel) order."""
from __future__ import annotations

import torch
from einops import rearrange


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """B x 3 x H x W -> B x N x P patches, N row-major over the grid, P in (row, column, channel) order."""
    return rearrange(images, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=patch_size, p2=patch_size)


def unpatchify(patches: torch.Tensor, patch_size: int, grid_size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`patchify`: B x N x P -> B x 3 x H x W."""
    return rearrange(patches, "b (h w) (p1 p2 c) -> b c (h p1) (w p2)", h=grid_size[0], p1=patch_size, p2=patch_size)
