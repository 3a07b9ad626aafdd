"""Shared fixtures: small real data when it is present, random-init models, shipped models."""
from __future__ import annotations

import pytest
import torch




@pytest.fixture(scope="session")
def cifar_test():
    """A fixed 500-image subset of the CIFAR-10 test split (real data from ../shared/data)."""
    from semcomm.data import load_split

    return load_split("cifar10", "test", limit=500)


@pytest.fixture(scope="session")
def tiny_images():
    """Four random 32 x 32 uint8 images."""
    return torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
