"""The JSCC pair trained through the channel: the power constraint, channel uses, the noise-free limit, gradients
through the channel and its equaliser, a resumable recipe, and bad input named."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from channels import FlatFading
from semcomm.rate.hyperprior import HyperConfig
from semcomm.train.jscc import JSCC_PRESETS, JSCCTrainConfig, parse_point, train_jscc
from semcomm.transport.jscc import JSCCCodec, JSCCConfig, SNRAttention, make_channel

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


def test_the_snr_modules_start_silent():
    torch.manual_seed(0)
    module = SNRAttention(16, 8)
    values = torch.randn(2, 5, 16)
    assert torch.equal(module(values, torch.tensor([0.0, math.inf])), values)


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
    with pytest.raises(ValueError, match="evaluation point"):
        parse_point("awgn@loud")
    assert parse_point("block@-5") == ("block", -5.0) and parse_point("awgn@inf") == ("awgn", math.inf)


def test_presets_are_the_adaptive_pair_and_single_snr_references():
    assert JSCC_PRESETS["jscc-cifar10"].snr_range == (-5.0, 20.0)
    assert JSCC_PRESETS["jscc-cifar10-awgn0"].snr_range == (0.0, 0.0)
    assert JSCC_PRESETS["jscc-cifar10-awgn0"].channels == ("awgn",)
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
