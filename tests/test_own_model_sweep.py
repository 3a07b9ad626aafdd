"""A new user's own 20-class models in the sweep: labelled by their own names, never fused with the zoo edge's hint,
gates that do not all repeat the ungated points, and a stated reason wherever the comparison is absent."""
from __future__ import annotations

import json
import warnings

import pytest
import torch
from test_custom_adapter import TorchEncoderViT

from semcomm import create_model
from semcomm.data import ImageSplit
from semcomm.experiments.frontiers import compare_frontiers, missing_comparison, pareto_frontiers
from semcomm.experiments.gates import DEFAULT_OFFLOAD_RATES
from semcomm.experiments.results import OperatingPoint, SweepResult
from semcomm.experiments.sweep import Sweep, SweepConfig
from semcomm.inference import predict_logits
from semcomm.models.adapter import model_name
from semcomm.rate.hint import HintCoder
from semcomm.rate.image_codecs import ImageCodec

CLASSES = 20


@pytest.fixture(scope="module")
def split():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, CLASSES, (48,), generator=generator)
    return ImageSplit(images, labels, [f"class{i}" for i in range(CLASSES)], "mine/val")


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    edge, server = TorchEncoderViT(num_classes=CLASSES).eval(), TorchEncoderViT(num_classes=CLASSES, dim=96).eval()
    edge.name = "my-edge"  # the server has no name: its class names it
    return edge, server


def config(**changes) -> SweepConfig:
    return SweepConfig(**{**dict(codec="raw8", rules=("top-k",), budgets=(16,), twins=False,
                                 codecs=(ImageCodec("webp", 20),)), **changes})


@pytest.fixture(scope="module")
def result(split, models):
    edge, server = models
    hint = HintCoder.fit(predict_logits(edge, split.images, bf16=False))  # on the user's data (here the same images)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = Sweep(config(), edge=edge, server=server, hint=hint, progress=False).run(split)
    return result, [str(w.message) for w in caught]


def test_results_are_labelled_by_the_models_own_names(result):
    result, _ = result
    assert (result.edge, result.server) == ("my-edge", "TorchEncoderViT")
    assert model_name(create_model("semcomm_vit_edge_p4_32")) == "semcomm_vit_edge_p4_32"  # a TimmViT: its architecture


def test_your_own_edge_is_never_fused_with_the_zoo_edges_hint(split, models):
    edge, server = models
    with pytest.raises(ValueError, match=r"your own edge model \(my-edge\) with fusion on, but no hint coder .* "
                                         r"hint=HintCoder.fit\(predict_logits\(edge, train.images, bf16=False\)\)"):
        Sweep(config(), edge=edge, server=server, progress=False)
    plain = Sweep(config(fusion=False, codecs=()), edge=edge, server=server, progress=False)
    with pytest.warns(UserWarning, match="offload rates"):
        points = plain.run(split.subset(8)).points
    assert plain.hint is None and not any(p.fusion for p in points)


def test_an_unsure_20_class_edge_gets_calibrated_gates_and_says_so(result):
    """A random 20-class edge is unsure of every image: the default thresholds, even scaled to 20 classes, would all
    offload everything; the gates are offload rates instead, and the JSON and a warning say so."""
    result, warned = result
    rates = sorted({p.offload_rate for p in result.points if p.gate_kind and p.threshold is not None})
    assert rates == pytest.approx(list(DEFAULT_OFFLOAD_RATES), abs=1 / 48)
    assert len(result.notes) == 1 and "offload rates 0.1, 0.2" in result.notes[0] and result.notes[0] in warned


def test_an_absent_comparison_says_why(result, tmp_path):
    result, _ = result
    assert (result.comparison == []) == (result.comparison_note is not None)
    result.to_json(tmp_path / "s.json")
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["notes"] == result.notes and saved["comparison_note"] == result.comparison_note
    assert SweepResult.from_json(tmp_path / "s.json").notes == result.notes


def toy(server: float, codec: str = "raw8", full: bool = True) -> SweepResult:
    """The edge alone at 50%, the server on full images at ``server``, a semantic codec and WebP."""
    def point(scheme, label, accuracy, bits, family="semantic"):
        return OperatingPoint(family, label, "none", accuracy, 1.0, bits, bits, bits / 24576, scheme=scheme,
                              codec=scheme)
    points = [point("edge", "edge alone", 0.5, 0.0, "reference"), point("raw8" if codec == "raw8" else "latent",
                                                                       "top-k 16", 0.6, 900.0),
              point("webp", "webp-q20", 0.55, 2000.0, "codec")]
    if full:
        points.append(point("raw8", "full images", server, 24664.0, "reference"))
    result = SweepResult("toy/test", 100, "e", "s", "mean", 24576, points=points, codec=codec)
    result.frontiers = pareto_frontiers(points)
    return result


def test_the_reasons_for_no_comparison_and_raw8_compared_when_it_is_the_codec():
    assert "full_images=False" in missing_comparison(toy(0.8, full=False)) and compare_frontiers(toy(0.8, full=False)) == []
    assert missing_comparison(toy(0.505)) == ("no comparison: the server on full images (50.50%) is not 1 point above "
                                              "the edge alone (50.00%), so no accuracy between them is worth bits")
    assert compare_frontiers(toy(0.505)) == [] and missing_comparison(toy(0.8)) is None
    strongest = "strongest image codec"  # named in every row: webp where it reaches the accuracy, else None
    assert set(compare_frontiers(toy(0.8))[0]) == {"accuracy", "raw8", "webp", strongest}  # raw8 is the semantic codec
    rows = compare_frontiers(toy(0.8, codec="latent-cifar10"))
    assert set(rows[0]) == {"accuracy", "latent", "webp", strongest}
    assert [r[strongest] for r in rows] == ["webp" if r["webp"] is not None else None for r in rows]
