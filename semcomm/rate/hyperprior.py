"""The hyperprior latent codec, trained end to end: a non-linear transform of the edge's tokens, an entropy
model with context across the sent patches, and the server, as one module.

Per offloaded image with K sent patches (positions p_k, levels m_k):

* **analysis** (edge): each patch's values (the edge ViT's tokens after block ``tap``, LayerNorm-ed, and / or
  its normalised pixels) -> y_k, C numbers: a linear map plus an MLP (its last layer starts at zero, so a
  pair warm-started from the linear ``latent-cifar10`` starts as that pair);
* **hyper-analysis** (edge): z = the image's side latent, ``hyper_channels`` numbers pooled over the sent
  patches (each patch's y and position embedding through a small MLP, averaged), coded with a factorized
  ``EntropyBottleneck``: symbols round(z - median);
* **prior** (both ends): a one-block transformer over a token for z and one per sent patch (its position
  embedding; with ``context``, the decoded value and level of the *anchor* patches, (row + column) even)
  predicts each patch's Gaussian mean and scale of y. Without ``context`` one pass codes every patch;
  with it, pass 1 (nothing decoded yet) codes the anchors, pass 2 (anchors known) the others: a checkerboard
  context that decodes in two batches;
* **quantizer**: patch k at level m is coded at gain g_m = 2^(m - 1 + gain_offset): u = y g_m, symbol
  round(u - mu g_m) under CompressAI's ``GaussianConditional`` with scale sigma g_m (the levels of
  importance-aware allocation, as in :mod:`semcomm.rate.latent`); the server reads y^ = symbol / g_m + mu;
* **server**: the latent server of :mod:`semcomm.rate.latent` with a residual MLP in its embedding.

Training (``forward``) uses noisy values for the rates and straight-through rounding for what the server and
the pass-2 context see (mixed quantization); bits per image are -log2 of the likelihoods of z and y.

Shapes: values B x N x in_dim; level B x N int64 (0 = not sent); y B x K x C; z B x Cz.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from timm.models.vision_transformer import Block
from torch import nn

from semcomm.core.devices import as_tensor, full_precision
from semcomm.edge.importance import patch_importance
from semcomm.models import ViTAdapter
from semcomm.rate.latent import LatentForward, LatentServer, patch_values

SOURCES = ("tokens", "pixels", "both")
LOG_SCALE_RANGE = (-8.0, 8.0)  # the prior's log-scale (in y units) is clamped to this range


@dataclass(frozen=True)
class HyperConfig:
    """Architecture of a hyperprior latent codec pair.

    Attributes:
        source: what the analysis reads per patch: ``tokens`` (the edge's tokens after block ``tap``),
            ``pixels`` (normalised pixels, (channel, row, column) order) or ``both`` (concatenated).
        tap: edge block (0-based) whose output tokens are read (``tokens`` / ``both``).
        token_dim: width of the edge's tokens.
        channels: C, latent numbers per patch.
        hidden: width of the analysis and synthesis MLPs (0: linear transforms only).
        hyper_channels: Cz, numbers of the side latent z per image.
        prior_dim, prior_heads: width and heads of the prior's transformer block.
        context: code the anchors first and the other patches given them (two passes).
        levels, gain_offset: quantizer levels 1..L, level m at gain 2^(m - 1 + gain_offset).
        patch_size, mean, std: the pixel patches (``pixels`` / ``both``).
        server_architecture, num_classes, num_patches: the server ViT and its patch grid.
    """

    source: str = "both"
    tap: int | None = 4
    token_dim: int = 128
    channels: int = 16
    hidden: int = 256
    hyper_channels: int = 16
    prior_dim: int = 64
    prior_heads: int = 4
    context: bool = True
    levels: int = 5
    gain_offset: int = -2
    patch_size: int = 4
    mean: tuple[float, ...] = (0.4914, 0.4822, 0.4465)
    std: tuple[float, ...] = (0.2470, 0.2435, 0.2616)
    server_architecture: str = "semcomm_vit_server_p4_32"
    num_classes: int = 10
    num_patches: int = 64

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"hyperlatent source must be one of {SOURCES}, got {self.source!r}")
        if (self.source != "pixels") != (self.tap is not None):
            raise ValueError("a token source needs the edge block `tap` to read; a pixel source none")
        if min(self.channels, self.hyper_channels, self.levels, self.prior_dim) < 1 or self.hidden < 0:
            raise ValueError(f"channels, hyper_channels, levels and prior_dim must be positive, hidden >= 0: {self}")

    @property
    def pixel_dim(self) -> int:
        return 3 * self.patch_size ** 2 if self.source != "tokens" else 0

    @property
    def in_dim(self) -> int:
        """Values per patch the analysis reads: pixels first, then tokens."""
        return self.pixel_dim + (self.token_dim if self.source != "pixels" else 0)

    @property
    def grid(self) -> int:
        return round(self.num_patches ** 0.5)

    def gain(self, level) -> torch.Tensor:
        """Quantizer gain of level m, 2^(m - 1 + gain_offset); float64."""
        return torch.exp2(as_tensor(level, torch.float64) - 1 + self.gain_offset)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "HyperConfig":
        return cls(**{**data, **{k: tuple(data[k]) for k in ("mean", "std") if k in data}})


def source_values(images: torch.Tensor, hidden: torch.Tensor | None, config: HyperConfig) -> torch.Tensor:
    """B x N x in_dim values the analysis reads: normalised pixels of uint8 images and / or the edge's
    B x N x D tokens ``hidden`` (after block ``tap``), on the tokens' device (else the images')."""
    parts = []
    if config.source != "tokens":
        parts.append(patch_values(images if hidden is None else images.to(hidden.device), config))
    if config.source != "pixels":
        if hidden is None:
            raise ValueError(f"the hyperlatent codec reads the edge's tokens after block {config.tap}; none were given")
        parts.append(hidden.float())
    return torch.cat(parts, -1)


def edge_pass(edge: ViTAdapter, images: torch.Tensor, config: HyperConfig) -> tuple[torch.Tensor, ...]:
    """(B x C edge logits, B x N mean importance, B x N x D tokens after block ``tap`` or None) of one edge pass."""
    tap = () if config.tap is None else (config.tap,)
    out = edge.forward_with_attention(images, (-1,), hidden=tap)
    return out.logits, patch_importance(out, "mean"), out.hidden[config.tap] if tap else None


def anchors(positions: torch.Tensor, config: HyperConfig) -> torch.Tensor:
    """B x K bool: the patches pass 1 codes ((row + column) even), all of them without ``context``."""
    if not config.context:
        return torch.ones_like(positions, dtype=torch.bool)
    return (positions // config.grid + positions % config.grid) % 2 == 0


def silent_mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    """Linear-GELU-Linear whose last layer starts at zero (a residual branch that starts silent)."""
    mlp = nn.Sequential(nn.Linear(inputs, hidden), nn.GELU(), nn.Linear(hidden, outputs))
    nn.init.zeros_(mlp[-1].weight)
    nn.init.zeros_(mlp[-1].bias)
    return mlp


class Analysis(nn.Module):
    """B x K x in_dim values -> B x K x C latents: a linear map of the pixels (else of the normed tokens)
    plus an MLP of everything (pixels and normed tokens)."""

    def __init__(self, config: HyperConfig):
        super().__init__()
        self.pixel_dim = config.pixel_dim
        self.norm = nn.LayerNorm(config.token_dim) if config.source != "pixels" else nn.Identity()
        self.proj = nn.Linear(config.pixel_dim or config.token_dim, config.channels)
        self.mlp = silent_mlp(config.in_dim, config.hidden, config.channels) if config.hidden else None

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        pixels, tokens = values[..., : self.pixel_dim], values[..., self.pixel_dim :]
        if tokens.shape[-1]:
            tokens = self.norm(tokens)
        y = self.proj(pixels if self.pixel_dim else tokens)
        return y if self.mlp is None else y + self.mlp(torch.cat([pixels, tokens], -1))


class ResidualEmbed(nn.Linear):
    """The server's embedding of received latents: a linear map (the latent pair's ``embed``) plus an MLP."""

    def __init__(self, channels: int, dim: int, hidden: int):
        super().__init__(channels, dim)
        self.mlp = silent_mlp(channels, hidden, dim) if hidden else None

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        out = super().forward(latents)
        return out if self.mlp is None else out + self.mlp(latents)


class HyperServer(LatentServer):
    """:class:`~semcomm.rate.latent.LatentServer` with a :class:`ResidualEmbed`."""

    def __init__(self, config: HyperConfig):
        super().__init__(config)
        self.embed = ResidualEmbed(config.channels, self.vit.embed_dim, config.hidden)


class HyperAnalysis(nn.Module):
    """B x K x C latents at B x K positions -> B x Cz side latent (mean over the patches of an MLP)."""

    def __init__(self, config: HyperConfig):
        super().__init__()
        dim = config.prior_dim
        self.embed = nn.Linear(config.channels, dim)
        self.pos = nn.Parameter(torch.randn(config.num_patches, dim) * 0.02)
        self.mlp = nn.Sequential(nn.GELU(), nn.Linear(dim, dim), nn.GELU())
        self.out = nn.Linear(dim, config.hyper_channels)

    def forward(self, y: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.out(self.mlp(self.embed(y) + F.embedding(positions, self.pos)).mean(1))


class Prior(nn.Module):
    """Gaussian mean and scale (y units) of every sent patch from z, the positions and the known patches."""

    def __init__(self, config: HyperConfig):
        super().__init__()
        dim = config.prior_dim
        self.hyper = nn.Linear(config.hyper_channels, dim)
        self.pos = nn.Parameter(torch.randn(config.num_patches, dim) * 0.02)
        self.level = nn.Embedding(config.levels + 1, dim)
        self.context = nn.Linear(config.channels, dim)
        self.block = Block(dim, config.prior_heads, mlp_ratio=2.0, qkv_bias=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 2 * config.channels)

    def forward(self, z_hat: torch.Tensor, positions: torch.Tensor, level: torch.Tensor, context: torch.Tensor,
                known: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, scale), each B x K x C, from B x Cz ``z_hat``, B x K ``positions`` and ``level``, and the
        B x K x C decoded values ``context`` of the patches marked in B x K bool ``known`` (others ignored)."""
        mask = known[..., None].to(context.dtype)
        tokens = F.embedding(positions, self.pos) + mask * (self.context(context * mask) + self.level(level))
        tokens = torch.cat([self.hyper(z_hat)[:, None], tokens], 1)
        mean, log_scale = self.head(self.norm(self.block(tokens)))[:, 1:].chunk(2, -1)
        return mean, log_scale.clamp(*LOG_SCALE_RANGE).exp()


def rounded(values: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """round(values - means) + means, with the straight-through gradient of the identity."""
    return values + (torch.round(values - means) + means - values).detach()


class HyperLatentCodec(nn.Module):
    """The trainable parts of a hyperlatent pair (see the module docstring).

    >>> codec = HyperLatentCodec(HyperConfig())
    >>> out = codec(torch.randn(2, 64, 176), torch.full((2, 64), 3))
    >>> out.logits.shape, out.bits.shape
    (torch.Size([2, 10]), torch.Size([2]))
    """

    def __init__(self, config: HyperConfig):
        super().__init__()
        self.config = config
        self.analysis = Analysis(config)
        self.hyper_analysis = HyperAnalysis(config)
        self.hyper_entropy = EntropyBottleneck(config.hyper_channels)
        self.prior = Prior(config)
        self.gaussian = GaussianConditional(None)
        self.server = HyperServer(config)

    def z_medians(self) -> torch.Tensor:
        """Cz medians that z's symbols are centred on."""
        return self.hyper_entropy.quantiles[:, 0, 1]

    def forward(self, values: torch.Tensor, level: torch.Tensor, training: bool | None = None) -> "HyperForward":
        """Training / estimation pass on B x N x in_dim values with B x N levels (0 = not sent); every image
        sends the same number K of patches. Rates: noisy values in training, rounded ones otherwise."""
        b = len(values)
        sent = level > 0
        k = int(sent[0].sum())
        if not (sent.sum(1) == k).all():
            raise ValueError("every image in a batch must send the same number of patches")
        positions = sent.nonzero()[:, 1].view(b, k)
        lv = level.gather(1, positions)
        with full_precision():  # the latents, their likelihoods and the prior in fp32
            y = self.analysis(values.float().gather(1, positions[..., None].expand(-1, -1, values.shape[-1])))
            z = self.hyper_analysis(y, positions)
            _, z_likelihood = self.hyper_entropy(z[..., None], training)
            z_hat = rounded(z, self.z_medians())
            gain = self.config.gain(lv).float()[..., None]
            anchor = anchors(positions, self.config)
            mean, scale = self.prior(z_hat, positions, lv, torch.zeros_like(y), torch.zeros_like(anchor))
            y_hat = rounded(y * gain, mean * gain) / gain
            if not anchor.all():
                context_mean, context_scale = self.prior(z_hat, positions, lv, y_hat, anchor)
                mean = torch.where(anchor[..., None], mean, context_mean)
                scale = torch.where(anchor[..., None], scale, context_scale)
                y_hat = rounded(y * gain, mean * gain) / gain
            _, y_likelihood = self.gaussian(y * gain, scale * gain, mean * gain, training)
        logits = self.server(y_hat, positions, lv)
        z_bits = -torch.log2(z_likelihood).flatten(1).sum(1)
        y_bits = -torch.log2(y_likelihood).flatten(1).sum(1)
        return HyperForward(logits, z_bits + y_bits, z_bits)


@dataclass
class HyperForward(LatentForward):
    """Logits (B x classes), estimated bits per image (B, z and y) and the side latent's share (B)."""

    z_bits: torch.Tensor

