"""The learning-rate schedule of every training recipe: linear warm-up, then cosine decay, per step."""
from __future__ import annotations

import math

MAX_WARMUP_SHARE = 0.25  # the warm-up lasts at most this share of the schedule (every shipped recipe's is within it)


def warmup_cosine(step: int, steps_per_epoch: int, epochs: float, warmup_epochs: float, lr: float,
                  min_lr: float) -> float:
    """The learning rate at optimizer step ``step`` (0-based) of a schedule ``epochs`` long.

    Rises linearly to ``lr`` over the first ``warmup_epochs``, at most a quarter of the schedule
    (:data:`MAX_WARMUP_SHARE`: a recipe's warm-up is cut short in a short run, e.g. ``--epochs 2``, so that the
    rate still peaks and decays), the first step already at ``lr / warmup steps``; then follows half a cosine
    from ``lr`` down to ``min_lr``, reached at the last step and kept after it.
    """
    total = epochs * steps_per_epoch
    warmup = min(warmup_epochs, MAX_WARMUP_SHARE * epochs) * steps_per_epoch
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))
