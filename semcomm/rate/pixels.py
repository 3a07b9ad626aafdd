"""Codec pairs whose server reads pixels, and importance-aware quantization of raw pixels.

:class:`PixelPair` is the server half shared by every pair that sends pixel
patches (raw 8-bit, quantized or transform coded): the received patches are
placed on an empty canvas and the server ViT embeds only them, each at its
own position.

:class:`PixelIAQ` is the IAQ paper's scheme as it stands: each sent patch's
pixel values quantized uniformly with its own bit depth M (its level,
1..8) over the image's own range [lo, hi] (two 8-bit parameters), written
as raw bits (48 M bits per 4 x 4 x 3 patch), no transform, no entropy coding.
"""
from __future__ import annotations

import numpy as np
import torch

from semcomm.core.devices import host
from semcomm.core.patches import patchify, unpatchify
from semcomm.edge.codec import CODECS
from semcomm.models import ViTAdapter, create_model
from semcomm.rate.framed import FramedPair
from semcomm.rate.hint import HintCoder
from semcomm.rate.pair import CodecPair
from semcomm.wire import v2 as fmt


class PixelPair(CodecPair):
    """A pair whose server is a pixel ViT (``server``) reading the decoded patches."""

    def __init__(self, server: ViTAdapter):
        self.server = server.eval()
        self.num_classes = server.num_classes
        self.patch_size, self.grid_size = server.patch_size, server.grid_size

    @property
    def patch_values(self) -> int:
        return 3 * self.patch_size ** 2

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        """B x N x P float pixel values (0..255) of B x 3 x H x W uint8 images, patchify order."""
        return patchify(host(images), self.patch_size).float()

    def server_logits(self, values, positions, level):
        if hasattr(self.server, "classify_patches"):  # a backend: the received patches go to its devices as they are
            return self.server.classify_patches((values.float() / 255).clamp(0, 1), positions)
        b, k, p = values.shape
        canvas = torch.zeros(b, self.num_patches, p, device=values.device)
        canvas.scatter_(1, positions[..., None].expand(-1, -1, p), values.float())
        images = (unpatchify(canvas, self.patch_size, self.grid_size) / 255).clamp(0, 1)
        return self.server.forward_tokens(images, positions)


class PixelIAQ(PixelPair, FramedPair):
    """Raw pixels, bit depth per patch = level (1..``max_bits``), per-image range (see the module docstring)."""

    name = "pixel-iaq"

    def __init__(self, server: ViTAdapter, max_bits: int = 8, codec_id: int = 1):
        super().__init__(server)
        self.layout = fmt.Layout(codec_id, server.num_patches, max_bits, param_widths=(8, 8), entropy_coded=False)

    def source(self, images, hidden=None):
        return self.pixels(images)

    def level_costs(self, source):
        steps = torch.arange(self.levels + 1, dtype=torch.float64, device=source.device) * self.patch_values
        return steps.expand(*source.shape[:2], -1)

    def fixed_length(self, indexes):
        """Raw pixels: each value's table index is its bit depth, written as is."""
        return np.zeros_like(indexes), indexes

    def symbols(self, source, level):
        out = []
        for values, lv in zip(source, level):
            sent = lv > 0
            lo, hi = int(values.min()), int(values.max())
            depth = lv[sent][:, None].expand(-1, self.patch_values)
            index = ((values[sent] - lo) / (hi - lo + 1) * torch.exp2(depth.float())).floor().long()
            out.append((index.flatten().numpy(), depth.flatten().numpy(), (lo, hi)))
        return out

    def table_indexes(self, level, params):
        return np.repeat(level, self.patch_values).astype(np.int64)

    def dequantize(self, symbols, level, params):
        lo, hi = params
        depth = torch.from_numpy(self.table_indexes(level, params)).float()
        values = lo + (torch.from_numpy(symbols).float() + 0.5) / torch.exp2(depth) * (hi - lo + 1)
        return values.view(-1, self.patch_values)


@CODECS.register("pixel-iaq")
def pixel_iaq(server: str | ViTAdapter = "vit-server-cifar10", hint: bool | HintCoder = True,
              edge: str = "vit-edge-cifar10", **kwargs) -> PixelIAQ:
    """Raw-pixel IAQ (the IAQ paper's scheme) with a zoo or user server. ``hint``: True, strings can
    carry the prediction of the zoo model ``edge`` (its hint coder); a :class:`HintCoder` (e.g.
    ``HintCoder.fit(logits)`` of your own edge), that one; False, none."""
    from semcomm.rate.zoo import load_hint

    pair = PixelIAQ(create_model(server) if isinstance(server, str) else server, **kwargs)
    pair.hint_coder = hint if isinstance(hint, HintCoder) else load_hint(edge) if hint else None
    return pair
