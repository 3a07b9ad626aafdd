"""A deeper ViT started from a trained shallower one by stacking its blocks (progressive stacking).

Gong et al., 2019, "Efficient Training of BERT by Progressively Stacking":
a 2L-layer model initialised with a trained L-layer model's blocks copied on
top of themselves trains to the same accuracy in far fewer steps than from
scratch. Here block i of the deeper ViT takes block ``i mod L`` of the
shallower one (so depth 2L stacks the L blocks twice, as in the paper), and
everything outside the blocks (patch and position embeddings, class token,
final norm, head) is copied as it is. Both must have the same width, heads,
MLP size, patch grid and classes.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from semcomm.models.timm_vit import TimmViT

_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")


def _timm(model: nn.Module) -> nn.Module:
    model = model.model if isinstance(model, TimmViT) else model
    if not isinstance(getattr(model, "blocks", None), nn.Sequential):
        raise TypeError(f"stacking grows timm VisionTransformers (with .blocks), got {type(model).__name__}")
    return model


def grow_by_stacking(deeper: nn.Module, shallower: nn.Module) -> None:
    """Overwrite every weight of ``deeper`` (depth D) from ``shallower`` (depth L <= D): block i <- block i mod L.

    Args:
        deeper, shallower: timm VisionTransformers or their :class:`TimmViT` wrappers.

    Raises:
        ValueError: naming the first weight whose shape differs, a missing weight, or D < L.
    """
    deeper, shallower = _timm(deeper), _timm(shallower)
    depth, source_depth = len(deeper.blocks), len(shallower.blocks)
    if depth < source_depth:
        raise ValueError(f"stacking grows a model: the target has {depth} blocks, fewer than the source's "
                         f"{source_depth}")
    source = shallower.state_dict()
    state = {}
    for key, value in deeper.state_dict().items():
        block = _BLOCK.fullmatch(key)
        origin = f"blocks.{int(block[1]) % source_depth}.{block[2]}" if block else key
        if origin not in source:
            raise ValueError(f"the source model has no {origin!r} for the target's {key!r}")
        if source[origin].shape != value.shape:
            raise ValueError(f"{key!r} is {tuple(value.shape)} in the target but {origin!r} is "
                             f"{tuple(source[origin].shape)} in the source; stacking needs the same width, heads, "
                             "MLP size, patch grid and classes")
        state[key] = source[origin].to(value.dtype)
    with torch.no_grad():
        deeper.load_state_dict(state)
