"""The edge device: one pass of the edge ViT, the gate, patch importance and selection, then the codec.

The edge encoder runs the edge ViT once per image; its logits feed the gate
and its attention the patch importance. An image the gate keeps is answered
at the edge and costs 0 bits; an offloaded image becomes one byte string
holding the selected patches, each at the level a level policy gives it,
written by a codec pair (:mod:`semcomm.edge.codec`): ``raw8`` (the default)
writes raw 8-bit pixels (format version 1), the other pairs a version-2
string with the edge's prediction as side information when a hint coder is
given; of these the encoder also keeps what each string was coded from
(:attr:`Transmission.frames`), from which a link cuts packets. The encoder
calls every pair alike; it imports nothing of the rate stage or the wire.

Images are checked once, where they come in (:meth:`EdgeEncoder.encode`,
:meth:`~EdgeEncoder.analyze`, :meth:`~EdgeEncoder.transmit`): B x 3 x H x W
uint8, or float in [0, 1] (sent as 8-bit pixels, rounded), H x W the edge's.
NaN or infinite logits or attention of the edge model are refused by its
adapter (:class:`~semcomm.inference.NonFiniteOutputError`, naming the
adapter's class and method and the images by their index among those given),
with or without a gate; edge logits given to :meth:`~EdgeEncoder.transmit`
are checked alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from semcomm.core.devices import host
from semcomm.core.seeding import as_generator
from semcomm.edge.codec import CODECS, EdgeCodec, FramedCodec, HintSymbols, LevelPolicy
from semcomm.edge.gating import Gate
from semcomm.edge.importance import attention_layers, patch_importance
from semcomm.edge.selection import SelectionRule
from semcomm.inference import DEFAULT_BATCH, describe_rows, map_batches, nonfinite_rows
from semcomm.models.adapter import ViTAdapter, check_images


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
        level: B x N levels of the sent patches (0 = not sent; raw8 sends every selected patch at level 1).
        frames: B entries, what each string was coded from (the codec's frame fields and symbols, see
            :class:`~semcomm.edge.codec.FramedCodec`; None where not sent), so that a link cuts packets
            from the symbols without decoding the strings; None for a codec that offers no frames (raw8)
            and for strings that came without them.
    """

    edge_logits: torch.Tensor
    offloaded: torch.Tensor
    mask: torch.Tensor
    strings: list[bytes | None]
    level: torch.Tensor
    frames: list[Any | None] | None = None

    @property
    def bits(self) -> torch.Tensor:
        """B int64: bits on the wire per image (8 x string length, 0 when not sent)."""
        return torch.tensor([8 * len(s) if s is not None else 0 for s in self.strings], dtype=torch.int64)


class EdgeEncoder:
    """Gate, importance, selection, levels and the codec's strings on the edge device.

    The edge ViT runs in fp32 unless ``bf16`` (bf16 autocast on CPU).

    Args:
        model: the edge ViT.
        selection: rule choosing the patches to send.
        gate: when to offload; None offloads every image.
        importance: ``mean``, ``mean_layers`` or ``rollout`` (see :mod:`semcomm.edge.importance`).
        codec: a codec pair, or its registered name (``semcomm.rate.list_codecs()``); the default
            ``raw8`` sends raw 8-bit pixels (format version 1), on the edge's own patch grid.
        policy: the level of each selected patch (default: the pair's own, its middle level).
        hint: a hint coder: the edge's prediction travels in each string for fusion.

    >>> from semcomm.models import create_model
    >>> from semcomm.edge.selection import TopK
    >>> edge = create_model("semcomm_vit_edge_p4_32")
    >>> sent = EdgeEncoder(edge, TopK(8), gate=None).encode(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    >>> sent.bits.tolist()
    [3144, 3144]
    """

    def __init__(self, model: ViTAdapter, selection: SelectionRule, gate: Gate | None = Gate(),
                 importance: str = "mean", batch_size: int = DEFAULT_BATCH, bf16: bool = False,
                 codec: str | EdgeCodec = "raw8", policy: LevelPolicy | None = None, hint: HintSymbols | None = None):
        self.model, self.selection, self.gate = model.eval(), selection, gate
        self.importance, self.batch_size, self.bf16 = importance, batch_size, bf16
        if not isinstance(codec, str) and not hasattr(codec, "for_edge"):
            raise TypeError(f"codec must be a codec pair or a registered name ({CODECS.help()}), got {codec!r}")
        self.codec: EdgeCodec | FramedCodec = CODECS.create(codec).for_edge(self.model)
        self.policy, self.hint = self.codec.edge_policy(policy, hint), hint

    def analyze(self, images: torch.Tensor, methods: tuple[str, ...] | None = None,
                desc: str | None = None, tokens: bool = True) -> EdgeAnalysis:
        """Run the edge ViT once on B x 3 x H x W images: logits, importance by each method, and the
        tokens the codec pair reads (if any).

        Args:
            methods: importance methods to compute; default the encoder's own.
            tokens: also keep the tokens the codec pair reads (False: ``hidden`` is None, none are kept).
        """
        check_images(images, self.model.image_size)
        return self._analyze(images, methods or (self.importance,), desc, tokens)

    def encode(self, images: torch.Tensor, generator: torch.Generator | int | None = None,
               analysis: EdgeAnalysis | None = None) -> Transmission:
        """Decide, select, set levels and compress B images (``analysis`` reuses an earlier edge pass)."""
        images = self._pixels(images)
        analysis = analysis or self._analyze(images, (self.importance,))
        importance = analysis.importance[self.importance]
        mask = self.selection(importance, self.model.grid_size, as_generator(generator))
        return self._transmit(images, analysis.logits, mask, importance, analysis.hidden)

    def transmit(self, images: torch.Tensor, edge_logits: torch.Tensor, mask: torch.Tensor,
                 importance: torch.Tensor | None = None, hidden: torch.Tensor | None = None) -> Transmission:
        """Compress the masked patches (``mask``: B x N booleans) of every image the gate offloads.

        ``importance`` (B x N) feeds the level policy (default: the mask) and ``hidden`` (B x N x D) is
        the edge's tokens when the pair reads them.
        """
        return self._transmit(self._pixels(images), edge_logits, mask, importance, hidden)

    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        """The one check of incoming images (B x 3 x H x W, the edge's H x W), as 8-bit pixels."""
        check_images(images, self.model.image_size)
        return images if images.dtype == torch.uint8 else (images * 255).round().to(torch.uint8)

    def _analyze(self, images: torch.Tensor, methods: tuple[str, ...], desc: str | None = None,
                 tokens: bool = True) -> EdgeAnalysis:
        """The edge pass of checked images (see :meth:`analyze`)."""
        if len(images) == 0:  # an empty batch: nothing to analyse
            n = self.model.num_patches
            return EdgeAnalysis(torch.empty(0, self.model.num_classes, device="cpu"),
                                {m: torch.empty(0, n, device="cpu") for m in methods})
        importance = {m: [] for m in methods}
        hidden = []
        layers = attention_layers(*methods)
        tap = () if self.codec.tap is None or not tokens else (self.codec.tap,)

        def run(part):
            out = self.model.forward_with_attention(images[part], layers, hidden=tap)
            for m in methods:
                importance[m].append(host(patch_importance(out, m).float()))
            if tap:
                hidden.append(host(out.hidden[tap[0]].float()))
            return out.logits

        logits = map_batches(run, len(images), self.batch_size, self.bf16, desc)
        return EdgeAnalysis(logits, {m: torch.cat(v) for m, v in importance.items()},
                            torch.cat(hidden) if hidden else None)

    def _transmit(self, images: torch.Tensor, edge_logits: torch.Tensor, mask: torch.Tensor,
                  importance: torch.Tensor | None, hidden: torch.Tensor | None) -> Transmission:
        """The mask's one check, the gate, the levels and the pair's strings, for checked 8-bit images (on any
        device; the masks, levels and strings are made on the CPU)."""
        mask, edge_logits = host(mask), host(edge_logits)
        importance = None if importance is None else host(importance)
        if mask.dtype != torch.bool or tuple(mask.shape) != (len(images), self.model.num_patches):
            raise ValueError(f"mask must be a B x N = {len(images)} x {self.model.num_patches} bool tensor, "
                             f"got {mask.dtype} {tuple(mask.shape)}")
        if (mask.sum(1) == 0).any():
            raise ValueError("every image must select at least one patch")
        rows = nonfinite_rows(edge_logits)
        if rows:  # the edge's model checks its own; these may come from elsewhere (transmit)
            raise ValueError(f"the edge_logits given to EdgeEncoder.transmit hold NaN or infinite values for "
                             f"{describe_rows(rows, 'image')}")
        offloaded = (self.gate.offload(edge_logits) if self.gate is not None
                     else torch.ones(len(images), dtype=torch.bool, device="cpu"))
        strings: list[bytes | None] = [None] * len(images)
        frames: list[Any | None] | None = [None] * len(images) if hasattr(self.codec, "frames") else None
        level = torch.zeros(mask.shape, dtype=torch.int64, device="cpu")
        sent = offloaded.nonzero().flatten()
        if len(sent):
            source = self.codec.source(images[sent], None if hidden is None else hidden[sent])
            rates = self.codec.rates(source, mask[sent]) if self.policy.needs_rates else None
            weights = importance[sent] if importance is not None else mask[sent].float()
            level[sent] = self.policy(mask[sent], weights, rates, self.codec.distortion)
            hint = self.hint.symbols(edge_logits[sent]) if self.hint is not None else None
            if frames is None:
                coded = self.codec.compress(source, level[sent], hint)
            else:  # in the codec's two steps, keeping the frames
                made = self.codec.frames(source, level[sent], hint)
                coded = [self.codec.pack(frame) for frame in made]
                for i, frame in zip(sent.tolist(), made):
                    frames[i] = frame
            for i, string in zip(sent.tolist(), coded):
                strings[i] = string
        return Transmission(edge_logits, offloaded, mask, strings, level, frames)


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
