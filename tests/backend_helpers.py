"""Tiny ViTs built with the project's own architecture code, shared by the backend tests."""
from __future__ import annotations

import pytest
import timm
import torch

from semcomm.models import TimmViT
from semcomm.models.architectures import vit_architecture


def tiny_vit(num_classes: int = 10, seed: int = 0, embed_dim: int = 32, depth: int = 2, num_heads: int = 4) -> TimmViT:
    """A 32 x 32 / 8-pixel-patch ViT (16 patches) of the project's edge architecture, shrunk: ~24 k parameters."""
    torch.manual_seed(seed)
    name = vit_architecture("edge", 32, 8)
    model = timm.create_model(name, num_classes=num_classes, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                              mlp_ratio=2.0)
    return TimmViT(model).eval()


def tiny_data(n: int = 60, num_classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random uint8 32 x 32 images and labels cycling through the classes."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n) % num_classes


def random_positions(batch: int, keep: int, num_patches: int = 16, seed: int = 0) -> torch.Tensor:
    """B x keep distinct patch indices per row, ascending."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, num_patches, generator=g).argsort(1)[:, :keep].sort(1).values


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Torch on one thread for the module (tiny models; the machine's cores are shared), restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
