"""The exact bytes on the wire, pinned (as CompressAI's tests pin the md5 of known strings).

Written before the stage-3 move of the house (main at d4aa867) and run there to obtain the digests:
a refactor that changes one bit of a version-1, version-2 (every shipped pair, with and without the
hint, fixed levels and IAQ), version-3 (packets) string, an image codec's file or the analog side
information fails here. A deliberate format change updates a digest and says so in FORMAT.md.
"""
from __future__ import annotations

import hashlib

import pytest
import torch

from semcomm.edge.encoder import EdgeEncoder
from semcomm.edge.selection import SpreadTopK, TopK
from semcomm.models import create_model
from semcomm.rate import create_codec
from semcomm.rate.packetize import Packetizer
from semcomm.rate.policies import IAQ, FixedLevel
from semcomm.rate.zoo import load_hint
from semcomm.wire.side_info import SideInfo, pack_side_info

DIGESTS = {
    "v1 spread-top-k 16": "3ab48834a496fde4198b61e1640109a0cbd7519c3cb61efa36f0e03872736ef9",
    "v1 top-k 40": "dd6396c539bf6a2a17ea1ab3bafe8434e8a7fa0e5ddca2f8b7dfef1362331b66",
    "v2 latent-cifar10 L2": "252efcf4398be70c3400c59e57387282dbb470b7f807c9adf7913818e77e11ee",
    "v2 latent-cifar10 IAQ 400 hint": "dceb442200c811b12256b2775356f9ee4aff5d7fbe1746a2226d2a98a8819ed6",
    "v2 dct-cifar10 L3 hint": "8f7c07582547b1c9033d238dfbe242489f112f7bacba7d081307b3beda66d597",
    "v2 dct-cifar10 IAQ 600": "ef42b2e11495a0cd14861fd8878f7d927431fb580ec6db7c51e46165356f235e",
    "v2 pixel-iaq L4 hint": "dccc6081d47752b467fb4794dde00575ce390f3d3728917972d61cfe80959abf",
    "v2 pixel-iaq IAQ 900": "57ca084a84b8d3305360aa010cc58f6379c6f0ff69d31710bea09b952fc3add1",
    # issue 25: every packet carries the image identity (16 bits after the codec id; FORMAT.md, version 3)
    "v3 latent-cifar10 packets 48 x2": "fedd895de21303aab5250da1852b7e5fe4e585e900e33f1e9ac50f49b300cbb4",
    "v3 dct-cifar10 packets 64 x1": "f653c7df2b006f8fa722e0d17de3c9d1c32950569e3c250abb6dcf93c132f182",
    "webp q40": "c6e1ef8d86d8b73e4f7ae5f7801e3d8e916887eea000c04323a796bf1cd319a5",
    "jpeg q50": "d11a30ac53b394c7de72e6644ec4b6bb982d7a8e6cb32b951c4251da80629f5a",
    "analog side information": "deb6b020c5813f8fa0d5e2e8481fc2e2632a931e33c093acd9c2a089033ea81b",
}


def digest(strings) -> str:
    """SHA-256 over the strings, each preceded by its length (so that boundaries count)."""
    h = hashlib.sha256()
    for s in strings:
        h.update(len(s).to_bytes(4, "big") + bytes(s))
    return h.hexdigest()


@pytest.fixture(scope="module")
def images(cifar_test):
    return cifar_test.images[:24]


@pytest.fixture(scope="module")
def edge():
    return create_model("vit-edge-cifar10")


@pytest.fixture(scope="module")
def strings(images, edge):
    """Every pinned family of strings, made with the shipped models and fixed seeds."""
    out = {}
    hint = load_hint("vit-edge-cifar10")
    for name, rule in (("v1 spread-top-k 16", SpreadTopK(16)), ("v1 top-k 40", TopK(40))):
        out[name] = EdgeEncoder(edge, rule, gate=None).encode(images, generator=0).strings
    cases = (("latent-cifar10", "L2", FixedLevel(2), False), ("latent-cifar10", "IAQ 400 hint", IAQ(400), True),
             ("dct-cifar10", "L3 hint", FixedLevel(3), True), ("dct-cifar10", "IAQ 600", IAQ(600), False),
             ("pixel-iaq", "L4 hint", FixedLevel(4), True), ("pixel-iaq", "IAQ 900", IAQ(900), False))
    pairs = {}
    for codec, label, policy, hinted in cases:
        pair = pairs.setdefault(codec, create_codec(codec))
        encoder = EdgeEncoder(edge, SpreadTopK(24), gate=None, codec=pair, policy=policy,
                              hint=hint if hinted else None)
        out[f"v2 {codec} {label}"] = encoder.encode(images, generator=1).strings
    packets = (("latent-cifar10", "latent-cifar10 L2", 48, 2), ("dct-cifar10", "dct-cifar10 L3 hint", 64, 1))
    for codec, source, size, copies in packets:
        packetizer = Packetizer(pairs[codec], packet_bytes=size, header_copies=copies)
        out[f"v3 {codec} packets {size} x{copies}"] = [p for s in out[f"v2 {source}"] for p in packetizer.split(s)]
    from semcomm.rate.image_codecs import ImageCodec

    out["webp q40"] = ImageCodec("webp", 40).compress(images)
    out["jpeg q50"] = ImageCodec("jpeg", 50).compress(images)
    generator = torch.Generator().manual_seed(2)
    side = []
    for i in range(len(images)):
        positions = torch.randperm(64, generator=generator)[: 8 + i].sort().values
        levels = torch.randint(0, 4, (len(positions),), generator=generator)
        info = SideInfo(positions, hint.symbols(edge(images[i : i + 1]))[0] if i % 2 else None, levels, 100 + i)
        data, bits = pack_side_info(info, 64, hint, power_bits=2)
        side.append(data + bits.to_bytes(2, "big"))
    out["analog side information"] = side
    return out


@pytest.mark.parametrize("name", list(DIGESTS))
def test_bytes_are_unchanged(strings, name):
    assert digest(strings[name]) == DIGESTS[name], f"{name}: the bytes on the wire changed"
