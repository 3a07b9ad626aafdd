"""Entropy gating on synthetic logits."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semcomm.core.registry import UnknownNameError
from semcomm.edge.gating import COMPARED, GATES, Gate, compare_gates, uncertainty

SETTINGS = settings(max_examples=50, deadline=None)
KINDS = ("min_entropy", "shannon", "margin")  # the built-in gates


def random_logits(batch, classes, seed, scale=3.0):
    return scale * torch.randn(batch, classes, generator=torch.Generator().manual_seed(seed))


def two_class_logits(p_max: torch.Tensor) -> torch.Tensor:
    """B x 2 logits whose softmax puts ``p_max`` on class 0."""
    p = p_max.double()
    return torch.stack([torch.log(p), torch.log1p(-p)], dim=1).float()


def test_min_entropy_of_peaked_logits():
    logits = torch.tensor([[10.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 10.0]])
    p_max = math.exp(10) / (math.exp(10) + 3)
    expected = -math.log2(p_max)
    # float32 log-softmax near 0 is accurate to ~1e-7 absolute, not relative
    assert torch.allclose(uncertainty(logits, "min_entropy"), torch.full((2,), expected), rtol=0, atol=1e-6)
    assert expected < 2e-4
    milder = torch.tensor([[0.0, 3.0, 0.0, 0.0]])
    assert math.isclose(uncertainty(milder).item(), math.log2(1 + 3 * math.exp(-3)), rel_tol=1e-5)
    assert uncertainty(logits).tolist() == uncertainty(logits, "min_entropy").tolist()  # the default kind
    # a one-hot-ish vector has (almost) no uncertainty, a certain one exactly none
    assert uncertainty(torch.tensor([[100.0, 0.0, 0.0]]), "min_entropy").item() == 0.0


@pytest.mark.parametrize("classes", [2, 10, 1000])
def test_uniform_logits_give_log2_classes(classes):
    logits = torch.full((3, classes), 1.7)
    assert torch.allclose(uncertainty(logits, "min_entropy"), torch.full((3,), math.log2(classes)), atol=1e-5)
    assert torch.allclose(uncertainty(logits, "shannon"), torch.full((3,), math.log2(classes)), atol=1e-4)
    assert torch.allclose(uncertainty(logits, "margin"), torch.ones(3))


def test_shannon_and_margin_hand_computed():
    p = torch.tensor([[0.5, 0.25, 0.125, 0.125], [0.7, 0.1, 0.1, 0.1]])
    logits = p.log() + 2.0  # shift does not matter
    shannon = [-(row * row.log2()).sum().item() for row in p]
    assert torch.allclose(uncertainty(logits, "shannon"), torch.tensor(shannon), atol=1e-5)
    assert math.isclose(shannon[0], 1.75, rel_tol=1e-6)
    assert torch.allclose(uncertainty(logits, "margin"), torch.tensor([1 - 0.25, 1 - 0.6]), atol=1e-6)
    assert torch.allclose(uncertainty(logits, "min_entropy"), torch.tensor([1.0, -math.log2(0.7)]), atol=1e-6)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), classes=st.integers(2, 50))
def test_scores_are_in_range_and_ordered(seed, classes):
    logits = random_logits(8, classes, seed)
    h_min, h, margin = (uncertainty(logits, k) for k in ("min_entropy", "shannon", "margin"))
    for score in (h_min, h, margin):
        assert score.shape == (8,) and score.dtype == torch.float32 and torch.isfinite(score).all()
    assert (h_min >= 0).all() and (h_min <= math.log2(classes) + 1e-5).all()
    assert (h >= h_min - 1e-5).all() and (h <= math.log2(classes) + 1e-5).all()  # Shannon >= min-entropy
    assert (margin >= 0).all() and (margin <= 1 + 1e-6).all()


def test_extreme_logits_stay_finite():
    logits = torch.tensor([[1e4, -1e4, 0.0], [-80.0, 80.0, 0.0]])
    for kind in KINDS:
        assert torch.isfinite(uncertainty(logits, kind)).all(), kind


@pytest.mark.parametrize("kind", KINDS)
def test_threshold_zero_offloads_everything_and_inf_nothing(kind):
    logits = torch.cat([random_logits(20, 5, 0), torch.tensor([[100.0, 0, 0, 0, 0], [0.0, 0, 0, 0, 0]])])
    assert Gate(kind, 0.0).offload(logits).all()
    assert not Gate(kind, math.inf).offload(logits).any()
    out = Gate(kind, 0.5).offload(logits)
    assert out.dtype == torch.bool and out.shape == (22,)


def test_default_gate_boundary():
    gate = Gate()
    assert gate.kind == "min_entropy" and gate.threshold == 0.8
    boundary = 2 ** -0.8  # 0.574
    p_max = torch.tensor([boundary - 1e-3, boundary - 1e-5, boundary + 1e-5, boundary + 1e-3, 0.51, 0.99])
    assert gate.offload(two_class_logits(p_max)).tolist() == [True, True, False, False, True, False]
    # the same boundary with more classes
    logits = torch.full((2, 10), -30.0)
    logits[0, 0] = math.log(boundary - 1e-4)
    logits[0, 1] = math.log(1 - boundary + 1e-4)
    logits[1, 0] = math.log(boundary + 1e-4)
    logits[1, 1] = math.log(1 - boundary - 1e-4)
    assert gate.offload(logits).tolist() == [True, False]


def test_offload_is_score_at_or_above_threshold():
    logits = random_logits(50, 4, 1)
    for kind in KINDS:
        scores = uncertainty(logits, kind)
        threshold = float(scores[7])
        offload = Gate(kind, threshold).offload(logits)
        assert torch.equal(offload, scores >= threshold)
        assert offload[7]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch", [10, 7, 33])
@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_calibrate_offloads_the_requested_fraction(kind, batch, rate):
    logits = random_logits(batch, 6, batch)
    gate = Gate.calibrate(logits, rate, kind)
    assert gate.kind == kind
    offload = gate.offload(logits)
    assert offload.sum().item() == round(rate * batch)
    # the most uncertain images are the ones offloaded
    scores = uncertainty(logits, kind)
    if 0 < offload.sum() < batch:
        assert scores[offload].min() > scores[~offload].max()
    if rate == 0:
        assert gate.threshold == math.inf


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), rate=st.floats(0, 1), batch=st.integers(1, 40))
def test_calibrate_property(seed, rate, batch):
    logits = random_logits(batch, 5, seed)
    assert Gate.calibrate(logits, rate).offload(logits).sum().item() == round(rate * batch)


def test_calibrate_default_kind_and_held_out_use():
    held_out, test = random_logits(200, 10, 2), random_logits(200, 10, 3)
    gate = Gate.calibrate(held_out, 0.3)
    assert gate.kind == "min_entropy"
    assert 0.15 < gate.offload(test).float().mean().item() < 0.45  # generalises to new data from the same source


def test_label():
    assert Gate().label == "min_entropy 0.8"
    assert Gate("margin", math.inf).label == "margin inf"


def test_bad_logits_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        uncertainty(torch.tensor([[0.0, math.nan]]))
    with pytest.raises(ValueError, match="infinite"):
        Gate().offload(torch.tensor([[0.0, math.inf]]))
    with pytest.raises(ValueError, match="B x C"):
        uncertainty(torch.zeros(5))
    with pytest.raises(ValueError, match="B x C"):
        uncertainty(torch.zeros(2, 1))  # a single class
    with pytest.raises(ValueError, match="NaN"):
        Gate.calibrate(torch.tensor([[0.0, math.nan]]), 0.5)


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown gate 'entropy'") as info:
        uncertainty(torch.zeros(2, 3), "entropy")
    assert all(k in str(info.value) for k in KINDS)
    assert isinstance(info.value, UnknownNameError) and isinstance(info.value, KeyError)
    with pytest.raises(ValueError, match="unknown gate"):
        Gate("entropy")
    with pytest.raises(ValueError, match="unknown gate"):
        Gate.calibrate(torch.zeros(2, 3), 0.5, "entropy")


@pytest.mark.parametrize("threshold", [-0.1, -math.inf, math.nan])
def test_bad_threshold(threshold):
    with pytest.raises(ValueError, match="threshold"):
        Gate(threshold=threshold)


@pytest.mark.parametrize("rate", [-0.01, 1.01, math.nan])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match="offload_rate"):
        Gate.calibrate(torch.zeros(4, 3), rate)


def test_the_gates_are_registered_by_name():
    assert set(KINDS) <= set(GATES.names()) and COMPARED == KINDS
    logits = random_logits(16, 7, 4)
    for kind in KINDS:
        assert torch.equal(uncertainty(logits, GATES.get(kind)), uncertainty(logits, kind))
        assert Gate(GATES.get(kind), 0.5).label == Gate(kind, 0.5).label == f"{kind} 0.5"


def test_a_score_function_is_a_gate():
    def one_minus_p_max(logits):
        return 1 - logits.float().softmax(dim=-1).amax(dim=-1)

    logits = random_logits(30, 5, 5)
    gate = Gate(one_minus_p_max, 0.4)
    assert gate.label == "one_minus_p_max 0.4"
    assert torch.equal(gate.offload(logits), one_minus_p_max(logits) >= 0.4)
    calibrated = Gate.calibrate(logits, 0.3, one_minus_p_max)
    assert calibrated.kind is one_minus_p_max and calibrated.offload(logits).sum() == 9
    with pytest.raises(ValueError, match="B x C"):  # the logits are checked for every gate
        Gate(one_minus_p_max).offload(torch.zeros(3))
    with pytest.raises(TypeError, match="a name .*min_entropy.* or a function of B x C logits, got 3"):
        Gate(3)


def test_compare_gates_rows_in_the_papers_order_and_with_a_function():
    edge, server = random_logits(40, 4, 6), random_logits(40, 4, 7)
    labels = torch.randint(0, 4, (40,), generator=torch.Generator().manual_seed(8))
    rows = compare_gates(edge, server, labels, (0.5,))
    assert [r["gate"] for r in rows] == ["edge alone", "server alone", *KINDS]

    def squared_margin(logits):
        return uncertainty(logits, "margin") ** 2

    rows = compare_gates(edge, server, labels, (0.25, 0.5), kinds=("margin", squared_margin))
    assert [r["gate"] for r in rows[2:]] == ["margin", "squared_margin"] * 2
    # the square of the margin score ranks the images as the margin does: the same images offloaded
    for margin_row, squared_row in zip(rows[2::2], rows[3::2]):
        assert squared_row["threshold"] == pytest.approx(margin_row["threshold"] ** 2)
        assert (squared_row["offload"], squared_row["top1"]) == (margin_row["offload"], margin_row["top1"])
