"""Backends behind the latent codec (issue 28, item 4): a backend that reads the latent pair's received rows
stands where the pair's server stands, with the same answers, reports what it ships, survives saving, and each
kind of backend refuses the other's input by name. The shipped latent-cifar10 pair on 8 test images."""
from __future__ import annotations

import math

import pytest
import torch

from semcomm.edge.encoder import EdgeEncoder
from semcomm.edge.selection import SpreadTopK
from semcomm.models import create_model
from semcomm.rate import create_codec
from semcomm.server.backends import Device, LocalEngine, MonolithicBackend, load_backend, save_backend
from semcomm.server.backends.request import LatentRequest


@pytest.fixture(scope="module")
def pair():
    return create_codec("latent-cifar10")


@pytest.fixture(scope="module")
def received(pair, cifar_test):
    encoder = EdgeEncoder(create_model("vit-edge-cifar10"), SpreadTopK(16), gate=None, codec=pair)
    return pair.decompress(encoder.encode(cifar_test.images[:8]).strings)


def _rows(received):
    return (torch.stack([r.values for r in received]), torch.stack([r.positions for r in received]),
            torch.stack([r.level for r in received]))


def test_the_pair_server_as_a_backend_answers_as_the_pair(pair, received):
    own = pair.classify(received)
    backend = MonolithicBackend.of_latent_pair(pair, Device("server", memory_mb=64.0))
    assert backend.reads == "latents"
    try:
        assert torch.allclose(pair.with_backend(backend).classify(received), own, atol=1e-5)
    finally:
        pair.with_backend(None)
    values, positions, level = _rows(received)
    engine = LocalEngine()
    backend.classify_latents(values, positions, level, engine=engine)
    b, k, c = values.shape
    assert engine.history[-1].bytes_exchanged == b * k * c * 4 + b * k * 8 + b * k + b * 10 * 4  # in + logits out


def test_a_latent_backend_survives_saving(pair, received, tmp_path):
    backend = MonolithicBackend.of_latent_pair(pair)
    save_backend(backend, directory=tmp_path / "latent-server")
    loaded = load_backend(tmp_path / "latent-server")
    assert loaded.reads == "latents"
    rows = _rows(received)
    assert torch.allclose(loaded.classify_latents(*rows), backend.classify_latents(*rows), atol=0.05)  # fp16 weights


def test_each_kind_refuses_the_others_input(pair, received):
    latent = MonolithicBackend.of_latent_pair(pair)
    pixel = MonolithicBackend(create_model("semcomm_vit_edge_p4_32"))
    with pytest.raises(ValueError, match="reads pixels.*cannot stand behind this codec"):
        pair.with_backend(pixel)
    with pytest.raises(ValueError, match="reads a latent codec pair's received rows"):
        latent.classify(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    values, positions, level = _rows(received)
    with pytest.raises(ValueError, match="reads pixels"):
        pixel.classify_latents(values, positions, level)
    bad = values.clone()
    bad[0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        latent.classify_latents(bad, positions, level)
    with pytest.raises(ValueError, match="level must be a B x K integer tensor"):
        latent.classify_latents(values, positions, level[:, :3])
    with pytest.raises(ValueError, match="levels of received patches lie in 1..255"):
        LatentRequest.make(values, positions, torch.zeros_like(level), (32, 32), 4)
    with pytest.raises(ValueError, match="positions must lie in"):
        latent.classify_latents(values, positions + 64, level)
