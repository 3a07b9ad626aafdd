"""Packets: a v2 string re-packed as a protected header and independently decodable data packets;
lost or corrupted packets cost their patches, never raise."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semcomm import create_model
from semcomm.edge.encoder import EdgeEncoder, collaborative_predictions
from semcomm.server.decoder import ServerDecoder
from semcomm.edge.gating import Gate
from semcomm.rate import create_codec
from semcomm.rate.policies import IAQ, FixedLevel
from semcomm.rate.zoo import load_hint
from semcomm.edge.selection import SpreadTopK
from channels import AWGN, BSC, DigitalLink, Uncoded
from semcomm.transport.digital import DigitalTransport
from semcomm.wire.packets import Packetizer, WholeString
from semcomm.transport.over_link import over_link


@pytest.fixture(scope="module")
def sent(cifar_test):
    """The shipped latent pair's strings (with the hint) for 16 real test images, two policies."""
    edge, pair = create_model("vit-edge-cifar10"), create_codec("latent-cifar10")
    images = cifar_test.images[:16]
    strings = []
    for policy in (FixedLevel(3), IAQ(600, min_level=2)):
        encoder = EdgeEncoder(edge, SpreadTopK(32), gate=None, codec=pair, policy=policy, hint=load_hint("vit-edge-cifar10"))
        strings += encoder.encode(images).strings
    return pair, strings


def test_all_packets_arrive_and_decode_to_the_string(sent):
    pair, strings = sent
    packetizer = Packetizer(pair, packet_bytes=48, header_copies=2)
    for string in strings:
        packets = packetizer.split(string)
        assert all(len(p) <= 48 for p in packets[2:]) and packets[0] == packets[1]
        assert len(packets) > 3  # the string needed several data packets
        arrival = packetizer.join(packets)
        whole = pair.decode(string)
        assert arrival.packets_lost == 0 and len(arrival.missing) == 0
        assert torch.equal(arrival.received.positions, whole.positions)
        assert torch.equal(arrival.received.level, whole.level)
        assert torch.equal(arrival.received.hint, whole.hint)
        torch.testing.assert_close(arrival.received.values, whole.values)


def test_a_lost_data_packet_costs_exactly_its_patches(sent):
    pair, strings = sent
    packetizer = Packetizer(pair, packet_bytes=48)
    packets = packetizer.split(strings[0])
    whole = pair.decode(strings[0])
    full = packetizer.join(packets)
    for lost in range(2, len(packets)):
        arrival = packetizer.join([p if i != lost else None for i, p in enumerate(packets)])
        kept = set(arrival.received.positions.tolist())
        assert kept | set(arrival.missing.tolist()) == set(whole.positions.tolist())
        assert kept.isdisjoint(arrival.missing.tolist()) and len(arrival.missing) > 0 and arrival.packets_lost == 1
        rows = torch.isin(full.received.positions, arrival.received.positions)
        torch.testing.assert_close(arrival.received.values, full.received.values[rows])


def test_losing_every_header_loses_the_image_and_one_copy_is_enough(sent):
    pair, strings = sent
    packetizer = Packetizer(pair, packet_bytes=64, header_copies=3)
    packets = packetizer.split(strings[3])
    assert packetizer.join([None, None, None] + packets[3:]).received is None
    assert packetizer.join([None, None] + packets[2:]).received is not None
    corrupted = bytearray(packets[0])
    corrupted[3] ^= 0x10
    arrival = packetizer.join([bytes(corrupted), None] + packets[2:])  # CRC catches it; the third copy serves
    assert arrival.received is not None and arrival.packets_lost == 2


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_random_losses_and_flips_never_raise(sent, data):
    pair, strings = sent
    packetizer = Packetizer(pair, packet_bytes=40)
    string = strings[data.draw(st.integers(0, len(strings) - 1))]
    packets = packetizer.split(string)
    damaged = []
    for packet in packets:
        action = data.draw(st.sampled_from(["keep", "drop", "flip", "truncate"]))
        if action == "drop":
            damaged.append(None)
        elif action == "flip":
            raw = bytearray(packet)
            bit = data.draw(st.integers(0, 8 * len(raw) - 1))
            raw[bit // 8] ^= 1 << (bit % 8)
            damaged.append(bytes(raw))
        elif action == "truncate":
            damaged.append(packet[: data.draw(st.integers(0, len(packet) - 1))])
        else:
            damaged.append(packet)
    arrival = packetizer.join(damaged)
    if arrival.received is not None:  # CRC-16 catches every single flip and (but for 2^-16) every truncation
        sent_positions = set(pair.decode(string).positions.tolist())
        assert set(arrival.received.positions.tolist()) | set(arrival.missing.tolist()) == sent_positions
        assert torch.isfinite(arrival.received.values).all()
    order = data.draw(st.permutations(range(len(damaged))))
    shuffled = packetizer.join([damaged[i] for i in order])
    assert (shuffled.received is None) == (arrival.received is None)


def test_bad_packet_settings_are_named(sent):
    pair, _ = sent
    with pytest.raises(ValueError, match="smaller than a data packet's fields"):
        Packetizer(pair, packet_bytes=8)
    with pytest.raises(ValueError, match="packet_bytes must be a positive integer"):
        Packetizer(pair, packet_bytes=0)
    with pytest.raises(ValueError, match="header_copies"):
        Packetizer(pair, header_copies=0)
    with pytest.raises(ValueError, match="one patch does not fit"):
        Packetizer(pair, packet_bytes=12).split(_sent_string(pair))
    with pytest.raises(ValueError, match="entropy-coded"):
        Packetizer(create_codec("latent-cifar10", entropy_coding=False))


def _sent_string(pair) -> bytes:
    """Four patches of large latents at the finest level: over 12 bytes each."""
    level = torch.zeros(1, 64, dtype=torch.int64)
    level[0, :4] = 5
    return pair.encode(torch.randn(1, 64, pair.values_per_patch, generator=torch.Generator().manual_seed(0)) * 40,
                       level)[0]


# --- over a digital link of `channels` --------------------------------------------------------------

def test_an_error_free_link_delivers_every_packet_and_counts_channel_uses(sent):
    pair, strings = sent
    packetizer = Packetizer(pair, packet_bytes=64)
    link = DigitalLink(Uncoded(200), channel=BSC(0.0), crc=None)
    packets = [packetizer.split(s) for s in strings[:6]]
    delivery = DigitalTransport(link).send(packets, generator=torch.Generator().manual_seed(0))
    assert delivery.packets == packets
    blocks = torch.tensor([sum(-(-8 * len(p) // 200) for p in image) for image in packets])
    assert torch.equal(delivery.blocks, blocks) and torch.equal(delivery.channel_uses, 200 * blocks)
    for string, arrived in zip(strings, delivery.packets):
        torch.testing.assert_close(packetizer.join(arrived).received.values, pair.decode(string).values)
    chunked = DigitalTransport(link, chunk_blocks=3).send(packets, generator=torch.Generator().manual_seed(0))
    assert chunked.packets == packets and torch.equal(chunked.blocks, blocks)  # chunks only bound memory
    with pytest.raises(ValueError, match="chunk_blocks must be a positive integer"):
        DigitalTransport(link, chunk_blocks=0)


def test_a_noisy_link_loses_packets_and_never_raises(sent):
    """Uncoded QPSK over AWGN at 6 dB (bit error rate Q(sqrt(4)) = 2.3%): the link has no CRC, so
    damaged packets arrive and the packets' own CRC-16 drops them; the same seed gives the same result."""
    pair, strings = sent
    packetizer = Packetizer(pair, packet_bytes=32)
    link = DigitalLink(Uncoded(128), modulation=4, channel=AWGN(), crc=None)
    packets = [packetizer.split(s) for s in strings]
    runs = [DigitalTransport(link).send(packets, snr_db=6.0, generator=torch.Generator().manual_seed(1))
            for _ in range(2)]
    assert runs[0].packets == runs[1].packets
    arrivals = [packetizer.join(arrived) for arrived in runs[0].packets]
    lost = sum(a.packets_lost for a in arrivals)
    total = sum(len(p) for p in packets)
    assert 0.2 * total < lost < total  # 256-bit packets at 2.3% bit errors: most are hit
    assert all(a.received is None or torch.isfinite(a.received.values).all() for a in arrivals)


def test_transport_needs_a_digital_link():
    with pytest.raises(TypeError, match="channels.DigitalLink"):
        DigitalTransport("awgn")


def test_over_an_error_free_link_predictions_are_the_link_less_ones(cifar_test):
    """Gate, packets, an error-free link and the join give exactly the predictions of the strings
    decoded directly; a noisy link lowers accuracy without raising and falls back to the edge."""
    edge, pair = create_model("vit-edge-cifar10"), create_codec("latent-cifar10")
    images, labels = cifar_test.images[:120], cifar_test.labels[:120]
    encoder = EdgeEncoder(edge, SpreadTopK(32), gate=Gate("min_entropy", 0.4), codec=pair, policy=FixedLevel(3),
                          hint=load_hint("vit-edge-cifar10"))
    sent = encoder.encode(images)
    direct = collaborative_predictions(sent, ServerDecoder(codec=pair).classify([s for s in sent.strings if s]))
    packetizer = Packetizer(pair, packet_bytes=64)
    clean = over_link(sent, pair, packetizer, DigitalTransport(DigitalLink(Uncoded(256), channel=BSC(0.0), crc=None)))
    assert torch.equal(clean.predictions, direct) and clean.packets_lost == 0 and clean.images_lost == 0
    assert (clean.link_bits >= sent.bits).all() and (clean.channel_uses[~sent.offloaded] == 0).all()
    noisy = over_link(sent, pair, packetizer, DigitalTransport(DigitalLink(Uncoded(256), channel=BSC(0.05), crc="crc16")),
                      generator=torch.Generator().manual_seed(0))
    assert noisy.packets_lost > 0 and noisy.images_lost > 0
    lost_to_edge = (noisy.predictions == edge(images).argmax(-1)).float().mean()
    assert lost_to_edge >= (direct == edge(images).argmax(-1)).float().mean()
    assert 0 < (noisy.predictions == labels).float().mean() <= 1


def test_reusing_the_logits_of_intact_arrivals_changes_nothing(cifar_test):
    """Given the sent strings' logits, images that arrived intact skip the server: same outcome exactly."""
    edge, pair = create_model("vit-edge-cifar10"), create_codec("latent-cifar10")
    encoder = EdgeEncoder(edge, SpreadTopK(32), gate=Gate("min_entropy", 0.4), codec=pair, policy=FixedLevel(3),
                          hint=load_hint("vit-edge-cifar10"))
    sent = encoder.encode(cifar_test.images[:64])
    intact = torch.full((64, pair.num_classes), float("nan"))
    intact[sent.offloaded] = pair.classify([pair.decode(s) for s in sent.strings if s])
    link = DigitalTransport(DigitalLink(Uncoded(256), channel=BSC(0.002), crc="crc16"))
    runs = [over_link(sent, pair, Packetizer(pair, packet_bytes=32), link, generator=torch.Generator().manual_seed(3),
                      min_arrived=0.5, intact_logits=logits) for logits in (None, intact)]
    assert 0 < runs[0].packets_lost < runs[0].packets_sent  # some images intact, some not
    for name in ("predictions", "link_bits", "channel_uses", "lost"):
        assert torch.equal(getattr(runs[0], name), getattr(runs[1], name)), name
    for name in ("packets_lost", "packets_sent", "images_lost", "patches_missing"):
        assert getattr(runs[0], name) == getattr(runs[1], name), name
    with pytest.raises(ValueError, match="intact_logits must be B x C"):
        over_link(sent, pair, Packetizer(pair), link, intact_logits=intact[:10])


def test_the_whole_string_arrives_whole_or_not_at_all(sent):
    pair, strings = sent
    framing = WholeString(pair)
    for string in strings[:4]:
        (packet,) = framing.split(string)
        assert packet == string  # not one bit added
        arrival, whole = framing.join([packet]), pair.decode(string)
        assert arrival.packets_lost == 0 and torch.equal(arrival.received.positions, whole.positions)
        torch.testing.assert_close(arrival.received.values, whole.values)
        for damaged in ([None], [packet[: len(packet) // 2]], [bytes([packet[0] ^ 0x40]) + packet[1:]], []):
            arrival = framing.join(damaged)
            assert arrival.received is None and arrival.packets_lost == 1 and len(arrival.missing) == 0
