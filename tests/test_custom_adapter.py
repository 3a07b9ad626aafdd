"""A ViT not built on timm plugs into the codec through one small adapter class (as in the README)."""
from __future__ import annotations

import torch
from torch import nn

from semcomm.codec import EdgeEncoder, ServerDecoder
from semcomm.gating import Gate
from semcomm.models import ViTAdapter, ViTOutput
from semcomm.selection import TopK


class TorchEncoderViT(ViTAdapter):
    """A small ViT on ``nn.TransformerEncoder``: conv patch embedding, CLS token, learned positions."""

    def __init__(self, image_size=32, patch_size=4, dim=64, depth=2, heads=4, num_classes=10):
        super().__init__((image_size, image_size), patch_size, num_classes, mean=(0.5,) * 3, std=(0.5,) * 3)
        self.embed = nn.Conv2d(3, dim, patch_size, stride=patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, self.num_patches, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Linear(dim, num_classes)

    def _tokens(self, x, positions):
        tokens = self.embed(x).flatten(2).transpose(1, 2) + self.pos  # B x N x D
        if positions is not None:
            tokens = tokens.gather(1, positions[..., None].expand(-1, -1, tokens.shape[-1]))
        return torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1)

    def _forward_tokens(self, x, positions):
        return self.head(self.encoder(self._tokens(x, positions))[:, 0])

    def _forward_with_attention(self, x, layers=None):
        tokens, attentions = self._tokens(x, None), []
        for layer in self.encoder.layers:
            h = layer.norm1(tokens)
            attentions.append(layer.self_attn(h, h, h, need_weights=True, average_attn_weights=False)[1])
            tokens = layer(tokens)
        return ViTOutput(self.head(tokens[:, 0]), attentions, num_prefix_tokens=1)


def test_custom_adapter_runs_the_codec(tiny_images):
    torch.manual_seed(0)
    edge, server = TorchEncoderViT().eval(), TorchEncoderViT(dim=96).eval()
    with torch.no_grad():
        out = edge.forward_with_attention(tiny_images)
        assert [a.shape for a in out.attentions] == [(4, 4, 65, 65)] * 2
        torch.testing.assert_close(out.logits, edge(tiny_images), rtol=1e-4, atol=1e-5)
        everything = torch.arange(64).expand(4, -1)
        torch.testing.assert_close(server.forward_tokens(tiny_images, everything), server(tiny_images),
                                   rtol=1e-4, atol=1e-5)
    transmission = EdgeEncoder(edge, TopK(12), Gate(threshold=0.0), bf16=False).encode(tiny_images)
    assert transmission.offloaded.all()
    logits = ServerDecoder(server, bf16=False).classify(transmission.strings)
    positions = torch.stack([row.nonzero().flatten() for row in transmission.mask])
    with torch.no_grad():
        torch.testing.assert_close(logits, server.forward_tokens(tiny_images, positions), rtol=1e-4, atol=1e-5)
