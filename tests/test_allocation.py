"""Importance-aware quantization: distortion models against closed forms, solvers against brute force."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semcomm.core.registry import UnknownNameError
from semcomm.rate.allocation import (
    IAQ_SOLVERS, channel_distortion, equal_step_water_filling, greedy_allocation, importance_weights,
    lagrangian_allocation, quantizer_distortion, uniform_allocation, water_filling,
)
from semcomm.rate.policies import IAQ, LEVEL_POLICIES, FixedLevel, UniformBudget

SETTINGS = settings(max_examples=40, deadline=None)


def test_quantizer_distortion_is_the_uniform_quantizer_mse():
    d = quantizer_distortion(8, value_range=2.0)
    assert d[0] == pytest.approx(4 / 12) and d[3] == pytest.approx(4 / 12 / 64)
    # Monte-Carlo check of one level: uniform values, 3-bit midpoint quantizer
    x = torch.rand(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2.0
    step = 2.0 / 8
    mse = ((torch.floor(x / step) + 0.5) * step - x).pow(2).mean()
    assert float(mse) == pytest.approx(float(d[3]), rel=0.02)


@pytest.mark.parametrize("eps", [0.0, 1e-3, 0.01, 0.1, 0.3])
def test_channel_distortion_matches_the_closed_form_for_natural_binary(eps):
    m = torch.arange(9, dtype=torch.float64)
    closed = torch.pow(4.0, -m) / 12 + eps * (1 - torch.pow(4.0, -m)) / 3
    torch.testing.assert_close(channel_distortion(8, eps), closed)


def test_channel_distortion_by_simulation_and_gray_mapping():
    g = torch.Generator().manual_seed(1)
    m, eps, n = 4, 0.05, 400_000
    x = torch.rand(n, generator=g, dtype=torch.float64)
    index = torch.floor(x * 2 ** m).long()
    flips = (torch.rand(n, m, generator=g) < eps).long() @ (1 << torch.arange(m))
    received = index ^ flips
    mse = ((received.double() + 0.5) / 2 ** m - x).pow(2).mean()
    assert float(mse) == pytest.approx(float(channel_distortion(m, eps)[m]), rel=0.03)
    gray = channel_distortion(8, 0.05, mapping="gray")
    assert gray[1] == pytest.approx(channel_distortion(8, 0.05)[1])  # one bit: the two maps agree
    assert (gray[2:] >= channel_distortion(8, 0.05)[2:]).all()  # Gray spreads a flip's damage further


def brute_force(weights, rates, distortion, budget):
    n, levels = rates.shape[0], rates.shape[1]
    best, best_d = None, math.inf
    for combo in itertools.product(range(levels), repeat=n):
        bits = sum(rates[i, m] for i, m in enumerate(combo))
        d = sum(weights[i] * distortion[m] for i, m in enumerate(combo))
        if bits <= budget + 1e-9 and d < best_d - 1e-15:
            best, best_d = combo, d
    return best_d


@SETTINGS
@given(st.lists(st.floats(0.01, 1.0), min_size=2, max_size=5), st.integers(0, 15))
def test_greedy_is_optimal_when_every_step_costs_the_same(weights, steps):
    w = torch.tensor([weights], dtype=torch.float64)
    rates = (torch.arange(4, dtype=torch.float64) * 48).expand(1, len(weights), -1)
    d = quantizer_distortion(3)
    budget = 48 * steps
    levels = greedy_allocation(w, rates, d, budget)
    used = rates[0].gather(-1, levels[0][:, None]).sum()
    assert used <= budget
    achieved = float((w[0] * d[levels[0]]).sum())
    assert achieved == pytest.approx(brute_force(weights, rates[0].numpy(), d.numpy(), budget), rel=1e-9)


@SETTINGS
@given(st.lists(st.floats(0.01, 1.0), min_size=2, max_size=4), st.floats(0, 400))
def test_lagrangian_stays_within_budget_and_matches_greedy_on_its_hull_points(weights, budget):
    g = torch.Generator().manual_seed(len(weights))
    steps = torch.rand(len(weights), 3, generator=g, dtype=torch.float64) * 60 + 5
    rates = torch.cat([torch.zeros(len(weights), 1, dtype=torch.float64), steps.cumsum(-1)], -1)[None]
    w = torch.tensor([weights], dtype=torch.float64)
    d = quantizer_distortion(3)
    levels = lagrangian_allocation(w, rates, d, budget)
    assert rates[0].gather(-1, levels[0][:, None]).sum() <= budget + 1e-9
    optimum = brute_force(weights, rates[0].numpy(), d.numpy(), budget)
    # the Lagrangian point is optimal for its own rate, so never worse than the optimum at that rate
    used = float(rates[0].gather(-1, levels[0][:, None]).sum())
    assert float((w[0] * d[levels[0]]).sum()) == pytest.approx(
        brute_force(weights, rates[0].numpy(), d.numpy(), used), rel=1e-9)
    assert float((w[0] * d[levels[0]]).sum()) >= optimum - 1e-12


def test_water_filling_meets_the_budget_and_follows_importance():
    w = torch.tensor([[0.5, 0.25, 0.125, 0.0625, 0.0625]], dtype=torch.float64)
    levels = water_filling(w, max_level=8, bits_per_level=48, budget=48 * 10)
    assert int(levels.sum()) * 48 <= 480 and int(levels.sum()) >= 8
    assert (levels[0].diff() <= 0).all()  # more important, at least as many bits
    # 0.5 log2 of a 4x weight ratio is one level
    assert int(levels[0, 0] - levels[0, 2]) == 1


def test_uniform_allocation_is_the_highest_common_level_within_budget():
    selected = torch.tensor([[True, True, False, True]])
    rates = torch.arange(5, dtype=torch.float64).expand(1, 4, -1) * 10  # 10 bits per level per patch
    assert uniform_allocation(selected, rates, 65).tolist() == [[2, 2, 0, 2]]
    assert uniform_allocation(selected, rates, 5).tolist() == [[1, 1, 0, 1]]  # level 1 at least


@pytest.mark.parametrize("solver", ["greedy", "lagrangian"])
def test_channel_awareness_spends_fewer_bits_on_a_noisy_link(solver):
    importance = torch.softmax(2 * torch.randn(4, 64, generator=torch.Generator().manual_seed(0)), -1)
    mask = torch.ones(4, 64, dtype=torch.bool)
    rates = (torch.arange(9, dtype=torch.float64) * 48).expand(4, 64, -1)
    spent = []
    for eps in (0.0, 0.01, 0.05, 0.15):
        level = IAQ(20_000, solver=solver, eps=eps, min_gain=1e-6)(mask, importance, rates)
        spent.append(int(level.sum()))
    assert spent == sorted(spent, reverse=True) and spent[-1] < 0.8 * spent[0], spent
    # under a fixed budget alone, natural-binary channel distortion is affine in the clean one: same allocation
    clean = IAQ(2000, solver=solver)(mask, importance, rates)
    assert torch.equal(IAQ(2000, solver=solver, eps=0.05)(mask, importance, rates), clean)


def test_policies_respect_the_mask_and_are_named():
    importance = torch.softmax(torch.randn(3, 64, generator=torch.Generator().manual_seed(0)), -1)
    mask = torch.rand(3, 64, generator=torch.Generator().manual_seed(1)) < 0.3
    rates = (torch.arange(5, dtype=torch.float64) * 20).expand(3, 64, -1)
    for policy in (FixedLevel(2), UniformBudget(300), IAQ(300), IAQ(300, solver="greedy"),
                   IAQ(300, solver="water-filling")):
        level = policy(mask, importance, rates)
        assert (level[~mask] == 0).all() and (level.amax(1) > 0).all()
    assert IAQ(300).label == "iaq 300b" and UniformBudget(300).label == "uniform 300b" and FixedLevel(2).label == "L2"
    tiny = IAQ(1)(mask, importance, rates)
    assert (tiny.sum(1) == 1).all()  # the budget covers nothing: the most important patch, coarsest
    floor = IAQ(300, min_level=3)(mask, importance, rates)
    assert ((floor == 0) | (floor >= 3)).all() and (floor.amax(1) >= 3).all()
    assert IAQ(300, min_level=3).label == "iaq 300b min L3"
    with pytest.raises(ValueError, match="exceeds"):
        IAQ(300, min_level=5)(mask, importance, rates)
    with pytest.raises(ValueError, match="solver"):
        IAQ(100, solver="magic")
    uneven = rates.clone()
    uneven[..., 2:] += 5
    with pytest.raises(ValueError, match="same bits"):
        IAQ(300, solver="water-filling")(mask, importance, uneven)
    with pytest.raises(ValueError, match="budget"):
        IAQ(0)
    with pytest.raises(ValueError, match="level >= 1"):
        FixedLevel(0)
    with pytest.raises(ValueError, match="increasing"):
        importance_weights(importance, -1)


def policy_inputs(batch=3, levels=4, bits_per_level=20):
    importance = torch.softmax(torch.randn(batch, 64, generator=torch.Generator().manual_seed(2)), -1)
    mask = torch.rand(batch, 64, generator=torch.Generator().manual_seed(3)) < 0.4
    rates = (torch.arange(levels + 1, dtype=torch.float64) * bits_per_level).expand(batch, 64, -1)
    return mask, importance, rates


def test_the_solvers_and_policies_are_registered():
    assert {"greedy", "lagrangian", "water-filling"} <= set(IAQ_SOLVERS.names())
    assert IAQ_SOLVERS.get("greedy") is greedy_allocation and IAQ_SOLVERS.get("lagrangian") is lagrangian_allocation
    assert IAQ_SOLVERS.info("water-filling") == {"channel_terms": False}
    assert {"fixed-level", "uniform-budget", "iaq"} <= set(LEVEL_POLICIES.names())
    assert LEVEL_POLICIES.create("iaq", 300) == IAQ(300) and LEVEL_POLICIES.create("fixed-level", 2) == FixedLevel(2)
    assert LEVEL_POLICIES.create("uniform-budget", 300).label == "uniform 300b"
    assert [LEVEL_POLICIES.info(n)["parameter"] for n in ("fixed-level", "uniform-budget", "iaq")] == \
        ["level", "bits", "bits"]
    with pytest.raises(UnknownNameError, match="unknown IAQ solver 'magic'; choose from: .*greedy.*lagrangian"):
        IAQ(100, solver="magic")
    with pytest.raises(TypeError, match="a name .* or a function, got 7"):
        IAQ(100, solver=7)


@pytest.mark.parametrize("name, min_level", [("greedy", 2), ("lagrangian", 2), ("water-filling", 1)])
def test_a_solver_by_name_or_as_a_function_allocates_the_same(name, min_level):
    mask, importance, rates = policy_inputs()
    by_name = IAQ(300, solver=name, min_level=min_level)(mask, importance, rates)
    assert (by_name[mask] >= min_level).any()
    assert torch.equal(IAQ(300, solver=IAQ_SOLVERS.get(name), min_level=min_level)(mask, importance, rates), by_name)


def test_equal_step_water_filling_is_water_filling_on_rate_tables():
    mask, importance, rates = policy_inputs()
    weights = importance_weights(importance) * mask
    expected = water_filling(weights, 4, 20.0, 250)
    assert torch.equal(equal_step_water_filling(weights, rates, quantizer_distortion(4), 250), expected)
    with pytest.raises(ValueError, match="same bits"):
        equal_step_water_filling(weights, rates, quantizer_distortion(4), 250, min_gain=1e-3)
    with pytest.raises(ValueError, match="same bits"):
        IAQ(300, solver="water-filling", min_gain=1e-3)(mask, importance, rates)
    with pytest.raises(ValueError, match="water-filling solver uses its own distortion model and takes no channel "
                                         "terms \\(eps = 0.01\\)"):
        IAQ(300, solver="water-filling", eps=0.01)(mask, importance, rates)


def test_a_custom_solver_sees_the_allowed_levels_only():
    mask, importance, rates = policy_inputs()
    seen = {}

    def everything_at_the_top(weights, rates, distortion, budget, min_gain=0.0):
        seen.update(columns=rates.shape[-1], distortion=distortion, budget=budget, min_gain=min_gain)
        return torch.full(weights.shape, rates.shape[-1] - 1, dtype=torch.int64)

    level = IAQ(500, solver=everything_at_the_top, min_level=3, min_gain=0.5)(mask, importance, rates)
    assert seen["columns"] == 3 and seen["budget"] == 500 and seen["min_gain"] == 0.5  # levels 0, 3, 4
    assert torch.equal(seen["distortion"], quantizer_distortion(4)[[0, 3, 4]])
    assert torch.equal(level, mask.long() * 4)
    everything_at_the_top.channel_terms = False
    with pytest.raises(ValueError, match="everything_at_the_top solver .* takes no channel terms"):
        IAQ(500, solver=everything_at_the_top, eps=0.1)(mask, importance, rates)
