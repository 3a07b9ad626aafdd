"""Importance-aware quantization (IAQ): how many bits each patch gets under a budget.

Every patch i of an image gets a level (bit depth) M_i in 0..M_max, 0 meaning
not sent, so as to minimise the weighted distortion sum_i w_i D_i(M_i) under
a bit budget, with w_i an increasing function of the patch's importance.
For a uniform quantizer on a range R, D(M) = R^2 4^-M / 12 per value, which
is convex in M; on a binary symmetric channel with crossover ``eps`` the
flipped index bits add to it (:func:`channel_distortion`), so extra bits stop
paying when ``eps`` is high.

Solvers (``B`` images, ``N`` patches, levels 0..L):

* :func:`greedy_allocation`: one level step at a time to the patch with the
  largest distortion drop per bit, while the step fits the budget; optimal
  when every step costs the same bits (the IAQ paper's raw-pixel case)
  because D is convex.
* :func:`water_filling`: M_i = clip(round(0.5 log2(w_i / lambda)), 0, L) with
  lambda set by bisection to the largest allocation within the budget.
* :func:`lagrangian_allocation`: each patch minimises w_i D(M) + lambda R_i(M)
  over its own rate table (e.g. entropy-coded bits from a trained model),
  lambda by bisection: the greedy's convex-hull points, vectorised.
* :func:`uniform_allocation`: one level for every sent patch, the baseline.

The IAQ solvers live in the registry :data:`IAQ_SOLVERS` under ``greedy``,
``lagrangian`` and ``water-filling`` (:func:`equal_step_water_filling`), all
called ``solve(weights, rates, distortion, budget, min_gain=...)``; a solver
registered with ``channel_terms=False`` uses its own distortion model, not
the one it is given, so it cannot honour a channel's.

A note on the channel: for natural-binary indices the channel-aware D is
affine in the clean one, D_eps(M) = eps / 3 + (1 - 4 eps) D_0(M) (with
R = 1), so under a fixed budget every solver allocates exactly as on a clean
link; what changes is the value of a bit, (1 - 4 eps) times less, so with a
minimum gain per bit (``min_gain``) fewer bits are spent as eps grows, and
none at all from eps = 1/4. Gray-coded indices change the shape of D too.

Shapes: weights B x N; rate tables B x N x (L + 1) cumulative bits with
column 0 = 0; distortion (L + 1) per value; budgets B bits; levels B x N int64.
"""
from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import numpy as np
import torch

from semcomm.core.registry import Registry

IAQ_SOLVERS: Registry[Callable[..., torch.Tensor]] = Registry("IAQ solver")


def quantizer_distortion(levels: int, value_range: float = 1.0) -> torch.Tensor:
    """D(M) = R^2 4^-M / 12 for M = 0..levels: mean squared error per value of an M-bit uniform quantizer."""
    m = torch.arange(levels + 1, dtype=torch.float64, device="cpu")
    return value_range ** 2 * torch.pow(4.0, -m) / 12


def channel_distortion(levels: int, eps: float, value_range: float = 1.0, mapping: str = "natural") -> torch.Tensor:
    """D(M) per value of an M-bit uniform quantizer whose index bits cross a BSC with crossover ``eps``.

    Exact for values uniform on the range and independent bit flips, by
    enumerating every index and flip pattern. With ``mapping="natural"`` this
    equals the closed form R^2 (4^-M / 12 + eps (1 - 4^-M) / 3).
    ``mapping="gray"`` maps indices to Gray-coded bit patterns.
    """
    if not 0 <= eps <= 0.5:
        raise ValueError(f"crossover probability eps must lie in [0, 0.5], got {eps}")
    if mapping not in ("natural", "gray"):
        raise ValueError(f"mapping must be 'natural' or 'gray', got {mapping!r}")
    out = [value_range ** 2 / 12]
    for m in range(1, levels + 1):
        n = 1 << m
        step = value_range / n
        index = np.arange(n)
        word = index ^ (index >> 1) if mapping == "gray" else index
        decode = np.empty(n, dtype=np.int64)
        decode[word] = index  # bit pattern -> index
        flips = np.arange(n)
        weight = np.array([bin(f).count("1") for f in flips])
        prob = eps ** weight * (1 - eps) ** (m - weight)
        received = decode[word[:, None] ^ flips[None, :]]  # n x n: index sent x flip pattern
        error = (received - index[:, None]) * step
        out.append(step ** 2 / 12 + float((prob[None, :] * error ** 2).sum(1).mean()))
    return torch.tensor(out, dtype=torch.float64, device="cpu")


def importance_weights(importance: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    """w_i = a_i^power (B x N), the weight function of importance a_i (rows summing to 1)."""
    if power < 0:
        raise ValueError(f"the weight function must be increasing: power >= 0, got {power}")
    return importance.double().clamp_min(1e-12) ** power


def _check(weights: torch.Tensor, rates: torch.Tensor, budget) -> torch.Tensor:
    if weights.ndim != 2 or rates.shape[:2] != weights.shape or rates.ndim != 3:
        raise ValueError(f"weights must be B x N and rates B x N x (L + 1), got {tuple(weights.shape)} "
                         f"and {tuple(rates.shape)}")
    budget = torch.as_tensor(budget, dtype=torch.float64, device=weights.device).expand(len(weights))
    if (budget < 0).any() or not torch.isfinite(budget).all():
        raise ValueError("bit budgets must be finite and >= 0")
    if (rates[..., 0] != 0).any() or (rates.diff(dim=-1) < 0).any():
        raise ValueError("rate tables must start at 0 bits and never decrease with the level")
    return budget


@IAQ_SOLVERS.register("greedy")
def greedy_allocation(weights: torch.Tensor, rates: torch.Tensor, distortion: torch.Tensor, budget,
                      min_gain: float = 0.0) -> torch.Tensor:
    """Greedy incremental allocation (see the module docstring); B x N levels within each budget.

    Steps that buy less than ``min_gain`` weighted distortion per bit are not
    taken, even when the budget would allow them.
    """
    budget = _check(weights, rates, budget)
    w, r, d = weights.double().numpy(), rates.double().numpy(), distortion.double().numpy()
    levels = np.zeros(w.shape, dtype=np.int64)
    top = r.shape[-1] - 1
    for b in range(len(w)):
        left, counter = float(budget[b]), itertools.count()

        def push(i, m, heap):  # the step of patch i from level m to m + 1
            cost = r[b, i, m + 1] - r[b, i, m]
            gain = w[b, i] * (d[m] - d[m + 1])
            if gain <= 0 or gain < min_gain * cost:
                return  # a step that buys nothing (or too little per bit) is never taken
            heapq.heappush(heap, (-gain / max(cost, 1e-12), next(counter), i, m, cost))

        heap = []
        for i in range(w.shape[1]):
            push(i, 0, heap)
        while heap:
            _, _, i, m, cost = heapq.heappop(heap)
            if cost > left + 1e-9:
                continue  # does not fit; a cheaper step of another patch may
            left -= cost
            levels[b, i] = m + 1
            if m + 1 < top:
                push(i, m + 1, heap)
    return torch.from_numpy(levels)


def water_filling(weights: torch.Tensor, max_level: int, bits_per_level: float, budget,
                  iterations: int = 60) -> torch.Tensor:
    """M_i = clip(round(0.5 log2(w_i / lambda)), 0, max_level), the largest allocation within the budget.

    Every level step costs ``bits_per_level`` (e.g. 48 bits for a 4 x 4 x 3
    patch of raw pixels).
    """
    steps = torch.arange(max_level + 1, dtype=torch.float64, device=weights.device)
    rates = steps.expand(*weights.shape, -1) * bits_per_level
    budget = _check(weights, rates, budget)
    log_w = torch.log2(weights.double().clamp_min(1e-300))

    def levels_at(log_lambda):
        return (0.5 * (log_w - log_lambda[:, None])).round().clamp(0, max_level)

    # lambda tiny: every patch at max
    low = torch.full((len(weights),), -2000.0, dtype=torch.float64, device=weights.device)
    high = torch.full((len(weights),), 2000.0, dtype=torch.float64, device=weights.device)  # lambda huge: nothing sent
    for _ in range(iterations):
        mid = (low + high) / 2
        fits = levels_at(mid).sum(1) * bits_per_level <= budget
        high = torch.where(fits, mid, high)
        low = torch.where(fits, low, mid)
    return levels_at(high).long()


@IAQ_SOLVERS.register("lagrangian")
def lagrangian_allocation(weights: torch.Tensor, rates: torch.Tensor, distortion: torch.Tensor, budget,
                          min_gain: float = 0.0, iterations: int = 24) -> torch.Tensor:
    """Each patch minimises w_i D(M) + lambda R_i(M); lambda by bisection to the largest allocation within
    budget, and at least ``min_gain`` (bits that buy less distortion than that are not spent)."""
    budget = _check(weights, rates, budget)
    w, r = weights.double()[..., None], rates.double()
    wd = w * distortion.double()

    def levels_at(lam):
        return (wd + lam[:, None, None] * r).argmin(-1)

    def total(levels):
        return r.gather(-1, levels[..., None])[..., 0].sum(1)

    low = torch.full((len(weights),), 1e-12, dtype=torch.float64, device=weights.device)
    high = torch.full((len(weights),), 1e12, dtype=torch.float64, device=weights.device)
    for _ in range(iterations):  # bisection on log lambda: 24 halvings of 80 octaves leave lambda within 4e-6
        mid = (low * high).sqrt()
        fits = total(levels_at(mid)) <= budget
        high = torch.where(fits, mid, high)
        low = torch.where(fits, low, mid)
    return levels_at(high.clamp_min(min_gain))


@IAQ_SOLVERS.register("water-filling", channel_terms=False)
def equal_step_water_filling(weights: torch.Tensor, rates: torch.Tensor, distortion: torch.Tensor, budget,
                             min_gain: float = 0.0) -> torch.Tensor:
    """:func:`water_filling` as an IAQ solver: B x N levels within each budget, for rate tables whose every level
    step costs the same bits (raw pixels). Its distortion is its own model (4^-M), so ``distortion`` is not read;
    a minimum gain per bit is refused."""
    steps = rates.diff(dim=-1)
    if (steps - steps[..., :1]).abs().max() > 1e-9 or min_gain:
        raise ValueError("the water-filling solver needs every level step to cost the same bits "
                         "(raw pixels) and no channel terms; use 'greedy' or 'lagrangian'")
    return water_filling(weights, rates.shape[-1] - 1, float(steps[0, 0, 0]), budget)


def uniform_allocation(selected: torch.Tensor, rates: torch.Tensor, budget) -> torch.Tensor:
    """The highest single level for all ``selected`` patches (B x N bool) that fits each budget.

    Images whose budget does not cover level 1 for all their patches still
    send them at level 1 (the budget then is exceeded; the caller sees it in the bits).
    """
    budget = _check(selected.double(), rates, budget)
    total = (rates * selected[..., None]).sum(1)  # B x (L + 1)
    fits = total <= budget[:, None]
    level = (fits.long() * torch.arange(rates.shape[-1], device=rates.device)).amax(-1).clamp_min(1)
    return torch.where(selected, level[:, None], torch.zeros_like(selected, dtype=torch.int64))
