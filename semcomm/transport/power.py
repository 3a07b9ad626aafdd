"""Power allocation of the analog transport: how an image's power is shared among its K sent patches.

Allocations are registered by name in :data:`POWER_ALLOCATIONS` (one
:class:`~semcomm.core.registry.Registry`): each maps B x K patch importance and the
:class:`PowerAllocation` settings to B x K integer power levels (level l is l x ``step_db`` dB below
the strongest patch). An allocation registered with ``side_information=True`` sends its levels to
the receiver (``bits`` per patch on the control channel); one with ``False`` must give every patch
level 0. A plug-in adds its own::

    from semcomm.transport.power import POWER_ALLOCATIONS

    @POWER_ALLOCATIONS.register("top-half", side_information=True)
    def top_half(importance, allocation):
        return (importance < importance.median(-1, keepdim=True).values).long()  # the rest 1 step down
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from semcomm.core.registry import Registry

LevelRule = Callable[[torch.Tensor, "PowerAllocation"], torch.Tensor]
POWER_ALLOCATIONS: Registry[LevelRule] = Registry("power allocation")


@POWER_ALLOCATIONS.register("uniform", side_information=False)
def uniform_levels(importance: torch.Tensor, allocation: PowerAllocation) -> torch.Tensor:
    """Every patch the same power: B x K zeros."""
    return torch.zeros(importance.shape, dtype=torch.int64, device=importance.device)


@POWER_ALLOCATIONS.register("importance", side_information=True)
def importance_levels(importance: torch.Tensor, allocation: PowerAllocation) -> torch.Tensor:
    """l_k = round(-10 alpha log10(importance_k / max_j importance_j) / step_db), clipped to 0..2^bits - 1."""
    top = importance.double().amax(-1, keepdim=True).clamp_min(1e-300)
    ratio_db = 10 * torch.log10((importance.double() / top).pow(allocation.alpha))
    return (-ratio_db / allocation.step_db).round().clamp(0, 2**allocation.bits - 1).long()


@dataclass(frozen=True)
class PowerAllocation:
    """How an image's power is shared among its K sent patches.

    * ``uniform``: every patch the same power (p_k = 1); no side information.
    * ``importance``: p_k proportional to (importance_k / max_j importance_j)^alpha,
      quantized to power levels l_k = round(-10 alpha log10(importance_k / max) / step_db),
      clipped to 0..2^bits - 1 (level l is l x step_db dB below the strongest patch),
      then normalised so the mean over the image's K patches is 1, i.e. the
      image's mean power per data channel use equals the budget. The K levels
      (``bits`` each) are side information. alpha = 0.5 minimises the
      importance-weighted MSE at high SNR (sum_k w_k / p_k under sum_k p_k fixed).
    * any other name registered in :data:`POWER_ALLOCATIONS` (module docstring), or a level rule
      itself (``fn(importance, allocation) -> B x K levels``; its levels are sent).

    Args:
        kind: a registered allocation's name (``"uniform"``, ``"importance"``, ...) or a level rule.
        alpha: exponent (>= 0; 0 gives uniform powers but still sends the levels).
        bits: bits per patch's power level (allocations that send levels), >= 1.
        step_db: power step between levels, dB (> 0).

    >>> allocation = PowerAllocation("importance", alpha=1.0)
    >>> importance = torch.tensor([[0.4, 0.2, 0.1, 0.05]])
    >>> allocation.levels(importance)
    tensor([[0, 1, 2, 3]])
    >>> allocation(importance)
    tensor([[2.1296, 1.0673, 0.5349, 0.2681]])
    """

    kind: str | LevelRule = "uniform"
    alpha: float = 0.5
    bits: int = 2
    step_db: float = 3.0

    def __post_init__(self):
        if not (self.kind in POWER_ALLOCATIONS if isinstance(self.kind, str) else callable(self.kind)):
            raise ValueError(f"unknown power allocation {self.kind!r}; choose one of {POWER_ALLOCATIONS.help()} "
                             "(or give a level rule)")
        if not isinstance(self.alpha, (int, float)) or not math.isfinite(self.alpha) or self.alpha < 0:
            raise ValueError(f"alpha must be a finite number >= 0, got {self.alpha!r}")
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or self.bits < 1:
            raise ValueError(f"bits must be an integer >= 1 (bits per patch's power level), got {self.bits!r}")
        if not isinstance(self.step_db, (int, float)) or not math.isfinite(self.step_db) or self.step_db <= 0:
            raise ValueError(f"step_db must be a positive number of dB, got {self.step_db!r}")

    @property
    def bits_per_patch(self) -> int:
        """Side-information bits per sent patch (0 for an allocation that sends no levels, e.g. uniform)."""
        return self.bits if POWER_ALLOCATIONS.info(self.kind).get("side_information", True) else 0

    def levels(self, importance: torch.Tensor) -> torch.Tensor:
        """B x K int64 power levels (0 = strongest) of patches of importance B x K (>= 0)."""
        check_importance(importance)
        return POWER_ALLOCATIONS.resolve(self.kind)(importance, self)

    def powers(self, levels: torch.Tensor) -> torch.Tensor:
        """B x K float32 power per channel use of each patch, in units of the budget (mean over K: 1)."""
        relative = 10.0 ** (-levels.double() * self.step_db / 10)
        return (relative / relative.mean(-1, keepdim=True)).float()

    def __call__(self, importance: torch.Tensor) -> torch.Tensor:
        """B x K power per channel use of each patch (mean over K: 1) from B x K importance."""
        return self.powers(self.levels(importance))


def check_importance(importance: torch.Tensor) -> None:
    """A ValueError unless ``importance`` is a real, finite B x K tensor with no negative entry."""
    if not isinstance(importance, torch.Tensor) or importance.dim() != 2 or importance.is_complex():
        raise ValueError(f"importance must be a real B x K tensor, got {getattr(importance, 'shape', importance)!r}")
    if not torch.isfinite(importance).all() or (importance < 0).any():
        raise ValueError("importance must be finite and >= 0")
