"""Selection rules on synthetic importance maps."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semcomm.core.registry import UnknownNameError
from semcomm.core.seeding import as_generator
from semcomm.edge.selection import (
    SELECTION_RULES, AttentionSum, RandomK, SpreadTopK, Threshold, TopK, mask_to_positions, random_like,
    selection_rules, takes_budget,
)

GRID = (8, 8)
N = 64
B = 4
SETTINGS = settings(max_examples=50, deadline=None)


def importance(batch=B, n=N, seed=0, distinct=True):
    """Rows summing to 1; with ``distinct`` every row is a random permutation of distinct values."""
    g = torch.Generator().manual_seed(seed)
    if distinct:
        base = torch.arange(1, n + 1, dtype=torch.float32) ** 2
        rows = torch.stack([base[torch.randperm(n, generator=g)] for _ in range(batch)])
    else:
        rows = torch.rand(batch, n, generator=g) ** 3
    return rows / rows.sum(dim=1, keepdim=True)


def seeds():
    return st.integers(0, 2**31 - 1)


def check_mask(mask, batch=B, n=N):
    assert mask.shape == (batch, n)
    assert mask.dtype == torch.bool
    assert (mask.sum(dim=1) >= 1).all()


@SETTINGS
@given(seed=seeds(), k=st.integers(1, N))
def test_topk_keeps_the_k_largest(seed, k):
    imp = importance(seed=seed)
    mask = TopK(k)(imp, GRID)
    check_mask(mask)
    assert (mask.sum(dim=1) == k).all()
    for row, keep in zip(imp, mask):
        if k < N:
            assert row[keep].min() > row[~keep].max()
        assert set(row.argsort(descending=True)[:k].tolist()) == set(keep.nonzero().flatten().tolist())


@pytest.mark.parametrize("rule", [TopK, RandomK, SpreadTopK])
def test_budget_larger_than_grid_is_an_error(rule):
    with pytest.raises(ValueError, match=f"budget of {N + 10} patches exceeds the {N} patches"):
        rule(N + 10)(importance(), GRID)
    assert rule(N)(importance(), GRID).all()


@pytest.mark.parametrize("k", [np.int64(5), np.int32(5), np.uint8(5)])
def test_numpy_integer_budgets_are_accepted(k):
    rule = TopK(k)
    assert type(rule.k) is int and rule.label == "top-k 5"
    assert rule(importance(), GRID).sum(1).eq(5).all()


@SETTINGS
@given(seed=seeds(), k=st.integers(1, N))
def test_randomk_exact_count_and_reproducible(seed, k):
    imp = importance(seed=0)
    mask = RandomK(k)(imp, GRID, torch.Generator().manual_seed(seed))
    check_mask(mask)
    assert (mask.sum(dim=1) == k).all()
    assert torch.equal(mask, RandomK(k)(imp, GRID, seed))  # an int seed means the same generator


def test_randomk_differs_across_seeds_and_ignores_importance():
    imp = importance()
    masks = [RandomK(16)(imp, GRID, torch.Generator().manual_seed(s)) for s in range(5)]
    assert len({tuple(m.flatten().tolist()) for m in masks}) == 5
    assert not torch.equal(masks[0][0], masks[0][1])  # rows of one batch differ too
    # importance does not matter: a reversed importance map gives the same mask for the same seed
    assert torch.equal(RandomK(16)(imp.flip(1), GRID, 3), RandomK(16)(imp, GRID, 3))


def test_randomk_is_roughly_uniform():
    g = torch.Generator().manual_seed(0)
    counts = RandomK(8)(importance(batch=2000, seed=1), GRID, g).sum(dim=0).float()
    # each patch kept with probability 8/64 over 2000 draws: mean 250, sd ~15
    assert counts.min() > 250 - 6 * 15 and counts.max() < 250 + 6 * 15


@SETTINGS
@given(seed=seeds(), delta=st.floats(0, 1))
def test_threshold_keeps_everything_at_or_above_delta_and_at_least_one(seed, delta):
    imp = importance(seed=seed, distinct=False)
    mask = Threshold(delta)(imp, GRID)
    check_mask(mask)
    for row, keep in zip(imp, mask):
        above = row >= delta
        if above.any():
            assert torch.equal(keep, above)
        else:
            assert keep.sum() == 1 and row[keep].item() == row.max().item()


def test_threshold_exact_values():
    imp = torch.tensor([[0.5, 0.25, 0.125, 0.125], [0.25, 0.25, 0.25, 0.25]])
    assert Threshold(0.25)(imp, (2, 2)).tolist() == [[True, True, False, False], [True, True, True, True]]
    assert Threshold(0.0)(imp, (2, 2)).all()
    assert Threshold(1.0)(imp, (2, 2)).sum(dim=1).tolist() == [1, 1]
    assert Threshold(1.0)(imp, (2, 2))[0].tolist() == [True, False, False, False]


@SETTINGS
@given(seed=seeds(), delta=st.floats(0, 1, exclude_min=True))
def test_attention_sum_keeps_the_shortest_sufficient_prefix(seed, delta):
    imp = importance(seed=seed, distinct=False)
    mask = AttentionSum(delta)(imp, GRID)
    check_mask(mask)
    for row, keep in zip(imp.double(), mask):
        kept = row[keep]
        # a prefix by descending importance: every kept patch is at least as important as every dropped one
        if (~keep).any():
            assert kept.min() >= row[~keep].max()
        # it reaches delta (up to float32 rounding of the cumulative sum) ...
        assert kept.sum() >= delta - 1e-5
        # ... and is minimal: without the least important kept patch it falls short
        assert kept.sum() - kept.min() < delta


def test_attention_sum_exact_values():
    imp = torch.tensor([[0.5, 0.25, 0.25, 0.0], [0.0, 0.125, 0.375, 0.5]])
    select = lambda delta: AttentionSum(delta)(imp, (2, 2)).tolist()  # noqa: E731
    assert select(0.5) == [[True, False, False, False], [False, False, False, True]]
    assert select(0.75) == [[True, True, False, False], [False, False, True, True]]  # exactly reaching delta is enough
    assert select(0.8) == [[True, True, True, False], [False, False, True, True]]
    assert select(0.875) == [[True, True, True, False], [False, False, True, True]]
    # delta = 1 keeps every patch with positive mass, and no zero-mass patch
    assert select(1.0) == [[True, True, True, False], [False, True, True, True]]
    assert select(1e-9) == [[True, False, False, False], [False, False, False, True]]


def test_attention_sum_float_sums():
    """0.1 * 3 is not exactly 0.3 in floating point: three patches of 0.1 still reach delta = 0.3."""
    imp = torch.full((1, 10), 0.1)
    assert AttentionSum(0.3)(imp, (2, 5)).sum().item() == 3
    assert AttentionSum(0.7)(imp, (2, 5)).sum().item() == 7
    assert AttentionSum(1.0)(imp, (2, 5)).sum().item() == 10
    uniform = torch.full((1, N), 1 / N)
    assert AttentionSum(1.0)(uniform, GRID).all()
    assert AttentionSum(0.5)(uniform, GRID).sum().item() == N // 2


def test_attention_sum_default_delta():
    assert AttentionSum().delta == 0.97
    one_hot = torch.zeros(2, N)
    one_hot[:, 5] = 1.0
    assert AttentionSum()(one_hot, GRID).sum(dim=1).tolist() == [1, 1]


def cell_of(index, grid_w=8, cell=2):
    r, c = divmod(index, grid_w)
    return (r // cell) * (grid_w // cell) + c // cell


@SETTINGS
@given(seed=seeds())
def test_spread_topk_one_best_patch_per_cell(seed):
    imp = importance(seed=seed)
    mask = SpreadTopK(16, cell=2)(imp, GRID)
    check_mask(mask)
    assert (mask.sum(dim=1) == 16).all()
    for row, keep in zip(imp, mask):
        kept = keep.nonzero().flatten().tolist()
        assert sorted(cell_of(i) for i in kept) == list(range(16))
        for i in kept:
            same_cell = [j for j in range(N) if cell_of(j) == cell_of(i)]
            assert row[i] == row[same_cell].max()


def test_spread_topk_hand_built_grid():
    """4 x 4 grid, 2 x 2 cells; the most important patch overall is in cell 0, but each cell gets one."""
    imp = torch.tensor([[
        16, 15, 1, 2,
        14, 13, 3, 4,
        5, 6, 9, 10,
        7, 8, 11, 12,
    ]], dtype=torch.float32)
    imp /= imp.sum()
    assert SpreadTopK(4, cell=2)(imp, (4, 4)).nonzero()[:, 1].tolist() == [0, 7, 13, 15]
    # a second round: the best second patches first (15 > 12 > 11 ...)
    assert SpreadTopK(5, cell=2)(imp, (4, 4)).nonzero()[:, 1].tolist() == [0, 1, 7, 13, 15]
    # a budget below the number of cells takes the best cells' best patches
    assert SpreadTopK(2, cell=2)(imp, (4, 4)).nonzero()[:, 1].tolist() == [0, 15]
    # cell = 1 is plain top-k
    assert torch.equal(SpreadTopK(5, cell=1)(imp, (4, 4)), TopK(5)(imp, (4, 4)))


@SETTINGS
@given(seed=seeds(), k=st.integers(17, N))
def test_spread_topk_more_than_cells(seed, k):
    imp = importance(seed=seed)
    mask = SpreadTopK(k, cell=2)(imp, GRID)
    assert (mask.sum(dim=1) == k).all()
    for keep in mask:
        per_cell = torch.bincount(torch.tensor([cell_of(i) for i in keep.nonzero().flatten().tolist()]), minlength=16)
        assert per_cell.min() >= k // 16 and per_cell.max() <= math.ceil(k / 16)  # rounds fill evenly


@SETTINGS
@given(seed=seeds())
def test_spread_random_covers_every_cell(seed):
    imp = importance(seed=0)
    rule = SpreadTopK(16, cell=2, random_within=True)
    mask = rule(imp, GRID, torch.Generator().manual_seed(seed))
    assert (mask.sum(dim=1) == 16).all()
    for keep in mask:
        assert sorted(cell_of(i) for i in keep.nonzero().flatten().tolist()) == list(range(16))
    assert torch.equal(mask, rule(imp, GRID, seed))


def test_spread_random_differs_across_seeds():
    imp = importance()
    rule = SpreadTopK(16, cell=2, random_within=True)
    masks = {tuple(rule(imp, GRID, s).flatten().tolist()) for s in range(5)}
    assert len(masks) == 5


def test_spread_topk_non_square_grid():
    imp = importance(batch=2, n=32, seed=3)
    mask = SpreadTopK(8, cell=2)(imp, (4, 8))
    assert (mask.sum(dim=1) == 8).all()
    for keep in mask:
        assert sorted(cell_of(i, grid_w=8) for i in keep.nonzero().flatten().tolist()) == list(range(8))


@SETTINGS
@given(seed=seeds(), counts=st.lists(st.integers(1, N), min_size=1, max_size=6))
def test_random_like_keeps_per_row_counts(seed, counts):
    mask = torch.zeros(len(counts), N, dtype=torch.bool)
    for i, c in enumerate(counts):
        mask[i, :c] = True
    twin = random_like(mask, torch.Generator().manual_seed(seed))
    assert twin.dtype == torch.bool and twin.shape == mask.shape
    assert twin.sum(dim=1).tolist() == counts
    assert torch.equal(twin, random_like(mask, seed))


def test_random_like_is_random():
    mask = TopK(10)(importance(), GRID)
    twins = [random_like(mask, s) for s in range(4)]
    assert len({tuple(t.flatten().tolist()) for t in twins}) == 4
    assert not torch.equal(twins[0], mask)


def test_mask_to_positions():
    mask = torch.tensor([[False, True, False, True], [True, True, True, True], [False, False, True, False]])
    positions = mask_to_positions(mask)
    assert [p.tolist() for p in positions] == [[1, 3], [0, 1, 2, 3], [2]]
    assert all(p.dtype == torch.int64 for p in positions)


def test_as_generator():
    g = torch.Generator().manual_seed(5)
    assert as_generator(g) is g
    assert torch.equal(torch.rand(3, generator=as_generator(5)), torch.rand(3, generator=torch.Generator().manual_seed(5)))
    assert torch.equal(torch.rand(3, generator=as_generator(None)), torch.rand(3, generator=as_generator(0)))


def test_labels():
    assert TopK(16).label == "top-k 16"
    assert RandomK(16).label == "random 16"
    assert Threshold(0.01).label == "threshold 0.01"
    assert AttentionSum(0.9).label == "attention-sum 0.9"
    assert SpreadTopK(16).label == "spread-top-k 16"
    assert SpreadTopK(16, random_within=True).label == "spread-random 16"


@pytest.mark.parametrize("rule", [TopK, RandomK, SpreadTopK])
@pytest.mark.parametrize("k", [0, -3])
def test_empty_budget_is_rejected(rule, k):
    with pytest.raises(ValueError, match="budget"):
        rule(k)


@pytest.mark.parametrize("rule", [TopK(4), RandomK(4), Threshold(0.1), AttentionSum(0.9), SpreadTopK(4)])
def test_bad_importance_is_rejected(rule):
    with pytest.raises(ValueError, match="B x 64"):
        rule(torch.full((2, 63), 1 / 63), GRID)
    with pytest.raises(ValueError, match="B x 64"):
        rule(torch.full((64,), 1 / 64), GRID)
    bad = importance(batch=2)
    bad[1, 7] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        rule(bad, GRID)
    bad[1, 7] = math.inf
    with pytest.raises(ValueError, match="infinite"):
        rule(bad, GRID)


@pytest.mark.parametrize("delta", [-0.1, 1.1, math.nan])
def test_threshold_delta_outside_unit_interval(delta):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Threshold(delta)


@pytest.mark.parametrize("delta", [0, -0.5, 1.5, math.nan])
def test_attention_sum_delta_outside_half_open_interval(delta):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        AttentionSum(delta)


def test_spread_topk_grid_not_divisible_by_cell():
    with pytest.raises(ValueError, match="does not divide"):
        SpreadTopK(4, cell=3)(importance(), GRID)
    with pytest.raises(ValueError, match="cell"):
        SpreadTopK(4, cell=0)


BUILT_IN = {"top-k": True, "spread-top-k": True, "random-k": True, "spread-random": True, "threshold": False,
            "attention-sum": False}  # name -> takes a budget


def test_the_rules_are_registered_with_whether_they_take_a_budget():
    assert set(BUILT_IN) <= set(SELECTION_RULES.names())
    assert {name: takes_budget(name) for name in BUILT_IN} == BUILT_IN
    made = {name: SELECTION_RULES.create(name, 8) for name, budget in BUILT_IN.items() if budget}
    assert made == {"top-k": TopK(8), "spread-top-k": SpreadTopK(8), "random-k": RandomK(8),
                    "spread-random": SpreadTopK(8, random_within=True)}
    assert [rule.label for rule in made.values()] == ["top-k 8", "spread-top-k 8", "random 8", "spread-random 8"]
    assert SELECTION_RULES.create("threshold", 0.1) == Threshold(0.1)
    assert not takes_budget(TopK(3))  # an object is taken as it is


@pytest.mark.parametrize("names, budgets, labels", [
    (("spread-top-k",), (16, 32, 64), ["spread-top-k 16", "spread-top-k 32", "spread-top-k 64"]),
    (("threshold", "top-k", "attention-sum", "spread-top-k"), (8, 16),
     ["top-k 8", "top-k 16", "spread-top-k 8", "spread-top-k 16", "threshold 0.0156", "attention-sum 0.97"]),
    (("attention-sum",), (8,), ["attention-sum 0.97"]),
    (("top-k",), (), []),
])
def test_selection_rules_are_the_sweeps_grid(names, budgets, labels):
    """Every rule with a budget at every budget, then each other rule once (the sweep's rows, in its order)."""
    rules = selection_rules(names, budgets)
    assert [rule.label for rule in rules] == labels
    assert all(type(rule.k) is int for rule in rules if hasattr(rule, "k"))


def test_selection_rules_settings_and_objects():
    rules = selection_rules(["threshold", TopK(3), "top-k"], [5], {"threshold": {"delta": round(1 / 50, 4)}})
    assert rules == [TopK(5), Threshold(0.02), TopK(3)]
    assert selection_rules(["attention-sum"], [], {"attention-sum": {"delta": 0.9}}) == [AttentionSum(0.9)]
    with pytest.raises(UnknownNameError, match=r"unknown selection rules \['best-k', 'worst-k'\]; choose from "
                                                r"\['attention-sum', .*'top-k'\]"):
        selection_rules(["top-k", "worst-k", "best-k"], [8])
    with pytest.raises(ValueError, match="budget k >= 1"):
        selection_rules(["spread-top-k"], [0])
    with pytest.raises(TypeError, match="a name .* or a SelectionRule, got 3"):
        selection_rules(["top-k", 3], [8])
