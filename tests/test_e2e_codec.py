"""The hyperlatent pair trained end to end: a resumable recipe, real strings that decode to what was quantized,
hostile strings refused, and an export that loads back (tiny runs on a few real images)."""
from __future__ import annotations

import json

from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semcomm.edge.encoder import EdgeEncoder
from semcomm.edge.selection import TopK
from semcomm.models import create_model
from semcomm.rate.hint import HintCoder
from semcomm.rate.hyperlatent import HyperLatentPair, TableCounts, gaussian_tables
from semcomm.rate.hyperprior import HyperConfig, HyperLatentCodec, source_values
from semcomm.rate.packetize import Packetizer
from semcomm.rate.policies import IAQ
from semcomm.server.decoder import ServerDecoder
from semcomm.train.e2e import (ABLATION_EPOCHS, ABLATIONS, E2E_PRESETS, E2EConfig, build_codec, load_snapshot,
                               sample_levels, save_snapshot, train_e2e)
from semcomm.train.e2e_eval import export_e2e, parse_setting
from semcomm.wire import v2 as fmt
from semcomm.wire.errors import BitstreamError
from semcomm.zoo import CheckpointError

SETTINGS = settings(max_examples=25, deadline=None)
# the edge's architecture as the server (started from the zoo edge), fp32: a fast run
TINY = E2EConfig(HyperConfig(server_architecture="semcomm_vit_edge_p4_32"), server_init="vit-edge-cifar10",
                 init_pair=None, epochs=2, batch_size=8, eval_images=8, save_every=1, warmup_epochs=0.5, bf16=False,
                 eval_settings=("all@2", "spread8@3"))


@pytest.fixture(scope="module")
def edge():
    return create_model("vit-edge-cifar10")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cifar_test):
    """A tiny run trained twice: straight through, and stopped mid-epoch then resumed (one thread: the server's
    position-embedding gather sums its gradient in a thread-dependent order)."""
    data = cifar_test.subset(16)  # 2 steps per epoch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        straight = tmp_path_factory.mktemp("straight")
        codec, history = train_e2e(TINY, data, data, straight, progress=False)
        resumed = tmp_path_factory.mktemp("resumed")
        train_e2e(TINY, data, data, resumed, stop_after_steps=3, progress=False)
        again, second = train_e2e(TINY, data, data, resumed, progress=False)
    finally:
        torch.set_num_threads(threads)
    return codec, history, again, second, straight


@pytest.fixture(scope="module")
def pair(trained):
    return HyperLatentPair.from_codec(trained[0], hint_coder=HintCoder(np.array([10, 5, 80]), step=2.0), bf16=False)


@pytest.fixture(scope="module")
def coded(pair, edge, cifar_test):
    """Real strings of 6 images: 1, 5, 20, 64 patches at mixed levels, with and without the hint; the analysis'
    input values and the latents (source) they were coded from."""
    images = cifar_test.images[:6]
    hidden = edge.forward_with_attention(images, (-1,), hidden=(pair.tap,)).hidden[pair.tap]
    source = pair.source(images, hidden)
    generator = torch.Generator().manual_seed(0)
    level = torch.zeros(6, 64, dtype=torch.int64)
    for i, k in enumerate([1, 5, 20, 64, 64, 2]):
        level[i, torch.randperm(64, generator=generator)[:k]] = torch.randint(1, 6, (k,), generator=generator)
    hint = torch.randint(0, 3, (6, 10), generator=generator)
    hint[::2] = 0
    return source_values(images, hidden, pair.config), source, level, hint, pair.compress(source, level, hint)


def test_a_run_resumes_exactly_mid_epoch(trained):
    codec, history, again, second, _ = trained
    strip = [{k: v for k, v in h.items() if k != "minutes"} for h in history]
    assert [h["epoch"] for h in second] == [1, 2]
    assert strip == [{k: v for k, v in h.items() if k != "minutes"} for h in second]
    for (name, a), b in zip(codec.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    assert set(history[-1]["eval"]) == {"all@2", "spread8@3"} and history[-1]["eval"]["all@2"]["bits_per_image"] > 0
    with pytest.raises(ValueError, match="different config"):
        train_e2e(replace(TINY, rate=9.0), None, None, trained[4], progress=False)


def test_a_run_warm_starts_from_its_snapshot(cifar_test, tmp_path):
    """No state but a snapshot: the next epoch starts from its fp16 weights and history, and is marked so."""
    data = cifar_test.subset(16)
    snap = tmp_path / "snap"
    first, history = train_e2e(replace(TINY, epochs=1), data, data, tmp_path / "a", progress=False, snapshot=snap)
    record = json.loads((snap / "snapshot.json").read_text())
    assert record["epoch"] == 1 and record["history"] == history and len(record["sha256"]) == 64
    restored = build_codec(TINY)
    assert load_snapshot(snap, TINY, restored) == history
    for (name, a), b in zip(first.state_dict().items(), restored.state_dict().values()):
        assert torch.equal(a.half().float() if a.is_floating_point() else a, b.float() if b.is_floating_point() else b), name
    _, second = train_e2e(TINY, data, data, tmp_path / "b", progress=False, snapshot=snap)
    assert [h["epoch"] for h in second] == [1, 2] and second[0] == history[0]
    assert second[1]["warm_start"] == dict(snapshot_epoch=1, weights="fp16", optimizer="fresh moments")
    assert json.loads((snap / "snapshot.json").read_text())["epoch"] == 2
    with pytest.raises(ValueError, match="snapshot .* different config"):
        load_snapshot(snap, replace(TINY, rate=9.0), build_codec(TINY))
    (snap / "weights.safetensors").write_bytes(b"not the weights")
    with pytest.raises(CheckpointError, match="weights.safetensors"):
        load_snapshot(snap, TINY, build_codec(TINY))


def test_strings_decode_to_the_quantized_latents(pair, coded):
    _, source, level, hint, strings = coded
    received = pair.decompress(strings)
    gain = pair.config.gain(torch.arange(pair.levels + 1))
    for i, item in enumerate(received):
        positions = level[i].nonzero().flatten()
        assert torch.equal(item.positions, positions) and torch.equal(item.level, level[i, positions])
        assert torch.equal(item.hint, hint[i])
        error = (item.values.double() - source[i, positions]).abs() * gain[item.level][:, None]
        assert error.max() <= 0.5 + 1e-4
    assert [pair.pack(f) for f in pair.frames(source, level, hint)] == strings  # the edge's two steps
    assert pair.decompress(strings)[3].values.equal(received[3].values)
    assert pair.classify(received).shape == (6, 10)


def test_real_bits_track_the_estimate(trained, pair, coded):
    """Every patch at level 3: the strings' bits against the codec's own estimate (-log2 of its likelihoods)
    plus the frame's fields and the coder's flush."""
    values, source = coded[0][3:5], coded[1][3:5]
    level = torch.full((2, 64), 3)
    real = torch.tensor([8.0 * len(s) for s in pair.compress(source, level)])
    with torch.no_grad():
        estimate = trained[0].eval()(values, level, training=False).bits
    overhead = 4 + 4 + 1 + 6 + 1 + 3 + 3 + 16 + 35  # header, patch count, uniform level, state length, CRC, flush
    assert ((real - estimate - overhead).abs() <= 0.05 * estimate + 16).all()


def test_bad_level_maps_are_refused_by_the_format(pair, coded):
    source, level = coded[1][:2], coded[2][:2].clone()
    level[0] = 0
    with pytest.raises(ValueError, match="at least one patch"):
        pair.compress(source, level)
    level[0, 3] = 6
    with pytest.raises(ValueError, match="levels must lie in 0..5"):
        pair.compress(source, level)


@SETTINGS
@given(st.integers(0, 5), st.data())
def test_damaged_strings_raise_bitstream_errors(pair, coded, index, data):
    string = coded[4][index]
    bit = data.draw(st.integers(0, 8 * len(string) - 1))
    flipped = bytearray(string)
    flipped[bit // 8] ^= 1 << (bit % 8)
    cut = data.draw(st.integers(0, len(string) - 1))
    for bad in (bytes(flipped), string[:cut]):
        with pytest.raises(BitstreamError):
            pair.decompress([bad])


@SETTINGS
@given(st.integers(0, 5), st.binary(max_size=60))
def test_forged_payloads_with_valid_crc_decode_or_raise(pair, coded, index, garbage):
    """A payload replaced by arbitrary bytes, the CRC recomputed: a BitstreamError or K finite patches."""
    frame = fmt.unpack(coded[4][index], {4: pair.layout}, hint_coder=pair.hint_coder, classes=10)
    frame.state_code, frame.payload = (garbage[0] % 8 if garbage else 0), garbage[1:]
    try:
        forged = fmt.pack(pair.layout, frame, pair.hint_coder)
    except ValueError:
        return
    try:
        (item,) = pair.decompress([forged])
    except BitstreamError:
        return
    assert len(item.positions) == sum(m > 0 for m in frame.level) and torch.isfinite(item.values).all()


def test_the_edge_and_server_use_it_with_iaq(pair, edge, cifar_test):
    rates = pair.rates(torch.randn(2, 64, 16, dtype=torch.float64), torch.arange(64).expand(2, -1) < 10)
    assert rates.shape == (2, 64, 6) and (rates[:, 10:] == 0).all() and (rates.diff(dim=-1) >= 0).all()
    encoder = EdgeEncoder(edge, TopK(24), gate=None, codec=pair, policy=IAQ(300, min_level=2))
    sent = encoder.encode(cifar_test.images[:4])
    assert all(s is not None for s in sent.strings) and (sent.level.max(1).values >= 2).all()
    logits = ServerDecoder(codec=pair).classify(sent.strings)
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="fixed symbols per patch"):
        Packetizer(pair)


def test_export_loads_back_and_is_verified(trained, cifar_test, tmp_path):
    card = export_e2e("hyperlatent-test", trained[4], cifar_test.subset(8), directory=tmp_path)
    loaded = HyperLatentPair.from_card(tmp_path / "hyperlatent-test.json", hint=False)
    assert card.config["codec_id"] == 4 and loaded.distortion.shape == (6,) and loaded.distortion[1] > loaded.distortion[5]
    gaussian = gaussian_tables(loaded.scale_table)
    assert len(loaded.tables) == 16 + len(gaussian) and not torch.equal(loaded.tables.cdfs[16:], gaussian.cdfs)
    source = loaded.source(cifar_test.images[:2], torch.randn(2, 64, 128))
    level = torch.full((2, 64), 2)
    received = loaded.decompress(loaded.compress(source, level))
    assert all((r.values.double() - s).abs().max() <= 0.5 / loaded.config.gain(2) + 1e-4 for r, s in zip(received, source))
    path = tmp_path / "hyperlatent-test.safetensors"
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    with pytest.raises(CheckpointError):
        HyperLatentPair.from_card(tmp_path / "hyperlatent-test.json")


def test_the_recipe_starts_from_the_shipped_latent_pair(cifar_test):
    """The new non-linear parts start silent: the analysis is the shipped pair's linear bottleneck."""
    from semcomm.rate import create_codec

    codec = build_codec(E2EConfig())
    latent = create_codec("latent-cifar10", hint=False)
    values = source_values(cifar_test.images[:4], torch.randn(4, 64, 128), codec.config)
    assert torch.allclose(codec.analysis(values).double(), latent.source(cifar_test.images[:4]), atol=1e-5)
    assert torch.equal(codec.server.vit.blocks[0].attn.qkv.weight, latent.codec.server.vit.blocks[0].attn.qkv.weight)


def test_refitted_tables_follow_the_counts():
    """Tables refitted to symbols code them in fewer bits than the Gaussian ones, and keep every value codable."""
    scale_table = torch.tensor([0.5, 2.0, 8.0], dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    index = torch.randint(0, 3, (4000,), generator=generator)
    u = torch.rand(4000, generator=generator, dtype=torch.float64) - 0.5
    symbols = torch.round(-scale_table[index] * u.sign() * torch.log1p(-2 * u.abs())).long()  # Laplacian, not Gaussian
    counts = TableCounts(scale_table)
    counts.add(symbols.numpy(), index.numpy())
    refitted, gaussian = counts.tables(), gaussian_tables(scale_table)
    assert refitted.estimated_bits(symbols, index) < 0.97 * gaussian.estimated_bits(symbols, index)
    assert np.isfinite(refitted.cost(torch.tensor([10_000, -10_000]), torch.tensor([0, 2])).numpy()).all()


def test_levels_and_settings_are_drawn_and_named():
    importance = torch.rand(8, 64, generator=torch.Generator().manual_seed(0))
    for seed in range(10):
        level = sample_levels(importance, TINY, (8, 8), torch.Generator().manual_seed(seed))
        counts = (level > 0).sum(1)
        assert (counts == counts[0]).all() and 8 <= counts[0] <= 64 and level.max() <= 5
    assert parse_setting("spread16@3", 5)[1] == 3 and parse_setting("all@5", 5)[0] is None
    for bad in ("all16@3", "spread@3", "top8@6", "every@2"):
        with pytest.raises(ValueError, match="a budget is"):
            parse_setting(bad, 5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(source="audio"), "must be one of"),
    (dict(source="pixels"), "needs the edge block"),
    (dict(source="tokens", tap=None), "needs the edge block"),
    (dict(channels=0), "must be positive"),
])
def test_bad_configs_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HyperConfig(**kwargs)
    with pytest.raises(ValueError, match="one weight per level"):
        E2EConfig(level_weights=(1.0,))


def test_the_linear_ablation_has_no_mlp():
    codec = HyperLatentCodec(HyperConfig(source="pixels", tap=None, hidden=0, context=False))
    assert codec.analysis.mlp is None and codec.server.embed.mlp is None
    out = codec(torch.randn(2, 64, 48), torch.full((2, 64), 2))
    assert out.logits.shape == (2, 10) and (out.bits > out.z_bits).all()


@pytest.mark.parametrize("appended", [bytes(4), bytes(8), bytes(range(16))], ids=["4-zeros", "8-zeros", "16-bytes"])
def test_appended_payload_words_are_refused(pair, coded, appended):
    """Words after the last one the staged decoder needs (the CRC recomputed) are refused, as for every pair."""
    frame = fmt.unpack(coded[4][0], {4: pair.layout}, hint_coder=pair.hint_coder, classes=10)
    frame.payload = frame.payload + appended
    with pytest.raises(BitstreamError, match="not the one its symbols code to"):
        pair.decompress([fmt.pack(pair.layout, frame, pair.hint_coder)])


def test_each_ablation_changes_one_part_of_the_recipe():
    base = asdict(ABLATIONS["base"])
    for name, config in ABLATIONS.items():
        changed = {k for k, v in asdict(config).items() if v != base[k]}
        assert changed == (set() if name == "base" else {"server_lr" if name == "frozen-server" else "codec"}), name
        assert E2E_PRESETS[f"hyperlatent-cifar10-ablation-{name}"].epochs == ABLATION_EPOCHS
