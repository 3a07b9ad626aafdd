"""An example semcomm plug-in, outside semcomm: one selection rule and one gate.

Installed, it is found through its entry point in the group ``semcomm.plugins`` (see its pyproject.toml);
semcomm imports this module the first time a registry is listed or asked for a name it does not hold, and
the decorators below register the two strategies:

* ``least-important-k`` (a selection rule with a budget): the ``k`` least important patches of each image,
  the opposite of ``top-k`` (a sanity baseline);
* ``one-minus-p-max`` (a gate): 1 - max_c p_c of B x C logits, in [0, 1 - 1/C].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from semcomm.edge.gating import GATES
from semcomm.edge.selection import SELECTION_RULES, SelectionRule


@SELECTION_RULES.register("least-important-k", budget=True)
@dataclass(frozen=True)
class LeastImportantK(SelectionRule):
    """The ``k`` least important patches of each image (B x N importance -> B x N mask)."""

    k: int

    def select(self, importance: torch.Tensor, grid_size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        if not 1 <= self.k <= importance.shape[1]:
            raise ValueError(f"least-important-k needs 1 <= k <= {importance.shape[1]} patches, got {self.k}")
        lowest = importance.topk(self.k, dim=1, largest=False).indices
        return torch.zeros_like(importance, dtype=torch.bool).scatter_(1, lowest, True)

    @property
    def label(self) -> str:
        return f"least-important-k {self.k}"


@GATES.register("one-minus-p-max")
def one_minus_p_max(logits: torch.Tensor) -> torch.Tensor:
    """B scores 1 - max_c p_c of B x C logits (higher: less sure)."""
    return 1 - logits.float().softmax(dim=-1).amax(dim=-1)
