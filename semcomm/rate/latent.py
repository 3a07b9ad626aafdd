"""The learned latent codec: each sent patch as a few learned numbers, quantized and entropy coded.

The edge maps every patch to ``channels`` numbers with a small trainable
linear bottleneck, from either

* ``source="pixels"`` (the shipped pair): the patch's normalised pixels;
  the map starts as the principal components of the server's own patch
  embeddings (:func:`~semcomm.train.latent.pca_init`), so the server
  sees its usual tokens from the first step; or
* ``source="tokens"``: the edge ViT's tokens after block ``tap`` (the edge
  as the semantic encoder literally), through a LayerNorm first.

Every sent patch is quantized at its own *level* m in 1..``levels``: the
latent is scaled by the gain 2^(m - 1 + gain_offset) before rounding, so
each level up halves the quantizer step (about one more bit per active
channel, a quarter of the squared error): the bit-depth ladder of
importance-aware quantization. Each level has its own factorized entropy
model (CompressAI's ``EntropyBottleneck``) for the rate term in training; the
shipped integer tables are fitted to the symbols the trained codec produces
on the training split.

On the server a linear embedding (plus a learned embedding of the level)
turns each received latent into a server token, which gets the server's
position embedding of *its* patch; CLS is prepended and the server ViT
(initialised from the zoo server, fine-tuned with the codec) runs unchanged.

Shapes: source values B x N x in_dim; latents B x N x C (C = ``channels``);
levels B x N int64 (0 = patch not sent); bits are per image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import timm
import torch
from compressai.entropy_models import EntropyBottleneck
from einops import rearrange
from torch import nn

from semcomm.core.devices import as_tensor, full_precision, host
from semcomm.edge.codec import CODECS
from semcomm.rate.entropy import SymbolTables
from semcomm.rate.framed import TableCodedPair
from semcomm.wire import v2 as fmt
from semcomm.zoo import CheckpointError


@dataclass(frozen=True)
class LatentConfig:
    """Architecture of a latent codec pair.

    Attributes:
        source: ``pixels`` (each patch's normalised pixels, in (channel, row,
            column) order) or ``tokens`` (the edge ViT's tokens after block ``tap``).
        in_dim: values per patch the bottleneck reads (3 P^2 for pixels, the edge width for tokens).
        tap: edge block (0-based) whose output tokens are coded (``tokens`` only).
        channels: latent numbers per patch (C).
        levels: quantizer levels per patch (1..levels; 0 means not sent).
        gain_offset: level m scales the latent by 2^(m - 1 + gain_offset) before rounding.
        patch_size: pixels per patch side (``pixels``).
        mean, std: per-channel normalisation of [0, 1] pixels (``pixels``).
        server_architecture: timm architecture of the server ViT.
        num_classes: classes of the server head.
    """

    source: str = "pixels"
    in_dim: int = 48
    tap: int | None = None
    channels: int = 16
    levels: int = 5
    gain_offset: int = -2
    patch_size: int = 4
    mean: tuple[float, ...] = (0.4914, 0.4822, 0.4465)
    std: tuple[float, ...] = (0.2470, 0.2435, 0.2616)
    server_architecture: str = "semcomm_vit_server_p4_32"
    num_classes: int = 10

    def __post_init__(self):
        if self.source not in ("pixels", "tokens"):
            raise ValueError(f"latent source must be 'pixels' or 'tokens', got {self.source!r}")
        if (self.source == "tokens") != (self.tap is not None):
            raise ValueError("a token source needs the edge block `tap` to read; a pixel source none")

    @classmethod
    def from_dict(cls, data: dict) -> "LatentConfig":
        data = {**data, **{k: tuple(data[k]) for k in ("mean", "std") if k in data}}
        return cls(**data)

    def gain(self, level) -> torch.Tensor:
        """Quantizer gain of level m, 2^(m - 1 + gain_offset) (the step is its inverse); float64."""
        return torch.exp2(as_tensor(level, torch.float64) - 1 + self.gain_offset)


WEIGHTS_PREFIX = "weights."  # a shipped pair's codec weights sit beside its tables under this prefix


def shipped_weights(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The codec's own state (prefix removed) among a shipped pair's tensors."""
    return {k[len(WEIGHTS_PREFIX):]: v for k, v in tensors.items() if k.startswith(WEIGHTS_PREFIX)}


class LatentBottleneck(nn.Module):
    """Edge side: B x N x in_dim values per patch -> B x N x C latents (before quantization).

    A linear map (after a LayerNorm for edge tokens, whose scale varies);
    for pixels it starts as the principal components of the server's own
    patch embeddings (:func:`~semcomm.train.latent.pca_init`), so the server sees its usual tokens.
    """

    def __init__(self, in_dim: int, channels: int, norm: bool):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim) if norm else nn.Identity()
        self.proj = nn.Linear(in_dim, channels)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(values))


def patch_values(images: torch.Tensor, config: LatentConfig) -> torch.Tensor:
    """B x N x 3P^2 normalised pixel values of uint8 or [0, 1] images, (channel, row, column) per patch."""
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    mean, std = (torch.tensor(v, device=x.device).view(1, 3, 1, 1) for v in (config.mean, config.std))
    x = (x - mean) / std
    p = config.patch_size
    return rearrange(x, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=p, p2=p)


class LatentEntropyModels(nn.Module):
    """One factorized ``EntropyBottleneck`` (C channels) per quantizer level."""

    def __init__(self, channels: int, levels: int):
        super().__init__()
        self.channels, self.levels = channels, levels
        self.models = nn.ModuleList(EntropyBottleneck(channels) for _ in range(levels))

    def forward(self, scaled: torch.Tensor, level: torch.Tensor, training: bool | None = None):
        """Noisy (training) or rounded values and likelihoods of K x C scaled latents at K levels (1..L)."""
        values = torch.empty_like(scaled)
        likelihoods = torch.empty_like(scaled)
        for m in range(1, self.levels + 1):
            rows = level == m
            if rows.any():
                v, p = self.models[m - 1](scaled[rows][:, :, None], training)  # K_m x C x 1
                values[rows], likelihoods[rows] = v[..., 0], p[..., 0]
        return values, likelihoods

    def medians(self) -> torch.Tensor:
        """levels x C medians that symbols are centred on."""
        return torch.stack([m.quantiles[:, 0, 1] for m in self.models])

    def aux_loss(self) -> torch.Tensor:
        return sum(m.loss() for m in self.models)


class LatentServer(nn.Module):
    """Server side: received latents at their positions and levels -> B x classes logits."""

    def __init__(self, config: LatentConfig):
        super().__init__()
        self.vit = timm.create_model(config.server_architecture, num_classes=config.num_classes)
        dim = self.vit.embed_dim
        self.embed = nn.Linear(config.channels, dim)
        self.level_embed = nn.Embedding(config.levels + 1, dim)
        nn.init.zeros_(self.level_embed.weight)

    def forward(self, latents: torch.Tensor, positions: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """Logits from K received latents per image.

        Args:
            latents: B x K x C dequantized latents.
            positions: B x K int64 patch indices.
            level: B x K int64 levels (1..L).
        """
        return self.classify(self.embed(latents) + self.level_embed(level), positions)

    def classify(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits from B x K x D patch tokens (before position embedding) at B x K ``positions``."""
        vit = self.vit
        prefix = vit.num_prefix_tokens
        tokens = tokens + vit.pos_embed[0, prefix:][positions]
        cls = (vit.cls_token + vit.pos_embed[:, :prefix]).expand(len(tokens), -1, -1)
        tokens = vit.norm(vit.blocks(torch.cat([cls, tokens], dim=1)))
        return vit.forward_head(tokens)


class LatentCodec(nn.Module):
    """The trainable parts of a latent codec pair: edge bottleneck, entropy models, server.

    >>> codec = LatentCodec(LatentConfig())
    >>> pixels = torch.randn(2, 64, 48)
    >>> level = torch.full((2, 64), 3)
    >>> out = codec(pixels, level)
    >>> out.logits.shape, out.bits.shape
    (torch.Size([2, 10]), torch.Size([2]))
    """

    def __init__(self, config: LatentConfig):
        super().__init__()
        self.config = config
        self.bottleneck = LatentBottleneck(config.in_dim, config.channels, norm=config.source == "tokens")
        self.entropy = LatentEntropyModels(config.channels, config.levels)
        self.server = LatentServer(config)

    def forward(self, tokens: torch.Tensor, level: torch.Tensor, training: bool | None = None) -> "LatentForward":
        """Training / estimation pass on B x N x in_dim source values with B x N levels (0 = not sent).

        Every image must send the same number K of patches (the batch is
        rectangular). The server input is the straight-through rounded
        latent; the rate comes from the noisy latent's likelihood in
        training, the rounded one's otherwise (``estimated_bits``).
        """
        b, n, _ = tokens.shape
        sent = level > 0
        k = int(sent[0].sum())
        if not (sent.sum(1) == k).all():
            raise ValueError("every image in a batch must send the same number of patches")
        positions = sent.nonzero()[:, 1].view(b, k)
        lv = level.gather(1, positions)
        y = self.bottleneck(tokens.gather(1, positions[..., None].expand(-1, -1, tokens.shape[-1])))
        gain = self.config.gain(lv).float()[..., None]
        scaled = (y.float() * gain).reshape(b * k, -1)
        flat_level = lv.reshape(-1)
        with full_precision():  # likelihood differences need fp32
            _, likelihoods = self.entropy(scaled.float(), flat_level, training)
        medians = self.entropy.medians()[flat_level - 1]
        rounded = torch.round(scaled - medians) + medians
        hard = scaled + (rounded - scaled).detach()  # straight-through
        latents = (hard.view(b, k, -1)) / gain
        logits = self.server(latents, positions, lv)
        bits = -torch.log2(likelihoods).sum(-1).view(b, k).sum(1)
        return LatentForward(logits, bits)


@dataclass
class LatentForward:
    """Logits (B x classes) and estimated bits of the latent payload per image (B)."""

    logits: torch.Tensor
    bits: torch.Tensor


class LatentPair(TableCodedPair):
    """The latent codec as a codec pair: edge tokens in, server logits out (see the module docstring).

    The rANS tables are fitted to the trained codec's symbols (one per level
    and channel, level-major); each sent patch contributes C symbols
    ``round(y g_m - median)``. With ``table_sets`` (switched tables, see
    :class:`TableCodedPair`) each image is coded with the cheapest of S sets.
    """

    name = "latent"

    def __init__(self, codec: LatentCodec, tables: SymbolTables, medians: torch.Tensor, codec_id: int = 3,
                 hint_coder=None, bf16: bool = True, entropy_coding: bool = True,
                 distortion: torch.Tensor | None = None, table_sets: list[SymbolTables] | None = None):
        config = codec.config
        self.codec = codec.eval()
        self.config = config
        self.tap = config.tap
        self.values_per_patch = config.channels
        self.num_classes = config.num_classes
        self.bf16 = bf16
        self.hint_coder = hint_coder
        num_patches = self.codec.server.vit.patch_embed.num_patches
        if not entropy_coding:  # the same quantizer, symbols in fixed-length fields: its own format
            codec_id, self.name = codec_id + 8, f"{self.name}-fixed"
        self.layout = fmt.Layout(codec_id, num_patches, config.levels, entropy_coded=entropy_coding,
                                 param_widths=self.switched_widths(table_sets, entropy_coding))
        expected = config.levels * config.channels
        if (len(tables) != expected or any(len(t) != expected for t in table_sets or ())
                or tuple(medians.shape) != (config.levels, config.channels)):
            raise ValueError(f"a latent pair needs {config.levels} x {config.channels} tables (per set) and medians, "
                             f"got {len(tables)} tables, sets of {[len(t) for t in table_sets or ()]} and medians "
                             f"of shape {tuple(medians.shape)}")
        self.tables, self.table_sets, self.distortion = tables, table_sets, distortion
        self._medians = medians.detach().double()
        self._medians_np = self._medians.numpy()
        self._gains = config.gain(torch.arange(config.levels + 1, device="cpu"))  # (L + 1), index = level
        self._inverse_gains_np = (1 / self._gains).numpy()

    @classmethod
    def from_zoo(cls, name: str, hint: bool = True, bf16: bool = True, entropy_coding: bool = True) -> "LatentPair":
        """A shipped latent pair (SHA-256 verified), with its edge's hint coder unless ``hint`` is False."""
        from semcomm.rate.zoo import load_codec_tensors, load_hint

        card, tensors = load_codec_tensors(name)
        codec = LatentCodec(LatentConfig.from_dict(card.config["codec"]))
        weights = {k: v.float() for k, v in shipped_weights(tensors).items()}
        missing, unexpected = codec.load_state_dict(weights, strict=False)
        if unexpected or any(not k.startswith("entropy.") for k in missing):
            raise CheckpointError(f"codec {name} does not fit its architecture: missing {missing[:3]}, "
                                  f"unexpected {unexpected[:3]}")
        tables = SymbolTables.from_state_dict(tensors, "tables.")
        sets = card.config.get("table_sets", 1)
        table_sets = SymbolTables.from_state_dict(tensors, "switched.").split(sets) if sets > 1 else None
        return cls(codec, tables, tensors["medians"], codec_id=card.config.get("codec_id", 3),
                   hint_coder=load_hint(card.edge) if hint else None, bf16=bf16, entropy_coding=entropy_coding,
                   distortion=tensors.get("distortion"), table_sets=table_sets)

    def source(self, images, hidden=None):
        if self.config.source == "pixels":
            values = patch_values(images, self.config)
        elif hidden is None:
            raise ValueError(f"the latent codec reads the edge's tokens after block {self.tap}; none were given")
        else:
            values = hidden.float()
        with torch.no_grad():
            return host(self.codec.bottleneck(values.to(self.device)).float()).double()

    def quantize(self, latents: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        m = level.clamp(1, self.levels)
        return torch.round(latents * self._gains[m][..., None] - self._medians[m - 1]).long()

    def dequantize(self, symbols, level, params):
        q = symbols.reshape(len(level), -1)
        values = (q + self._medians_np[level - 1]) * self._inverse_gains_np[level][:, None]
        return torch.from_numpy(values.astype(np.float32))

    backend = None  # a backend that reads latents, standing where the pair's server stands (with_backend)

    def with_backend(self, backend) -> "LatentPair":
        """This pair with ``backend`` classifying what arrives in place of its own server: a backend that reads
        latents (``backend.reads == "latents"``, e.g. ``MonolithicBackend.of_latent_pair(pair)`` or sub-models
        distilled from this pair's server) over the same classes; None restores the pair's server. Returns self."""
        if backend is not None:
            if getattr(backend, "reads", None) != "latents":
                raise ValueError(f"{type(backend).__name__} reads {getattr(backend, 'reads', 'pixels')}, but the "
                                 f"{self.name} pair's server reads latents: it cannot stand behind this codec")
            if backend.num_classes != self.num_classes:
                raise ValueError(f"{type(backend).__name__} gives logits over {backend.num_classes} classes but the "
                                 f"{self.name} pair's over {self.num_classes}")
        self.backend = backend
        return self

    def server_logits(self, values, positions, level):
        if self.backend is not None:
            return self.backend.classify_latents(values, positions, level)
        device = self.device
        return self.codec.server(values.to(device), positions.to(device), level.to(device))


@CODECS.register("latent-cifar10", server_reads="latents")  # a latent backend can stand in for its server
def latent_cifar10(hint: bool = True, bf16: bool = True, entropy_coding: bool = True) -> LatentPair:
    """The shipped latent pair for CIFAR-10 (edge ``vit-edge-cifar10`` tokens after block 2, its own server);
    ``entropy_coding=False`` writes the same symbols in fixed-length fields (codec id 11)."""
    return LatentPair.from_zoo("latent-cifar10", hint=hint, bf16=bf16, entropy_coding=entropy_coding)
