"""The link sweep: links by name, the ideal link against the link-less sweep, SNR monotonicity, resuming."""
from __future__ import annotations

import math

import pytest
import torch

from semcomm.cli import main
from semcomm.experiments.link_results import LinkSweepResult
from semcomm.experiments.link_sweep import LinkSweep, LinkSweepConfig
from semcomm.experiments.sweep import Sweep, SweepConfig
from semcomm.rate.image_codecs import ImageCodec
from semcomm.transport.links import LinkSpec

SETTING = ("spread-top-k", 16, 3)
WEBP = ImageCodec("webp", 40)


@pytest.fixture(scope="module")
def images(cifar_test):
    return cifar_test.subset(120)


@pytest.fixture(scope="module")
def link_sweep():
    config = LinkSweepConfig(link=LinkSpec("ideal"), conditions=(0.0,), settings=(SETTING,), codecs=(WEBP,),
                             thresholds=(0.4, 0.8))
    return LinkSweep(config, progress=False)


def run(link_sweep, images, link, conditions, **changes):
    changes.setdefault("framings", ("packets",))
    link_sweep.config = LinkSweepConfig(link=link, conditions=conditions, settings=(SETTING,), codecs=(WEBP,),
                                        thresholds=(0.4, 0.8), **changes)
    return link_sweep.run(images)


def test_ideal_link_reproduces_the_linkless_sweep_exactly(link_sweep, images):
    over_link = run(link_sweep, images, LinkSpec("ideal"), (0.0,), framings=("packets", "whole"))
    config = SweepConfig(rules=("spread-top-k",), budgets=(16,), levels=(3,), policies=(), thresholds=(0.4, 0.8),
                         twins=False, full_images=False, codecs=(WEBP,))
    linkless = Sweep(config, progress=False).run(images)
    for label in ("spread-top-k 16 L3", "webp-q40"):
        for gate in ("none", "min_entropy 0.4", "min_entropy 0.8"):
            assert over_link.find(label, 0.0, gate).accuracy == linkless.find(label, gate, fusion=True).accuracy
        assert (over_link.find("spread-top-k 16 L3 whole", 0.0, gate).accuracy
                == linkless.find("spread-top-k 16 L3", gate, fusion=True).accuracy)
    # the whole string is exactly the link-less sweep's bits; packets cost more (below)
    assert over_link.find("spread-top-k 16 L3 whole", 0.0).bits_per_image == pytest.approx(
        linkless.find("spread-top-k 16 L3", fusion=True).bits_per_image, rel=1e-6)  # the link-less mean is float32
    assert over_link.find("webp-q40", 0.0).packet_loss == 0 and over_link.find("spread-top-k 16 L3", 0.0).images_lost == 0
    # packets cost more than the bare string: headers twice, per-packet fields, CRCs
    assert over_link.find("spread-top-k 16 L3", 0.0).bits_per_image > linkless.find("spread-top-k 16 L3", fusion=True).bits_per_image


def test_accuracy_does_not_fall_as_the_snr_rises(link_sweep, images):
    result = run(link_sweep, images, LinkSpec("awgn"), (-1.0, 1.5, 6.0))
    for label in ("spread-top-k 16 L3", "webp-q40"):
        accuracy = [result.find(label, snr).accuracy for snr in (-1.0, 1.5, 6.0)]
        tolerance = 2 * math.sqrt(0.25 / len(images))  # two binomial standard errors at worst
        assert accuracy[0] <= accuracy[1] + tolerance and accuracy[1] <= accuracy[2] + tolerance
        # below the LDPC cliff nothing arrives and the edge answers; far above it everything does
        assert result.find(label, -1.0).images_lost == 1.0 and result.find(label, 6.0).packet_loss == 0
        assert accuracy[0] == result.edge_accuracy
    uses = {result.find("spread-top-k 16 L3", snr).channel_uses_per_image for snr in (-1.0, 1.5, 6.0)}
    assert len(uses) == 1  # a fixed-rate link spends the same channel uses at every SNR


def test_erasure_and_bit_channels_go_through_the_same_path(link_sweep, images):
    clean = run(link_sweep, images, LinkSpec("bec"), (0.0,)).find("spread-top-k 16 L3", 0.0)
    ideal = run(link_sweep, images, LinkSpec("ideal"), (0.0,)).find("spread-top-k 16 L3", 0.0)
    assert clean.accuracy == ideal.accuracy
    for link, condition in ((LinkSpec("gilbert-elliott"), 1.0), (LinkSpec("bsc"), 0.5)):
        lost = run(link_sweep, images, link, (condition,)).find("spread-top-k 16 L3", condition)
        assert lost.images_lost == 1.0 and lost.accuracy == link_sweep.run(images).edge_accuracy
    bursty = run(link_sweep, images, LinkSpec("gilbert-elliott", burst=4), (0.2,)).find("webp-q40", 0.2)
    assert 0.05 < bursty.packet_loss < 0.5


def test_a_sweep_resumes_from_its_state(link_sweep, images, tmp_path, monkeypatch):
    link_sweep.config = LinkSweepConfig(link=LinkSpec("ideal"), conditions=(0.0,), settings=(SETTING,), codecs=(WEBP,))
    first = link_sweep.run(images, state_path=tmp_path / "state")
    monkeypatch.setattr(LinkSweep, "_semantic", lambda *a: pytest.fail("recomputed a finished setting"))
    monkeypatch.setattr(LinkSweep, "_image_codec", lambda *a: pytest.fail("recomputed a finished codec"))
    again = link_sweep.run(images, state_path=tmp_path / "state")
    assert [p.accuracy for p in again.points] == [p.accuracy for p in first.points]
    first.to_json(tmp_path / "r.json")
    assert LinkSweepResult.from_json(tmp_path / "r.json").points == first.points


@pytest.mark.parametrize("spec, message", [
    (dict(channel="wifi"), "unknown channel 'wifi'"),
    (dict(modulation=8), "unsupported modulation order 8"),
    (dict(code_rate="1/3"), "unsupported code rate"),
    (dict(block=1000), "unsupported LDPC block length"),
])
def test_bad_link_names_are_clear_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        LinkSpec(**spec)


@pytest.mark.parametrize("link, condition, message", [
    (LinkSpec("awgn"), float("nan"), "SNR must be a finite number"),
    (LinkSpec("rayleigh"), None, "SNR must be a finite number"),
    (LinkSpec("bsc"), 1.5, "crossover probability must be a probability"),
])
def test_bad_channel_conditions_are_clear_errors(link, condition, message):
    with pytest.raises(ValueError, match=message):
        LinkSweepConfig(link=link, conditions=(condition,))


def test_cli_names_a_bad_channel_and_a_bad_snr(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["link", "--channel", "wifi"])
    assert exit_info.value.code == 2 and "unknown channel 'wifi'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["link", "--snrs", "nan"])
    assert exit_info.value.code == 2 and "SNR must be a finite number" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["link", "--modulation", "8"])
    assert exit_info.value.code == 2 and "unsupported modulation order 8" in capsys.readouterr().err
    for argv, message in ((["--channel", "awgn-capacity", "--adaptive"], "needs a coded SNR channel"),
                          (["--iaq-bits", "400", "--iaq-budgets", "65"], "--iaq-budgets")):
        with pytest.raises(SystemExit) as exit_info:
            main(["link", *argv])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_cli_link_writes_json_and_plot(tmp_path, capsys):
    code = main(["link", "--channel", "awgn", "--snrs", "0,6", "--limit", "40", "--budgets", "16", "--codecs",
                 "webp-q40", "--thresholds", "0.8", "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png"),
                 "--degradation-plot", str(tmp_path / "d.png"), "--degradation-uses", "500,2000"])
    assert code == 0 and (tmp_path / "d.png").stat().st_size > 10_000
    result = LinkSweepResult.from_json(tmp_path / "r.json")
    assert result.images == 40 and {p.condition for p in result.points} == {0.0, 6.0}
    assert (tmp_path / "r.png").stat().st_size > 10_000
    assert "equal channel uses" in capsys.readouterr().out
    assert torch.isfinite(torch.tensor([p.accuracy for p in result.points])).all()
    # every accuracy over a random channel with its exact 95% interval over the 40 images
    assert all(p.interval[0] <= p.accuracy <= p.interval[1] and p.interval[1] - p.interval[0] > 0.1
               for p in result.points)
    # every point records the settings that made it, beside its label
    whole = result.find("spread-top-k 16 L3 whole", 6.0, "min_entropy 0.8")
    assert (whole.family, whole.rule, whole.budget, whole.level, whole.framing, whole.codec) == (
        "semantic", "spread-top-k", 16, 3, "whole", "latent-cifar10")
    assert (whole.gate_kind, whole.threshold) == ("min_entropy", 0.8)
    webp = result.find("webp-q40", 0.0)
    assert (webp.family, webp.codec, webp.quality, webp.framing, webp.gate_kind) == ("codec", "webp", 40, None, None)
    edge = result.find("edge alone", 0.0, "min_entropy inf")
    assert (edge.family, edge.gate_kind, edge.threshold, edge.codec) == ("reference", "min_entropy", None, None)


def test_link_adaptation_speeds_up_with_the_snr_and_keeps_its_error_target():
    from semcomm.transport.links import MCS_TABLE, LinkAdaptation

    adaptation = LinkAdaptation(LinkSpec("awgn", adaptive=True, target_bler=0.01), max_blocks=400)
    chosen = [adaptation.choose(snr) for snr in (-2.0, 5.0, 25.0)]
    assert chosen[0] == MCS_TABLE[0] and chosen[-1] == MCS_TABLE[-1]
    assert [MCS_TABLE.index(c) for c in chosen] == sorted(MCS_TABLE.index(c) for c in chosen)
    assert adaptation.bler(*chosen[1], 5.0) <= 0.01 < adaptation.bler(*MCS_TABLE[MCS_TABLE.index(chosen[1]) + 1], 5.0)
    transport, snr = LinkSpec("awgn", adaptive=True).transport(25.0)
    assert snr == 25.0 and transport.link.constellation.order == 64 and transport.link.rate > 4.5  # 64-QAM at rate 5/6: 5 coded bits per use, less the CRC
    with pytest.raises(ValueError, match="link adaptation needs an SNR channel"):
        LinkSpec("bsc", adaptive=True)


def test_rate_control_offloads_nothing_below_the_cliff_and_respects_the_channel_use_budget(link_sweep, images):
    result = run(link_sweep, images, LinkSpec("awgn"), (-1.0, 6.0))
    below = result.operating_point(-1.0)
    assert below.label == "edge alone" and below.channel_uses_per_image == 0
    above = result.operating_point(6.0)
    assert above.channel_uses_per_image > 0 and above.accuracy > result.edge_accuracy
    budget = 0.5 * above.channel_uses_per_image
    cheap = result.operating_point(6.0, max_channel_uses=budget, schemes=("latent",))
    assert cheap.channel_uses_per_image <= budget and cheap.scheme in ("latent", "edge")
    with pytest.raises(ValueError, match="was not swept"):
        result.operating_point(3.0)


def test_the_whole_string_framing_costs_fewer_channel_uses_and_falls_with_its_first_lost_block(link_sweep, images):
    result = run(link_sweep, images, LinkSpec("awgn"), (0.5, 6.0), framings=("packets", "whole"))
    packets, whole = (result.find(label, 6.0) for label in ("spread-top-k 16 L3", "spread-top-k 16 L3 whole"))
    assert whole.channel_uses_per_image < 0.85 * packets.channel_uses_per_image  # no header copies, fields, CRCs
    assert whole.accuracy == packets.accuracy  # nothing lost far above the cliff
    near = [result.find(label, 0.5) for label in ("spread-top-k 16 L3", "spread-top-k 16 L3 whole")]
    assert near[1].images_lost >= near[0].images_lost  # near the cliff, all or nothing loses more images
    with pytest.raises(ValueError, match="framings must be some of packets, whole"):
        LinkSweepConfig(framings=("frames",))


def test_iaq_settings_cross_the_ideal_link_as_in_the_linkless_sweep(link_sweep, images):
    """The error-free frontier's own settings (IAQ at a payload budget) as link-sweep points, exactly."""
    from semcomm.rate.policies import IAQ

    over_link = run(link_sweep, images, LinkSpec("ideal"), (0.0,), framings=("whole",), policies=(IAQ(400),),
                    policy_budgets=(64,))
    config = SweepConfig(rules=("spread-top-k",), budgets=(16,), levels=(3,), policies=(IAQ(400),),
                         policy_budgets=(64,), thresholds=(0.4, 0.8), twins=False, full_images=False, codecs=())
    linkless = Sweep(config, progress=False).run(images)
    for gate in ("none", "min_entropy 0.4"):
        point = over_link.find("spread-top-k 64 iaq 400b whole", 0.0, gate)
        assert point.policy == "iaq 400b" and point.level is None and point.budget == 64
        assert point.accuracy == linkless.find("spread-top-k 64 iaq 400b", gate, fusion=True).accuracy
    with pytest.raises(TypeError, match="level policies"):
        LinkSweepConfig(policies=(400,))
    with pytest.raises(ValueError, match="policy_budgets"):
        LinkSweepConfig(policy_budgets=(0,))


def test_a_jscc_pair_joins_the_sweep_as_the_analog_family(link_sweep, images, tmp_path, cifar_test):
    """A (tiny) JSCC pair from a card: its points per budget, every image offloaded behind each gate, its channel
    uses the symbols plus the control channel's; the comparison joins its frontier with the digital pair's."""
    from dataclasses import replace as changed

    from semcomm.rate.hyperprior import HyperConfig
    from semcomm.train.jscc import JSCCTrainConfig, export_jscc, train_jscc
    from semcomm.transport.jscc import JSCCConfig

    tiny = JSCCTrainConfig(JSCCConfig(HyperConfig(server_architecture="semcomm_vit_edge_p4_32")),
                           server_init="vit-edge-cifar10", init_pair=None, epochs=1, batch_size=8, eval_images=8,
                           bf16=False, eval_points=("awgn@0",))
    train_jscc(tiny, cifar_test.subset(16), cifar_test.subset(16), tmp_path / "run", progress=False)
    export_jscc("jscc-tiny", tmp_path / "run", directory=tmp_path)
    card = str(tmp_path / "jscc-tiny.json")
    for spec, condition in ((LinkSpec("ideal"), 0.0), (LinkSpec("rayleigh"), 3.0)):
        result = run(link_sweep, images, spec, (condition,), jscc=card, jscc_budgets=(16,))
        point = result.find("jscc-tiny spread-top-k 16", condition)
        assert link_sweep.jscc_link.channel == ("awgn" if spec.channel == "ideal" else "block")  # the sweep's channel
        assert point.family == "analog" and point.offload_rate == 1.0 and point.budget == 16
        assert point.channel_uses_per_image > 16 * 8  # the symbols and the side information
        gated = result.find("jscc-tiny spread-top-k 16", condition, "min_entropy 0.4")
        assert gated.offload_rate < 1.0 and gated.channel_uses_per_image < point.channel_uses_per_image
        assert result.comparison[0]["condition"] == condition
    assert run(link_sweep, images, LinkSpec("ideal"), (0.0,), jscc=card, jscc_budgets=(16,)).find(
        "jscc-tiny spread-top-k 16", 0.0).images_lost == 0
    with pytest.raises(ValueError, match="a JSCC pair crosses"):
        LinkSweepConfig(link=LinkSpec("bsc"), conditions=(0.01,), jscc=card)
    with pytest.raises(ValueError, match="jscc_budgets"):
        changed(LinkSweepConfig(), jscc_budgets=(0,))
