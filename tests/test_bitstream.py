"""The wire format: packing, parsing, exact sizes and malformed strings."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semcomm.core.patches import patchify, unpatchify
from semcomm.wire.errors import BitstreamError
from semcomm.wire.v1 import HEADER_BYTES, VERSION, index_bits, pack, position_bytes, stream_bits, unpack

SETTINGS = settings(max_examples=50, deadline=None)


def sample(count, num_patches, patch_values, seed=0):
    """``count`` ascending distinct positions and count x P random uint8 patches."""
    g = torch.Generator().manual_seed(seed)
    positions = torch.randperm(num_patches, generator=g)[:count].sort().values.numpy()
    patches = torch.randint(0, 256, (count, patch_values), generator=g, dtype=torch.uint8).numpy()
    return positions, patches


def list_mode(string: bytes) -> bool:
    return bool((string[0] >> 3) & 1)


# --- round trips and sizes -------------------------------------------------------------


@pytest.mark.parametrize(
    "count, num_patches, patch_values, expect_list",
    [(1, 64, 48, True), (10, 64, 48, True), (11, 64, 48, False), (64, 64, 48, False),
     (5, 196, 768, True), (24, 196, 768, True), (25, 196, 768, False), (196, 196, 768, False)],
)
def test_round_trip_both_position_modes(count, num_patches, patch_values, expect_list):
    positions, patches = sample(count, num_patches, patch_values, seed=count)
    string = pack(positions, patches, num_patches)
    assert isinstance(string, bytes)
    assert string[0] >> 4 == VERSION and string[0] & 0b111 == 0
    assert list_mode(string) == expect_list == position_bytes(count, num_patches)[0]
    assert (string[1] << 8) | string[2] == count
    got_positions, got_patches = unpack(string, num_patches, patch_values)
    assert got_positions.dtype == np.int64 and got_patches.dtype == np.uint8
    assert np.array_equal(got_positions, positions)
    assert np.array_equal(got_patches, patches)
    assert got_patches.shape == (count, patch_values)


def test_hand_built_list_mode_string():
    """N = 64: 6-bit indices 3 and 60 -> 000011 111100, padded to 2 bytes."""
    patches = np.array([[1, 2, 3], [250, 251, 252]], dtype=np.uint8)
    string = pack(np.array([3, 60]), patches, 64)
    assert string == bytes([0x18, 0x00, 0x02, 0b00001111, 0b11000000, 1, 2, 3, 250, 251, 252])


def test_hand_built_mask_mode_string():
    """N = 8: three indices of 3 bits (9) are not cheaper than the 8-bit mask, so mask mode."""
    string = pack(np.array([0, 3, 6]), np.array([[7], [8], [9]], dtype=np.uint8), 8)
    assert string == bytes([0x10, 0x00, 0x03, 0b10010010, 7, 8, 9])
    positions, patches = unpack(string, 8, 1)
    assert positions.tolist() == [0, 3, 6] and patches.tolist() == [[7], [8], [9]]
    # two indices (6 bits) are cheaper than the mask: list mode, 000 110 + 2 padding bits
    assert pack(np.array([0, 6]), np.array([[7], [9]], dtype=np.uint8), 8) == bytes([0x18, 0x00, 0x02, 0b00011000, 7, 9])


def test_equal_cost_uses_the_mask():
    """N = 16, K = 4: four 4-bit indices cost the same 16 bits as the mask; the list is used only when cheaper."""
    positions = np.array([1, 2, 3, 15])
    string = pack(positions, np.zeros((4, 1), dtype=np.uint8), 16)
    assert not list_mode(string)
    assert string[HEADER_BYTES:HEADER_BYTES + 2] == bytes([0b01110000, 0b00000001])
    assert list_mode(pack(positions[:3], np.zeros((3, 1), dtype=np.uint8), 16))
    assert unpack(string, 16, 1)[0].tolist() == positions.tolist()


@pytest.mark.parametrize("num_patches, patch_values", [(64, 48), (196, 768)])
def test_stream_bits_is_exact_and_increasing(num_patches, patch_values):
    sizes = []
    for count in range(1, num_patches + 1):
        positions, patches = sample(count, num_patches, patch_values, seed=count)
        bits = stream_bits(count, num_patches, patch_values)
        assert len(pack(positions, patches, num_patches)) * 8 == bits
        sizes.append(bits)
    assert all(b > a for a, b in zip(sizes, sizes[1:]))
    # the cheaper position code is used: never more than the N-bit mask, nor K indices
    for count, bits in enumerate(sizes, start=1):
        position_bits = bits - 8 * (HEADER_BYTES + count * patch_values)
        assert position_bits <= 8 * math.ceil(num_patches / 8)
        assert position_bits <= 8 * math.ceil(count * index_bits(num_patches) / 8)


def test_stream_bits_hand_values():
    # N = 196, P = 768: 1 patch = 3 header + 1 index byte + 768
    assert stream_bits(1, 196, 768) == 8 * (3 + 1 + 768)
    # all 196 patches: mask of 196 bits = 25 bytes
    assert stream_bits(196, 196, 768) == 8 * (3 + 25 + 196 * 768)
    assert index_bits(196) == 8 and index_bits(64) == 6 and index_bits(65) == 7 and index_bits(1) == 1


@SETTINGS
@given(subset=st.sets(st.integers(0, 63), min_size=1, max_size=64), seed=st.integers(0, 2**31 - 1))
def test_random_subsets_round_trip(subset, seed):
    positions = np.array(sorted(subset), dtype=np.int64)
    g = torch.Generator().manual_seed(seed)
    patches = torch.randint(0, 256, (len(positions), 12), generator=g, dtype=torch.uint8).numpy()
    string = pack(positions, patches, 64)
    assert len(string) * 8 == stream_bits(len(positions), 64, 12)
    got_positions, got_patches = unpack(string, 64, 12)
    assert np.array_equal(got_positions, positions)
    assert np.array_equal(got_patches, patches)


@SETTINGS
@given(subset=st.sets(st.integers(0, 195), min_size=1, max_size=40))
def test_random_subsets_round_trip_196(subset):
    positions = np.array(sorted(subset), dtype=np.int64)
    patches = (np.arange(len(positions) * 3, dtype=np.int64) % 256).astype(np.uint8).reshape(-1, 3)
    got_positions, got_patches = unpack(pack(positions, patches, 196), 196, 3)
    assert np.array_equal(got_positions, positions) and np.array_equal(got_patches, patches)


# --- patchify ------------------------------------------------------------------------------


def test_patchify_hand_built():
    """2 x 3 grid of 2-pixel patches; pixel value encodes (channel, y, x)."""
    ps, gh, gw = 2, 2, 3
    c, y, x = torch.meshgrid(torch.arange(3), torch.arange(gh * ps), torch.arange(gw * ps), indexing="ij")
    image = (100 * c + 10 * y + x).unsqueeze(0)  # 1 x 3 x 4 x 6
    patches = patchify(image, ps)
    assert patches.shape == (1, gh * gw, 3 * ps * ps)
    # patch (r=1, c=2) is index 1 * 3 + 2 = 5: rows 2-3, columns 4-5, pixels in (row, col, channel) order
    assert patches[0, 5].tolist() == [24, 124, 224, 25, 125, 225, 34, 134, 234, 35, 135, 235]
    assert patches[0, 0].tolist() == [0, 100, 200, 1, 101, 201, 10, 110, 210, 11, 111, 211]
    for r in range(gh):
        for col in range(gw):
            for i in range(ps):
                for j in range(ps):
                    for ch in range(3):
                        assert patches[0, r * gw + col, (i * ps + j) * 3 + ch] == image[0, ch, r * ps + i, col * ps + j]


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), gh=st.integers(1, 4), gw=st.integers(1, 4), ps=st.integers(1, 4),
       batch=st.integers(1, 3))
def test_patchify_unpatchify_are_inverses(seed, gh, gw, ps, batch):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 3, gh * ps, gw * ps), generator=g, dtype=torch.uint8)
    patches = patchify(images, ps)
    assert patches.shape == (batch, gh * gw, 3 * ps * ps) and patches.dtype == torch.uint8
    assert torch.equal(unpatchify(patches, ps, (gh, gw)), images)
    assert torch.equal(patchify(unpatchify(patches, ps, (gh, gw)), ps), patches)


def test_patchify_pack_unpack_unpatchify_reconstructs_the_kept_patches():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (1, 3, 32, 32), generator=g, dtype=torch.uint8)
    patches = patchify(images, 4).numpy()[0]  # 64 x 48
    keep = np.array([0, 9, 17, 63])
    positions, got = unpack(pack(keep, patches[keep], 64), 64, 48)
    canvas = torch.zeros(1, 64, 48, dtype=torch.uint8)
    canvas[0, torch.from_numpy(positions)] = torch.from_numpy(got.copy())
    rebuilt = unpatchify(canvas, 4, (8, 8))
    for index in keep:
        r, c = divmod(int(index), 8)
        assert torch.equal(rebuilt[0, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4], images[0, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4])
    assert rebuilt.sum() == sum(int(images[0, :, 4 * (i // 8):4 * (i // 8) + 4, 4 * (i % 8):4 * (i % 8) + 4].sum())
                                for i in keep)


# --- malformed strings -------------------------------------------------------------------------


def good(count=5, num_patches=64, patch_values=48, seed=0):
    positions, patches = sample(count, num_patches, patch_values, seed)
    return bytearray(pack(positions, patches, num_patches))


def test_bitstream_error_is_a_value_error():
    assert issubclass(BitstreamError, ValueError)


@pytest.mark.parametrize("count", [5, 40])  # list and mask mode
def test_truncated(count):
    string = bytes(good(count))
    for cut in [1, 2, 48, len(string) - 3, len(string) - 2, len(string)]:
        with pytest.raises(BitstreamError, match="truncated"):
            unpack(string[:-cut], 64, 48)


def test_unknown_format():
    for first in [0x08 | (2 << 4), 0x08, 0xF8, 0x18 | 0b001, 0x18 | 0b100]:  # versions 2, 0, 15; reserved bits set
        string = good(5)
        string[0] = first
        with pytest.raises(BitstreamError, match="unknown format"):
            unpack(bytes(string), 64, 48)


@pytest.mark.parametrize("count", [0, 65, 0x0105, 0xFFFF])
def test_count_out_of_range_is_corrupted(count):
    string = good(5)
    string[1], string[2] = count >> 8, count & 0xFF
    with pytest.raises(BitstreamError, match="corrupted"):
        unpack(bytes(string), 64, 48)


@pytest.mark.parametrize("count, flipped", [(5, 4), (5, 13), (40, 9), (40, 39), (40, 8)])
def test_flipped_count_is_corrupted(count, flipped):
    """A count the other position mode would use, or a smaller one (trailing bytes), is reported corrupted."""
    string = good(count)
    string[2] = flipped
    with pytest.raises(BitstreamError, match="corrupted"):
        unpack(bytes(string), 64, 48)


def test_larger_count_in_the_same_mode_is_rejected():
    string = good(5)
    string[2] = 7  # still list mode; the string is now too short for 7 patches
    with pytest.raises(BitstreamError):
        unpack(bytes(string), 64, 48)


def test_flipped_mode_bit_is_corrupted():
    for count in (5, 40):
        string = good(count)
        string[0] ^= 0x08
        with pytest.raises(BitstreamError, match="corrupted"):
            unpack(bytes(string), 64, 48)


def test_mask_popcount_disagrees_with_count():
    positions, patches = sample(40, 64, 48)
    string = bytearray(pack(positions, patches, 64))
    assert not list_mode(string)
    # drop a kept patch from the mask, then add a patch that was not kept
    dropped = bytearray(string)
    dropped[HEADER_BYTES + positions[0] // 8] ^= 0x80 >> (positions[0] % 8)
    free = next(i for i in range(64) if i not in set(positions.tolist()))
    added = bytearray(string)
    added[HEADER_BYTES + free // 8] ^= 0x80 >> (free % 8)
    for bad in (dropped, added):
        with pytest.raises(BitstreamError, match="corrupted: position mask"):
            unpack(bytes(bad), 64, 48)


def test_list_mode_indices_must_ascend():
    patches = np.zeros((3, 2), dtype=np.uint8)
    good_string = pack(np.array([5, 10, 20]), patches, 196)  # list mode, 8-bit indices
    assert list_mode(good_string)
    for indices in ([10, 5, 20], [5, 5, 20], [5, 20, 10]):
        bad = bytearray(good_string)
        bad[HEADER_BYTES:HEADER_BYTES + 3] = bytes(indices)
        with pytest.raises(BitstreamError, match="not ascending"):
            unpack(bytes(bad), 196, 2)
    out_of_range = bytearray(good_string)
    out_of_range[HEADER_BYTES + 2] = 200  # >= N = 196
    with pytest.raises(BitstreamError, match="out of range"):
        unpack(bytes(out_of_range), 196, 2)


def test_list_mode_indices_must_ascend_six_bit():
    string = good(2)  # two 6-bit indices in 12 bits
    positions = unpack(bytes(string), 64, 48)[0]
    a, b = int(positions[0]), int(positions[1])
    swapped = (b << 10) | (a << 4)  # 6 + 6 bits, 4 padding bits
    string[HEADER_BYTES], string[HEADER_BYTES + 1] = swapped >> 8, swapped & 0xFF
    with pytest.raises(BitstreamError, match="corrupted"):
        unpack(bytes(string), 64, 48)


@pytest.mark.parametrize("count", [5, 40])
def test_trailing_bytes(count):
    for extra in (b"\x00", b"\x01\x02\x03"):
        with pytest.raises(BitstreamError, match="corrupted.*trailing"):
            unpack(bytes(good(count)) + extra, 64, 48)


@pytest.mark.parametrize("count", [5, 40])
def test_appends_of_any_length_are_refused(count):
    string = bytes(good(count))
    for n in range(1, 17):
        for extra in (bytes(n), bytes([0xA5]) * n):
            with pytest.raises(BitstreamError, match="corrupted.*trailing"):
                unpack(string + extra, 64, 48)


def test_any_bytes_like_string_parses_and_other_types_are_named():
    positions, patches = sample(5, 64, 48)
    string = bytes(good(5))
    for data in (bytearray(string), memoryview(string), np.frombuffer(string, dtype=np.uint8)):
        got_positions, got_patches = unpack(data, 64, 48)
        assert np.array_equal(got_positions, positions) and np.array_equal(got_patches, patches)
    for bad in (string.decode("latin-1"), list(string), np.frombuffer(string, dtype=np.uint8).astype(np.int16)):
        with pytest.raises(TypeError, match="a string must be bytes-like"):
            unpack(bad, 64, 48)


def test_wrong_receiver_geometry_is_rejected():
    string = bytes(good(5))
    with pytest.raises(BitstreamError):
        unpack(string, 64, 47)  # wrong patch size


def test_pack_rejects_empty_and_oversized_selections():
    with pytest.raises(ValueError, match="between 1 and 64"):
        pack(np.array([], dtype=np.int64), np.zeros((0, 48), dtype=np.uint8), 64)
    with pytest.raises(ValueError, match="between 1 and 4"):
        pack(np.arange(5), np.zeros((5, 48), dtype=np.uint8), 4)
