"""The gates a sweep traces (semcomm.experiments.gates): default thresholds scaled to the number of classes, an
offload-rate fallback for an edge unsure of every image, and a note whenever a gate offloads every image."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semcomm.edge.gating import GATES, score_ceiling, uncertainty
from semcomm.experiments.gates import DEFAULT_OFFLOAD_RATES, DEFAULT_THRESHOLDS, scaled_thresholds, sweep_gates

CASES = settings(max_examples=25, deadline=None)


def logits_of(classes: int, images: int = 200, scale: float = 4.0, seed: int = 0) -> torch.Tensor:
    return scale * torch.randn(images, classes, generator=torch.Generator().manual_seed(seed))


def quiet(*args, **kwargs):
    """``sweep_gates`` that must not warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return sweep_gates(*args, **kwargs)


def test_score_ceilings_are_the_scores_of_equally_likely_classes():
    for classes in (2, 10, 20, 1000):
        uniform = torch.zeros(1, classes)
        for kind in ("min_entropy", "shannon", "margin"):
            assert score_ceiling(kind, classes) == pytest.approx(float(uncertainty(uniform, kind)), abs=1e-4)
    assert score_ceiling(lambda logits: logits[:, 0], 10) is None  # an unregistered score function: unknown


def test_ten_classes_keep_the_default_thresholds_exactly_and_other_counts_scale():
    for kind in ("min_entropy", "shannon"):
        assert scaled_thresholds(kind, 10) == DEFAULT_THRESHOLDS
    assert scaled_thresholds("min_entropy", 20) == tuple(round(t * math.log2(20) / math.log2(10), 3)
                                                         for t in DEFAULT_THRESHOLDS)
    assert scaled_thresholds("min_entropy", 20)[-1] == 2.602  # 2 bits of 3.32 -> 2.6 bits of 4.32
    assert scaled_thresholds("margin", 10)[-1] == 0.602  # a share of margin's range [0, 1], not 2 (never offloads)
    gates, notes = quiet("min_entropy", logits_of(10))
    assert [g.threshold for g in gates] == list(DEFAULT_THRESHOLDS) and notes == []


def test_an_edge_unsure_of_every_image_gets_calibrated_offload_rates_and_a_note():
    """20 classes, an edge unsure of every image (min-entropy above 2.8 bits): the thresholds scaled to 2.6 bits
    would all offload everything, so the gates are offload-rate targets, and the sweep says why."""
    logits = logits_of(20, scale=0.3)
    assert float(uncertainty(logits).min()) > 2.8
    with pytest.warns(UserWarning, match=r"no default min_entropy threshold \(up to 2.602\) keeps any of the 200 "
                                         r"images at the edge.* offload rates 0.1, 0.2, .*, 0.9 instead"):
        gates, notes = sweep_gates("min_entropy", logits)
    reached = [float(g.offload(logits).float().mean()) for g in gates]
    assert reached == pytest.approx(list(DEFAULT_OFFLOAD_RATES), abs=1 / 200)
    assert len(notes) == 1 and "calibrated on the edge's logits" in notes[0]


def test_given_thresholds_are_kept_and_a_gate_that_offloads_everything_is_named():
    logits = logits_of(20, scale=0.3)
    with pytest.warns(UserWarning, match=r"gates min_entropy 0.8, min_entropy 2 offload every one of the 200 images"):
        gates, notes = sweep_gates("min_entropy", logits, thresholds=(0.0, 0.8, 2.0, math.inf))
    assert [g.threshold for g in gates] == [0.0, 0.8, 2.0, math.inf] and "repeat the ungated ones" in notes[0]
    gates, notes = quiet("min_entropy", logits, offload_rates=(0.25, 1.0))  # a 100% target offloads all, as asked
    assert [int(g.offload(logits).sum()) for g in gates] == [50, 200] and notes == []
    with pytest.raises(ValueError, match="thresholds or offload-rate targets, not both"):
        sweep_gates("min_entropy", logits, thresholds=(0.8,), offload_rates=(0.5,))


@CASES
@given(classes=st.integers(2, 200), scale=st.floats(0.01, 20.0), kind=st.sampled_from(["min_entropy", "shannon",
                                                                                       "margin"]),
       seed=st.integers(0, 2**16))
def test_the_default_gates_never_all_repeat_the_ungated_points(classes, scale, kind, seed):
    """Property: whatever the number of classes and however (un)sure the edge, some default gate above 0 keeps an
    image at the edge (unless every score ties), and a note is written exactly when the fallback was taken or a
    gate above 0 offloads every image."""
    logits = logits_of(classes, images=64, scale=scale, seed=seed)
    if len(set(uncertainty(logits, kind).tolist())) < 2:
        return  # every image equally uncertain: no threshold can split them
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gates, notes = sweep_gates(kind, logits)
    assert any(not bool(g.offload(logits).all()) for g in gates if g.threshold > 0)
    assert [str(w.message) for w in caught] == notes
    fallback = [g.threshold for g in gates] != list(scaled_thresholds(kind, classes))
    repeating = [g for g in gates if g.threshold > 0 and bool(g.offload(logits).all())]
    assert bool(notes) == (fallback or bool(repeating)) and len(notes) <= 2


def test_a_registered_plug_in_declares_its_ceiling(monkeypatch):
    name = "test-p-max"
    monkeypatch.setitem(GATES._entries, name, lambda logits: 1 - logits.float().softmax(-1).amax(-1))
    monkeypatch.setitem(GATES._info, name, {"ceiling": lambda classes: 1 - 1 / classes})
    assert score_ceiling(name, 10) == 0.9 and scaled_thresholds(name, 10)[4] == round(0.8 * 0.9 / math.log2(10), 3)
