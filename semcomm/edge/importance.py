"""Patch importance from a ViT's attention.

Every method maps a :class:`~semcomm.models.adapter.ViTOutput` to B x N
non-negative scores over the N patches (prefix tokens such as CLS dropped);
:func:`patch_importance` renormalises them to sum to 1 per image. The
methods live in the registry :data:`IMPORTANCE`, each with the attention
layers it reads (``info(name)["layers"]``: layer indices, or None for every
layer); wherever a method is expected, its name or the function itself is
accepted (an unregistered function may carry a ``layers`` attribute,
default None: every layer). The built-in methods read the first token's (CLS's) row, so the
model needs at least one prefix token.

* ``mean``: last layer, CLS row, averaged over heads (the methods paper's default).
* ``mean_layers``: the same CLS row averaged over every layer.
* ``rollout``: attention rollout (Abnar & Zuidema, 2020): per layer, head
  mean plus identity, rows renormalised, multiplied through the layers; the
  CLS row of the product.

``mean_layers`` and ``rollout`` need the attention of every layer
(``forward_with_attention(images, layers=None)``); given an output where
some layer was not recorded they raise rather than work on the others. A
map averaged over heads (B x T x T) counts as one head, which gives the
same scores as the per-head maps it averages.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from semcomm.core.registry import Registry
from semcomm.models.adapter import ViTOutput, _as_heads

ImportanceMethod = Callable[[ViTOutput], torch.Tensor]
IMPORTANCE: Registry[ImportanceMethod] = Registry("importance method")


def attention_layers(*methods: str | ImportanceMethod) -> tuple[int, ...] | None:
    """The layers whose attention ``methods`` read, for ``forward_with_attention(layers=...)``; None: all.

    Raises UnknownNameError (a ValueError) for a name no method is registered under.
    """
    needed = [_layers(m) for m in methods]
    if any(layers is None for layers in needed):
        return None
    return tuple(sorted({layer for layers in needed for layer in layers}))


def _layers(method: str | ImportanceMethod) -> tuple[int, ...] | None:
    info = IMPORTANCE.info(method)
    return info["layers"] if "layers" in info else getattr(method, "layers", None)


def patch_importance(output: ViTOutput, method: str | ImportanceMethod = "mean") -> torch.Tensor:
    """B x N importance of each patch by ``method`` (a name of :data:`IMPORTANCE` or a function), renormalised
    to sum to 1."""
    scores = IMPORTANCE.resolve(method)(output)
    total = scores.sum(dim=-1, keepdim=True)
    # no mass on any patch (e.g. CLS attends only to prefix tokens): no preference, so uniform
    return torch.where(total > 0, scores / total, torch.full_like(scores, 1 / scores.shape[-1]))


@IMPORTANCE.register("mean", layers=(-1,))
def mean_importance(output: ViTOutput) -> torch.Tensor:
    """B x N: the CLS row of the last layer's attention, averaged over heads."""
    prefix = _cls_prefix(output, "mean")
    return output.attention(-1)[:, :, 0, prefix:].float().mean(dim=1)


@IMPORTANCE.register("mean_layers", layers=None)
def mean_layers_importance(output: ViTOutput) -> torch.Tensor:
    """B x N: the CLS row averaged over heads, then over every layer."""
    prefix = _cls_prefix(output, "mean_layers")
    maps = _every_layer(output, "mean_layers")
    return torch.stack([a[:, :, 0, prefix:].float().mean(dim=1) for a in maps]).mean(dim=0)


@IMPORTANCE.register("rollout", layers=None)
def rollout_importance(output: ViTOutput) -> torch.Tensor:
    """B x N: the CLS row of the attention rollout of every layer."""
    prefix = _cls_prefix(output, "rollout")
    return attention_rollout(_every_layer(output, "rollout"))[:, 0, prefix:]


def _cls_prefix(output: ViTOutput, method: str) -> int:
    """The number of prefix tokens of ``output``; a clear error if there is no CLS token to read a row of."""
    prefix = output.num_prefix_tokens
    if prefix < 1:
        raise ValueError(f"importance {method!r} reads the CLS token's attention row, but ViTOutput.num_prefix_tokens "
                         "is 0 (no token before the patches)")
    return prefix


def _every_layer(output: ViTOutput, method: str) -> list[torch.Tensor]:
    """The B x heads x T x T attention of every layer of ``output``; a clear error if one was not recorded."""
    missing = [i for i, a in enumerate(output.attentions) if a is None]
    if missing:
        raise ValueError(f"importance {method!r} reads the attention of every layer, but the attention of layer "
                         f"{missing[0]} was not recorded (recorded: {output.recorded} of {len(output.attentions)} "
                         f"layers); call forward_with_attention with layers=attention_layers({method!r}), i.e. None")
    return output.attentions


def attention_rollout(attentions: list[torch.Tensor]) -> torch.Tensor:
    """B x T x T rollout of the per-layer attention of every layer, first layer first.

    Args:
        attentions: one B x heads x T x T (or B x T x T, averaged over heads)
            map per layer. A one-entry list is a one-layer model: its
            rollout is (A + I) / 2. A single tensor is refused, since
            iterating over it would walk the batch instead of the layers.
    """
    if not isinstance(attentions, (list, tuple)):
        raise TypeError(f"attention_rollout takes a list with one B x heads x T x T map per layer (every layer, "
                        f"in order), got a {type(attentions).__name__}; wrap a one-layer model's map in a list")
    missing = [i for i, a in enumerate(attentions) if a is None]
    if not attentions or missing:
        raise ValueError(f"attention_rollout needs the attention of every layer; got {len(attentions)} entries, "
                         f"None at {missing}")
    rollout = None
    for i, layer in enumerate(attentions):
        batch = None if rollout is None else len(rollout)
        a = _as_heads(layer, f"attentions[{i}]", batch).float().mean(dim=1)
        a = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return rollout
