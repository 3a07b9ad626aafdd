"""Hostile input on the wire, as standing properties: strings of every shipped pair and of raw8, and packets,
damaged every way a link or an adversary can; a documented error or a flagged loss, never bytes that were not
sent decoded as if they had been, never another exception, never a hang (each decode or join runs under a
10-second alarm). The properties are those of ``benchmarks/hostile_wire.py``, which runs them on many more
cases (every single-bit flip, every truncation, 20,000 random strings; BENCHMARKS.md, "Hostile input").
Derandomized, so that a CRC-16's 2^-16 chance of missing a random error can never make a run flaky.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semcomm.models import create_model
from semcomm.rate import list_codecs
from semcomm.rate.packetize import Packetizer

_path = Path(__file__).parents[1] / "benchmarks" / "hostile_wire.py"
_spec = importlib.util.spec_from_file_location("hostile_wire", _path)
hw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hw)

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True)
VERSION_2 = [label for label, *_ in hw.FAMILIES if label != "raw8"]


@pytest.fixture(scope="module")
def families(cifar_test):
    """label -> (pair, its strings, what they decode to), for every family of shipped strings (6 images)."""
    fams = hw.families(cifar_test.images[:6], create_model("vit-edge-cifar10"))
    return {label: (pair, strings, pair.decompress(strings)) for label, (pair, strings) in fams.items()}


@pytest.fixture(scope="module")
def packets(families):
    """label -> (packetizer, each image's packets, what each string decodes to) for every packet setting."""
    out = {}
    for label, size, copies in hw.PACKETS:
        pair, strings, sent = families[label]
        packetizer = Packetizer(pair, packet_bytes=size, header_copies=copies)
        out[label] = (packetizer, [packetizer.split(s) for s in strings], sent)
    return out


def test_the_families_cover_every_shipped_pair():
    """A registered pair is in :data:`FAMILIES` or ships no weights to build it from (not shipped yet)."""
    covered = {name for _, name, *_ in hw.FAMILIES}
    for name in set(list_codecs()) - covered:
        with pytest.raises(KeyError, match="no .*pair named"):
            hw.create_codec(name)


def _string(families, data, labels):
    label = data.draw(st.sampled_from(labels))
    pair, strings, sent = families[label]
    i = data.draw(st.integers(0, len(strings) - 1))
    return pair, strings[i], sent[i]


# ---- strings: version 2 (every shipped pair) -----------------------------------------------------------
@SETTINGS
@given(data=st.data())
def test_bit_flips_are_refused(families, data):
    pair, string, sent = _string(families, data, VERSION_2)
    bits = data.draw(st.lists(st.integers(0, 8 * len(string) - 1), min_size=1, max_size=24, unique=True))
    assert hw.string_verdict(pair, hw.flip(string, bits), [sent]) == hw.REFUSED


@SETTINGS
@given(data=st.data())
def test_bursts_are_refused(families, data):
    pair, string, sent = _string(families, data, VERSION_2)
    width = data.draw(st.integers(2, 16))
    start = data.draw(st.integers(0, 8 * len(string) - width))
    damaged = hw.burst(string, start, width, data.draw(st.integers(0, (1 << 14) - 1)))
    assert hw.string_verdict(pair, damaged, [sent]) == hw.REFUSED


@SETTINGS
@given(data=st.data())
def test_truncations_are_refused(families, data):
    pair, string, sent = _string(families, data, [*VERSION_2, "raw8"])
    assert hw.string_verdict(pair, string[: data.draw(st.integers(0, len(string) - 1))], [sent]) == hw.REFUSED


@SETTINGS
@given(data=st.data(), noise=st.binary(min_size=16, max_size=16))
def test_appends_are_refused(families, data, noise):
    """1..16 bytes after a string: zeros (a CRC-16 without final XOR stays valid), random, or chosen to keep
    the CRC-16 valid; the rANS payload must be consumed exactly, a raw one has its fixed length."""
    pair, string, sent = _string(families, data, [*VERSION_2, "raw8"])
    for n in range(1, 17):
        crc_valid = hw.crc_append(string, noise[: n - 2]) if n >= 2 else string + noise[:1]
        for damaged in (string + bytes(n), string + noise[:n], crc_valid):
            assert hw.string_verdict(pair, damaged, [sent]) == hw.REFUSED


@SETTINGS
@given(data=st.data())
def test_splices_of_two_strings_are_refused_or_one_of_them(families, data):
    label = data.draw(st.sampled_from(VERSION_2))
    pair, strings, sent = families[label]
    i, j = (data.draw(st.integers(0, len(strings) - 1)) for _ in range(2))
    a, b = data.draw(st.integers(0, len(strings[i]))), data.draw(st.integers(0, len(strings[j])))
    assert hw.string_verdict(pair, strings[i][:a] + strings[j][b:], [sent[i], sent[j]]) != hw.SILENT


@SETTINGS
@given(data=st.data(), noise=st.binary(max_size=400))
def test_random_strings_are_refused(families, data, noise):
    pair, string, _ = _string(families, data, VERSION_2)
    for candidate in (noise, string[:1] + noise):  # the second claims the pair's version and codec id
        assert hw.string_verdict(pair, candidate, []) == hw.REFUSED


# ---- strings: version 1 (raw8: no CRC, by design) --------------------------------------------------------
@SETTINGS
@given(data=st.data())
def test_raw8_refuses_a_changed_header_and_raises_nothing_else(families, data):
    """Version 1 carries no CRC (FORMAT.md): a flip in its positions or pixels is not detectable, and decodes
    to exactly the flipped bytes. Its 3-byte header (version, mode, reserved bits, count) is checked against
    the length, so every flip there is refused; no flip raises anything but BitstreamError."""
    pair, string, sent = _string(families, data, ["raw8"])
    bit = data.draw(st.integers(0, 8 * len(string) - 1))
    verdict = hw.string_verdict(pair, hw.flip(string, [bit]), [sent])
    assert verdict == hw.REFUSED if bit < 24 else verdict in (hw.REFUSED, hw.SILENT)


# ---- packets (version 3) -----------------------------------------------------------------------------------
def _image(packets, data):
    label = data.draw(st.sampled_from(sorted(packets)))
    packetizer, cut, sent = packets[label]
    i = data.draw(st.integers(0, len(cut) - 1))
    return packetizer, cut, sent, i


@SETTINGS
@given(data=st.data())
def test_dropped_packets_are_flagged(packets, data):
    packetizer, cut, sent, i = _image(packets, data)
    kept = [None if data.draw(st.booleans()) else p for p in cut[i]]
    assert hw.arrival_verdict(packetizer, kept, sent[i]) in (hw.AS_SENT, hw.FLAGGED)


@SETTINGS
@given(data=st.data())
def test_duplicated_and_reordered_packets_arrive_as_sent(packets, data):
    packetizer, cut, sent, i = _image(packets, data)
    extra = data.draw(st.lists(st.sampled_from(cut[i]), max_size=4))
    shuffled = data.draw(st.permutations(cut[i] + extra))
    assert hw.arrival_verdict(packetizer, shuffled, sent[i]) == hw.AS_SENT


@SETTINGS
@given(data=st.data())
def test_damaged_packets_are_flagged(packets, data):
    packetizer, cut, sent, i = _image(packets, data)
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = hw.np.random.default_rng(seed)
    damaged = [hw.damage_packet(p, rng) if data.draw(st.booleans()) else p for p in cut[i]]
    assert hw.arrival_verdict(packetizer, damaged, sent[i]) in (hw.AS_SENT, hw.FLAGGED)


@SETTINGS
@given(data=st.data())
def test_another_images_packets_are_refused(packets, data):
    """A packet of each of 1..3 other images (same pair and packet size, or another codec) among an image's
    own, some of which are lost: what arrives is this image's, as sent, or flagged lost; never another
    image's patches. (A join takes the identity most of its packets carry: more packets of one other image
    than of its own would be taken for that image, which the packets alone cannot tell apart.)"""
    packetizer, cut, sent, i = _image(packets, data)
    others = [other for j, other in enumerate(cut) if j != i]
    others += [cut_[0] for packetizer_, cut_, _ in packets.values() if packetizer_ is not packetizer]
    chosen = data.draw(st.lists(st.sampled_from(range(len(others))), min_size=1, max_size=3, unique=True))
    injected = [data.draw(st.sampled_from(others[j])) for j in chosen]
    own = [None if data.draw(st.integers(0, 3)) == 0 else p for p in cut[i]]
    arrived = data.draw(st.permutations(own + injected))
    assert hw.arrival_verdict(packetizer, arrived, sent[i]) in (hw.AS_SENT, hw.FLAGGED)
