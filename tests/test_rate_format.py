"""Version-2 strings: subset ranks, rANS tables, the framing and CRC, the edge hint, FORMAT.md's example."""
from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semcomm.rate.entropy import SetCosts, SymbolTables, rans_decode, rans_encode
from semcomm.rate.hint import HintCoder, canonical_code, fuse, quantize_log_probs
from semcomm.wire import v2 as fmt
from semcomm.wire.bits import (
    BitReader, BitWriter, pack_fields, subset_bits, subset_rank, subset_unrank, unpack_fields, width_for,
)
from semcomm.wire.errors import BitstreamError

SETTINGS = settings(max_examples=60, deadline=None)
LAYOUT = fmt.Layout(3, 64, 4)
TABLES = SymbolTables.from_pmfs([torch.tensor([0.5, 0.25, 0.125, 0.125]), torch.tensor([0.9, 0.1]),
                                 torch.ones(33)], [-1, 0, -16])


# --- bits and subsets ---------------------------------------------------------------------------

def test_subset_rank_enumerates_every_subset_in_order():
    for n in range(0, 8):
        for k in range(0, n + 1):
            for rank, subset in enumerate(itertools.combinations(range(n), k)):
                assert subset_rank(list(subset), n) == rank
                assert subset_unrank(rank, n, k) == list(subset)
    assert subset_bits(64, 16) == math.ceil(math.log2(math.comb(64, 16))) == 49
    assert subset_bits(64, 64) == 0 and width_for(1) == 0 and width_for(64) == 6 and width_for(65) == 7


def test_subset_rank_out_of_range_is_a_bitstream_error():
    with pytest.raises(BitstreamError, match="out of range"):
        subset_unrank(math.comb(10, 3), 10, 3)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 1 << 40)), max_size=20))
def test_bit_writer_and_reader_round_trip(fields):
    writer = BitWriter()
    fields = [(w, v & ((1 << w) - 1)) for w, v in fields]
    for width, value in fields:
        writer.write(value, width)
    data = writer.to_bytes()
    assert len(data) == math.ceil(writer.bits / 8)
    reader = BitReader(data)
    assert [reader.read(w) for w, _ in fields] == [v for _, v in fields]
    with pytest.raises(BitstreamError, match="truncated"):
        reader.read(reader.remaining + 1)


# --- rANS ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [0, 1, 2, 3, 5, 50, 2000])
def test_rans_round_trip_at_every_length(count):
    rng = np.random.default_rng(count)
    indexes = rng.integers(0, 3, count)
    symbols = np.where(indexes == 0, rng.choice([-1, 0, 1, 2], count), rng.integers(0, 2, count))
    symbols = np.where(indexes == 2, rng.integers(-16, 17, count), symbols)
    if count:
        symbols[0], indexes[0] = 40, 1  # out of range: escape and bypass bits
    code, data = rans_encode(TABLES, symbols, indexes)
    assert rans_decode(TABLES, code, data, indexes) == symbols.tolist()


def test_rans_bits_are_the_estimate_plus_a_fixed_flush():
    """Real bits within 3% of the model's estimate once the coder's per-string flush (about 32 bits
    for the initial state, plus the compacted state's rounding) is set aside; never more than 48 over."""
    rng = np.random.default_rng(0)
    for count in (100, 1000, 10000):
        indexes = rng.integers(0, 2, count)
        symbols = np.where(indexes == 0, rng.choice([-1, 0, 1, 2], count, p=[0.5, 0.25, 0.125, 0.125]),
                           rng.choice([0, 1], count, p=[0.9, 0.1]))
        estimate = TABLES.estimated_bits(symbols, indexes)
        _, data = rans_encode(TABLES, symbols, indexes)
        real = 8 * len(data)
        assert real - 48 <= 1.03 * estimate and real <= estimate + 48, (count, real, estimate)


@pytest.mark.parametrize("value", [-1, -9, 4, 5, 40, 1000, -70000, 2 ** 20])
def test_escaped_values_cost_what_the_coder_writes(value):
    """Out-of-range values go through the escape symbol and 4-bit bypass chunks; the estimate counts them
    exactly, so 300 of them land within the coder's flush (31..39 bits) of it."""
    symbols, indexes = np.full(300, value), np.zeros(300, dtype=np.int64)
    _, data = rans_encode(TABLES, symbols, indexes)
    assert 31 <= 8 * len(data) - TABLES.estimated_bits(symbols, indexes) <= 39.5
    assert abs(8 * len(data) - TABLES.string_bits(symbols, indexes)) <= 4.5


@pytest.mark.parametrize("value", [2 ** 27 + 5, 2 ** 29, -(2 ** 28), 2 ** 40])
def test_values_beyond_the_bypass_range_are_refused_not_looped_on(value):
    """CompressAI's encoder loops forever on a folded escape value of 2^28 or more (its 4-bit group count shifts an
    int32 by 32): rans_encode refuses such a symbol by name, and a string decoding to one (forged bytes) is a
    BitstreamError, where it used to hang the decoder's exactness check."""
    from semcomm.rate.entropy import MAX_BYPASS, check_exact

    symbols, indexes = np.array([0, value, 1]), np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError, match=f"symbol {value} .*beyond what the entropy coder bypasses"):
        rans_encode(TABLES, symbols, indexes)
    with pytest.raises(BitstreamError, match="corrupted"):
        check_exact(TABLES, symbols, indexes, 0, b"\x80\x00\x00\x00")
    top = 2 + (MAX_BYPASS // 2)  # the largest codable value above table 0's range (offset -1, 4 symbols)
    _, data = rans_encode(TABLES, [top], [0])
    assert rans_decode(TABLES, *rans_encode(TABLES, [top], [0]), [0]) == [top] and data


def test_set_costs_price_every_symbol_under_every_set():
    """SetCosts (one gather for all sets) agrees with each set's own cost, escapes and far values included."""
    other = SymbolTables.from_pmfs([torch.tensor([0.1, 0.2, 0.7]), torch.tensor([0.5, 0.5]), torch.ones(5)], [0, -3, 4])
    symbols = torch.tensor([[-1, 0, 2, 3, 40], [-16, 16, 5, 8, -70000]])
    indexes = torch.tensor([[0, 1, 2, 0, 1], [2, 2, 2, 2, 0]])
    expected = torch.stack([TABLES.cost(symbols, indexes), other.cost(symbols, indexes)], -1)
    torch.testing.assert_close(SetCosts([TABLES, other])(symbols, indexes), expected, rtol=1e-6, atol=1e-5)


def test_rans_rejects_malformed_payloads():
    code, data = rans_encode(TABLES, [0, 1, 1], [0, 1, 0])
    with pytest.raises(BitstreamError, match="rANS payload"):
        rans_decode(TABLES, code, data[:-1], [0, 1, 0])
    with pytest.raises(BitstreamError):
        rans_decode(TABLES, code, data, [0, 1, 7])
    with pytest.raises(BitstreamError, match="no symbols"):
        rans_decode(TABLES, 0, b"\x01", [])


@pytest.mark.parametrize("count", [1, 3, 50, 2000])
def test_rans_refuses_any_bytes_beyond_what_its_symbols_code_to(count):
    """The compiled decoder reads only the words it needs: words appended (zeros or not), or a state stored
    in more bytes than it takes, would decode to the same symbols. Only the encoder's exact bytes pass."""
    rng = np.random.default_rng(count)
    indexes = rng.integers(0, 3, count)
    symbols = np.where(indexes == 1, rng.integers(0, 2, count), rng.integers(-1, 3, count))
    code, data = rans_encode(TABLES, symbols, indexes)
    assert rans_decode(TABLES, code, data, indexes) == symbols.tolist()
    for extra in (bytes(4), bytes(8), bytes(16), rng.integers(0, 256, 12).astype(np.uint8).tobytes()):
        with pytest.raises(BitstreamError, match="not the one its symbols code to"):
            rans_decode(TABLES, code, data + extra, indexes)
    if code < 4:  # the same state in one byte more (a leading zero), the words unchanged
        state = code + 4
        with pytest.raises(BitstreamError, match="not the one its symbols code to"):
            rans_decode(TABLES, code + 1, bytes(1) + data[:state] + data[state:], indexes)


def test_tables_survive_their_state_dict():
    again = SymbolTables.from_state_dict(TABLES.state_dict("t."), "t.")
    assert torch.equal(again.cdfs, TABLES.cdfs) and torch.equal(again.lengths, TABLES.lengths)
    assert sum(v.numel() for v in TABLES.state_dict("t.").values()) < TABLES.cdfs.numel() + 10


# --- framing ------------------------------------------------------------------------------------

def random_frame(rng: np.random.Generator, hint=None) -> fmt.Frame:
    level = rng.choice([0, 0, 0, 1, 2, 3, 4], 64)
    if not level.any():
        level[rng.integers(64)] = 1
    payload = bytes(rng.integers(0, 256, rng.choice([4, 5, 8, 12])).tolist())
    return fmt.Frame(3, level.tolist(), hint, (), int(rng.integers(0, 5)), payload)


def test_frames_round_trip_and_count_every_bit():
    rng = np.random.default_rng(1)
    coder = HintCoder(np.array([10, 5, 80]), step=2.0)
    for _ in range(100):
        frame = random_frame(rng, torch.from_numpy(rng.integers(0, 3, 10)) if rng.random() < 0.5 else None)
        string = fmt.pack(LAYOUT, frame, coder)
        back = fmt.unpack(string, {3: LAYOUT}, hint_coder=coder, classes=10)
        assert back.level == frame.level and back.payload == frame.payload and back.state_code == frame.state_code
        assert (back.hint is None) == (frame.hint is None)
        if frame.hint is not None:
            assert torch.equal(back.hint, frame.hint)
        rows = fmt.dissect(string, LAYOUT, coder, 10)
        assert sum(r["bits"] for r in rows) == 8 * len(string)


def test_every_single_bit_flip_is_detected():
    rng = np.random.default_rng(2)
    for _ in range(10):
        string = fmt.pack(LAYOUT, random_frame(rng))
        for bit in range(8 * len(string)):
            flipped = bytearray(string)
            flipped[bit // 8] ^= 0x80 >> (bit % 8)
            if bit < 4:  # the version field: the string no longer claims to be version 2
                assert fmt.read_version(bytes(flipped)) != 2
                continue
            with pytest.raises(BitstreamError):
                fmt.unpack(bytes(flipped), {3: LAYOUT})


@SETTINGS
@given(st.binary(max_size=80))
def test_random_bytes_raise_only_bitstream_errors(data):
    try:
        fmt.unpack(bytes([0x23]) + data, {3: LAYOUT})
    except BitstreamError:
        pass


@SETTINGS
@given(st.integers(0, 10_000), st.data())
def test_truncations_raise_bitstream_errors(seed, data):
    string = fmt.pack(LAYOUT, random_frame(np.random.default_rng(seed)))
    cut = data.draw(st.integers(0, len(string) - 1))
    with pytest.raises(BitstreamError):
        fmt.unpack(string[:cut], {3: LAYOUT})


def test_bad_frames_are_named():
    with pytest.raises(ValueError, match="at least one patch"):
        fmt.pack(LAYOUT, fmt.Frame(3, [0] * 64))
    with pytest.raises(ValueError, match="level map"):
        fmt.pack(LAYOUT, fmt.Frame(3, [5] * 64))
    with pytest.raises(BitstreamError, match="unknown codec id 3"):
        fmt.unpack(fmt.pack(LAYOUT, random_frame(np.random.default_rng(0))), {2: LAYOUT})
    with pytest.raises(BitstreamError, match="empty"):
        fmt.read_version(b"")
    assert fmt.crc16(b"123456789") == 0x29B1


# --- the edge hint --------------------------------------------------------------------------------

def test_canonical_code_is_prefix_free_and_near_optimal():
    counts = np.array([500, 200, 100, 100, 50, 30, 15, 5])
    code = canonical_code(counts)
    words = [format(c, f"0{n}b") for c, n in code]
    assert not any(a != b and b.startswith(a) for a in words for b in words)
    p = counts / counts.sum()
    mean_length = sum(pi * n for pi, (_, n) in zip(p, code))
    assert -(p * np.log2(p)).sum() <= mean_length < -(p * np.log2(p)).sum() + 1


def test_hint_symbols_round_trip_and_fusion_weights():
    logits = torch.randn(50, 10, generator=torch.Generator().manual_seed(0)) * 3
    coder = HintCoder.fit(logits, levels=3, step=2.0)
    symbols = coder.symbols(logits)
    writer = BitWriter()
    for row in symbols:
        coder.write(writer, row)
    assert writer.bits == int(coder.bits(symbols).sum())
    reader = BitReader(writer.to_bytes())
    assert torch.equal(torch.stack([coder.read(reader, 10) for _ in range(50)]), symbols)
    assert torch.equal(symbols, quantize_log_probs(logits, 2.0, 3))
    assert coder.log_probs(symbols).exp().sum(-1).allclose(torch.ones(50))
    server = torch.randn(50, 10)
    torch.testing.assert_close(fuse(server, coder.log_probs(symbols), 0.0), server.log_softmax(-1))
    torch.testing.assert_close(fuse(server, coder.log_probs(symbols), 1.0), coder.log_probs(symbols))
    with pytest.raises(ValueError, match="NaN"):
        coder.symbols(torch.full((1, 10), math.nan))


# --- FORMAT.md --------------------------------------------------------------------------------------

def test_format_md_worked_example_matches_the_code():
    import importlib.util

    path = Path(__file__).parents[1] / "benchmarks" / "format_example.py"
    spec = importlib.util.spec_from_file_location("format_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    from semcomm.rate import create_codec

    pair = create_codec("dct-cifar10", server=example._NoServer())
    string = example.example_string(pair)
    text = (Path(__file__).parents[1] / "FORMAT.md").read_text()
    dump = re.search(r"### Worked example.*?```\n(.*?)```", text, re.S).group(1)
    documented = bytes.fromhex("".join(line[6:] for line in dump.strip().splitlines()))
    assert string == documented
    (received,) = pair.decompress([string])
    assert received.positions.tolist() == [18, 19, 27, 45] and received.level.tolist() == [3, 2, 2, 1]


def test_format_md_packets_example_matches_the_code():
    """The worked example's image as version-3 packets: FORMAT.md's bytes are the code's, every packet carries
    the string's CRC-16 as the image identity at bits 9..24, and they join back to the string's patches."""
    import importlib.util

    from semcomm.rate.packetize import Packetizer
    from semcomm.wire import packets

    path = Path(__file__).parents[1] / "benchmarks" / "format_example.py"
    spec = importlib.util.spec_from_file_location("format_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    from semcomm.rate import create_codec

    pair = create_codec("dct-cifar10", server=example._NoServer())
    cut = example.example_packets(pair)
    text = (Path(__file__).parents[1] / "FORMAT.md").read_text()
    section = re.search(r"### Worked example: packets(.*?)\n## ", text, re.S).group(1)
    dumps = re.findall(r"```\n(.*?)```", section, re.S)
    assert [bytes.fromhex("".join(line[6:] for line in dump.strip().splitlines())) for dump in dumps] == cut
    identity = packets.string_identity(example.example_string(pair))
    assert identity == 0x776E and all((int.from_bytes(p[:4], "big") >> 7) & 0xFFFF == identity for p in cut)
    arrival = Packetizer(pair, packet_bytes=20, header_copies=1).join(cut)
    (whole,) = pair.decompress([example.example_string(pair)])
    assert torch.equal(arrival.received.positions, whole.positions) and not len(arrival.missing)


def test_a_uniform_level_map_costs_one_flag_and_the_level():
    layout = fmt.Layout(3, 64, 5)
    level = [0] * 64
    for i in range(0, 64, 4):
        level[i] = 4
    mixed = list(level)
    mixed[0] = 3
    uniform, varied = (fmt.pack(layout, fmt.Frame(3, lv, None, (), 0, b"\x80\0\0\0")) for lv in (level, mixed))
    rows = {r["field"]: r["bits"] for r in fmt.dissect(uniform, layout)}
    assert rows["uniform flag"] == 1 and rows["uniform level"] == 3 and "level count" not in rows
    assert fmt.unpack(uniform, {3: layout}).level == level and fmt.unpack(varied, {3: layout}).level == mixed
    # a uniform level beyond the codec's (7 of 5) is caught even with a valid CRC
    writer = BitWriter()
    for value, width in ((2, 4), (3, 4), (0, 1), (0, 6), (0, 6), (1, 1), (6, 3), (0, 3)):
        writer.write(value, width)
    writer.write_bytes(b"\x80\0\0\0")
    body = writer.to_bytes()
    with pytest.raises(BitstreamError, match="level 7 of a codec with 5 levels"):
        fmt.unpack(body + fmt.crc16(body).to_bytes(2, "big"), {3: layout})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 20), max_size=300), st.integers(0, 2**32 - 1))
def test_packing_fields_in_numpy_matches_the_bit_writer_and_unpacks_exactly(widths, seed):
    rng = np.random.default_rng(seed)
    widths = np.asarray(widths, dtype=np.int64)
    values = np.asarray([int(rng.integers(0, 1 << w)) if w else 0 for w in widths], dtype=np.int64)
    writer = BitWriter()
    for v, w in zip(values.tolist(), widths.tolist()):
        writer.write(v, w)
    value, bits = pack_fields(values, widths)
    assert bits == writer.bits == widths.sum()
    assert value == int.from_bytes(writer.to_bytes(), "big") >> writer.pad_bits()
    assert np.array_equal(unpack_fields(value, widths), values)


def test_packing_refuses_values_that_do_not_fit_their_widths():
    with pytest.raises(ValueError, match="every value must be unsigned and fit its width"):
        pack_fields(np.array([4]), np.array([2]))
    with pytest.raises(ValueError, match="2 values but 1 widths"):
        pack_fields(np.array([1, 1]), np.array([2]))
