"""Adapter over timm's ``VisionTransformer`` (ViT, DeiT, distilled DeiT, ...).

timm's own modules do all the work: the patch embedding and its
``_pos_embed`` (which prepends CLS / distillation / register tokens and adds
position embeddings), the blocks, the norm and the head. The adapter only

* records attention with a forward hook on the ``attn_drop`` module (the
  softmax output) of each block asked for, switching off fused attention in
  those blocks only while it does;
* keeps a subset of patch tokens after ``_pos_embed``, so each patch keeps
  its own position embedding.
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch
from timm.models.vision_transformer import VisionTransformer

from semcomm.models.adapter import ViTAdapter, ViTOutput, _layer_index


class TimmViT(ViTAdapter):
    """Wrap a timm ``VisionTransformer`` (built by ``timm.create_model`` or by hand).

    ``name`` names the model in results (:func:`~semcomm.models.adapter.model_name`); default: its timm
    architecture, else ``VisionTransformer``.
    """

    def __init__(self, model: VisionTransformer, name: str | None = None):
        if not isinstance(model, VisionTransformer):
            raise TypeError(f"TimmViT wraps a timm VisionTransformer, got {type(model).__name__}")
        cfg = getattr(model, "pretrained_cfg", None) or {}
        super().__init__(
            image_size=model.patch_embed.img_size,
            patch_size=model.patch_embed.patch_size[0],
            num_classes=model.num_classes,
            mean=cfg.get("mean", (0.5, 0.5, 0.5)),
            std=cfg.get("std", (0.5, 0.5, 0.5)),
            num_prefix_tokens=model.num_prefix_tokens,
        )
        for block in model.blocks:
            if not hasattr(block.attn, "attn_drop") or not hasattr(block.attn, "fused_attn"):
                raise TypeError(f"block attention {type(block.attn).__name__} exposes no attention probabilities")
        self.model = model
        self.name = name or cfg.get("architecture") or type(model).__name__

    def _forward_with_attention(self, x: torch.Tensor, layers: Sequence[int] | None = None) -> ViTOutput:
        with self._recording_attention(layers) as attentions:
            logits = self._forward_tokens(x, None)
        return ViTOutput(logits, attentions, self.num_prefix_tokens)

    def _forward_tokens(self, x: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        m = self.model
        tokens = m._pos_embed(m.patch_embed(x))
        if positions is not None:
            prefix = self.num_prefix_tokens
            index = (positions + prefix).unsqueeze(-1).expand(-1, -1, tokens.shape[-1])
            tokens = torch.cat([tokens[:, :prefix], tokens.gather(1, index)], dim=1)
        else:
            tokens = m.patch_drop(tokens)
        tokens = m.norm(m.blocks(m.norm_pre(tokens)))
        return m.forward_head(tokens)

    @contextmanager
    def _record_hidden(self, blocks: tuple[int, ...]):
        depth, prefix = len(self.model.blocks), self.num_prefix_tokens
        states: dict[int, torch.Tensor] = {}
        handles = []
        for i in sorted({_layer_index(b, depth) for b in blocks}):
            def record(module, inputs, output, i=i):
                states[i] = output[:, prefix:]

            handles.append(self.model.blocks[i].register_forward_hook(record))
        try:
            yield states
        finally:
            for handle in handles:
                handle.remove()

    @contextmanager
    def _recording_attention(self, layers: Sequence[int] | None):
        blocks = list(self.model.blocks)
        chosen = range(len(blocks)) if layers is None else sorted({_layer_index(i, len(blocks)) for i in layers})
        attentions: list[torch.Tensor | None] = [None] * len(blocks)
        handles, fused = [], {}
        for i in chosen:
            attn = blocks[i].attn
            fused[i], attn.fused_attn = attn.fused_attn, False

            def record(module, inputs, output, i=i):
                attentions[i] = output

            handles.append(attn.attn_drop.register_forward_hook(record))
        try:
            yield attentions
        finally:
            for i, was_fused in fused.items():
                blocks[i].attn.fused_attn = was_fused
            for handle in handles:
                handle.remove()
