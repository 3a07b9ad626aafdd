"""Fixed transform coding of pixel patches: YCbCr, a DCT per patch, a step per level, rANS.

Each P x P x 3 patch (4 x 4 x 3 on CIFAR) is converted to YCbCr (JPEG's
full-range matrix, centred on 0), transformed by an orthonormal 2-D DCT-II
per channel, and its 3 P^2 coefficients are quantized with steps
``base_step x 2^(3 - m)`` at level m: each level up halves every step. Base
steps grow with spatial frequency (8 + 8 (u + v) for luma) and chroma's are
twice luma's. Symbols are coded with CompressAI's rANS under one table per
(level, coefficient), fitted to the training split and shipped with the
pair (``dct-cifar10``). The server reads the decoded pixels.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from einops import rearrange

from semcomm.core.patches import unpatchify
from semcomm.edge.codec import CODECS
from semcomm.models import ViTAdapter, create_model
from semcomm.models.adapter import to_uint8
from semcomm.rate.entropy import SymbolTables
from semcomm.rate.framed import TableCodedPair
from semcomm.rate.pixels import PixelPair
from semcomm.wire import v2 as fmt

RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
                            dtype=torch.float64, device="cpu")
CENTRE = torch.tensor([128.0, 0.0, 0.0], dtype=torch.float64, device="cpu")  # Y centred on 0; Cb, Cr already are


def dct_matrix(n: int) -> torch.Tensor:
    """n x n orthonormal DCT-II matrix (row k: frequency k)."""
    k = torch.arange(n, dtype=torch.float64, device="cpu")[:, None]
    i = torch.arange(n, dtype=torch.float64, device="cpu")[None, :]
    matrix = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    matrix[0] /= math.sqrt(2)
    return matrix


def base_steps(patch_size: int, chroma_factor: float = 2.0) -> torch.Tensor:
    """3 x P x P base quantizer steps: 8 + 8 (u + v) for luma, ``chroma_factor`` times that for Cb, Cr."""
    u = torch.arange(patch_size, dtype=torch.float64, device="cpu")
    luma = 8 + 8 * (u[:, None] + u[None, :])
    return torch.stack([luma, chroma_factor * luma, chroma_factor * luma])


class DCTPair(PixelPair, TableCodedPair):
    """DCT-coded pixel patches with importance-aware steps (see the module docstring).

    Args:
        server: the pixel server ViT.
        tables: fitted tables, ``levels x 3 P^2`` of them (level-major), or None to fit later.
        levels: number of levels L.
    """

    name = "dct"

    def __init__(self, server: ViTAdapter, tables: SymbolTables | None = None, levels: int = 6, codec_id: int = 2,
                 hint_coder=None, entropy_coding: bool = True, distortion: torch.Tensor | None = None):
        super().__init__(server)
        if not entropy_coding:  # the same quantizer, symbols in fixed-length fields: its own format
            codec_id, self.name = codec_id + 8, f"{self.name}-fixed"
        self.layout = fmt.Layout(codec_id, server.num_patches, levels, entropy_coded=entropy_coding)
        self.tables, self.hint_coder, self.distortion = tables, hint_coder, distortion
        p = self.patch_size
        self._dct = dct_matrix(p)
        self._steps = base_steps(p).flatten()  # V = 3 P^2, channel-major (c, u, v)
        self.values_per_patch = len(self._steps)

    def steps(self, level: torch.Tensor) -> torch.Tensor:
        """(... x V) quantizer steps of patches at ``level`` (1..L)."""
        return self._steps * torch.exp2(3 - level.double())[..., None]

    def coefficients(self, pixels: torch.Tensor) -> torch.Tensor:
        """B x N x 3P^2 DCT coefficients (channel-major) of B x N x P patches in patchify order."""
        p = self.patch_size
        x = rearrange(pixels.double(), "b n (p1 p2 c) -> b n c p1 p2", p1=p, p2=p)
        ycc = torch.einsum("dc,bncij->bndij", RGB_TO_YCBCR, x) - CENTRE[:, None, None]
        return (self._dct @ ycc @ self._dct.T).flatten(2)

    def pixels_from(self, coefficients: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`coefficients` (clipped to 0..255), ... x 3P^2 -> ... x P in patchify order."""
        p = self.patch_size
        c = coefficients.double().unflatten(-1, (3, p, p))
        ycc = self._dct.T @ c @ self._dct + CENTRE[:, None, None]
        rgb = torch.einsum("cd,...dij->...cij", torch.linalg.inv(RGB_TO_YCBCR), ycc).clamp(0, 255)
        return rearrange(rgb, "... c p1 p2 -> ... (p1 p2 c)").float()

    def source(self, images, hidden=None):
        return self.coefficients(self.pixels(images))

    def reconstruct(self, images: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W float images in [0, 1] as the server decodes them: every patch of B x 3 x H x W
        uint8 or [0, 1] float ``images`` quantized at its level (B x N, 1..L; 0 leaves a patch black, as
        if not sent). The decoded values without the bits, for training a server on what it receives."""
        coefficients = self.source(to_uint8(images))
        q = self.quantize(coefficients, level) * self.steps(level.clamp_min(1))
        pixels = self.pixels_from(q) * (level > 0)[..., None]
        return (unpatchify(pixels, self.patch_size, self.grid_size) / 255).clamp(0, 1).float()

    def quantize(self, coefficients: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        return torch.round(coefficients / self.steps(level.clamp_min(1))).long()

    def dequantize(self, symbols, level, params):
        lv = torch.from_numpy(level)
        q = torch.from_numpy(symbols).view(len(lv), -1).double()
        return self.pixels_from(q * self.steps(lv))

    @torch.no_grad()
    def fit_tables(self, images: torch.Tensor, batch: int = 500) -> SymbolTables:
        """Fit one table per (level, coefficient) to every patch of ``images`` (B x 3 x H x W, uint8 or
        [0, 1] float) at every level, and the mean squared error of a patch (in the orthonormal DCT
        domain) at each level as ``distortion`` (level 0, not sent: the spread of patches about the mean
        patch). ``images`` may be left on disk (:class:`~semcomm.data.ShardedImages`): read ``batch`` at a time."""
        symbols, indexes, patches = [], [], []
        error = torch.zeros(self.levels + 1, dtype=torch.float64, device="cpu")
        for start in range(0, len(images), batch):
            coefficients = self.source(to_uint8(images[start : start + batch]))
            patches.append(coefficients.reshape(-1, coefficients.shape[-1]))
            for m in range(1, self.levels + 1):
                level = torch.full(coefficients.shape[:2], m, device=coefficients.device)
                q = self.quantize(coefficients, level)
                error[m] += (q * self.steps(level) - coefficients).pow(2).sum()
                symbols.append(q.flatten().numpy())
                indexes.append(self.table_index(level).expand(*coefficients.shape).flatten().numpy())
        every = torch.cat(patches)
        error[0] = (every - every.mean(0)).pow(2).sum()
        self.distortion = (error / len(every)).float()
        self.tables = SymbolTables.fit(np.concatenate(symbols), np.concatenate(indexes), self.levels * len(self._steps))
        return self.tables


@CODECS.register("dct-cifar10")
def dct_cifar10(server: str | ViTAdapter = "vit-server-cifar10", hint: bool = True,
                entropy_coding: bool = True) -> DCTPair:
    """The shipped DCT pair for CIFAR-10 (tables fitted on its training split) with a zoo pixel server;
    ``entropy_coding=False`` writes the same symbols in fixed-length fields (codec id 10)."""
    from semcomm.rate.zoo import load_codec_tensors, load_hint

    card, tensors = load_codec_tensors("dct-cifar10")
    server = create_model(server) if isinstance(server, str) else server
    return DCTPair(server, SymbolTables.from_state_dict(tensors, "tables."), levels=card.config["levels"],
                   codec_id=card.config["codec_id"], hint_coder=load_hint(card.edge) if hint else None,
                   entropy_coding=entropy_coding, distortion=tensors.get("distortion"))
