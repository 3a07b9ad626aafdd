"""Compute per device: the multiply-accumulates (MACs) each device spends on one image.

Counted, not estimated: each stage runs on real images under
``torch.utils.flop_counter.FlopCounterMode``, which counts the floating-point
operations of every matrix product, convolution and attention kernel (two per
multiply-accumulate; PyTorch's CPU flash-attention kernel, which the counter
does not know, is counted here as its two matrix products); element-wise work (norms, activations, softmax) is not
counted, as is usual for MACs. Partial inputs cost less: pass the positions that
arrived.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from semcomm.models.adapter import ViTAdapter
from semcomm.server.backends.base import Backend, ViTStage


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of softmax(Q K^T) V for B x H x T x d queries and B x H x S x d keys and values."""
    b, h, t, d = query_shape
    return 2 * b * h * t * key_shape[-2] * (d + value_shape[-1])


_EXTRA_KERNELS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}


@torch.no_grad()
def macs_per_image(module: nn.Module, images: torch.Tensor, positions: torch.Tensor | None = None) -> float:
    """Mean MACs per image of ``module(images, positions)`` (a stage) over the B images given.

    Args:
        module: a stage module (``module(images, positions)``), or a ViT adapter (wrapped in a ViTStage).
        images: B x 3 x H x W, uint8 or float in [0, 1].
        positions: B x K int64 indices of the patches that arrived, or None for whole images.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty B x 3 x H x W tensor, got "
                         f"{tuple(getattr(images, 'shape', ())) or type(images).__name__}")
    stage = ViTStage(module) if isinstance(module, ViTAdapter) else module
    stage.eval()
    counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_KERNELS)
    with counter:
        stage(images, positions)
    return counter.get_total_flops() / 2 / len(images)


def device_macs(backend: Backend, images: torch.Tensor, positions: torch.Tensor | None = None) -> dict[str, float]:
    """Device name -> MACs per image its stages spend when an image runs on them.

    Every device of a fused backend (partitioned, DeViT) runs on every image; an
    expert's device runs only on the images routed to it, so its figure is per
    routed image (the mean over all images is that times the share it serves).
    """
    return {device: sum(macs_per_image(s.module, images, positions) for s in stages)
            for device, stages in backend.placement().items()}
