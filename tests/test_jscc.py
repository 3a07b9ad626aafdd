"""The JSCC pair trained through the channel: the power constraint, channel uses, the noise-free limit, gradients
through the channel and its equaliser, a resumable recipe, and bad input named."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from channels import FlatFading
from semcomm.edge.encoder import Transmission
from semcomm.edge.selection import SpreadTopK
from semcomm.models import create_model
from semcomm.rate.hint import fuse
from semcomm.rate.hyperprior import HyperConfig, edge_pass, source_values
from semcomm.train.jscc import JSCC_PRESETS, JSCCTrainConfig, build_jscc, export_jscc, parse_point, train_jscc
from semcomm.transport.jscc import JSCCCodec, JSCCConfig, SNRAttention, make_channel
from semcomm.transport.jscc_link import JSCCLink

# the edge's architecture as the server: a small, fast pair
SMALL = JSCCConfig(HyperConfig(server_architecture="semcomm_vit_edge_p4_32"))
TINY = JSCCTrainConfig(SMALL, server_init="vit-edge-cifar10", init_pair=None, epochs=2, batch_size=8, eval_images=8,
                       save_every=1, bf16=False, eval_points=("awgn@0", "block@5", "awgn@inf"))


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return JSCCCodec(SMALL).eval()


def _inputs(b=3, k=10, seed=0):
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(b, 64, SMALL.latent.in_dim, generator=generator)
    sent = torch.rand(b, 64, generator=generator).argsort(1) < k
    return values, sent


@settings(max_examples=20, deadline=None)
@given(scale=st.floats(1e-3, 1e3), k=st.integers(1, 64), seed=st.integers(0, 1000))
def test_every_image_sends_at_the_power_budget(codec, scale, k, seed):
    values, sent = _inputs(k=k, seed=seed)
    positions = sent.nonzero()[:, 1].view(len(values), k)
    with torch.no_grad():
        symbols = codec.encode(values * scale, positions, torch.full((len(values),), 5.0))
    assert symbols.shape == (len(values), k, SMALL.symbols_per_patch)
    torch.testing.assert_close(symbols.abs().pow(2).mean((1, 2)), torch.ones(len(values)), rtol=1e-5, atol=1e-5)


def test_channel_uses_count_data_symbols_and_pilots(codec):
    values, sent = _inputs(k=10)
    s = SMALL.symbols_per_patch
    for kind, csi, expected in (("awgn", "perfect", 10 * s), ("block", "perfect", 10 * s),
                                ("block", "estimated", 10 * s + SMALL.pilots),
                                ("fast", "estimated", 10 * s * (1 + SMALL.pilots))):
        assert codec(values, sent, 0.0, kind, csi).channel_uses == expected, (kind, csi)
    assert codec.channel_uses(10, make_channel("block", "estimated", 2)) == 10 * s + 2


def test_the_noise_free_limit_is_exact_and_high_snr_approaches_it(codec):
    values, sent = _inputs()
    with torch.no_grad():
        clean = [codec(values, sent, math.inf, kind, generator=torch.Generator().manual_seed(seed)).logits
                 for kind, seed in (("awgn", 1), ("awgn", 2))]
        assert torch.equal(clean[0], clean[1])  # no noise: the draws do not matter
        for kind in ("awgn", "block", "fast"):
            loud = codec(values, sent, 80.0, kind, generator=torch.Generator().manual_seed(3)).logits
            torch.testing.assert_close(loud, clean[0], rtol=1e-3, atol=1e-3)
        noisy = codec(values, sent, -5.0, "awgn", generator=torch.Generator().manual_seed(3)).logits
    assert not torch.allclose(noisy, clean[0], atol=1e-2)


def test_gradients_reach_the_encoder_through_every_channel(codec):
    values, sent = _inputs()
    for kind, csi in (("awgn", "perfect"), ("block", "estimated"), ("fast", "perfect")):
        codec.zero_grad()
        codec(values, sent, torch.tensor([-5.0, 5.0, 20.0]), kind, csi,
              generator=torch.Generator().manual_seed(0)).logits.logsumexp(-1).sum().backward()
        assert codec.analysis.proj.weight.grad.abs().sum() > 0, kind
        assert codec.encoder_snr.mlp[-1].weight.grad.abs().sum() > 0, kind


def test_the_snr_modules_start_silent_and_read_at_most_the_ceiling():
    torch.manual_seed(0)
    module = SNRAttention(16, 8, ceiling=20.0)
    values = torch.randn(2, 5, 16)
    assert torch.equal(module(values, torch.tensor([0.0, math.inf])), values)
    torch.nn.init.normal_(module.mlp[-1].weight)
    above = module(values, torch.tensor([20.0, 20.0]))
    assert torch.equal(module(values, torch.tensor([35.0, math.inf])), above)  # above the ceiling: as at it
    assert not torch.equal(module(values, torch.tensor([10.0, 10.0])), above)


def test_bad_input_is_named(codec):
    values, sent = _inputs()
    for snr in (math.nan, -math.inf, torch.tensor([0.0, math.nan, 1.0])):
        with pytest.raises(ValueError, match="snr_db"):
            codec(values, sent, snr)
    with pytest.raises(ValueError, match="one SNR per image"):
        codec(values, sent, torch.zeros(2))
    with pytest.raises(ValueError, match="csi must be one of"):
        codec(values, sent, 0.0, "block", "none")
    with pytest.raises(ValueError, match="channel must be one of"):
        codec(values, sent, 0.0, "rician")
    uneven = sent.clone()
    uneven[0] = False
    uneven[0, 0] = True
    with pytest.raises(ValueError, match="same number"):
        codec(values, uneven, 0.0)
    with pytest.raises(ValueError, match="channels must be even"):
        JSCCConfig(HyperConfig(channels=15))
    with pytest.raises(ValueError, match="snr_range"):
        JSCCTrainConfig(snr_range=(10.0, 0.0))
    with pytest.raises(ValueError, match="channels must be"):
        JSCCTrainConfig(channels=("cable",))
    with pytest.raises(ValueError, match="snr_ceiling"):
        JSCCTrainConfig(snr_range=(0.0, 10.0))  # the pair's ceiling stays at 20 dB
    with pytest.raises(ValueError, match="evaluation point"):
        parse_point("awgn@loud")
    assert parse_point("block@-5") == ("block", -5.0) and parse_point("awgn@inf") == ("awgn", math.inf)


def test_presets_are_the_adaptive_pair_and_single_snr_references():
    assert JSCC_PRESETS["jscc-cifar10"].snr_range == (-5.0, 20.0)
    assert JSCC_PRESETS["jscc-cifar10-awgn0"].snr_range == (0.0, 0.0)
    assert JSCC_PRESETS["jscc-cifar10-awgn0"].channels == ("awgn",)
    assert JSCC_PRESETS["jscc-cifar10-awgn0"].codec.snr_ceiling == 0.0
    assert JSCCTrainConfig.from_dict(json.loads(json.dumps(asdict(replace(TINY, epochs=3))))) == \
        replace(TINY, epochs=3)


def test_a_run_resumes_exactly_mid_epoch(cifar_test, tmp_path):
    data = cifar_test.subset(16)  # 2 steps per epoch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        straight, history = train_jscc(TINY, data, data, tmp_path / "a", progress=False)
        train_jscc(TINY, data, data, tmp_path / "b", stop_after_steps=3, progress=False)
        again, second = train_jscc(TINY, data, data, tmp_path / "b", progress=False)
    finally:
        torch.set_num_threads(threads)
    strip = [{k: v for k, v in h.items() if k != "minutes"} for h in history]
    assert strip == [{k: v for k, v in h.items() if k != "minutes"} for h in second]
    for (name, a), b in zip(straight.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    assert set(history[-1]["eval"]) == {"awgn@0", "block@5", "awgn@inf"}
    assert history[-1]["eval"]["awgn@0"]["channel_uses"] == 64 * SMALL.symbols_per_patch
    assert isinstance(make_channel("fast"), FlatFading)
    with pytest.raises(ValueError, match="different config"):
        train_jscc(replace(TINY, kd=0.5), data, data, tmp_path / "a", progress=False)


# ---- over a link, from the zoo ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped(tmp_path_factory, cifar_test):
    """A tiny run exported into a folder, and 64 real images' edge decisions (every other image offloaded with its
    16 spread-top-k patches) and source values."""
    folder = tmp_path_factory.mktemp("jscc")
    data = cifar_test.subset(16)
    codec, _ = train_jscc(replace(TINY, epochs=1), data, data, folder / "run", progress=False)
    card = export_jscc("jscc-tiny", folder / "run", cifar_test.subset(8), folder / "codecs")
    edge = create_model("vit-edge-cifar10")
    images = cifar_test.images[:64]
    logits, importance, hidden = edge_pass(edge, images, SMALL.latent)
    mask = SpreadTopK(16)(importance, edge.grid_size)
    offloaded = torch.arange(64) % 2 == 0
    sent = Transmission(logits, offloaded, mask, [None] * 64, mask.long())
    return SimpleNamespace(codec=codec, card=card, path=folder / "codecs" / "jscc-tiny.json", sent=sent,
                           values=source_values(images, hidden, SMALL.latent), folder=folder)


def test_an_exported_pair_loads_back_with_its_range(shipped):
    link = JSCCLink.from_zoo(shipped.path, "block", "estimated")
    assert link.trained_snr == TINY.snr_range and link.hint_coder is not None
    for (name, a), b in zip(shipped.codec.state_dict().items(), link.codec.state_dict().values()):
        assert torch.equal(a.half().float() if a.is_floating_point() else a, b), name
    assert set(shipped.card.measured) == set(TINY.eval_points)
    snapshot_card = export_jscc("jscc-tiny-again", shipped.folder / "run", directory=shipped.folder / "other")
    assert snapshot_card.sha256 == shipped.card.sha256  # the same weights, the same bytes
    with pytest.raises(ValueError, match="neither a run directory"):
        export_jscc("nothing", shipped.folder / "codecs")
    with pytest.raises(ValueError, match="is not a JSCC run"):
        export_jscc("other", Path(__file__).resolve().parents[1] / "snapshots" / "hyperlatent-cifar10")


def test_a_single_snr_specialist_starts_from_a_shipped_pair(shipped):
    specialist = replace(TINY, init_jscc=str(shipped.path), snr_range=(3.0, 3.0), channels=("awgn",))
    codec = build_jscc(specialist, None, None)
    for (name, a), b in zip(shipped.codec.state_dict().items(), codec.state_dict().values()):
        assert torch.equal(a.half().float() if a.is_floating_point() else a, b), name
    other = replace(specialist, codec=replace(SMALL, snr_ceiling=10.0))  # valid, but not the shipped architecture
    with pytest.raises(ValueError, match="not a JSCC pair of this run's architecture"):
        build_jscc(other, None, None)
    with pytest.raises(ValueError, match="snr_ceiling"):
        replace(specialist, snr_range=(3.0, 25.0))  # above the shipped pair's ceiling
    assert JSCC_PRESETS["jscc-cifar10-awgn0-tuned"].init_jscc == "jscc-cifar10"


def test_over_a_clean_link_the_server_answers_every_offloaded_image(shipped):
    link = JSCCLink.from_zoo(shipped.path)
    with pytest.warns(UserWarning, match=r"outside the range .*\(-5 to 20 dB\)"):
        out = link.run(shipped.sent, shipped.values, math.inf, generator=1)
    sent = shipped.sent
    assert out.images_lost == 0 and not out.lost.any()
    with torch.no_grad():
        server = link.codec(shipped.values[sent.offloaded], sent.mask[sent.offloaded], math.inf).logits
    hints = link.hint_coder.symbols(sent.edge_logits[sent.offloaded])
    fused = fuse(server.log_softmax(-1), link.hint_coder.log_probs(hints), link.hint_coder.weight)
    assert torch.equal(out.predictions[sent.offloaded], fused.argmax(-1))
    assert torch.equal(out.predictions[~sent.offloaded], sent.edge_logits[~sent.offloaded].argmax(-1))
    bits = out.link_bits[sent.offloaded]
    assert torch.equal(out.analog_uses[sent.offloaded], torch.full_like(bits, 16 * SMALL.symbols_per_patch))
    assert torch.equal(out.control_uses[sent.offloaded], 2 * (bits + 16 + 6))  # CRC, tail, rate 1/2, BPSK
    assert (out.channel_uses[~sent.offloaded] == 0).all()


def test_below_the_control_threshold_images_fall_back_to_the_edge(shipped):
    link = JSCCLink.from_zoo(shipped.path)
    with pytest.warns(UserWarning, match="outside the range"):
        out = link.run(shipped.sent, shipped.values, -12.0, generator=0)
    assert out.images_lost > 0 and not (out.lost & ~shipped.sent.offloaded).any()
    assert torch.equal(out.predictions[out.lost], shipped.sent.edge_logits[out.lost].argmax(-1))
    again = link.run(shipped.sent, shipped.values, 3.0, generator=5)
    same = link.run(shipped.sent, shipped.values, 3.0, generator=5)
    assert torch.equal(again.predictions, same.predictions) and torch.equal(again.lost, same.lost)


def test_bad_link_settings_are_named(shipped):
    with pytest.raises(ValueError, match="csi must be one of"):
        JSCCLink.from_zoo(shipped.path, "fast", "none")
    with pytest.raises(ValueError, match="max_uses must be"):
        JSCCLink.from_zoo(shipped.path, max_uses=0)
    for power in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="power must be a positive"):
            JSCCLink.from_zoo(shipped.path, power=power)
    half = JSCCLink.from_zoo(shipped.path, power=0.5).run(shipped.sent, shipped.values, 6.0, generator=3)
    weaker = JSCCLink.from_zoo(shipped.path).run(shipped.sent, shipped.values, 6.0 + 10 * math.log10(0.5), generator=3)
    assert torch.equal(half.predictions, weaker.predictions)  # half the power is 3 dB less
    link = JSCCLink.from_zoo(shipped.path, max_uses=100)
    with pytest.raises(ValueError, match="max_uses=100"):
        link.run(shipped.sent, shipped.values, 5.0)
    with pytest.raises(ValueError, match="snr_db"):
        JSCCLink.from_zoo(shipped.path).run(shipped.sent, shipped.values, math.nan)
    with pytest.raises(ValueError, match="values must be B x N x in_dim"):
        JSCCLink.from_zoo(shipped.path).run(shipped.sent, shipped.values[:, :10], 5.0)
