"""Learned analog joint source-channel coding (JSCC): the sent patches as channel symbols, trained through the
channel for the task, one model for a range of SNRs.

Per offloaded image with K sent patches (positions p_k) at Es/N0 ``snr_db``:

1. **encoder** (edge): the hyperlatent pair's :class:`~semcomm.rate.hyperprior.Analysis` of each patch's values
   (pixels and the edge's tokens after block ``tap``) -> 2S reals per patch; an SNR-adaptive attention-feature
   module (ADJSCC, Xu et al. 2021) scales those channels by 2 sigmoid(MLP(their mean magnitude over the
   patches, snr_db / 10)), starting at 1;
2. **power**: the image's K S complex symbols (consecutive pairs of reals) are scaled to mean energy Es = 1
   exactly (the average power constraint; the encoder shares the power among its patches as it learns to);
3. **channel**: ``channels.AWGN`` or ``channels.FlatFading`` (block: one Rayleigh gain per image, fast: one per
   symbol; the receiver's CSI perfect or estimated from pilots), y = h x + n, n ~ CN(0, N0), N0 = 10^(-snr/10);
4. **receiver** (server): one-tap MMSE equalisation with the receiver's h_hat (``channels.Equalizer("mmse")``),
   times a learned gain; each patch's 2S estimates go through the server's embedding, plus an SNR embedding
   (an MLP of snr_db / 10 and the patch's mean effective SNR 10 log10(|h_hat|^2 / N0) / 10, starting at 0)
   and the patch's position embedding, into the server ViT.

The SNR modules read every SNR at most at ``snr_ceiling`` (the top of the training range): above it the pair
runs as at the best SNR it was trained for.

Channel uses per image: K S data symbols plus the fading channel's pilots (``FlatFading.pilot_uses``); the
positions (and the edge's hint) are side information of the link (:mod:`semcomm.transport.control`).

Every step is differentiable but the draws, so ``forward`` trains the pair end to end through the channel
(:mod:`semcomm.train.jscc`). Shapes: values B x N x in_dim; sent B x N bool (every image the same K);
snr_db B float (dB; ``math.inf``: noise-free); logits B x classes.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from channels import AWGN, Equalizer, FlatFading
from semcomm.core.devices import as_tensor
from semcomm.rate.hyperprior import Analysis, HyperConfig, HyperServer, silent_mlp

KIND = "jscc"  # the kind of a JSCC pair's card in the zoo's codecs/
CHANNEL_KINDS = ("awgn", "block", "fast")  # AWGN; Rayleigh with one gain per image; Rayleigh with one per symbol
CSI_KINDS = ("perfect", "estimated")


@dataclass(frozen=True)
class JSCCConfig:
    """Architecture of a JSCC pair.

    Attributes:
        latent: the hyperlatent geometry whose analysis and server the pair reuses (its ``channels`` are the
            2S reals per patch; its entropy-model fields are not used).
        snr_hidden: width of the SNR modules' MLPs.
        pilots: pilots per fading block when the receiver's CSI is estimated.
        snr_ceiling: dB; the SNR modules read a higher SNR (nominal or a symbol's effective one, ``math.inf``
            included) as this much: the top of the training range, so that above it the pair runs as at the best
            SNR it was trained for instead of extrapolating (a first run that read up to 40 dB lost 2-4 points
            noise-free against 20 dB).
    """

    latent: HyperConfig = HyperConfig()
    snr_hidden: int = 64
    pilots: int = 4
    snr_ceiling: float = 20.0

    def __post_init__(self):
        if self.latent.channels % 2:
            raise ValueError(f"a JSCC pair sends pairs of reals as complex symbols: channels must be even, got "
                             f"{self.latent.channels}")
        if self.snr_hidden < 1 or self.pilots < 1:
            raise ValueError(f"snr_hidden and pilots must be positive, got {self.snr_hidden}, {self.pilots}")
        if not math.isfinite(self.snr_ceiling):
            raise ValueError(f"snr_ceiling must be a finite number of dB, got {self.snr_ceiling!r}")

    @property
    def symbols_per_patch(self) -> int:
        """S, complex channel uses per sent patch."""
        return self.latent.channels // 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "JSCCConfig":
        return cls(**{**data, "latent": HyperConfig.from_dict(data["latent"])})


def make_channel(kind: str, csi: str = "perfect", pilots: int = 4):
    """The ``channels`` model of a channel kind (:data:`CHANNEL_KINDS`) with the receiver's CSI (:data:`CSI_KINDS`)."""
    if kind not in CHANNEL_KINDS:
        raise ValueError(f"channel must be one of {CHANNEL_KINDS}, got {kind!r}")
    if csi not in CSI_KINDS:
        raise ValueError(f"csi must be one of {CSI_KINDS} (a JSCC receiver equalises with its channel knowledge), "
                         f"got {csi!r}")
    if kind == "awgn":
        return AWGN()
    return FlatFading("rayleigh", coherence=None if kind == "block" else 1, csi=csi, num_pilots=pilots)


def check_snr(snr_db: torch.Tensor | float, batch: int) -> torch.Tensor:
    """B float32 SNRs (dB) of a number or a B tensor; NaN and -inf refused, +inf is noise-free."""
    snr = as_tensor(snr_db, torch.float32)
    if snr.dim() == 0:
        snr = snr.expand(batch)
    if snr.shape != (batch,):
        raise ValueError(f"snr_db must be a number or one SNR per image ({batch}), got shape {tuple(snr.shape)}")
    if torch.isnan(snr).any() or (snr == -math.inf).any():
        raise ValueError("snr_db must be a number of dB (Es/N0) or math.inf (noise-free); got NaN or -inf")
    return snr


def snr_feature(snr_db: torch.Tensor, ceiling: float) -> torch.Tensor:
    """snr_db / 10, SNRs above ``ceiling`` dB (math.inf included) read as ``ceiling``."""
    return snr_db.clamp(max=ceiling) / 10


class SNRAttention(nn.Module):
    """ADJSCC's attention feature module: B x K x C values scaled channel-wise by 2 sigmoid(MLP(their mean
    magnitude over the K patches, snr / 10, read at most at ``ceiling`` dB)); 1 at the start."""

    def __init__(self, channels: int, hidden: int, ceiling: float = 20.0):
        super().__init__()
        self.mlp = silent_mlp(channels + 1, hidden, channels)
        self.ceiling = ceiling

    def forward(self, values: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        context = torch.cat([values.abs().mean(1), snr_feature(snr_db, self.ceiling)[:, None]], -1)
        return values * (2 * torch.sigmoid(self.mlp(context)))[:, None]


@dataclass
class JSCCForward:
    """Logits (B x classes) and complex channel uses per image (pilots included)."""

    logits: torch.Tensor
    channel_uses: int


class JSCCCodec(nn.Module):
    """The trainable JSCC pair of the module docstring.

    >>> codec = JSCCCodec(JSCCConfig())
    >>> out = codec(torch.randn(2, 64, 176), torch.ones(2, 64, dtype=torch.bool), 5.0, "awgn",
    ...             generator=torch.Generator().manual_seed(0))
    >>> out.logits.shape, out.channel_uses
    (torch.Size([2, 10]), 512)
    """

    def __init__(self, config: JSCCConfig):
        super().__init__()
        self.config = config
        latent = config.latent
        self.analysis = Analysis(latent)
        self.encoder_snr = SNRAttention(latent.channels, config.snr_hidden, config.snr_ceiling)
        self.server = HyperServer(latent)
        self.receive_gain = nn.Parameter(torch.ones(()))
        self.server_snr = silent_mlp(2, config.snr_hidden, self.server.vit.embed_dim)

    def encode(self, values: torch.Tensor, positions: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        """B x K x S complex symbols of mean energy 1 per image, from B x N x in_dim ``values`` at B x K
        ``positions``."""
        picked = values.float().gather(1, positions[..., None].expand(-1, -1, values.shape[-1]))
        reals = self.encoder_snr(self.analysis(picked), snr_db)
        reals = reals * (0.5 / reals.pow(2).mean((1, 2), keepdim=True).clamp_min(1e-12)).sqrt()
        return torch.complex(reals[..., 0::2], reals[..., 1::2])

    def decode(self, estimates: torch.Tensor, effective_snr_db: torch.Tensor, positions: torch.Tensor,
               snr_db: torch.Tensor) -> torch.Tensor:
        """B x classes logits from B x K x S equalised symbols, their B x K x S effective SNRs (dB), B x K positions."""
        reals = torch.stack((estimates.real, estimates.imag), -1).flatten(2) * self.receive_gain
        ceiling = self.config.snr_ceiling
        condition = torch.stack((snr_feature(snr_db, ceiling)[:, None].expand_as(positions).float(),
                                 snr_feature(effective_snr_db, ceiling).mean(-1)), -1)
        return self.server.classify(self.server.embed(reals) + self.server_snr(condition), positions)

    @staticmethod
    def _through(channel, x: torch.Tensor, no: torch.Tensor, generator: torch.Generator | None):
        """(received symbols, the receiver's channel estimate) of B x S complex symbols ``x`` at noise powers
        ``no`` (B x 1), computed on ``generator``'s device and returned on ``x``'s."""
        link = x.device if generator is None else generator.device
        sent, noise = x.to(link), no.to(link)
        if isinstance(channel, AWGN):
            y, h_hat = channel(sent, no=noise, generator=generator), torch.ones_like(sent)
        else:
            out = channel(sent, no=noise, generator=generator)
            y, h_hat = out.y, out.h_hat
        return y.to(x.device), h_hat.to(x.device)

    def channel_uses(self, patches: int, channel=None) -> int:
        """Complex channel uses of one image of ``patches`` sent patches over ``channel`` (pilots included)."""
        data = patches * self.config.symbols_per_patch
        return data + (channel.pilot_uses(data) if isinstance(channel, FlatFading) else 0)

    def forward(self, values: torch.Tensor, sent: torch.Tensor, snr_db: torch.Tensor | float, channel="awgn",
                csi: str = "perfect", generator: torch.Generator | None = None) -> JSCCForward:
        """Encode, send through ``channel`` (a kind of :data:`CHANNEL_KINDS` or a ``channels`` model) at
        ``snr_db`` and classify; every image sends the same number K of patches (B x N bool ``sent``).

        The networks run on the pair's device (inputs are moved there); the channel draws its noise and fading with
        ``generator`` on that generator's device (a CPU generator: the same draws on every device)."""
        device = self.receive_gain.device
        values, sent = values.to(device), sent.to(device)
        b = len(values)
        k = int(sent[0].sum())
        if k < 1 or not (sent.sum(1) == k).all():
            raise ValueError("every image in a batch must send the same number (>= 1) of patches")
        snr = check_snr(snr_db, b).to(device)
        if isinstance(channel, str):
            channel = make_channel(channel, csi, self.config.pilots)
        positions = sent.nonzero()[:, 1].view(b, k)
        with torch.autocast(values.device.type, enabled=False):  # symbols, channel and equaliser in fp32
            x = self.encode(values, positions, snr).flatten(1)
            no = 10.0 ** (-snr[:, None] / 10)  # noise-free (inf dB): 0
            y, h_hat = self._through(channel, x, no, generator)
            estimates, _ = Equalizer("mmse")(y, h_hat, no)
            gain = h_hat.real**2 + h_hat.imag**2
            effective = 10 * torch.log10(gain.clamp_min(1e-12) / no.clamp_min(1e-12))
        shape = (b, k, self.config.symbols_per_patch)
        logits = self.decode(estimates.view(shape), effective.view(shape), positions, snr)
        return JSCCForward(logits, self.channel_uses(k, channel))
