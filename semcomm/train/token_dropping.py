"""Token dropping: training a server ViT on partial patch sets, as it will receive them.

Each batch keeps a random fraction of its patches (every patch with some probability), each image its own
subset: drawn at random, or the patches an edge model's attention selects (top-k or spread-top-k on ``mean``
importance, at random), so the server also sees the subsets it will be sent.
"""
from __future__ import annotations

import torch

from semcomm.edge.importance import attention_layers, patch_importance
from semcomm.edge.selection import SpreadTopK, TopK
from semcomm.models import ViTAdapter


def tokens_to_keep(token_keep: tuple[float, float] | None, full_image_prob: float, num_patches: int,
                   generator: torch.Generator) -> int | None:
    """How many of ``num_patches`` patches a batch keeps: None (all of them) when ``token_keep`` is None or with
    probability ``full_image_prob``, else a fraction drawn uniformly in ``token_keep`` = (low, high), at least 1."""
    if token_keep is None or torch.rand(1, generator=generator).item() < full_image_prob:
        return None
    low, high = token_keep
    fraction = low + (high - low) * torch.rand(1, generator=generator).item()
    return max(1, round(fraction * num_patches))


def random_positions(batch: int, num_patches: int, keep: int, generator: torch.Generator) -> torch.Tensor:
    """B x keep sorted random patch indices, a different subset per image."""
    order = torch.rand(batch, num_patches, generator=generator).argsort(dim=1)
    return order[:, :keep].sort(dim=1).values


@torch.no_grad()
def guided_positions(guide: ViTAdapter, images: torch.Tensor, keep: int, generator: torch.Generator) -> torch.Tensor:
    """B x keep sorted positions chosen by the guide's attention (top-k or spread-top-k, at random)."""
    importance = patch_importance(guide.forward_with_attention(images, attention_layers("mean")), "mean")
    rule = TopK(keep) if torch.rand(1, generator=generator).item() < 0.5 else SpreadTopK(keep)
    mask = rule(importance, guide.grid_size, generator)
    return mask.nonzero()[:, 1].view(len(images), keep)
