"""Level policies: which level (bit depth) each selected patch is sent at.

A selection rule decides *which* patches an image sends; a level policy
decides *how finely* each is quantized. Policies see the selection mask,
the patch importance and, for budgets, the codec's per-patch rate table
(estimated payload bits of every patch at every level).

* :class:`FixedLevel`: every selected patch at one level.
* :class:`UniformBudget`: the highest common level whose payload fits a
  bit budget per image (the baseline for IAQ at equal bits).
* :class:`IAQ`: importance-aware allocation under the same budget, by any
  solver of :data:`~semcomm.rate.allocation.IAQ_SOLVERS` (a name or the
  function), optionally aware of a BSC's crossover probability.

The policies live in the registry :data:`LEVEL_POLICIES` (``fixed-level``,
``uniform-budget``, ``iaq``), each with the name of its one required
argument (``info(name)["parameter"]``: ``level`` or ``bits``).

Shapes: mask and importance B x N; rates B x N x (L + 1); distortion (L + 1)
(a codec's measured error of a patch at each level, 0 = not sent); levels B x N int64.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch

from semcomm.core.registry import Registry
from semcomm.rate.allocation import IAQ_SOLVERS, channel_distortion, importance_weights, uniform_allocation


class LevelPolicy(ABC):
    """Maps (mask, importance, rates) to B x N levels, 0 outside the mask."""

    needs_rates: bool = False

    @abstractmethod
    def __call__(self, mask: torch.Tensor, importance: torch.Tensor, rates: torch.Tensor | None,
                 distortion: torch.Tensor | None = None) -> torch.Tensor:
        ...

    @property
    @abstractmethod
    def label(self) -> str:
        ...


LEVEL_POLICIES: Registry[type[LevelPolicy]] = Registry("level policy")


@LEVEL_POLICIES.register("fixed-level", parameter="level")
@dataclass(frozen=True)
class FixedLevel(LevelPolicy):
    """Every selected patch at ``level``."""

    level: int

    def __post_init__(self):
        if isinstance(self.level, bool) or not isinstance(self.level, int) or self.level < 1:
            raise ValueError(f"FixedLevel needs a level >= 1, got {self.level!r}")

    def __call__(self, mask, importance, rates=None, distortion=None):
        if rates is not None and self.level >= rates.shape[-1]:
            raise ValueError(f"level {self.level} exceeds the codec's {rates.shape[-1] - 1} levels")
        return mask.long() * self.level

    @property
    def label(self) -> str:
        return f"L{self.level}"


def _check_bits(bits: float, name: str) -> None:
    if not bits > 0:
        raise ValueError(f"{name} needs a positive payload budget in bits, got {bits!r}")


@LEVEL_POLICIES.register("uniform-budget", parameter="bits")
@dataclass(frozen=True)
class UniformBudget(LevelPolicy):
    """The highest common level for all selected patches whose estimated payload fits ``bits``."""

    bits: float
    needs_rates = True

    def __post_init__(self):
        _check_bits(self.bits, "UniformBudget")

    def __call__(self, mask, importance, rates, distortion=None):
        return uniform_allocation(mask, rates, self.bits)

    @property
    def label(self) -> str:
        return f"uniform {self.bits:g}b"


@LEVEL_POLICIES.register("iaq", parameter="bits")
@dataclass(frozen=True)
class IAQ(LevelPolicy):
    """Importance-aware levels within the selection, estimated payload within ``bits`` per image.

    Weights w_i = importance_i ^ ``power``. Distortion per level: the codec's
    own measured one when it has it (``distortion``), else that of a uniform
    quantizer (range 1); with ``eps`` > 0, that of a uniform quantizer whose
    index bits cross a BSC with crossover ``eps``. A step is taken only if it
    lowers the weighted distortion by at least ``min_gain`` per bit (0: spend
    the budget). A patch is either not sent or sent at ``min_level`` or
    above. At least the most important selected patch is sent (at
    ``min_level``) even when the budget does not cover it. ``solver``: a name
    of :data:`~semcomm.rate.allocation.IAQ_SOLVERS` or a function called as
    they are (an unregistered function may carry ``channel_terms = False``, see
    there).
    """

    bits: float
    solver: str | Callable[..., torch.Tensor] = "lagrangian"
    power: float = 1.0
    eps: float = 0.0
    min_gain: float = 0.0
    min_level: int = 1
    needs_rates = True

    def __post_init__(self):
        _check_bits(self.bits, "IAQ")
        if isinstance(self.solver, str):
            IAQ_SOLVERS.get(self.solver)  # an unknown name is refused here, listing the valid ones
        elif not callable(self.solver):
            raise TypeError(f"an IAQ solver is a name ({IAQ_SOLVERS.help()}) or a function, got {self.solver!r}")
        if isinstance(self.min_level, bool) or not isinstance(self.min_level, int) or self.min_level < 1:
            raise ValueError(f"IAQ min_level must be an integer >= 1, got {self.min_level!r}")

    def __call__(self, mask, importance, rates, distortion=None):
        top = rates.shape[-1] - 1
        if self.min_level > top:
            raise ValueError(f"IAQ min_level {self.min_level} exceeds the codec's {top} levels")
        # the levels a patch may take: 0, then min_level and up; solve on those columns, map back
        columns = torch.tensor([0, *range(self.min_level, top + 1)], device=rates.device)
        if distortion is None or self.eps:
            distortion = channel_distortion(top, self.eps)
        weights = importance_weights(importance, self.power) * mask
        rates, distortion = rates[..., columns], distortion[columns]
        if self.eps and not self._channel_terms():
            raise ValueError(f"the {IAQ_SOLVERS.name_of(self.solver)} solver uses its own distortion model and "
                             f"takes no channel terms (eps = {self.eps:g}); use 'greedy' or 'lagrangian'")
        solve = IAQ_SOLVERS.resolve(self.solver)
        level = solve(weights, rates, distortion, self.bits, min_gain=self.min_gain)
        level = level * mask
        empty = level.amax(1) == 0
        if empty.any():  # the budget covers nothing: the single most important selected patch, coarsest
            best = (importance * mask).argmax(1)
            level[empty, best[empty]] = 1
        return columns[level]

    def _channel_terms(self) -> bool:
        """Whether the solver honours the (channel-aware) distortion it is given."""
        return IAQ_SOLVERS.info(self.solver).get("channel_terms", getattr(self.solver, "channel_terms", True))

    @property
    def label(self) -> str:
        extra = ((f" power {self.power:g}" if self.power != 1 else "") + (f" eps {self.eps:g}" if self.eps else "")
                 + (f" min L{self.min_level}" if self.min_level > 1 else ""))
        return f"iaq {self.bits:g}b{extra}"
