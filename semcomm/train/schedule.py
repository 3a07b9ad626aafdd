"""The learning-rate schedule of every training recipe: linear warm-up, then cosine decay, per step."""
from __future__ import annotations

import math


def warmup_cosine(step: int, steps_per_epoch: int, epochs: float, warmup_epochs: float, lr: float,
                  min_lr: float) -> float:
    """The learning rate at optimizer step ``step`` (0-based) of a schedule ``epochs`` long.

    Rises linearly to ``lr`` over the first ``warmup_epochs`` (the first step already at ``lr / warmup
    steps``), then follows half a cosine from ``lr`` down to ``min_lr``, reached at the last step and kept
    after it.
    """
    warmup = warmup_epochs * steps_per_epoch
    total = epochs * steps_per_epoch
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))
