"""Class-wise structured pruning of a timm ViT: attention heads and MLP hidden units.

Criterion (stated): the first-order Taylor estimate of how much the loss
changes when a head or a hidden unit is removed (Michel et al., 2019, "Are
Sixteen Heads Really Better than One?"; Molchanov et al., 2019). Each head's
output (before the attention projection) and each MLP hidden unit's
activation (before ``fc2``) is multiplied by a gate m = 1 per image, and

    importance = mean over images x of | dL(x) / dm |,

with L the cross-entropy of the *sub-model* (its head restricted to its
classes) on images of *its* classes only: that is what makes the pruning
class-wise. Heads are compared within a layer, units within a layer.

Sizing: one keep fraction r for every layer, ``max(1, round(r H))`` heads
and ``max(1, round(r M))`` hidden units per layer (the most important ones),
with r the largest that fits the parameter budget; the embedding width,
depth and everything else are kept. :func:`pruned_parameters` counts the
parameters of a kept set exactly without building it; the plan
(:class:`~semcomm.server.backends.pruned.KeepPlan`) is applied by
:func:`~semcomm.server.backends.pruned.prune_vit`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from semcomm.models.timm_vit import TimmViT
from semcomm.server.backends.pruned import KeepPlan, check_timm_vit


@dataclass
class UnitImportance:
    """Per layer: ``heads[l]`` (H_l) and ``units[l]`` (M_l) Taylor importances (see the module docstring)."""

    heads: list[torch.Tensor]
    units: list[torch.Tensor]


def unit_importance(vit: TimmViT, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 64,
                    positions: torch.Tensor | None = None) -> UnitImportance:
    """Taylor importance of every head and MLP hidden unit of ``vit`` on ``images`` with ``labels``.

    Args:
        vit: the sub-model; ``labels`` index its own (restricted) classes.
        images: B x 3 x H x W.
        labels: B int64 in 0..vit.num_classes - 1.
        positions: B x K patches to keep per image (None: all), so the criterion can see partial inputs.
    """
    check_timm_vit(vit)
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(f"need matching, non-empty images and labels, got {len(images)} and {len(labels)}")
    blocks = list(vit.model.blocks)
    heads = [torch.zeros(b.attn.num_heads, dtype=torch.float64) for b in blocks]
    units = [torch.zeros(b.mlp.fc1.out_features, dtype=torch.float64) for b in blocks]
    was_training = vit.training
    vit.eval()
    try:
        for start in range(0, len(images), batch_size):
            part = slice(start, start + batch_size)
            b = len(images[part])
            head_gates = [torch.ones(b, blk.attn.num_heads, requires_grad=True) for blk in blocks]
            unit_gates = [torch.ones(b, blk.mlp.fc1.out_features, requires_grad=True) for blk in blocks]
            handles = []
            for blk, hg, ug in zip(blocks, head_gates, unit_gates):
                hd = blk.attn.head_dim

                def gate_heads(module, args, hg=hg, hd=hd):
                    x = args[0]  # B x T x (H hd)
                    return (x * hg.repeat_interleave(hd, dim=1)[:, None, :],)

                def gate_units(module, args, ug=ug):
                    return (args[0] * ug[:, None, :],)

                handles.append(blk.attn.proj.register_forward_pre_hook(gate_heads))
                handles.append(blk.mlp.fc2.register_forward_pre_hook(gate_units))
            try:
                with torch.enable_grad():
                    x = images[part]
                    logits = vit(x) if positions is None else vit.forward_tokens(x, positions[part])
                    loss = F.cross_entropy(logits.float(), labels[part].long(), reduction="sum")
                    grads = torch.autograd.grad(loss, head_gates + unit_gates)
            finally:
                for handle in handles:
                    handle.remove()
            for i in range(len(blocks)):
                heads[i] += grads[i].abs().sum(0).double()
                units[i] += grads[len(blocks) + i].abs().sum(0).double()
    finally:
        vit.train(was_training)
    return UnitImportance([h / len(images) for h in heads], [u / len(images) for u in units])


def keep_plan(importance: UnitImportance, fraction: float) -> KeepPlan:
    """The ``max(1, round(fraction x count))`` most important heads and units of every layer (ties: lower index)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"the keep fraction must lie in (0, 1], got {fraction!r}")

    def top(scores: torch.Tensor) -> tuple[int, ...]:
        k = max(1, round(fraction * len(scores)))
        order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
        return tuple(sorted(order[:k]))

    return KeepPlan(tuple(top(h) for h in importance.heads), tuple(top(u) for u in importance.units))


def pruned_parameters(vit: TimmViT, plan: KeepPlan) -> int:
    """Parameters of ``vit`` after :func:`prune_vit` with ``plan`` (exact, nothing is built)."""
    check_timm_vit(vit)
    total = sum(p.numel() for p in vit.parameters())
    for blk, heads, units in zip(vit.model.blocks, plan.heads, plan.units):
        attn, mlp = blk.attn, blk.mlp
        dropped_heads = attn.num_heads - len(heads)
        dim_in, dim_out = attn.qkv.in_features, attn.proj.out_features
        per_head = attn.head_dim * (3 * dim_in + 3 * (attn.qkv.bias is not None) + dim_out)
        dropped_units = mlp.fc1.out_features - len(units)
        per_unit = mlp.fc1.in_features + (mlp.fc1.bias is not None) + mlp.fc2.out_features
        total -= dropped_heads * per_head + dropped_units * per_unit
    return total


def full_plan(vit: TimmViT) -> KeepPlan:
    """Keep everything."""
    blocks = vit.model.blocks
    return KeepPlan(tuple(tuple(range(b.attn.num_heads)) for b in blocks),
                    tuple(tuple(range(b.mlp.fc1.out_features)) for b in blocks))


def minimal_plan(vit: TimmViT) -> KeepPlan:
    """The smallest model pruning can make: one head and one hidden unit per layer."""
    blocks = vit.model.blocks
    return KeepPlan(tuple((0,) for _ in blocks), tuple((0,) for _ in blocks))


def plan_for_budget(vit: TimmViT, importance: UnitImportance, max_parameters: int) -> tuple[KeepPlan, float]:
    """(plan, fraction): the largest keep fraction whose pruned model has at most ``max_parameters``.

    Raises a ValueError when even one head and one unit per layer is too big.
    """
    smallest = pruned_parameters(vit, minimal_plan(vit))
    if smallest > max_parameters:
        raise ValueError(f"the sub-model needs at least {smallest:,} parameters (one head and one MLP unit per "
                         f"layer) but its budget is {max_parameters:,}")
    if pruned_parameters(vit, full_plan(vit)) <= max_parameters:
        return keep_plan(importance, 1.0), 1.0
    lo, hi = 0.0, 1.0  # fits at lo (the minimal plan), not at hi
    widest = max(max(len(h) for h in importance.heads), max(len(u) for u in importance.units))
    while hi - lo > 0.5 / widest:
        mid = (lo + hi) / 2
        if pruned_parameters(vit, keep_plan(importance, mid)) <= max_parameters:
            lo = mid
        else:
            hi = mid
    fraction = max(lo, 1e-9)
    return keep_plan(importance, fraction), fraction
