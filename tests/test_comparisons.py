"""The published comparisons (semcomm.experiments.comparisons) on a small CIFAR-10 subset: every table is there
and consistent."""
from __future__ import annotations

import math

import pytest

from semcomm.data import load_split
from semcomm.experiments.comparisons import markdown, published_comparisons


@pytest.fixture(scope="module")
def result():
    split = load_split("cifar10", "test", limit=40)
    return published_comparisons(split, "vit-edge-cifar10", "vit-server-cifar10", rates=(0.25, 0.5), progress=False)


def test_every_importance_method_is_swept_with_equal_bit_random_twins(result):
    assert set(result.importance) == {"mean", "mean_layers", "rollout"} and result.budgets == (8, 16, 32)
    for points in result.importance.values():
        semantic = [p for p in points if p["family"] == "semantic"]
        assert {p["label"] for p in semantic} >= {"top-k 8", "spread-top-k 32", "attention-sum 0.97"}
        twins = {(p["label"], p["gate"]): p for p in points if p["family"] == "random"}
        for p in semantic:  # the twin sends as many patches to the same images: the same bits
            twin = twins[(f"random (as {p['label']})", p["gate"])]
            assert twin["bits_per_image"] == p["bits_per_image"] and p["vs_random"] is not None
    full = next(p for p in result.importance["mean"] if p["label"] == "full images" and p["gate"] == "none")
    assert full["patches_per_offloaded"] == 64 and full["offload_rate"] == 1


def test_gates_are_compared_at_each_rate_and_iaq_at_the_uniform_quantizers_budgets(result):
    assert [r["gate"] for r in result.gates[:2]] == ["edge alone", "server alone"]
    assert len(result.gates) == 2 + 2 * 3
    assert [(r["patches"], r["payload"]) for r in result.iaq[::2]] == [
        (8, 384), (8, 768), (8, 1536), (16, 768), (16, 1536), (16, 3072)]  # 48 values per patch x 1, 2, 4 bits
    for r in result.iaq:  # equal bits: the depth map is IAQ's only extra
        iaq, uniform = r["iaq"]["bits_per_offloaded"], r["uniform"]["bits_per_offloaded"]
        assert uniform > r["payload"] and abs(iaq - uniform) <= 0.03 * r["payload"] + 16


def test_the_markdown_has_the_four_tables(result):
    text = markdown(result)
    for title in ("## 1. Importance", "## 2. Selection behind the default gate", "## 3. Gates", "## 4. IAQ"):
        assert title in text
    assert not math.isnan(result.seconds) and "40 images" in text
