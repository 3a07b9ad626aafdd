"""Which patches to send: selection rules over B x N patch importance.

A rule maps importance (B x N, each row summing to 1) to a boolean mask
(B x N, True = send). Rules with a fixed budget keep ``k`` patches per
image; ``Threshold`` and ``AttentionSum`` keep a per-image number. Every
image keeps at least one patch.

The rules live in the registry :data:`SELECTION_RULES`, each registered
with ``budget=True`` (built as ``factory(k)``, ``k`` patches per image) or
``budget=False`` (built once as ``factory(**settings)``, its registered
``settings`` by default); :func:`selection_rules` builds the rules a sweep
runs from names and budgets.

For a fair comparison with random selection at equal bits,
:func:`random_like` draws, for any mask, a random mask with exactly the same
number of patches in every image.
"""
from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange

from semcomm.core.registry import Registry, UnknownNameError
from semcomm.core.seeding import as_generator


class SelectionRule(ABC):
    """Maps B x N importance to a B x N boolean mask of patches to send."""

    def __call__(self, importance: torch.Tensor, grid_size: tuple[int, int],
                 generator: torch.Generator | None = None) -> torch.Tensor:
        if importance.ndim != 2 or importance.shape[1] != grid_size[0] * grid_size[1]:
            raise ValueError(f"importance must be B x {grid_size[0] * grid_size[1]}, got {tuple(importance.shape)}")
        if not torch.isfinite(importance).all():
            raise ValueError("importance contains NaN or infinite values")
        return self.select(importance.float(), grid_size, as_generator(generator))

    @abstractmethod
    def select(self, importance: torch.Tensor, grid_size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        ...

    @property
    @abstractmethod
    def label(self) -> str:
        """Short name for tables, e.g. ``top-k 16``."""


SELECTION_RULES: Registry[Callable[..., SelectionRule]] = Registry("selection rule")


def _check_budget(rule, name: str) -> None:
    """Accept any integer budget k >= 1 (numpy integers too; stored as int)."""
    k = rule.k
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"{name} needs a budget k >= 1 patches, got {k!r} (an empty selection sends nothing)")
    object.__setattr__(rule, "k", int(k))


def _keep_lowest(keys: torch.Tensor, k: int) -> torch.Tensor:
    """Mask of the ``k`` smallest keys per row (``k`` at most the number of patches)."""
    if k > keys.shape[1]:
        raise ValueError(f"a budget of {k} patches exceeds the {keys.shape[1]} patches of the grid")
    mask = torch.zeros_like(keys, dtype=torch.bool)
    return mask.scatter_(1, keys.topk(k, dim=1, largest=False).indices, True)


@SELECTION_RULES.register("top-k", budget=True)
@dataclass(frozen=True)
class TopK(SelectionRule):
    """The ``k`` most important patches."""

    k: int

    def __post_init__(self):
        _check_budget(self, "TopK")

    def select(self, importance, grid_size, generator):
        return _keep_lowest(-importance, self.k)

    @property
    def label(self) -> str:
        return f"top-k {self.k}"


@SELECTION_RULES.register("random-k", budget=True)
@dataclass(frozen=True)
class RandomK(SelectionRule):
    """``k`` patches uniformly at random (ignores importance): the baseline."""

    k: int

    def __post_init__(self):
        _check_budget(self, "RandomK")

    def select(self, importance, grid_size, generator):
        return _keep_lowest(_uniform(importance, generator), self.k)

    @property
    def label(self) -> str:
        return f"random {self.k}"


# by default the importance of every patch of 64 when all weigh the same (rounded as a sweep's label shows it)
@SELECTION_RULES.register("threshold", budget=False, settings={"delta": round(1 / 64, 4)})
@dataclass(frozen=True)
class Threshold(SelectionRule):
    """Every patch with importance >= ``delta`` (at least the most important one)."""

    delta: float

    def __post_init__(self):
        if not 0 <= self.delta <= 1:
            raise ValueError(f"Threshold delta is an importance in [0, 1], got {self.delta}")

    def select(self, importance, grid_size, generator):
        return (importance >= self.delta) | _keep_lowest(-importance, 1)

    @property
    def label(self) -> str:
        return f"threshold {self.delta:g}"


@SELECTION_RULES.register("attention-sum", budget=False, settings={"delta": 0.97})
@dataclass(frozen=True)
class AttentionSum(SelectionRule):
    """The shortest prefix of patches, by descending importance, whose importance sums to ``delta``."""

    delta: float = 0.97

    def __post_init__(self):
        if not 0 < self.delta <= 1:
            raise ValueError(f"AttentionSum delta is a cumulative importance in (0, 1], got {self.delta}")

    def select(self, importance, grid_size, generator):
        ordered, order = importance.sort(dim=1, descending=True)
        before = ordered.cumsum(dim=1) - ordered  # importance of the patches ranked above each one
        keep_sorted = before < self.delta - 1e-6
        keep_sorted[:, 0] = True  # at least one patch, also when delta is below the tolerance
        return torch.zeros_like(keep_sorted).scatter_(1, order, keep_sorted)

    @property
    def label(self) -> str:
        return f"attention-sum {self.delta:g}"


@SELECTION_RULES.register("spread-top-k", budget=True)
@dataclass(frozen=True)
class SpreadTopK(SelectionRule):
    """``k`` patches spread over the image: cells of ``cell`` x ``cell`` patches take turns.

    Patches are ranked within their cell by importance; the best patch of
    every cell is taken before any cell's second, and so on, more important
    first within a round. With ``random_within=True`` importance is replaced
    by random scores (the spread-random baseline).
    """

    k: int
    cell: int = 2
    random_within: bool = False

    def __post_init__(self):
        _check_budget(self, "SpreadTopK")
        if self.cell < 1:
            raise ValueError(f"SpreadTopK cell must be >= 1 patch, got {self.cell}")

    def select(self, importance, grid_size, generator):
        gh, gw = grid_size
        if gh % self.cell or gw % self.cell:
            raise ValueError(f"patch grid {grid_size} does not divide into {self.cell} x {self.cell} cells")
        scores = _uniform(importance, generator) if self.random_within else importance
        scores = scores / scores.amax(dim=1, keepdim=True).clamp_min(1e-12) * 0.5  # in [0, 0.5]
        pattern = "b (gh c1 gw c2) -> b (gh gw) (c1 c2)"
        cells = rearrange(scores, pattern, gh=gh // self.cell, c1=self.cell, c2=self.cell)
        rank = cells.argsort(dim=-1, descending=True).argsort(dim=-1).float()
        keys = rearrange(rank - cells, "b (gh gw) (c1 c2) -> b (gh c1 gw c2)", gh=gh // self.cell, c1=self.cell)
        return _keep_lowest(keys, self.k)

    @property
    def label(self) -> str:
        kind = "spread-random" if self.random_within else "spread-top-k"
        return f"{kind} {self.k}"


@SELECTION_RULES.register("spread-random", budget=True)
def spread_random(k: int, cell: int = 2) -> SpreadTopK:
    """``k`` random patches spread over the image (the spread-random baseline): ``SpreadTopK(k, cell, True)``."""
    return SpreadTopK(k, cell, random_within=True)


def takes_budget(rule: str | SelectionRule) -> bool:
    """Whether the rule registered under a name keeps a budget of ``k`` patches per image (False for objects)."""
    return isinstance(rule, str) and bool(SELECTION_RULES.info(rule).get("budget", False))


def selection_rules(names: Sequence[str | SelectionRule], budgets: Sequence[int],
                    settings: Mapping[str, Mapping[str, Any]] | None = None) -> list[SelectionRule]:
    """The selection rules a sweep runs, in order: each named rule that takes a budget at every budget (patches
    per image), then each other rule once.

    Args:
        names: names of :data:`SELECTION_RULES`, or :class:`SelectionRule` objects (taken as they are).
        budgets: patches per image of the rules that take a budget.
        settings: per name of a rule without a budget, keyword arguments that override the ones it was
            registered with (e.g. ``{"threshold": {"delta": 0.02}}``).

    >>> [rule.label for rule in selection_rules(["spread-top-k", "threshold", "top-k"], [8, 16])]
    ['spread-top-k 8', 'spread-top-k 16', 'top-k 8', 'top-k 16', 'threshold 0.0156']
    """
    unknown = sorted({name for name in names if isinstance(name, str) and name not in SELECTION_RULES})
    if unknown:
        raise UnknownNameError(f"unknown selection rules {unknown}; choose from {SELECTION_RULES.names()}")
    wrong = [name for name in names if not isinstance(name, (str, SelectionRule))]
    if wrong:
        raise TypeError(f"a selection rule is a name ({SELECTION_RULES.help()}) or a SelectionRule, got {wrong[0]!r}")
    rules = [SELECTION_RULES.create(name, k) for name in names if takes_budget(name) for k in budgets]
    for name in names:
        if isinstance(name, SelectionRule):
            rules.append(name)
        elif not takes_budget(name):
            options = {**SELECTION_RULES.info(name).get("settings", {}), **(settings or {}).get(name, {})}
            rules.append(SELECTION_RULES.create(name, **options))
    return rules


def random_like(mask: torch.Tensor, generator: torch.Generator | int | None = None) -> torch.Tensor:
    """A random B x N mask with the same number of True entries as ``mask`` in every row."""
    generator = as_generator(generator)
    counts = mask.sum(dim=1, keepdim=True)
    rank = _uniform(mask, generator).argsort(dim=1).argsort(dim=1)
    return rank < counts


def mask_to_positions(mask: torch.Tensor) -> list[torch.Tensor]:
    """Per image, the sorted int64 indices of the kept patches."""
    return [row.nonzero().flatten() for row in mask]


def _uniform(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Uniform draws of ``like``'s shape, made by ``generator`` (a CPU generator: the same draws on every device)
    and moved to ``like``'s device."""
    return torch.rand(like.shape, generator=generator, device=generator.device).to(like.device)
