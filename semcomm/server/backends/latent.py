"""A latent codec pair's server as a backend stage: the received latent rows of each image -> logits.

A backend whose stages are :class:`LatentStage` s reads what a latent pair's server reads (``reads ==
"latents"``): B x K x C dequantized latents, their B x K positions and levels
(:class:`~semcomm.server.backends.request.LatentRequest`). Each stage embeds the rows itself (its own copy of the
pair's embedding and level embedding), so the host ships C values per patch, not the server's tokens.
"""
from __future__ import annotations

import torch
from torch import nn

from semcomm.rate.latent import LatentConfig, LatentServer


class LatentStage(nn.Module):
    """A :class:`~semcomm.rate.latent.LatentServer` (of a pair of architecture ``config``) as a stage:
    ``(values, positions, level) -> B x C`` logits."""

    def __init__(self, server: LatentServer, config: LatentConfig):
        super().__init__()
        if not isinstance(server, LatentServer):
            raise TypeError(f"a latent stage wraps a LatentServer, got {type(server).__name__}")
        self.server, self.config = server, config
        embed = server.vit.patch_embed
        self.image_size, self.patch_size = tuple(embed.img_size), int(embed.patch_size[0])
        self.num_classes = server.vit.num_classes

    def forward(self, values: torch.Tensor, positions: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        return self.server(values, positions, level)
