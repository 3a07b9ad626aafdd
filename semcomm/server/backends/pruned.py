"""Structurally pruned ViTs: which attention heads and MLP hidden units each layer keeps, and the sliced copy.

A :class:`KeepPlan` names, per layer, the heads and hidden units a timm ViT
keeps; :func:`prune_vit` makes the copy that holds only those (weights
sliced, not retrained). Choosing the plan (the class-wise Taylor criterion
and the sizing to a parameter budget) is a build's work:
:mod:`semcomm.train.backends.pruning`. A saved backend's pruned sub-models
are rebuilt at their pruned shapes with this module
(:meth:`~semcomm.server.backends.vitspec.ViTSpec.build`).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from semcomm.models.timm_vit import TimmViT


@dataclass(frozen=True)
class KeepPlan:
    """Per layer: the indices of the heads and MLP hidden units to keep (ascending)."""

    heads: tuple[tuple[int, ...], ...]
    units: tuple[tuple[int, ...], ...]


def check_timm_vit(vit) -> None:
    """Raise unless ``vit`` is a :class:`TimmViT` whose blocks have timm's ``Attention`` and ``Mlp`` layout."""
    if not isinstance(vit, TimmViT):
        raise TypeError(f"structured pruning needs a TimmViT (a timm VisionTransformer), got {type(vit).__name__}")
    for i, block in enumerate(vit.model.blocks):
        attn, mlp = block.attn, block.mlp
        ok = all(hasattr(attn, a) for a in ("qkv", "proj", "num_heads", "head_dim")) and \
            all(hasattr(mlp, a) for a in ("fc1", "fc2")) and isinstance(mlp.fc1, nn.Linear)
        if not ok or getattr(attn, "gate", None) is not None or not isinstance(attn.q_norm, nn.Identity):
            raise TypeError(f"block {i} is not a plain timm Attention + Mlp block; pruning supports those only")


def prune_vit(vit: TimmViT, plan: KeepPlan) -> TimmViT:
    """A copy of ``vit`` with only the heads and MLP hidden units in ``plan`` (weights sliced, not retrained).

    Removing a head drops its q, k, v rows of ``qkv`` and its columns of
    ``proj``; removing a hidden unit drops its row of ``fc1`` and its column
    of ``fc2``. The copy is still a timm ViT, so it runs on token subsets and
    records attention like the original.
    """
    check_timm_vit(vit)
    blocks = vit.model.blocks
    if len(plan.heads) != len(blocks) or len(plan.units) != len(blocks):
        raise ValueError(f"the plan covers {len(plan.heads)} layers, the model has {len(blocks)}")
    out = copy.deepcopy(vit)
    for i, (blk, heads, units) in enumerate(zip(out.model.blocks, plan.heads, plan.units)):
        attn, mlp = blk.attn, blk.mlp
        _check_indices(f"layer {i} heads", heads, attn.num_heads)
        _check_indices(f"layer {i} MLP units", units, mlp.fc1.out_features)
        hd = attn.head_dim
        cols = torch.tensor([h * hd + j for h in heads for j in range(hd)], dtype=torch.int64, device="cpu")
        rows = torch.cat([cols + part * attn.num_heads * hd for part in range(3)])
        attn.qkv = _sliced(attn.qkv, rows=rows)
        attn.proj = _sliced(attn.proj, cols=cols)
        attn.num_heads, attn.attn_dim = len(heads), len(heads) * hd
        keep = torch.tensor(units, dtype=torch.int64, device="cpu")
        mlp.fc1 = _sliced(mlp.fc1, rows=keep)
        mlp.fc2 = _sliced(mlp.fc2, cols=keep)
        if not isinstance(mlp.norm, nn.Identity):
            raise TypeError(f"layer {i}: an MLP with a hidden-unit norm cannot be pruned here")
    return out


def _sliced(linear: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    """A new Linear holding the given output rows and/or input columns of ``linear``."""
    weight = linear.weight.detach()
    bias = None if linear.bias is None else linear.bias.detach()
    if rows is not None:
        weight = weight[rows]
        bias = None if bias is None else bias[rows]
    if cols is not None:
        weight = weight[:, cols]
    out = nn.utils.skip_init(nn.Linear, weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        if bias is not None:
            out.bias.copy_(bias)
    return out


def _check_indices(what: str, kept: Sequence[int], count: int) -> None:
    if not kept or len(set(kept)) != len(kept) or min(kept) < 0 or max(kept) >= count:
        raise ValueError(f"{what}: keep a non-empty set of distinct indices in 0..{count - 1}, got {list(kept)}")
