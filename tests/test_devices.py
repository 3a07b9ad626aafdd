"""Devices: the library on any torch device.

Every test that moves models runs on each device this machine has (the CPU always; CUDA and MPS parametrisations
skip with a reason where none is present). Without a GPU, the device boundaries are still checked: with torch's
default device set to ``meta`` (a device without data), every tensor the library makes without naming its device
lands on ``meta`` and any mix with the model's tensors raises, as a CPU tensor meeting a CUDA model would.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from semcomm.cli import main
from semcomm.core.devices import (DeviceError, as_tensor, autocast, autocast_dtype, available_devices, host,
                                  module_device, resolve_device)
from semcomm.edge import EdgeEncoder, Gate, SpreadTopK, TopK
from semcomm.models import create_model
from semcomm.rate import create_codec
from semcomm.rate.hint import HintCoder
from semcomm.rate.hyperlatent import HyperLatentPair
from semcomm.rate.hyperprior import HyperConfig, HyperLatentCodec
from semcomm.rate.image_codecs import ImageCodec
from semcomm.rate.policies import IAQ
from semcomm.rate.zoo import load_hint
from semcomm.server import ServerDecoder

DEVICES = [
    pytest.param("cpu"),
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")),
    pytest.param("mps", marks=pytest.mark.skipif("mps" not in available_devices(), reason="no MPS device here")),
]
CODECS = ("raw8", "dct-cifar10", "latent-cifar10", "hyperlatent")


@contextlib.contextmanager
def foreign_default_device():
    """torch's default device set to ``meta`` for the block (tensors made without a device land there)."""
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device(None)


@pytest.fixture(scope="module")
def edge():
    return create_model("vit-edge-cifar10")


@pytest.fixture(scope="module")
def server():
    return create_model("vit-server-cifar10")


def make_pair(name: str, server):
    """(encoder's codec, decoder) of one codec: a pixel pair on ``server``, a shipped pair, or a hyperlatent pair
    with random weights (its entropy side is what matters here)."""
    if name == "raw8":
        return "raw8", ServerDecoder(server)
    if name == "hyperlatent":
        torch.manual_seed(0)
        codec = HyperLatentCodec(HyperConfig(server_architecture="semcomm_vit_edge_p4_32"))
        pair = HyperLatentPair.from_codec(codec, hint_coder=load_hint("vit-edge-cifar10"), bf16=False)
    elif name == "dct-cifar10":
        pair = create_codec(name, server=server)
    else:
        pair = create_codec(name, bf16=False)
    return pair, ServerDecoder(codec=pair)


def encoder_for(edge, pair, bf16: bool = False):
    pixels = isinstance(pair, str)
    return EdgeEncoder(edge, SpreadTopK(16), gate=Gate("min_entropy", 0.0), codec=pair, bf16=bf16,
                       policy=None if pixels else IAQ(400), hint=None if pixels else load_hint("vit-edge-cifar10"))


def round_trip(encoder, decoder, images):
    sent = encoder.encode(images, generator=0)
    return sent, decoder.classify([s for s in sent.strings if s is not None])


# ---- naming devices ---------------------------------------------------------------------------------------------

def test_devices_are_resolved_and_checked():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(None) == resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert available_devices()[0] == "cpu"
    for bad in ("gpu", "cudaa", "cuda:x", ""):
        with pytest.raises(DeviceError, match="unknown device"):
            resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_where_there_is_none_is_a_clear_error():
    for spec in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(DeviceError, match="no CUDA device.*available: cpu"):
            resolve_device(spec)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_a_cuda_index_beyond_the_machine_is_named():
    with pytest.raises(DeviceError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.parametrize("spec, message", [("cudaa", "unknown device 'cudaa'"), ("tpu", "unknown device 'tpu'")])
def test_the_command_line_refuses_a_bad_device_in_one_line(spec, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "vit-edge-cifar10", "--device", spec, "--limit", "4"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_the_command_line_refuses_cuda_where_there_is_none(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "vit-edge-cifar10", "--device", "cuda", "--limit", "4"])
    assert exit_.value.code == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_evaluate_names_its_device(tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["evaluate", "vit-edge-cifar10", "--device", "cpu", "--limit", "8", "--json", str(out)]) == 0
    assert "models on cpu" in capsys.readouterr().err
    import json

    assert json.loads(out.read_text())["device"] == "cpu"


def test_small_helpers():
    layer = torch.nn.Linear(2, 2)
    assert module_device(layer) == torch.device("cpu") and module_device(torch.nn.ReLU()) == torch.device("cpu")
    t = torch.ones(2)
    assert host(t) is t
    assert as_tensor(t) is t and as_tensor([1, 2], torch.int64).device.type == "cpu"
    assert autocast_dtype("cuda") in (torch.bfloat16, torch.float16) and autocast_dtype("mps") == torch.float16
    with autocast(False):
        assert not torch.is_autocast_enabled("cpu")


# ---- the boundaries, checked without a GPU -------------------------------------------------------------------------

@pytest.mark.parametrize("name", CODECS)
def test_the_codec_path_makes_no_tensor_on_the_default_device(name, edge, server, tiny_images):
    """Strings and logits are the same whatever torch's default device: every tensor follows its inputs or is made
    on the CPU on purpose."""
    pair, decoder = make_pair(name, server)
    encoder = encoder_for(edge, pair)
    sent, logits = round_trip(encoder, decoder, tiny_images)
    with foreign_default_device():
        again, logits_again = round_trip(encoder, decoder, tiny_images)
    assert again.strings == sent.strings
    assert logits_again.device.type == "cpu" and torch.equal(logits_again, logits)


# ---- every available device -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", CODECS)
def test_models_on_a_device_write_strings_the_cpu_reads(device, name, tiny_images):
    """Edge, codec networks and server on ``device``: results come back on the CPU, the strings decode on a CPU
    server, and the logits agree with the CPU's."""
    edge, server = create_model("vit-edge-cifar10"), create_model("vit-server-cifar10")
    pair, decoder = make_pair(name, server)
    cpu_sent, cpu_logits = round_trip(encoder_for(edge, pair), decoder, tiny_images)
    moved = edge.to(device), server.to(device)
    if not isinstance(pair, str):
        pair.to(device)
        assert pair.device.type == device
    sent, logits = round_trip(encoder_for(moved[0], pair), decoder, tiny_images.to(device))
    assert sent.offloaded.device.type == "cpu" and sent.level.device.type == "cpu" and logits.device.type == "cpu"
    read = ServerDecoder(create_model("vit-server-cifar10")) if isinstance(pair, str) else None
    if read is not None:  # the device's strings, read by a server on the CPU
        assert torch.allclose(read.classify([s for s in sent.strings if s is not None]), logits, atol=1e-3)
    if device == "cpu":
        assert sent.strings == cpu_sent.strings and torch.equal(logits, cpu_logits)
    else:  # another device's arithmetic: same predictions, close logits (benchmarks/device_check.py measures it)
        assert torch.allclose(logits, cpu_logits, atol=5e-2)


@pytest.mark.parametrize("name", ["dct-cifar10", "latent-cifar10", "hyperlatent"])
def test_the_entropy_side_ignores_mixed_precision(name, edge, server, tiny_images):
    """Given the same source and levels, strings and decoded values are identical with and without bf16 autocast:
    what selects the entropy coder's tables runs in full precision on the CPU at both ends."""
    pair, _ = make_pair(name, server)
    hidden = edge.forward_with_attention(tiny_images, (-1,), hidden=() if pair.tap is None else (pair.tap,)).hidden
    source = pair.source(tiny_images, hidden.get(pair.tap))
    level = torch.zeros(len(tiny_images), pair.num_patches, dtype=torch.int64)
    level[:, ::3] = 2
    level[:, 1::5] = 4 if pair.levels >= 4 else pair.levels
    strings = pair.compress(source, level)
    with autocast(True):
        assert pair.compress(source, level) == strings
        decoded = pair.decompress(strings)
    for a, b in zip(decoded, pair.decompress(strings)):
        assert torch.equal(a.values, b.values) and torch.equal(a.positions, b.positions)


def test_pixel_strings_do_not_depend_on_the_edge_precision(edge, server, tiny_images):
    """With the same patches chosen, the raw-8 strings of a bf16 edge and an fp32 edge are the same bytes."""
    pixels = EdgeEncoder(edge, TopK(8), gate=None, bf16=False)
    mask = torch.zeros(len(tiny_images), 64, dtype=torch.bool)
    mask[:, :8] = True
    logits = torch.zeros(len(tiny_images), 10)
    fp32 = pixels.transmit(tiny_images, logits, mask).strings
    with autocast(True):
        assert pixels.transmit(tiny_images, logits, mask).strings == fp32


def test_random_draws_are_made_on_the_cpu(tiny_images):
    """Selection draws come from the CPU generator whatever the importance's device: same seed, same patches."""
    from semcomm.edge.selection import random_like

    mask = torch.zeros(3, 64, dtype=torch.bool)
    mask[:, :5] = True
    first = random_like(mask, 7)
    with foreign_default_device():
        assert torch.equal(random_like(mask, 7), first)
    assert np.array_equal(first.sum(1).numpy(), [5, 5, 5])


# ---- links ----------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def latent_sent(edge, tiny_images):
    """The shipped latent pair's strings of the tiny images (every one offloaded), with its source and importance."""
    pair = create_codec("latent-cifar10", bf16=False)
    encoder = EdgeEncoder(edge, SpreadTopK(16), gate=None, codec=pair, hint=pair.hint_coder)
    analysis = encoder.analyze(tiny_images)
    return pair, encoder.encode(tiny_images, analysis=analysis), pair.source(tiny_images, analysis.hidden), \
        analysis.importance["mean"]


def _link_outcomes(pair, sent, source, importance, transport, snr_db):
    from semcomm.transport import over_link

    out = over_link(sent, pair, transport, snr_db, torch.Generator().manual_seed(3), source=source,
                    importance=importance)
    return out.predictions, out.channel_uses


@pytest.mark.parametrize("link", ["packets", "whole", "analog"])
def test_links_make_no_tensor_on_the_default_device(link, latent_sent):
    """Digital links (packets and whole strings over coded 16-QAM on Rayleigh fading) and the analog transport give
    the same predictions and channel uses whatever torch's default device."""
    from channels import AWGN

    from semcomm.rate.packetize import Packetizer, WholeString
    from semcomm.transport import LinkSpec
    from semcomm.transport.analog import AnalogTransport, source_statistics

    pair, sent, source, importance = latent_sent
    if link == "analog":
        mean, variance = source_statistics(source)
        transport, snr = AnalogTransport(AWGN(), "importance", mean, variance), 5.0
    else:
        transport, snr = LinkSpec("rayleigh", modulation=16, code_rate="1/2").transport(8.0)
        framing = (Packetizer(pair, packet_bytes=transport.link.payload_bits // 8) if link == "packets"
                   else WholeString(pair))
        transport = transport.with_framing(framing)
    first = _link_outcomes(pair, sent, source, importance, transport, snr)
    with foreign_default_device():
        again = _link_outcomes(pair, sent, source, importance, transport, snr)
    for a, b in zip(first, again):
        assert b.device.type == "cpu" and torch.equal(a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_a_jscc_pair_on_a_device_draws_the_cpu_channel(device):
    """A JSCC pair's networks on ``device`` and the channel's draws from a CPU generator: the same noise as on
    the CPU, so the logits agree; and nothing is made on the default device."""
    from semcomm.transport.jscc import JSCCCodec, JSCCConfig

    torch.manual_seed(0)
    codec = JSCCCodec(JSCCConfig(HyperConfig(server_architecture="semcomm_vit_edge_p4_32"))).eval()
    generator = torch.Generator().manual_seed(1)
    values = torch.randn(3, 64, codec.config.latent.in_dim, generator=generator)
    sent = torch.zeros(3, 64, dtype=torch.bool)
    sent[:, ::4] = True
    with torch.no_grad():
        cpu = codec(values, sent, 5.0, "block", "estimated", torch.Generator().manual_seed(2)).logits
        with foreign_default_device():
            assert torch.equal(codec(values, sent, 5.0, "block", "estimated",
                                     torch.Generator().manual_seed(2)).logits, cpu)
        codec.to(device)
        moved = codec(values, sent, 5.0, "block", "estimated", torch.Generator().manual_seed(2)).logits
    assert moved.device.type == device and torch.allclose(host(moved), cpu, atol=1e-3)


# ---- backends -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def partitioned_backend():
    """A tiny two-device partitioned backend (random data, a few steps) and images to classify."""
    from backend_helpers import random_positions, tiny_data, tiny_vit

    from semcomm.server.backends import DeviceConfig
    from semcomm.train.backends import build_partitioned

    images, labels = tiny_data()
    devices = {"devices": [{"name": "a", "memory_mb": 0.07}, {"name": "b", "memory_mb": 0.07}]}
    build = build_partitioned(tiny_vit(), DeviceConfig.from_dict(devices), images, labels, fusion_steps=1,
                              batch_size=16, generator=0)
    return build.backend, images[:6], random_positions(6, 8)


@pytest.mark.parametrize("device", DEVICES)
def test_a_backend_on_a_device_answers_on_the_host(device, partitioned_backend):
    """Sub-models and fusion moved to ``device``: the logits come back on the CPU and agree with the CPU's; nothing
    is made on the default device."""
    import copy

    backend, images, positions = partitioned_backend
    cpu = backend.classify(images, positions)
    with foreign_default_device():
        assert torch.equal(backend.classify(images, positions), cpu)
    moved = copy.deepcopy(backend).to(device)
    logits = moved.classify(images.to(device), positions)
    assert logits.device.type == "cpu" and torch.allclose(logits, cpu, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_an_image_codec_moves_its_server_and_classifies_on_the_host(device, tiny_images):
    """An image codec's server (a private attribute, so not moved by Codec.to) moves with the codec; the files are
    the CPU's, the logits come back on the CPU and agree with the CPU's."""
    codec = ImageCodec("webp", 40, server=create_model("vit-server-cifar10"))
    decoded, _ = codec.roundtrip(tiny_images)
    cpu_logits = codec.classify(decoded)
    assert codec.to(device) is codec and codec.device.type == device
    logits = codec.classify(decoded)
    assert logits.device.type == "cpu" and torch.allclose(logits, cpu_logits, atol=5e-2 if device != "cpu" else 0)
    assert ImageCodec("jpeg", 50).to(device).device.type == "cpu"  # nothing to move without a server


def test_autocast_in_force_is_entered_again_as_it_was():
    """What a backend engine hands its devices: the caller's autocast per device type, entered again elsewhere."""
    from semcomm.core.devices import autocast_as, autocast_in_force

    assert autocast_in_force() == {}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        caught = autocast_in_force()
    assert caught == {"cpu": torch.bfloat16}
    with autocast_as(caught):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16), autocast_as({}):
        assert not torch.is_autocast_enabled("cpu")
