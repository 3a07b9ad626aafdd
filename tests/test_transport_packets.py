"""Packets: an image cut into a protected header and independently decodable data packets (from the
codec's symbols, as the link path does with those the edge kept, or from a finished v2 string: the same
bytes); lost or corrupted packets cost their patches, never raise; carried over digital links chosen by name."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from channels import AWGN, BSC, DigitalLink, FlatFading, Uncoded
from semcomm import create_model
from semcomm.edge.encoder import EdgeEncoder, collaborative_predictions
from semcomm.edge.gating import Gate
from semcomm.edge.selection import SpreadTopK
from semcomm.rate import create_codec
from semcomm.rate import framed, packetize
from semcomm.rate.packetize import Packetizer, WholeString
from semcomm.rate.policies import IAQ, FixedLevel
from semcomm.rate.zoo import load_hint
from semcomm.server.decoder import ServerDecoder
from semcomm.transport.digital import DigitalTransport
from semcomm.transport.links import CHANNELS, SNR, LinkSpec
from semcomm.transport.over_link import over_link
from semcomm.wire import packets as v3
from semcomm.wire import v2
from semcomm.wire.errors import BitstreamError


def decode(pair, string):
    return pair.decompress([string])[0]


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


@pytest.mark.parametrize("codec", ["latent-cifar10", "dct-cifar10"])
def test_packets_cut_from_the_symbols_are_those_of_the_finished_string(cifar_test, codec):
    """The rate stage cuts packets from the codec's symbols before rANS coding; a finished string, its
    payload decoded back to the same symbols, gives the very same bytes (mixed levels, with the hint)."""
    edge, pair, hint = create_model("vit-edge-cifar10"), create_codec(codec), load_hint("vit-edge-cifar10")
    images = cifar_test.images[:12]
    encoder = EdgeEncoder(edge, SpreadTopK(24), gate=None, codec=pair, policy=IAQ(600, min_level=1), hint=hint)
    analysis = encoder.analyze(images)
    sent = encoder.encode(images, analysis=analysis)
    assert len({int(m) for m in sent.level[sent.level > 0]}) > 1  # several levels in play
    source = pair.source(images, analysis.hidden)
    symbols = hint.symbols(analysis.logits)
    for size, copies in ((40, 2), (64, 1)):
        packetizer = Packetizer(pair, packet_bytes=size, header_copies=copies)
        cut = packetizer.compress(source, sent.level, symbols)
        assert cut == [packetizer.split(s) for s in sent.strings]
        assert cut == [packetizer.split(s) for s in pair.compress(source, sent.level, symbols)]
    assert WholeString(pair).compress(source, sent.level, symbols) == [[s] for s in sent.strings]


def test_the_packet_format_round_trips_and_names_what_is_wrong(sent):
    pair, strings = sent
    layout, coder = pair.layout, pair.hint_coder
    header = v3.HeaderPacket([0, 3, 0, 2] + [0] * 60, (1,), torch.tensor([0, 2, 1, 2, 2, 2, 0, 2, 2, 2]), 5,
                             identity=0xBEEF)
    packed = v3.pack_header(layout, header, coder)
    back = v3.unpack(packed, layout, coder, classes=10)
    assert back.level == header.level and back.params == (1,) and back.packets == 5 and back.identity == 0xBEEF
    assert torch.equal(back.hint, header.hint)
    data = v3.DataPacket(number=4, first=1, count=1, state_code=0, payload=bytes([0x80, 1, 2, 3]), identity=0xBEEF)
    packet = v3.pack_data(layout, data)
    assert v3.unpack(packet, layout) == data
    for sealed in (packed, packet):  # every packet: version 3, its kind, codec id 3, then the identity
        assert int.from_bytes(sealed[:4], "big") >> 7 == (3 << 21) | ((sealed is packed) << 20) | (3 << 16) | 0xBEEF
    assert len(packet) == v3.data_overhead_bytes(layout) + len(data.payload)  # 9 + 16 + 18 + 3 bits: 6 bytes, CRC
    other = v3.pack_data(type(layout)(codec_id=(layout.codec_id + 1) % 16, num_patches=64, levels=5), data)
    flipped = packet[:-1] + bytes([packet[-1] ^ 1])
    for bad, message in ((None, "missing: no packet"), (packet[:2], "truncated"), (flipped, "CRC"),
                         (strings[0], "format version 2"), (other, "codec id"), (b"", "truncated")):
        with pytest.raises(BitstreamError, match=message):
            v3.unpack(bad, layout)
    with pytest.raises(TypeError, match="a packet must be bytes-like"):
        v3.unpack("not bytes", layout)
    assert v3.unpack(memoryview(packet), layout) == v3.unpack(bytearray(packet), layout) == data
    assert v3.string_identity(strings[0]) == int.from_bytes(strings[0][-2:], "big")


def test_channels_are_chosen_by_name_and_a_user_can_register_one():
    assert CHANNELS.names() == sorted(["ideal", "awgn", "rayleigh", "rayleigh-fast", "bsc", "bec", "gilbert-elliott",
                                       "awgn-capacity", "rayleigh-capacity"])
    assert LinkSpec("bsc").label == "bsc LDPC(648, 1/2)" and LinkSpec("bsc").condition_name == "crossover probability"
    assert LinkSpec("rayleigh", modulation=16).label == "rayleigh 16-QAM LDPC(648, 1/2)"
    transport, snr = LinkSpec("gilbert-elliott").transport(0.1)
    assert snr is None and transport.ideal and transport.erasures is not None
    with pytest.raises(ValueError, match="unknown channel 'rician'; choose from awgn, awgn-capacity, bec, bsc, "):
        LinkSpec("rician")
    with pytest.raises(ValueError, match=r"needs an SNR channel \(awgn, rayleigh, rayleigh-fast\)"):
        LinkSpec("bsc", adaptive=True)
    with pytest.raises(ValueError, match="crossover probability must be a probability"):
        LinkSpec("bsc").transport(1.5)

    @CHANNELS.register("test-rician", condition=SNR)
    def rician(spec, snr_db):
        return DigitalTransport(spec.digital_link(FlatFading("rician", k_factor=3.0, coherence=None, csi=spec.csi)))

    try:
        transport, snr = LinkSpec("test-rician", modulation=16).transport(12.0)
        assert snr == 12.0 and isinstance(transport.link.channel, FlatFading)
        assert transport.link.constellation.order == 16 and LinkSpec("test-rician").condition_name == "SNR (dB)"
        with pytest.raises(ValueError, match="SNR must be a finite number"):
            LinkSpec("test-rician").transport(None)
    finally:  # leave the registry as the library has it
        CHANNELS._entries.pop("test-rician")
        CHANNELS._info.pop("test-rician")


def test_all_packets_arrive_and_decode_to_the_string(sent):
    pair, strings = sent
    packetizer = Packetizer(pair, packet_bytes=48, header_copies=2)
    for string in strings:
        packets = packetizer.split(string)
        assert all(len(p) <= 48 for p in packets[2:]) and packets[0] == packets[1]
        assert len(packets) > 3  # the string needed several data packets
        arrival = packetizer.join(packets)
        whole = decode(pair, string)
        assert arrival.packets_lost == 0 and len(arrival.missing) == 0
        assert torch.equal(arrival.received.positions, whole.positions)
        assert torch.equal(arrival.received.level, whole.level)
        assert torch.equal(arrival.received.hint, whole.hint)
        torch.testing.assert_close(arrival.received.values, whole.values)


def test_a_lost_data_packet_costs_exactly_its_patches(sent):
    pair, strings = sent
    packetizer = Packetizer(pair, packet_bytes=48)
    packets = packetizer.split(strings[0])
    whole = decode(pair, strings[0])
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


def test_another_images_packets_are_refused(sent):
    """Every packet of every other image, injected among an image's packets or in place of one of them
    (992 trials per placement), is refused: what arrives is exactly this image's, each refused packet is
    counted lost, and nothing of the other image is taken."""
    pair, strings = sent
    packetizer = Packetizer(pair, packet_bytes=48, header_copies=2)
    cut = [packetizer.split(s) for s in strings[:8]]
    full = [packetizer.join(packets).received for packets in cut]
    assert len({v3.string_identity(s) for s in strings[:8]}) == 8  # eight different identities
    trials = 0
    for i, packets in enumerate(cut):
        for j, others in enumerate(cut):
            for foreign in others if i != j else ():
                spot = trials % len(packets)
                for arrived in (packets[:spot] + [foreign] + packets[spot:],  # among them, in place of one
                                packets[:spot] + [foreign] + packets[spot + 1 :]):
                    arrival = packetizer.join(arrived)
                    assert arrival.packets_lost == 1 and not arrival.header_lost  # the foreign packet
                    got, whole = arrival.received, full[i]
                    rows = torch.isin(whole.positions, got.positions)
                    assert torch.equal(got.values, whole.values[rows]) and torch.equal(got.level, whole.level[rows])
                    assert len(got.positions) + len(arrival.missing) == len(whole.positions)
                trials += 1
    assert trials > 300


def test_a_join_that_lost_every_header_counts_every_sent_patch_missing(sent):
    pair, strings = sent
    packetizer = Packetizer(pair, packet_bytes=48, header_copies=2)
    for string in strings[:4]:
        packets, k = packetizer.split(string), len(decode(pair, string).positions)
        for arrived in ([None, None] + packets[2:], [None] * len(packets), packets[2:]):
            arrival = packetizer.join(arrived)
            assert arrival.received is None and arrival.header_lost and arrival.patches_missing(k) == k
        data_lost = packetizer.join(packets[:2] + [None] * (len(packets) - 2))  # the header names the positions
        assert data_lost.received is None and not data_lost.header_lost and data_lost.patches_missing(k) == k
        assert torch.equal(data_lost.missing, decode(pair, string).positions)
        one_lost = packetizer.join(packets[:-1] + [None])
        assert 0 < one_lost.patches_missing(k) == len(one_lost.missing) < k
        lost_whole = WholeString(pair).join([string[:-1]])
        assert lost_whole.header_lost and lost_whole.patches_missing(k) == k


def test_over_link_counts_every_patch_of_an_image_whose_headers_were_lost(cifar_test):
    """``patches_missing`` counts every sent patch that did not reach the server: those of lost data
    packets, and all of an image whose every header copy was lost (its positions unknown to the server)."""
    edge, pair = create_model("vit-edge-cifar10"), create_codec("latent-cifar10")
    encoder = EdgeEncoder(edge, SpreadTopK(32), gate=None, codec=pair, policy=FixedLevel(3))
    sent = encoder.encode(cifar_test.images[:48])
    packetizer = Packetizer(pair, packet_bytes=32, header_copies=1)
    link = DigitalTransport(DigitalLink(Uncoded(256), channel=BSC(0.003), crc="crc16"), framing=packetizer)
    out = over_link(sent, pair, link, generator=torch.Generator().manual_seed(0))
    carried = link.carry(sent, pair, generator=torch.Generator().manual_seed(0))
    arrived = sum(0 if r is None else len(r.positions) for r in carried.received)
    headers_lost = sum(packetizer.join(d).header_lost for d in _deliveries(link, sent, packetizer))
    assert 0 < headers_lost < out.images_lost  # others lost every data packet, a header arriving
    assert out.patches_missing == int((sent.level > 0).sum()) - arrived


def _deliveries(link, sent, packetizer) -> list:
    """The packets ``link`` delivers of each of ``sent``'s images, with the seed over_link used above."""
    packets = [packetizer.split(s) for s in sent.strings if s is not None]
    return link.send(packets, generator=torch.Generator().manual_seed(0)).packets


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
        sent_positions = set(decode(pair, string).positions.tolist())
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
    return pair.compress(torch.randn(1, 64, pair.values_per_patch, generator=torch.Generator().manual_seed(0)) * 40,
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
        torch.testing.assert_close(packetizer.join(arrived).received.values, decode(pair, string).values)
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
    clean = over_link(sent, pair, DigitalTransport(DigitalLink(Uncoded(256), channel=BSC(0.0), crc=None),
                                                   framing=packetizer))
    assert torch.equal(clean.predictions, direct) and clean.packets_lost == 0 and clean.images_lost == 0
    assert (clean.link_bits >= sent.bits).all() and (clean.channel_uses[~sent.offloaded] == 0).all()
    noisy = over_link(sent, pair, DigitalTransport(DigitalLink(Uncoded(256), channel=BSC(0.05), crc="crc16"),
                                                   framing=packetizer), generator=torch.Generator().manual_seed(0))
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
    intact[sent.offloaded] = pair.classify([decode(pair, s) for s in sent.strings if s])
    link = DigitalTransport(DigitalLink(Uncoded(256), channel=BSC(0.002), crc="crc16"))
    runs = [over_link(sent, pair, link.with_framing(Packetizer(pair, packet_bytes=32)),
                      generator=torch.Generator().manual_seed(3), min_arrived=0.5, intact_logits=logits)
            for logits in (None, intact)]
    assert 0 < runs[0].packets_lost < runs[0].packets_sent  # some images intact, some not
    for name in ("predictions", "link_bits", "channel_uses", "lost"):
        assert torch.equal(getattr(runs[0], name), getattr(runs[1], name)), name
    for name in ("packets_lost", "packets_sent", "images_lost", "patches_missing"):
        assert getattr(runs[0], name) == getattr(runs[1], name), name
    with pytest.raises(ValueError, match="intact_logits must be B x C"):
        over_link(sent, pair, link.with_framing(Packetizer(pair)), intact_logits=intact[:10])
    with pytest.raises(ValueError, match="give it a framing"):
        over_link(sent, pair, link)
    with pytest.raises(ValueError, match="the framing cuts strings of codec pair dct, not of latent"):
        over_link(sent, pair, link.with_framing(Packetizer(create_codec("dct-cifar10"))))
    assert link.framing is None  # with_framing copies


def test_the_link_cuts_packets_from_the_symbols_the_edge_kept_without_decoding(cifar_test, monkeypatch):
    """The link path sends exactly the packets of the finished strings (split), cut from the symbols the
    edge kept: no string is parsed, no payload rANS-decoded on the way (the server's join decodes what
    arrives). Strings that come without their symbols (read from disk) are split from the string."""
    edge, pair = create_model("vit-edge-cifar10"), create_codec("latent-cifar10")
    encoder = EdgeEncoder(edge, SpreadTopK(24), gate=Gate("min_entropy", 0.4), codec=pair,
                          policy=IAQ(600, min_level=1), hint=load_hint("vit-edge-cifar10"))
    sent = encoder.encode(cifar_test.images[:40])
    assert 0 < int(sent.offloaded.sum()) < 40  # some answered at the edge: no string, no frame
    assert [f is None for f in sent.frames] == [s is None for s in sent.strings]
    link = DigitalTransport(DigitalLink(Uncoded(256), channel=BSC(0.0), crc=None))
    read_back = dataclasses.replace(sent, frames=None)
    for framing in (Packetizer(pair, packet_bytes=40, header_copies=2), WholeString(pair)):
        expected = [framing.split(s) for s in sent.strings if s is not None]
        with monkeypatch.context() as patched:
            sends = _record_sends(patched)
            for module, name in ((packetize, "rans_decode"), (framed, "rans_decode"), (v2, "unpack")):
                patched.setattr(module, name, _refuse(name))
            fresh = link.with_framing(framing).carry(sent, pair, decode_intact=False)
        assert sends == [expected] and fresh.intact.all() and fresh.received == [None] * len(expected)
        with monkeypatch.context() as patched:
            sends = _record_sends(patched)
            carried = [link.with_framing(framing).carry(t, pair) for t in (sent, read_back)]
        assert sends == [expected, expected]
        assert torch.equal(carried[0].link_bits, carried[1].link_bits)
        for a, b in zip(carried[0].received, carried[1].received):
            assert torch.equal(a.positions, b.positions) and torch.equal(a.values, b.values)
    first = int(sent.offloaded.nonzero()[0])
    with pytest.raises(ValueError, match=r"the symbols are of codec id 3; this packetizer cuts dct \(codec id 2\)"):
        Packetizer(create_codec("dct-cifar10")).split(sent.strings[first], sent.frames[first])


def _record_sends(patched) -> list:
    """The packets every DigitalTransport.send is given, from now until ``patched`` is undone."""
    sends, send = [], DigitalTransport.send

    def recorded(self, packets, **kwargs):
        sends.append(packets)
        return send(self, packets, **kwargs)

    patched.setattr(DigitalTransport, "send", recorded)
    return sends


def _refuse(name: str):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{name} called on the link path of fresh transmissions")
    return refuse


def test_the_whole_string_arrives_whole_or_not_at_all(sent):
    pair, strings = sent
    framing = WholeString(pair)
    for string in strings[:4]:
        (packet,) = framing.split(string)
        assert packet == string  # not one bit added
        arrival, whole = framing.join([packet]), decode(pair, string)
        assert arrival.packets_lost == 0 and torch.equal(arrival.received.positions, whole.positions)
        torch.testing.assert_close(arrival.received.values, whole.values)
        for damaged in ([None], [packet[: len(packet) // 2]], [bytes([packet[0] ^ 0x40]) + packet[1:]], []):
            arrival = framing.join(damaged)
            assert arrival.received is None and arrival.packets_lost == 1 and len(arrival.missing) == 0


# ---- separate source-channel coding at capacity ---------------------------------------------------------------
def test_capacity_links_deliver_everything_at_the_closed_form_cost(sent):
    """AWGN: ceil(bits / log2(1 + snr)); Rayleigh: the ergodic capacity, checked against Monte Carlo."""
    import math

    import numpy as np

    pair, strings = sent
    packets = [WholeString(pair).split(s) for s in strings[:6]]
    bits = torch.tensor([sum(8 * len(p) for p in image) for image in packets], dtype=torch.float64)
    for snr in (-5.0, 0.0, 7.5):
        transport, snr_db = LinkSpec("awgn-capacity").transport(snr)
        delivery = transport.send(packets, snr_db)
        assert delivery.packets == packets
        assert torch.equal(delivery.channel_uses, torch.ceil(bits / math.log2(1 + 10 ** (snr / 10))).long())
        fading, _ = LinkSpec("rayleigh-capacity").transport(snr)
        gains = np.random.default_rng(0).exponential(size=1_000_000)
        samples = np.log2(1 + gains * 10 ** (snr / 10))
        error = 4 * samples.std() / math.sqrt(len(samples))
        assert abs(fading.capacity(snr) - samples.mean()) < error
        assert (fading.send(packets, snr).channel_uses >= delivery.channel_uses).all()  # fading costs more
    assert "capacity-achieving" in LinkSpec("awgn-capacity").label
    with pytest.raises(ValueError, match="does not apply"):
        LinkSpec("awgn-capacity", adaptive=True)
    with pytest.raises(ValueError, match="finite Es/N0"):
        transport.send(packets, None)


def test_over_a_capacity_link_the_predictions_are_the_ideal_links(cifar_test):
    edge, pair = create_model("vit-edge-cifar10"), create_codec("latent-cifar10")
    encoder = EdgeEncoder(edge, SpreadTopK(16), gate=Gate("min_entropy", 0.6), codec=pair,
                          hint=load_hint("vit-edge-cifar10"))
    transmission = encoder.encode(cifar_test.images[:32])
    outcomes = {}
    for channel in ("ideal", "awgn-capacity"):
        transport, snr = LinkSpec(channel).transport(None if channel == "ideal" else 2.0)
        outcomes[channel] = over_link(transmission, pair, transport.with_framing(WholeString(pair)), snr)
    assert torch.equal(outcomes["ideal"].predictions, outcomes["awgn-capacity"].predictions)
    assert outcomes["awgn-capacity"].images_lost == 0
    offloaded = transmission.offloaded
    assert (outcomes["awgn-capacity"].channel_uses[offloaded] < outcomes["ideal"].channel_uses[offloaded]).all()
