"""Every random draw takes a ``torch.Generator`` or a seed: same seed, same result."""
from __future__ import annotations

import torch


def as_generator(seed: int | torch.Generator | None) -> torch.Generator:
    """A torch.Generator from a seed (or the generator itself)."""
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(0 if seed is None else int(seed))
