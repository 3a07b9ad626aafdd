"""The bitrate-accuracy curve with the shipped models on a fixed 500-image subset of CIFAR-10 test."""
from __future__ import annotations

import json
import math
from dataclasses import asdict

import pytest
import torch

from semcomm import create_model
from semcomm.edge.gating import Gate
from semcomm.experiments.sweep import Sweep, SweepConfig
from semcomm.inference import predict_logits
from semcomm.rate.image_codecs import ImageCodec

BUDGETS = (4, 8, 16, 32, 48)


@pytest.fixture(scope="module")
def sweep(cifar_test, tmp_path_factory):
    config = SweepConfig(codec="raw8", fusion=False, budgets=BUDGETS, rules=("top-k", "spread-top-k", "attention-sum"),
                         thresholds=(0.8,), codecs=(ImageCodec("webp", 20),))
    runner = Sweep(config, cache_dir=tmp_path_factory.mktemp("edge"), progress=False)
    return runner, runner.run(cifar_test)


def test_all_patches_give_exactly_the_server_accuracy(sweep, cifar_test):
    runner, result = sweep
    server = predict_logits(runner.server, cifar_test.images).argmax(-1)
    point = result.find("full images")
    assert point.accuracy == float((server == cifar_test.labels).float().mean())
    assert point.offload_rate == 1.0 and point.patches_per_offloaded == 64
    assert point.bits_per_image == 8 * (3 + 8 + 64 * 48)  # header, 64-bit mask, 8-bit pixels


def test_edge_alone_gives_exactly_the_edge_accuracy(sweep, cifar_test):
    runner, result = sweep
    edge = predict_logits(runner.edge, cifar_test.images, bf16=False).argmax(-1)  # the sweep's edge runs in fp32
    point = result.find("edge alone", "min_entropy inf")
    assert point.accuracy == float((edge == cifar_test.labels).float().mean())
    assert point.bits_per_image == 0 and point.offload_rate == 0


@pytest.mark.parametrize("rule", ["top-k", "spread-top-k"])
def test_bits_grow_strictly_and_accuracy_does_not_fall_beyond_noise(sweep, rule):
    _, result = sweep
    points = [result.find(f"{rule} {k}") for k in BUDGETS] + [result.find("full images")]
    bits = [p.bits_per_image for p in points]
    assert all(a < b for a, b in zip(bits, bits[1:])), bits
    n = result.images
    for smaller, larger in zip(points, points[1:]):
        noise = 2 * math.sqrt(smaller.accuracy * (1 - smaller.accuracy) / n)  # two standard errors
        assert larger.accuracy >= smaller.accuracy - noise, (smaller, larger)


def test_random_twin_costs_exactly_the_same_bits(sweep):
    _, result = sweep
    for k in BUDGETS:
        for rule in ("top-k", "spread-top-k"):
            assert result.find(f"{rule} {k}").bits_per_image == result.find(f"random (as {rule} {k})").bits_per_image
    paper = result.find("attention-sum 0.97", "min_entropy 0.8")
    assert paper.bits_per_image == result.find("random (as attention-sum 0.97)", "min_entropy 0.8").bits_per_image


def test_gate_extremes(sweep, cifar_test):
    runner, result = sweep
    logits = runner.edge_analysis(cifar_test).logits
    assert Gate("min_entropy", 0.0).offload(logits).all()
    assert not Gate("min_entropy", math.inf).offload(logits).any()
    gated = result.find("top-k 16", "min_entropy 0.8")
    ungated = result.find("top-k 16")
    assert 0 < gated.offload_rate < 1
    assert gated.bits_per_image == pytest.approx(ungated.bits_per_image * gated.offload_rate)


def test_edge_pass_is_cached(sweep, cifar_test):
    runner, _ = sweep
    first = runner.edge_analysis(cifar_test)
    assert list(runner.cache_dir.glob("*.pt"))
    assert torch.equal(runner.edge_analysis(cifar_test).logits, first.logits)


def test_shipped_models_meet_their_cards(cifar_test):
    from semcomm.models import model_card

    for name in ("vit-edge-cifar10", "vit-server-cifar10"):
        card = model_card(name)
        model = create_model(name)
        assert sum(p.numel() for p in model.parameters()) == card.params
        accuracy = float((predict_logits(model, cifar_test.images, bf16=False).argmax(-1) == cifar_test.labels).float().mean())
        # 500 images: within four standard errors of the accuracy measured on the full test split
        assert abs(accuracy - card.test_top1) < 4 * math.sqrt(card.test_top1 * (1 - card.test_top1) / 500) + 1e-9


def test_paired_comparison_with_random_is_consistent(sweep):
    _, result = sweep
    for k in BUDGETS:
        rule, twin = result.find(f"top-k {k}"), result.find(f"random (as top-k {k})")
        diff = rule.vs_random["only_rule"] - rule.vs_random["only_random"]
        assert diff == round((rule.accuracy - twin.accuracy) * result.images)
        assert 0 <= rule.vs_random["p_value"] <= 1


def test_mcnemar_exact_p_value():
    from semcomm.experiments.statistics import paired_comparison

    a = torch.tensor([True] * 10 + [False] * 5)
    b = torch.tensor([False] * 10 + [False] * 5)
    assert paired_comparison(a, b) == dict(only_rule=10, only_random=0, p_value=pytest.approx(2 * 0.5 ** 10))
    assert paired_comparison(a, a)["p_value"] == 1.0


@pytest.fixture(scope="module")
def codec_sweep(cifar_test, tmp_path_factory):
    from semcomm.rate.policies import IAQ

    config = SweepConfig(codec="latent-cifar10", budgets=(8, 16), levels=(2,), policies=(IAQ(300),),
                         thresholds=(0.4, 0.8), codecs=(ImageCodec("webp", 20),))
    runner = Sweep(config, cache_dir=tmp_path_factory.mktemp("edge"), progress=False)
    return runner.run(cifar_test.subset(200))


def test_codec_sweep_fusion_costs_the_hint_and_frontiers_are_pareto(codec_sweep, tmp_path):
    result = codec_sweep
    for label in ("spread-top-k 8 L2", "spread-top-k 16 L2", "spread-top-k 64 iaq 300b", "webp-q20"):
        plain, fused = result.find(label), result.find(label, fusion=True)
        extra = fused.bits_per_offloaded - plain.bits_per_offloaded
        assert 8 <= extra <= 24, (label, extra)  # the hint (about 11.5 bits) and the byte it may add
        assert plain.offload_rate == fused.offload_rate == 1.0
    assert {"latent", "latent + fusion", "webp", "webp + fusion", "random latent"} <= {f.name for f in result.frontiers}
    for frontier in result.frontiers:
        bits = [p["bits_per_image"] for p in frontier.points]
        accuracy = [p["accuracy"] for p in frontier.points]
        assert bits == sorted(bits) and all(a < b for a, b in zip(accuracy, accuracy[1:]))
        assert frontier.points[0]["label"] == "edge alone" and bits[0] == 0
    marked = [p for p in result.points if p.frontier]
    assert marked and all(p.family != "codec" or p.scheme == "webp" for p in marked)
    top = result.find("full images").accuracy
    assert result.comparison[0]["accuracy"] == pytest.approx(result.edge_accuracy + 0.01)
    assert result.comparison[-1]["accuracy"] == pytest.approx(top)
    for row in result.comparison:
        needed = result.frontier("webp", True).bits_for(row["accuracy"])
        assert row["webp + fusion"] == (None if math.isinf(needed) else needed)
        codecs = [f for f in result.frontiers if f.fusion and f.codec in ("webp", "jpeg")]
        reach = {f.scheme: f.bits_for(row["accuracy"]) for f in codecs if not math.isinf(f.bits_for(row["accuracy"]))}
        assert row["strongest image codec + fusion"] == (min(reach, key=reach.get) if reach else None)
    path = tmp_path / "s.json"
    result.to_json(path)
    again = type(result).from_json(path)
    assert json.dumps(asdict(again)) == json.dumps(asdict(result)) and "Infinity" not in path.read_text()
    assert "| F" in result.table().replace("|  F", "| F") or " F " in result.table()
