"""Codec pairs end to end: strings decode to exactly what was quantized; the server decoder reads
both format versions; damaged, missing or empty input is handled as documented."""
from __future__ import annotations

import binascii

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semcomm.core.patches import patchify
from semcomm.edge.codec import CODECS
from semcomm.edge.encoder import EdgeEncoder, collaborative_predictions
from semcomm.edge.gating import Gate
from semcomm.edge.selection import SpreadTopK, TopK
from semcomm.models import create_model
from semcomm.rate import create_codec, list_codecs
from semcomm.rate.dct import DCTPair
from semcomm.rate.hint import HintCoder
from semcomm.rate.latent import LatentCodec, LatentConfig, LatentPair
from semcomm.rate.pixels import PixelIAQ
from semcomm.rate.policies import IAQ, FixedLevel, UniformBudget
from semcomm.rate.raw8 import Raw8
from semcomm.server.decoder import ServerDecoder
from semcomm.train.fitting import fit_switched_tables, latent_tables
from semcomm.wire import v2 as fmt
from semcomm.wire.errors import BitstreamError

SETTINGS = settings(max_examples=30, deadline=None)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return create_model("semcomm_vit_edge_p4_32"), create_model("semcomm_vit_server_p4_32")


@pytest.fixture(scope="module")
def hint():
    return HintCoder(np.array([10, 5, 80]), step=2.0)


@pytest.fixture(scope="module")
def latent_pair(hint):
    torch.manual_seed(0)
    codec = LatentCodec(LatentConfig(source="tokens", in_dim=128, tap=2, channels=4, levels=3, gain_offset=0))
    return LatentPair(codec, latent_tables(codec), codec.entropy.medians(), hint_coder=hint, bf16=False)


@pytest.fixture(scope="module")
def dct_pair(models, hint, tiny_images):
    pair = DCTPair(models[1], hint_coder=hint)
    pair.fit_tables(torch.cat([tiny_images] * 4))
    pair.bf16 = False
    return pair


def test_registry_lists_the_shipped_pairs():
    assert {"pixel-iaq", "dct-cifar10", "latent-cifar10", "raw8"} <= set(list_codecs())
    assert list_codecs() == sorted(list_codecs())
    with pytest.raises(KeyError, match="unknown codec 'jpeg-xl'; choose from: .*raw8"):
        create_codec("jpeg-xl")
    with pytest.raises(ValueError, match="codec 'raw8' is already registered"):
        CODECS.register("raw8", Raw8)


def test_raw8_is_the_pair_of_version_1(models, tiny_images):
    """The edge encoder's default pair writes exactly its strings; the pair reads them back and classifies them as
    the server decoder does; it refuses what version 1 cannot carry."""
    edge, server = models
    pair = create_codec("raw8", server=server)
    pair.bf16 = False
    assert (pair.version, pair.levels, pair.num_patches) == (1, 1, 64)
    sent = EdgeEncoder(edge, TopK(8), gate=None).encode(tiny_images)
    assert torch.equal(sent.level, sent.mask.long())
    assert pair.compress(pair.source(tiny_images), sent.level) == sent.strings
    assert EdgeEncoder(edge, TopK(8), gate=None, codec=pair).encode(tiny_images).strings == sent.strings
    received = pair.decompress(sent.strings)
    for i, item in enumerate(received):
        assert torch.equal(item.positions, sent.mask[i].nonzero().flatten()) and (item.level == 1).all()
    torch.testing.assert_close(pair.classify(received), ServerDecoder(server, bf16=False).classify(sent.strings))
    with pytest.raises(ValueError, match="carry no hint"):
        pair.compress(pair.source(tiny_images), sent.level, torch.zeros(4, 10, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"0 \(not sent\) or 1, got 0..2"):
        pair.compress(pair.source(tiny_images), 2 * sent.level)
    with pytest.raises(ValueError, match="hints need a codec pair"):
        EdgeEncoder(edge, TopK(4), hint=HintCoder(np.array([10, 5, 80])))
    with pytest.raises(ValueError, match="only writes strings"):
        Raw8(patch_size=4, grid_size=(8, 8)).classify(received)
    with pytest.raises(ValueError, match="codec raw8 codes 16 patches, the edge has 64"):
        EdgeEncoder(edge, TopK(4), codec=Raw8(patch_size=8, grid_size=(4, 4)))
    with pytest.raises(KeyError, match="unknown codec 'raw9'"):
        EdgeEncoder(edge, TopK(4), codec="raw9")
    with pytest.raises(TypeError, match="codec must be a codec pair or a registered name .*raw8.*, got None"):
        EdgeEncoder(edge, TopK(4), codec=None)


def test_server_decoder_takes_one_pair_per_format_version(models):
    _, server = models
    with pytest.raises(ValueError, match="raw8 and raw8 both read format version 1"):
        ServerDecoder(server, codec=create_codec("raw8", server=server))
    with pytest.raises(ValueError, match="needs a pixel server model, a codec pair, or both"):
        ServerDecoder()


def test_every_registered_pair_builds_with_and_without_the_hint():
    """What the sweeps call (``hint=False``) and the default both work for every shipped pair."""
    for name in ("pixel-iaq", "dct-cifar10", "latent-cifar10"):
        assert create_codec(name, hint=False).hint_coder is None
        assert isinstance(create_codec(name).hint_coder, HintCoder)
    own = HintCoder(np.array([10, 5, 80]), step=2.0)
    assert create_codec("pixel-iaq", hint=own).hint_coder is own  # a user's edge brings its own


def test_pixel_iaq_decodes_to_the_quantizer_cells(models, tiny_images):
    pair = PixelIAQ(models[1])
    level = torch.zeros(4, 64, dtype=torch.int64)
    level[:, :10] = torch.arange(1, 11).clamp_max(8)
    source = pair.source(tiny_images)
    strings = pair.compress(source, level)
    for i, (string, received) in enumerate(zip(strings, pair.decompress(strings))):
        lo, hi = float(source[i].min()), float(source[i].max())
        for j, position in enumerate(received.positions.tolist()):
            cell = (hi - lo + 1) / 2 ** int(level[i, position])
            assert (received.values[j] - source[i, position]).abs().max() <= cell / 2 + 1e-4
        header = 4 + 4 + 1 + 6 + 34 + 16 + 16  # ... + positions + level map <= + range
        assert 8 * len(string) >= 48 * int(level[i].sum()) + header


def test_dct_pair_round_trip_matches_its_own_reconstruction(dct_pair, tiny_images):
    level = torch.randint(0, 7, (4, 64), generator=torch.Generator().manual_seed(0))
    level[:, 5] = 3
    strings = dct_pair.compress(dct_pair.source(tiny_images), level)
    decoded = dct_pair.reconstruct(tiny_images, level)
    for i, received in enumerate(dct_pair.decompress(strings)):
        assert received.level.tolist() == level[i][level[i] > 0].tolist()
        expected = patchify(decoded[i : i + 1] * 255, 4)[0][received.positions]
        torch.testing.assert_close(received.values.clamp(0, 255), expected, atol=1e-3, rtol=0)
    # at the finest level (luma steps 1..7, chroma twice that) even white noise comes back within a few levels
    fine = dct_pair.reconstruct(tiny_images, torch.full((4, 64), 6))
    assert (fine * 255 - tiny_images.float()).abs().mean() < 3.5


def test_latent_pair_strings_carry_the_rounded_latents(latent_pair, models, tiny_images):
    edge = models[0]
    out = edge.forward_with_attention(tiny_images, (-1,), hidden=(2,))
    source = latent_pair.source(tiny_images, out.hidden[2])
    level = torch.zeros(4, 64, dtype=torch.int64)
    level[:, ::5] = torch.randint(1, 4, (4, 13), generator=torch.Generator().manual_seed(1))
    strings = latent_pair.compress(source, level)
    for i, received in enumerate(latent_pair.decompress(strings)):
        lv = level[i][level[i] > 0]
        gain = torch.exp2(lv.double() - 1)[:, None]
        medians = latent_pair._medians[lv - 1]
        expected = (torch.round(source[i][level[i] > 0] * gain - medians) + medians) / gain
        torch.testing.assert_close(received.values.double(), expected, atol=1e-5, rtol=0)


def test_switched_tables_code_each_image_with_its_cheapest_set(latent_pair, models, tiny_images):
    """Two fitted sets (k-means on code length): every string names the set that codes its symbols in
    the fewest bits, in a 1-bit parameter, and decodes to the same values as the one-set pair."""
    edge = models[0]
    hidden = edge.forward_with_attention(tiny_images, (-1,), hidden=(2,)).hidden[2]
    source = latent_pair.source(tiny_images, hidden)
    config = latent_pair.config
    symbols = torch.stack([latent_pair.quantize(source, torch.full((4, 64), m)) for m in range(1, config.levels + 1)], 1)
    symbols = torch.cat([symbols, 3 * symbols]).numpy()  # 8 images: 4 smooth, 4 busy
    sets, classes = fit_switched_tables(symbols, 2, iterations=3)
    assert len(sets) == 2 and all(len(t) == len(latent_pair.tables) for t in sets)
    assert classes[:4].tolist() != classes[4:].tolist()
    switched = LatentPair(latent_pair.codec, latent_pair.tables, latent_pair._medians.float(), table_sets=sets,
                          hint_coder=latent_pair.hint_coder, bf16=False)
    assert switched.layout.param_widths == (1,)
    level = torch.zeros(4, 64, dtype=torch.int64)
    level[:, 3:40] = 2
    for (symbols_i, indexes, params), string in zip(switched.symbols(source, level), switched.compress(source, level)):
        costs = [t.estimated_bits(symbols_i, indexes) for t in sets]
        assert params == (int(np.argmin(costs)),)
        assert fmt.unpack(string, {3: switched.layout}, hint_coder=switched.hint_coder).params == params
    for a, b in zip(switched.decompress(switched.compress(source, level)),
                    latent_pair.decompress(latent_pair.compress(source, level))):
        torch.testing.assert_close(a.values, b.values)
    corrupted = LatentPair(latent_pair.codec, latent_pair.tables, latent_pair._medians.float(), table_sets=sets * 2,
                           bf16=False)  # 4 sets: a 2-bit field; set 3 of a 3-set pair is corrupted data
    corrupted.table_sets = corrupted.table_sets[:3]
    frame = fmt.Frame(3, level[0].tolist(), None, (3,), 0, b"\x80\x00\x00\x00")
    with pytest.raises(BitstreamError, match="table set 3"):
        corrupted.decompress([fmt.pack(corrupted.layout, frame)])


@pytest.mark.parametrize("policy", [FixedLevel(2), UniformBudget(300), IAQ(300), IAQ(300, solver="greedy")])
def test_encoder_and_decoder_agree_and_fuse(models, latent_pair, hint, tiny_images, policy):
    edge, _ = models
    encoder = EdgeEncoder(edge, SpreadTopK(12), gate=None, codec=latent_pair, policy=policy, hint=hint)
    sent = encoder.encode(tiny_images)
    assert sent.level is not None and ((sent.level > 0) <= sent.mask).all()
    decoder = ServerDecoder(codec=latent_pair, bf16=False)
    fused = decoder.classify(sent.strings)
    plain = decoder.classify(sent.strings, fuse=False)
    edge_log_probs = hint.log_probs(hint.symbols(sent.edge_logits))
    from semcomm.rate.hint import fuse

    torch.testing.assert_close(fused, fuse(plain, edge_log_probs))
    no_hint = EdgeEncoder(edge, SpreadTopK(12), gate=None, codec=latent_pair, policy=policy).encode(tiny_images)
    assert (sent.bits - no_hint.bits).min() >= 8 and (sent.bits - no_hint.bits).max() <= 8 * 3 + 8
    symbols = hint.symbols(sent.edge_logits)
    assert [latent_pair.with_hint(s, symbols[i]) for i, s in enumerate(no_hint.strings)] == sent.strings
    assert [latent_pair.with_hint(s, None) for s in sent.strings] == no_hint.strings


def test_server_decoder_reads_both_versions_and_flags_damage(models, latent_pair, tiny_images):
    edge, server = models
    v1 = EdgeEncoder(edge, TopK(8), gate=None).encode(tiny_images).strings
    v2 = EdgeEncoder(edge, TopK(8), gate=None, codec=latent_pair).encode(tiny_images).strings
    decoder = ServerDecoder(server, bf16=False, codec=latent_pair)
    damaged = bytearray(v2[1])
    damaged[len(damaged) // 2] ^= 0x10
    mixed = [v1[0], v2[0], bytes(damaged), None, v2[2][:-3], v1[3]]
    logits = decoder.classify(mixed, errors="nan")
    assert logits.shape == (6, 10)
    assert logits[[0, 1, 5]].isfinite().all() and logits[[2, 3, 4]].isnan().all()
    with pytest.raises(BitstreamError, match="string 2: corrupted: CRC-16 mismatch"):
        decoder.classify(mixed)
    with pytest.raises(BitstreamError, match="string 0: missing"):
        decoder.classify(mixed[3:])
    assert decoder.classify([]).shape == (0, 10)
    with pytest.raises(TypeError, match="list of bytes"):
        decoder.classify(b"abc")
    only_v2 = ServerDecoder(codec=latent_pair, bf16=False)
    assert only_v2.classify([v1[0]], errors="nan").isnan().all()
    with pytest.raises(BitstreamError, match="version 1"):
        only_v2.classify([v1[0]])


def _every_kind_of_string(models, latent_pair, dct_pair, hint, tiny_images) -> list[tuple[object, list[bytes]]]:
    """(pair, strings) of version 1 (raw8) and of version 2: rANS (latent, DCT), fixed-length (DCT with entropy
    coding off) and raw (pixel-iaq) payloads, with the hint and mixed levels where the pair has them."""
    edge, server = models
    raw8 = create_codec("raw8", server=server)
    fixed = DCTPair(server, dct_pair.tables, hint_coder=hint, entropy_coding=False)
    out = [(raw8, EdgeEncoder(edge, TopK(8), gate=None).encode(tiny_images).strings)]
    pixels = PixelIAQ(server)
    pixels.hint_coder = hint
    for pair in (latent_pair, dct_pair, fixed, pixels):
        encoder = EdgeEncoder(edge, TopK(12), gate=None, codec=pair, policy=UniformBudget(40 * 12), hint=hint)
        out.append((pair, encoder.encode(tiny_images).strings))
    return out


def test_bytes_appended_to_a_string_are_refused(models, latent_pair, dct_pair, hint, tiny_images):
    """Zeros after a version-2 string keep its CRC-16 valid (no final XOR), and the rANS decoder reads only
    the words it needs: the exact payload is checked, so nothing may follow a string of any version."""
    for pair, strings in _every_kind_of_string(models, latent_pair, dct_pair, hint, tiny_images):
        for string in strings:
            assert pair.decompress([string])  # as sent: decodes
            for n in range(1, 17):
                keep_crc = bytes([0x5A]) * (n - 2) + binascii.crc_hqx(bytes([0x5A]) * (n - 2), 0).to_bytes(2, "big")
                for extra in (bytes(n), bytes([0x5A]) * n, keep_crc[-n:]):  # zeros and keep_crc keep a CRC valid
                    with pytest.raises(BitstreamError):
                        pair.decompress([string + extra])


def test_any_bytes_like_string_decodes_and_other_types_are_named(models, latent_pair, dct_pair, hint, tiny_images):
    """bytes, bytearray, memoryview and numpy uint8 buffers decode alike (both versions, with errors="nan"
    too); anything else is a TypeError naming the string, whatever ``errors`` says."""
    edge, server = models
    (_, v1), (_, v2) = _every_kind_of_string(models, latent_pair, dct_pair, hint, tiny_images)[:2]
    decoder = ServerDecoder(server, bf16=False, codec=latent_pair)
    strings = [v1[0], v2[1], v2[2]]
    expected = decoder.classify(strings)
    assert expected.isfinite().all()
    for convert in (bytearray, memoryview, lambda s: np.frombuffer(s, dtype=np.uint8),
                    lambda s: memoryview(bytes(1) + s)[1:]):
        converted = [convert(s) for s in strings]
        torch.testing.assert_close(decoder.classify(converted, errors="nan"), expected)
        torch.testing.assert_close(decoder.classify(converted), expected)
        assert len(latent_pair.decompress([convert(v2[1])])[0].positions) == 12
    for bad in ("a string", [1, 2, 3], np.frombuffer(v2[1], dtype=np.uint8).astype(np.int64), torch.tensor([35])):
        for errors in ("raise", "nan"):
            with pytest.raises(TypeError, match=r"string 1 must be bytes-like \(bytes, bytearray, memoryview"):
                decoder.classify([v2[0], bad], errors=errors)


def test_lost_strings_fall_back_to_the_edge(models, latent_pair, tiny_images):
    edge, _ = models
    sent = EdgeEncoder(edge, TopK(8), gate=Gate(threshold=0.0), codec=latent_pair).encode(tiny_images)
    logits = ServerDecoder(codec=latent_pair, bf16=False).classify([None, *sent.strings[1:]], errors="nan")
    predictions = collaborative_predictions(sent, logits)
    assert predictions[0] == sent.edge_logits[0].argmax() and torch.equal(predictions[1:], logits[1:].argmax(-1))


@SETTINGS
@given(st.binary(max_size=120))
def test_random_bytes_never_raise_anything_but_bitstream_errors(latent_pair, data):
    for string in (data, bytes([0x23]) + data):
        try:
            latent_pair.decompress([string])
        except BitstreamError:
            pass


@SETTINGS
@given(st.integers(0, 3), st.integers(0, 10_000))
def test_truncations_and_flips_are_detected(latent_pair, models, tiny_images, index, bit):
    edge = models[0]
    out = edge.forward_with_attention(tiny_images, (-1,), hidden=(2,))
    level = torch.zeros(4, 64, dtype=torch.int64)
    level[:, :20] = 2
    string = latent_pair.compress(latent_pair.source(tiny_images, out.hidden[2]), level)[index]
    with pytest.raises(BitstreamError):
        latent_pair.decompress([string[: bit % len(string)]])
    flipped = bytearray(string)
    flipped[(bit // 8) % len(string)] ^= 1 << (bit % 8)
    if flipped[0] >> 4 == 2:
        with pytest.raises(BitstreamError):
            latent_pair.decompress([bytes(flipped)])


def test_the_edge_keeps_what_its_strings_were_coded_from(models, latent_pair, hint, tiny_images):
    """A framed pair compresses in two steps, its frames (fields and symbols, nothing coded yet) then each
    one packed; the edge keeps the frames of its strings (for a link to cut packets from), raw8 has none."""
    edge, _ = models
    encoder = EdgeEncoder(edge, SpreadTopK(12), gate=None, codec=latent_pair, policy=IAQ(300), hint=hint)
    analysis = encoder.analyze(tiny_images)
    sent = encoder.encode(tiny_images, analysis=analysis)
    assert [latent_pair.pack(coded) for coded in sent.frames] == sent.strings
    source, symbols = latent_pair.source(tiny_images, analysis.hidden), hint.symbols(sent.edge_logits)
    frames = latent_pair.frames(source, sent.level, symbols)
    assert [latent_pair.pack(coded) for coded in frames] == latent_pair.compress(source, sent.level, symbols)
    for coded, kept, level in zip(frames, sent.frames, sent.level):
        assert coded.frame.level == level.tolist() and coded.frame.payload == b"" and kept.frame.payload == b""
        assert np.array_equal(coded.symbols, kept.symbols) and np.array_equal(coded.indexes, kept.indexes)
        assert len(coded.symbols) == len(coded.indexes) == int((level > 0).sum()) * latent_pair.values_per_patch
    assert EdgeEncoder(edge, TopK(8), gate=None).encode(tiny_images).frames is None  # raw8: version 1, no frames
    with pytest.raises(TypeError, match="int64"):
        latent_pair.frames(source, sent.level.float())


def test_bad_encoder_input_is_named(models, latent_pair, tiny_images):
    edge, _ = models
    with pytest.raises(ValueError, match="need a codec pair"):
        EdgeEncoder(edge, TopK(4), policy=FixedLevel(1))
    source = latent_pair.source(tiny_images, torch.zeros(4, 64, 128))
    with pytest.raises(ValueError, match="at least one patch"):
        latent_pair.compress(source, torch.zeros(4, 64, dtype=torch.int64))
    with pytest.raises(ValueError, match="levels must lie in 0..3"):
        latent_pair.compress(source, torch.full((4, 64), 9))
    with pytest.raises(TypeError, match="int64"):
        latent_pair.compress(source, torch.ones(4, 64))
    with pytest.raises(ValueError, match="reads the edge's tokens"):
        latent_pair.source(tiny_images, None)


def test_entropy_coding_off_writes_the_same_symbols_in_fixed_length_fields(dct_pair, models, tiny_images):
    fixed = DCTPair(models[1], dct_pair.tables, hint_coder=dct_pair.hint_coder, entropy_coding=False)
    assert fixed.layout.codec_id == 10 and not fixed.layout.entropy_coded and fixed.name == "dct-fixed"
    level = torch.zeros(4, 64, dtype=torch.int64)
    level[:, 10:30] = 4
    source = dct_pair.source(tiny_images)
    coded, plain = dct_pair.compress(source, level), fixed.compress(source, level)
    for a, b, ra, rb in zip(coded, plain, dct_pair.decompress(coded), fixed.decompress(plain)):
        torch.testing.assert_close(ra.values, rb.values)  # the fitted tables span these symbols
        offsets, widths = fixed.fixed_length(fixed.table_indexes(rb.level.numpy(), ()))
        assert 8 * len(b) >= widths.sum() and len(a) < len(b)
    with pytest.raises(BitstreamError, match="unknown codec id 10"):
        dct_pair.decompress([plain[0]])


def test_pca_init_gives_the_server_its_own_tokens(models, tiny_images):
    """With as many channels as pixel values the PCA start is exact: the latent server, fed the
    unquantized latents of every patch, returns the pixel server's logits."""
    from semcomm.rate.latent import patch_values
    from semcomm.train.latent import pca_init

    server = models[1]
    codec = LatentCodec(LatentConfig(channels=48))
    state = {k: v for k, v in server.model.state_dict().items() if not k.startswith("patch_embed.")}
    codec.server.vit.load_state_dict(state, strict=False)
    pca_init(codec, server.model, torch.cat([tiny_images] * 8))
    with torch.no_grad():
        latents = codec.bottleneck(patch_values(tiny_images, codec.config))
        positions = torch.arange(64).expand(4, -1)
        logits = codec.server(latents, positions, torch.ones(4, 64, dtype=torch.int64))
        torch.testing.assert_close(logits, server(tiny_images), rtol=1e-3, atol=1e-3)
    sixteen = LatentCodec(LatentConfig(channels=16))
    pca_init(sixteen, server.model, torch.cat([tiny_images] * 8))
    y = sixteen.bottleneck(patch_values(tiny_images, sixteen.config)).detach()
    assert (y.var((0, 1)).diff() <= 1e-4).all()  # principal components: variance in decreasing order


@pytest.mark.parametrize("budget, level", [(64, 2), (64, 4), (16, 3), (8, 1)])
def test_shipped_latent_strings_are_the_model_estimate(cifar_test, budget, level):
    """On real test images, every rANS payload of the shipped pair lies within 4 bits of its tables'
    estimate (-sum log2 p + the coder's 31-bit flush + 4 bits mean byte rounding); over the split,
    within 3%."""
    edge, pair = create_model("vit-edge-cifar10"), create_codec("latent-cifar10", hint=False)
    images = cifar_test.images[:200]
    encoder = EdgeEncoder(edge, SpreadTopK(budget), gate=None, codec=pair, policy=FixedLevel(level))
    analysis = encoder.analyze(images)
    sent = encoder.encode(images, analysis=analysis)
    per_image = pair.symbols(pair.source(images, analysis.hidden), sent.level)
    real = np.array([8 * len(fmt.unpack(s, {3: pair.layout}).payload) for s in sent.strings])
    estimate = np.array([pair.tables_for(params).string_bits(symbols, indexes) for symbols, indexes, params in per_image])
    assert np.abs(real - estimate).max() <= 4.01
    assert abs(real.sum() / estimate.sum() - 1) < 0.03
