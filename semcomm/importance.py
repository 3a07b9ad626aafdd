"""Patch importance from a ViT's attention.

Every method returns B x N non-negative scores over the N patches (prefix
tokens such as CLS dropped) that sum to 1 per image.

* ``mean``: last layer, CLS row, averaged over heads (the methods paper's default).
* ``mean_layers``: the same CLS row averaged over every layer.
* ``rollout``: attention rollout (Abnar & Zuidema, 2020): per layer, head
  mean plus identity, rows renormalised, multiplied through the layers; the
  CLS row of the product.
"""
from __future__ import annotations

import torch

from .models.adapter import ViTOutput

METHODS = ("mean", "mean_layers", "rollout")


def attention_layers(*methods: str) -> tuple[int, ...] | None:
    """The layers whose attention ``methods`` read, for ``forward_with_attention(layers=...)``; None: all."""
    for method in methods:
        check_method(method)
    return (-1,) if set(methods) <= {"mean"} else None


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown importance method {method!r}; choose one of {METHODS}")


def patch_importance(output: ViTOutput, method: str = "mean") -> torch.Tensor:
    """B x N importance of each patch, renormalised to sum to 1."""
    layers = attention_layers(method)  # also rejects an unknown method
    maps = [output.attention(i) for i in (range(len(output.attentions)) if layers is None else layers)]
    prefix = output.num_prefix_tokens
    if method == "mean":
        scores = maps[-1][:, :, 0, prefix:].float().mean(dim=1)
    elif method == "mean_layers":
        scores = torch.stack([a[:, :, 0, prefix:].float().mean(dim=1) for a in maps]).mean(dim=0)
    else:
        scores = attention_rollout(maps)[:, 0, prefix:]
    total = scores.sum(dim=-1, keepdim=True)
    # no mass on any patch (e.g. CLS attends only to prefix tokens): no preference, so uniform
    return torch.where(total > 0, scores / total, torch.full_like(scores, 1 / scores.shape[-1]))


def attention_rollout(attentions: list[torch.Tensor]) -> torch.Tensor:
    """B x T x T rollout of per-layer B x heads x T x T attention."""
    rollout = None
    for layer in attentions:
        a = layer.float().mean(dim=1)
        a = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return rollout
