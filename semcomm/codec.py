"""Edge encoder and server decoder.

The edge encoder runs the edge ViT once per image; its logits feed the gate
and its attention the patch importance. An image the gate keeps is answered
at the edge and costs 0 bits; an offloaded image becomes one byte string
(:mod:`semcomm.bitstream`) holding the selected patches and their positions.
The server decoder parses strings and classifies each image from only the
patches it received, each at its own position.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from . import bitstream
from .gating import Gate
from .importance import attention_layers, patch_importance
from .inference import DEFAULT_BATCH, autocast, map_batches
from .models.adapter import ViTAdapter, check_images
from .selection import SelectionRule, as_generator


@dataclass
class EdgeAnalysis:
    """The edge ViT's view of B images.

    Attributes:
        logits: B x C edge logits.
        importance: method name -> B x N patch importance (rows sum to 1).
    """

    logits: torch.Tensor
    importance: dict[str, torch.Tensor]

    def subset(self, index) -> "EdgeAnalysis":
        return EdgeAnalysis(self.logits[index], {k: v[index] for k, v in self.importance.items()})


@dataclass
class Transmission:
    """What the edge does with B images.

    Attributes:
        edge_logits: B x C logits of the edge model.
        offloaded: B booleans, True where the image is sent.
        mask: B x N booleans, the patches selected (rows of kept images too).
        strings: B entries, the byte string sent, or None (answered at the edge).
    """

    edge_logits: torch.Tensor
    offloaded: torch.Tensor
    mask: torch.Tensor
    strings: list[bytes | None]

    @property
    def bits(self) -> torch.Tensor:
        """B int64: bits on the wire per image (8 x string length, 0 when not sent)."""
        return torch.tensor([8 * len(s) if s is not None else 0 for s in self.strings], dtype=torch.int64)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """8-bit pixels of uint8 or [0, 1] float images (rounded)."""
    check_images(images)
    return images if images.dtype == torch.uint8 else (images * 255).round().to(torch.uint8)


class EdgeEncoder:
    """Gate, importance, selection and packing on the edge device.

    The edge ViT runs in fp32 unless ``bf16`` (bf16 autocast on CPU).

    Args:
        model: the edge ViT.
        selection: rule choosing the patches to send.
        gate: when to offload; None offloads every image.
        importance: ``mean``, ``mean_layers`` or ``rollout`` (see :mod:`semcomm.importance`).
    """

    def __init__(self, model: ViTAdapter, selection: SelectionRule, gate: Gate | None = Gate(),
                 importance: str = "mean", batch_size: int = DEFAULT_BATCH, bf16: bool = False):
        self.model, self.selection, self.gate = model.eval(), selection, gate
        self.importance, self.batch_size, self.bf16 = importance, batch_size, bf16

    def analyze(self, images: torch.Tensor, methods: tuple[str, ...] | None = None,
                desc: str | None = None) -> EdgeAnalysis:
        """Run the edge ViT once on B x 3 x H x W images: logits and importance by each method.

        Args:
            methods: importance methods to compute; default the encoder's own.
        """
        methods = methods or (self.importance,)
        importance = {m: [] for m in methods}
        layers = attention_layers(*methods)

        def run(part):
            out = self.model.forward_with_attention(images[part], layers)
            for m in methods:
                importance[m].append(patch_importance(out, m))
            return out.logits

        logits = map_batches(run, len(images), self.batch_size, self.bf16, desc)
        return EdgeAnalysis(logits, {m: torch.cat(v) for m, v in importance.items()})

    def encode(self, images: torch.Tensor, generator: torch.Generator | int | None = None,
               analysis: EdgeAnalysis | None = None) -> Transmission:
        """Decide, select and pack for B images (``analysis`` reuses an earlier edge pass)."""
        images = to_uint8(images)
        analysis = analysis or self.analyze(images)
        mask = self.selection(analysis.importance[self.importance], self.model.grid_size, as_generator(generator))
        return self.transmit(images, analysis.logits, mask)

    def transmit(self, images: torch.Tensor, edge_logits: torch.Tensor, mask: torch.Tensor) -> Transmission:
        """Pack the masked patches (``mask``: B x N booleans) of every image the gate offloads."""
        images = to_uint8(images)
        if mask.dtype != torch.bool or tuple(mask.shape) != (len(images), self.model.num_patches):
            raise ValueError(f"mask must be a B x N = {len(images)} x {self.model.num_patches} bool tensor, "
                             f"got {mask.dtype} {tuple(mask.shape)}")
        offloaded = self.gate.offload(edge_logits) if self.gate is not None else torch.ones(len(images), dtype=torch.bool)
        patches = bitstream.patchify(images, self.model.patch_size).numpy()
        mask_np, sent = mask.numpy(), offloaded.numpy()
        strings = [
            bitstream.pack(np.flatnonzero(mask_np[i]), patches[i][mask_np[i]], self.model.num_patches) if sent[i] else None
            for i in range(len(images))
        ]
        return Transmission(edge_logits, offloaded, mask, strings)


class ServerDecoder:
    """Parse strings and classify each image from the patches it carries."""

    def __init__(self, model: ViTAdapter, batch_size: int = DEFAULT_BATCH, bf16: bool = True):
        self.model, self.batch_size, self.bf16 = model.eval(), batch_size, bf16

    def decode(self, string: bytes) -> tuple[torch.Tensor, torch.Tensor]:
        """One string -> (3 x H x W uint8 canvas, zeros outside the patches; K int64 positions)."""
        m = self.model
        values = 3 * m.patch_size ** 2
        positions, patches = bitstream.unpack(string, m.num_patches, values)
        canvas = torch.zeros(1, m.num_patches, values, dtype=torch.uint8)
        canvas[0, torch.from_numpy(positions)] = torch.from_numpy(patches.copy())
        return bitstream.unpatchify(canvas, m.patch_size, m.grid_size)[0], torch.from_numpy(positions)

    @torch.no_grad()
    def classify(self, strings: list[bytes], errors: str = "raise") -> torch.Tensor:
        """len(strings) x C logits; images with equal patch counts are batched together.

        Args:
            errors: ``"raise"`` raises :class:`~semcomm.bitstream.BitstreamError`
                on a malformed string; ``"nan"`` gives its row NaN logits
                instead (a string damaged on a link), which
                :func:`collaborative_predictions` answers with the edge's prediction.
        """
        if errors not in ("raise", "nan"):
            raise ValueError(f"errors must be 'raise' or 'nan', got {errors!r}")
        logits = torch.full((len(strings), self.model.num_classes), math.nan)
        decoded, by_count = {}, defaultdict(list)
        for i, string in enumerate(strings):
            try:
                decoded[i] = self.decode(string)
            except bitstream.BitstreamError as err:
                if errors == "raise":
                    raise bitstream.BitstreamError(f"string {i}: {err}") from err
                continue
            by_count[len(decoded[i][1])].append(i)
        for index in by_count.values():
            for start in range(0, len(index), self.batch_size):
                part = index[start : start + self.batch_size]
                images = torch.stack([decoded[i][0] for i in part])
                positions = torch.stack([decoded[i][1] for i in part])
                with autocast(self.bf16):
                    logits[part] = self.model.forward_tokens(images, positions).float()
        return logits


def collaborative_predictions(transmission: Transmission, server_logits: torch.Tensor) -> torch.Tensor:
    """B class predictions: the server's where offloaded, else (or where its logits are NaN) the edge's.

    ``server_logits`` has one row per offloaded image, in order.
    """
    predictions = transmission.edge_logits.argmax(dim=-1).clone()
    offloaded = transmission.offloaded.nonzero().flatten()
    received = ~server_logits.isnan().any(dim=-1)
    predictions[offloaded[received]] = server_logits[received].argmax(dim=-1)
    return predictions
