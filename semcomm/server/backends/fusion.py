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
from collections.abc import Sequence

import torch
from torch import nn

from semcomm.core.seeding import as_generator
from semcomm.server.backends.groups import ClassGroups


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
