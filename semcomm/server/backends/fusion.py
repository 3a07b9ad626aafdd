"""The fusion network of a class-partitioned backend: sub-models' logits -> logits over all classes.

Input: the N sub-models' logits concatenated in group order (C values per
image, each sub-model's for its own classes). Output: C logits in the
data set's class order,

    fused = place(z) + MLP(z),   MLP = LayerNorm -> Linear(C, hidden) -> GELU -> Linear(hidden, C),

where ``place`` puts each sub-model logit at its class's index. The MLP's
last layer starts at zero, so an untrained fusion answers each class with
its own sub-model's logit; training teaches it to compare logits across
sub-models, which see different classes and are not calibrated against
each other.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from semcomm.core.seeding import as_generator
from semcomm.server.backends.grouping import ClassGroups
from semcomm.train.backends.phases import optimizer_step, training_steps


class FusionNetwork(nn.Module):
    """Fuse N sub-models' logits (see the module docstring).

    >>> fusion = FusionNetwork(ClassGroups([[1, 2], [0]], 3))
    >>> fusion([torch.tensor([[5.0, 6.0]]), torch.tensor([[7.0]])])   # untrained: each logit at its class
    tensor([[7., 5., 6.]], grad_fn=<AddBackward0>)
    """

    def __init__(self, groups: ClassGroups, hidden: int = 64, generator: torch.Generator | int | None = None):
        super().__init__()
        if not isinstance(groups, ClassGroups):
            raise TypeError(f"groups must be a ClassGroups, got {type(groups).__name__}")
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        self.groups = groups
        c = groups.num_classes
        self.register_buffer("order", groups.order(), persistent=False)
        first = nn.utils.skip_init(nn.Linear, c, hidden)
        bound = 1 / math.sqrt(c)  # nn.Linear's own initialisation, drawn from ``generator``
        gen = as_generator(generator)
        with torch.no_grad():
            nn.init.kaiming_uniform_(first.weight, a=math.sqrt(5), generator=gen)
            first.bias.uniform_(-bound, bound, generator=gen)
        last = nn.utils.skip_init(nn.Linear, hidden, c)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(nn.LayerNorm(c), first, nn.GELU(), last)

    def forward(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """B x C logits from one B x len(group) tensor per group, in group order."""
        if len(outputs) != len(self.groups):
            raise ValueError(f"fusion expects {len(self.groups)} sub-model outputs, got {len(outputs)}")
        for i, (out, group) in enumerate(zip(outputs, self.groups)):
            if out.ndim != 2 or out.shape[1] != len(group) or len(out) != len(outputs[0]):
                raise ValueError(f"sub-model {i} output has shape {tuple(out.shape)}, expected B x {len(group)}")
        z = torch.cat([o.float() for o in outputs], dim=1)
        placed = torch.empty_like(z).index_copy_(1, self.order, z)
        return placed + self.mlp(z)


def train_fusion(fusion: FusionNetwork, outputs: Sequence[torch.Tensor], labels: torch.Tensor, steps: int,
                 batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 1e-4,
                 generator: torch.Generator | int | None = None) -> list[float]:
    """Train the fusion network alone on fixed sub-model outputs (cross-entropy, AdamW).

    Args:
        outputs: per group, N x len(group) logits of its sub-model on the training images.
        labels: N int64 classes in 0..C-1.
        steps: optimiser steps on ``batch_size`` rows drawn with ``generator``.

    Returns:
        the training loss of every step.
    """
    c = fusion.groups.num_classes
    if labels.ndim != 1 or any(len(o) != len(labels) for o in outputs):
        raise ValueError(f"need one row of sub-model outputs per label, got {[len(o) for o in outputs]} rows "
                         f"for {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError("no training rows for the fusion network")
    if labels.min() < 0 or labels.max() >= c:
        raise ValueError(f"labels hold classes {int(labels.min())}..{int(labels.max())} but the fusion network "
                         f"covers {c} classes: mismatched class counts between the backend and the data set")
    return fit_head(fusion, outputs, lambda fused, index: F.cross_entropy(fused, labels[index].long()), steps,
                    batch_size, lr, weight_decay, generator)


def fit_head(head: torch.nn.Module, inputs: Sequence[torch.Tensor], loss_of: Callable, steps: int,
             batch_size: int, lr: float, weight_decay: float,
             generator: torch.Generator | int | None) -> list[float]:
    """Train a fusion head alone on fixed per-device inputs (AdamW), then leave it in eval mode.

    Args:
        inputs: per device, N x D_i rows (its outputs on the training images).
        loss_of: ``(head output on a batch, the batch's row indices) -> scalar loss``.
        steps: optimiser steps on ``batch_size`` rows drawn with ``generator``.

    Returns:
        the loss of every step.
    """
    rows = len(inputs[0])
    gen = as_generator(generator)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    head.train()
    losses = []
    for _ in training_steps(steps, "fusion head"):
        index = torch.randint(rows, (min(batch_size, rows),), generator=gen)
        loss = loss_of(head([x[index] for x in inputs]), index)
        losses.append(optimizer_step(optimizer, loss))
    head.eval()
    return losses
