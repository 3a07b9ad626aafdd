"""The edge device: one pass of the edge ViT, the gate, patch importance and selection, then the codec.

The edge encoder runs the edge ViT once per image; its logits feed the gate
and its attention the patch importance. An image the gate keeps is answered
at the edge and costs 0 bits; an offloaded image becomes one byte string
holding the selected patches and their positions:

* with no codec pair, format version 1 (:mod:`semcomm.wire.v1`): raw 8-bit pixels;
* with a :class:`~semcomm.rate.pair.CodecPair`, format version 2
  (:mod:`semcomm.wire.v2`): each selected patch at the level a
  :class:`~semcomm.rate.policies.LevelPolicy` gives it, entropy coded, with
  the edge's prediction as side information when a hint coder is given,
  under a CRC.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from semcomm.wire import v1 as bitstream
from semcomm.core.patches import patchify
from semcomm.edge.gating import Gate
from semcomm.edge.importance import attention_layers, patch_importance
from semcomm.inference import DEFAULT_BATCH, map_batches
from semcomm.models.adapter import ViTAdapter, check_images, to_uint8
from semcomm.rate.hint import HintCoder
from semcomm.rate.pair import CodecPair
from semcomm.rate.policies import FixedLevel, LevelPolicy
from semcomm.edge.selection import SelectionRule
from semcomm.core.seeding import as_generator


@dataclass
class EdgeAnalysis:
    """The edge ViT's view of B images.

    Attributes:
        logits: B x C edge logits.
        importance: method name -> B x N patch importance (rows sum to 1).
        hidden: B x N x D edge tokens after the block a latent codec reads, or None.
    """

    logits: torch.Tensor
    importance: dict[str, torch.Tensor]
    hidden: torch.Tensor | None = None

    def subset(self, index) -> "EdgeAnalysis":
        return EdgeAnalysis(self.logits[index], {k: v[index] for k, v in self.importance.items()},
                            None if self.hidden is None else self.hidden[index])


@dataclass
class Transmission:
    """What the edge does with B images.

    Attributes:
        edge_logits: B x C logits of the edge model.
        offloaded: B booleans, True where the image is sent.
        mask: B x N booleans, the patches selected (rows of kept images too).
        strings: B entries, the byte string sent, or None (answered at the edge).
        level: B x N levels of the sent patches (version-2 strings; 0 = not sent), or None.
    """

    edge_logits: torch.Tensor
    offloaded: torch.Tensor
    mask: torch.Tensor
    strings: list[bytes | None]
    level: torch.Tensor | None = None

    @property
    def bits(self) -> torch.Tensor:
        """B int64: bits on the wire per image (8 x string length, 0 when not sent)."""
        return torch.tensor([8 * len(s) if s is not None else 0 for s in self.strings], dtype=torch.int64)


class EdgeEncoder:
    """Gate, importance, selection, quantization and packing on the edge device.

    The edge ViT runs in fp32 unless ``bf16`` (bf16 autocast on CPU).

    Args:
        model: the edge ViT.
        selection: rule choosing the patches to send.
        gate: when to offload; None offloads every image.
        importance: ``mean``, ``mean_layers`` or ``rollout`` (see :mod:`semcomm.importance`).
        codec: a codec pair for version-2 strings; None sends raw 8-bit pixels (version 1).
        policy: the level of each selected patch (version 2; default: the codec's middle level).
        hint: a hint coder: the edge's prediction travels in each string for fusion (version 2).

    >>> from semcomm.models import create_model
    >>> from semcomm.selection import TopK
    >>> edge = create_model("semcomm_vit_edge_p4_32")
    >>> sent = EdgeEncoder(edge, TopK(8), gate=None).encode(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    >>> sent.bits.tolist()
    [3144, 3144]
    """

    def __init__(self, model: ViTAdapter, selection: SelectionRule, gate: Gate | None = Gate(),
                 importance: str = "mean", batch_size: int = DEFAULT_BATCH, bf16: bool = False,
                 codec: CodecPair | None = None, policy: LevelPolicy | None = None, hint: HintCoder | None = None):
        self.model, self.selection, self.gate = model.eval(), selection, gate
        self.importance, self.batch_size, self.bf16 = importance, batch_size, bf16
        self.codec, self.hint = codec, hint
        if codec is None and (policy is not None or hint is not None):
            raise ValueError("level policies and hints need a codec pair (version-2 strings)")
        if codec is not None:
            if codec.num_patches != model.num_patches:
                raise ValueError(f"codec {codec.name} codes {codec.num_patches} patches, the edge has {model.num_patches}")
            policy = policy or FixedLevel((codec.levels + 1) // 2)
        self.policy = policy

    def analyze(self, images: torch.Tensor, methods: tuple[str, ...] | None = None,
                desc: str | None = None) -> EdgeAnalysis:
        """Run the edge ViT once on B x 3 x H x W images: logits, importance by each method, and the
        tokens the codec pair reads (if any).

        Args:
            methods: importance methods to compute; default the encoder's own.
        """
        methods = methods or (self.importance,)
        check_images(images, self.model.image_size)
        if len(images) == 0:  # an empty batch: nothing to analyse
            n = self.model.num_patches
            return EdgeAnalysis(torch.empty(0, self.model.num_classes), {m: torch.empty(0, n) for m in methods})
        importance = {m: [] for m in methods}
        hidden = []
        layers = attention_layers(*methods)
        tap = () if self.codec is None or self.codec.tap is None else (self.codec.tap,)

        def run(part):
            out = self.model.forward_with_attention(images[part], layers, hidden=tap)
            for m in methods:
                importance[m].append(patch_importance(out, m))
            if tap:
                hidden.append(out.hidden[tap[0]].float())
            return out.logits

        logits = map_batches(run, len(images), self.batch_size, self.bf16, desc)
        return EdgeAnalysis(logits, {m: torch.cat(v) for m, v in importance.items()},
                            torch.cat(hidden) if hidden else None)

    def encode(self, images: torch.Tensor, generator: torch.Generator | int | None = None,
               analysis: EdgeAnalysis | None = None) -> Transmission:
        """Decide, select, quantize and pack for B images (``analysis`` reuses an earlier edge pass)."""
        images = to_uint8(images)
        analysis = analysis or self.analyze(images)
        importance = analysis.importance[self.importance]
        mask = self.selection(importance, self.model.grid_size, as_generator(generator))
        return self.transmit(images, analysis.logits, mask, importance=importance, hidden=analysis.hidden)

    def transmit(self, images: torch.Tensor, edge_logits: torch.Tensor, mask: torch.Tensor,
                 importance: torch.Tensor | None = None, hidden: torch.Tensor | None = None) -> Transmission:
        """Pack the masked patches (``mask``: B x N booleans) of every image the gate offloads.

        With a codec pair, ``importance`` (B x N) feeds the level policy and
        ``hidden`` (B x N x D) is the edge's tokens when the pair reads them.
        """
        images = to_uint8(images)
        if mask.dtype != torch.bool or tuple(mask.shape) != (len(images), self.model.num_patches):
            raise ValueError(f"mask must be a B x N = {len(images)} x {self.model.num_patches} bool tensor, "
                             f"got {mask.dtype} {tuple(mask.shape)}")
        if (mask.sum(1) == 0).any():
            raise ValueError("every image must select at least one patch")
        offloaded = self.gate.offload(edge_logits) if self.gate is not None else torch.ones(len(images), dtype=torch.bool)
        if self.codec is None:
            return Transmission(edge_logits, offloaded, mask, self._pack_v1(images, mask, offloaded))
        strings: list[bytes | None] = [None] * len(images)
        level = torch.zeros(mask.shape, dtype=torch.int64)
        sent = offloaded.nonzero().flatten()
        if len(sent):
            source = self.codec.source(images[sent], None if hidden is None else hidden[sent])
            rates = self.codec.rates(source, mask[sent]) if self.policy.needs_rates else None
            weights = importance[sent] if importance is not None else mask[sent].float()
            level[sent] = self.policy(mask[sent], weights, rates, self.codec.distortion)
            hint = self.hint.symbols(edge_logits[sent]) if self.hint is not None else None
            for i, string in zip(sent.tolist(), self.codec.encode(source, level[sent], hint)):
                strings[i] = string
        return Transmission(edge_logits, offloaded, mask, strings, level)

    def _pack_v1(self, images, mask, offloaded) -> list[bytes | None]:
        patches = patchify(images, self.model.patch_size).numpy()
        mask_np, sent = mask.numpy(), offloaded.numpy()
        return [bitstream.pack(np.flatnonzero(mask_np[i]), patches[i][mask_np[i]], self.model.num_patches)
                if sent[i] else None for i in range(len(images))]


def collaborative_predictions(transmission: Transmission, server_logits: torch.Tensor) -> torch.Tensor:
    """B class predictions: the server's where offloaded, else (or where its logits are NaN) the edge's.

    ``server_logits`` has one row per offloaded image, in order.
    """
    predictions = transmission.edge_logits.argmax(dim=-1).clone()
    offloaded = transmission.offloaded.nonzero().flatten()
    if len(server_logits) != len(offloaded):
        raise ValueError(f"server_logits has {len(server_logits)} rows for {len(offloaded)} offloaded images")
    received = ~server_logits.isnan().any(dim=-1)
    predictions[offloaded[received]] = server_logits[received].argmax(dim=-1)
    return predictions

