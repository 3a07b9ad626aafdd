"""Edge encoder and server decoder: exact bits, faithful patches, gating, batching by patch count."""
from __future__ import annotations

import math

import pytest
import torch

from semcomm.core.patches import patchify
from semcomm.edge.encoder import EdgeEncoder, collaborative_predictions
from semcomm.edge.gating import Gate
from semcomm.edge.selection import AttentionSum, TopK
from semcomm.models import create_model
from semcomm.server.decoder import ServerDecoder
from semcomm.wire import v1 as bitstream
from semcomm.wire.errors import BitstreamError
from semcomm.wire.v2 import read_version


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return create_model("semcomm_vit_edge_p4_32"), create_model("semcomm_vit_server_p4_32")


def test_strings_carry_exactly_the_selected_patches(models, tiny_images):
    edge, server = models
    encoder = EdgeEncoder(edge, TopK(10), gate=None, bf16=False)
    transmission = encoder.encode(tiny_images)
    decoder = ServerDecoder(server, bf16=False)
    for i, (string, received) in enumerate(zip(transmission.strings, decoder.decompress(transmission.strings))):
        assert read_version(string) == 1
        torch.testing.assert_close(received.positions, transmission.mask[i].nonzero().flatten())
        original = patchify(tiny_images[i : i + 1], 4)[0]
        assert torch.equal(received.values, original[received.positions].float())
    expected = bitstream.stream_bits(10, 64, 48)
    assert transmission.bits.tolist() == [expected] * 4
    assert expected == 8 * (3 + math.ceil(10 * 6 / 8) + 10 * 48)


def test_decoder_batches_by_patch_count_and_matches_direct_forward(models, tiny_images):
    edge, server = models
    encoder = EdgeEncoder(edge, AttentionSum(0.5), gate=None, bf16=False)
    transmission = encoder.encode(tiny_images)
    logits = ServerDecoder(server, bf16=False, batch_size=3).classify(transmission.strings)
    with torch.no_grad():
        for i in range(len(tiny_images)):
            positions = transmission.mask[i].nonzero().flatten()[None]
            torch.testing.assert_close(logits[i : i + 1], server.forward_tokens(tiny_images[i : i + 1], positions),
                                       rtol=1e-4, atol=1e-4)


def test_gate_extremes_and_collaboration(models, tiny_images):
    edge, server = models
    analysis = EdgeEncoder(edge, TopK(4), bf16=False).analyze(tiny_images)
    nothing = EdgeEncoder(edge, TopK(4), Gate(threshold=math.inf), bf16=False).encode(tiny_images, analysis=analysis)
    assert not nothing.offloaded.any() and nothing.bits.sum() == 0 and nothing.strings == [None] * 4
    everything = EdgeEncoder(edge, TopK(4), Gate(threshold=0.0), bf16=False).encode(tiny_images, analysis=analysis)
    assert everything.offloaded.all() and (everything.bits > 0).all()
    server_logits = ServerDecoder(server, bf16=False).classify(everything.strings)
    assert torch.equal(collaborative_predictions(everything, server_logits), server_logits.argmax(-1))
    assert torch.equal(collaborative_predictions(nothing, server_logits[:0]), analysis.logits.argmax(-1))


def test_float_images_are_sent_as_8_bit_pixels(models, tiny_images):
    edge, _ = models
    encoder = EdgeEncoder(edge, TopK(64), gate=None, bf16=False)
    a = encoder.encode(tiny_images).strings
    b = encoder.encode(tiny_images.float() / 255).strings
    assert a == b


def test_corrupted_string_is_a_clear_error_or_falls_back_to_the_edge(models, tiny_images):
    edge, server = models
    transmission = EdgeEncoder(edge, TopK(5), gate=None, bf16=False).encode(tiny_images)
    damaged = list(transmission.strings)
    damaged[2] = damaged[2][:-1]
    with pytest.raises(BitstreamError, match="string 2: truncated"):
        ServerDecoder(server).classify(damaged)
    logits = ServerDecoder(server, bf16=False).classify(damaged, errors="nan")
    assert logits[2].isnan().all() and not logits[[0, 1, 3]].isnan().any()
    predictions = collaborative_predictions(transmission, logits)
    assert predictions[2] == transmission.edge_logits[2].argmax()
    assert torch.equal(predictions[[0, 1, 3]], logits[[0, 1, 3]].argmax(-1))
    with pytest.raises(ValueError, match="errors must be"):
        ServerDecoder(server).classify(damaged, errors="ignore")


def test_an_empty_batch_gives_an_empty_transmission(models):
    edge, server = models
    empty = torch.zeros(0, 3, 32, 32, dtype=torch.uint8)
    sent = EdgeEncoder(edge, TopK(4), bf16=False).encode(empty)
    assert sent.strings == [] and sent.bits.shape == (0,) and sent.edge_logits.shape == (0, 10)
    logits = ServerDecoder(server, bf16=False).classify(sent.strings)
    assert logits.shape == (0, 10) and collaborative_predictions(sent, logits).shape == (0,)


def test_images_are_checked_once_where_they_come_in(models, tiny_images, monkeypatch):
    import semcomm.edge.encoder as encoder_module

    calls = []
    check = encoder_module.check_images
    monkeypatch.setattr(encoder_module, "check_images", lambda *args: calls.append(args) or check(*args))
    sent = EdgeEncoder(models[0], TopK(4), gate=None, bf16=False).encode(tiny_images.float() / 255)
    assert len(calls) == 1 and sent.strings == EdgeEncoder(models[0], TopK(4), gate=None).encode(tiny_images).strings
    with pytest.raises(ValueError, match=r"images are \(16, 16\) pixels but the model takes \(32, 32\)"):
        EdgeEncoder(models[0], TopK(4)).encode(tiny_images[..., :16, :16])
