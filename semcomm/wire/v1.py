"""The byte string sent for one offloaded image, and its exact size.

Format version 1 (raw 8-bit pixels), all fields big-endian:

==========  ==========================================================
bits        field
==========  ==========================================================
4           format version (1)
1           position mode: 0 = bitmask of N bits, 1 = list of K indices
3           reserved, 0
16          K, the number of patches sent (1 <= K <= N)
N or K*b    positions: the N-bit mask, or K indices of b = ceil(log2 N)
            bits each, ascending; the cheaper of the two is used;
            zero-padded to a whole byte
K*P*8       payload: the K patches' pixels as uint8, each patch in
            (row, column, channel) order, patches in ascending position
==========  ==========================================================

P = 3 * patch_size^2 values per patch. The patch grid (N patches) and the
patch size are fixed by the model pair and known to both ends, like the
models themselves. ``len(string) * 8`` is the number of bits on the wire.
"""
from __future__ import annotations

import math

import numpy as np

from semcomm.wire.bits import as_bytes
from semcomm.wire.errors import BitstreamError

VERSION = 1
HEADER_BYTES = 3


def index_bits(num_patches: int) -> int:
    """Bits per patch index in list mode: ceil(log2 N), at least 1."""
    return max(1, math.ceil(math.log2(num_patches)))


def position_bytes(count: int, num_patches: int) -> tuple[bool, int]:
    """(list_mode, bytes) of the cheaper position coding for ``count`` of ``num_patches`` patches."""
    list_bits = count * index_bits(num_patches)
    use_list = list_bits < num_patches
    return use_list, math.ceil((list_bits if use_list else num_patches) / 8)


def stream_bits(count: int, num_patches: int, patch_values: int) -> int:
    """Exact size in bits of the string for ``count`` patches (what :func:`pack` produces)."""
    return 8 * (HEADER_BYTES + position_bytes(count, num_patches)[1] + count * patch_values)


def pack(positions: np.ndarray, patches: np.ndarray, num_patches: int) -> bytes:
    """One image's string.

    Args:
        positions: K ascending patch indices in [0, N).
        patches: K x P uint8 pixel values of those patches.
        num_patches: N, the size of the patch grid.
    """
    count = len(positions)
    if not 1 <= count <= min(num_patches, 0xFFFF):
        raise ValueError(f"an image must send between 1 and {num_patches} patches, got {count}")
    use_list, n_bytes = position_bytes(count, num_patches)
    if use_list:
        width = index_bits(num_patches)
        bits = (positions[:, None] >> np.arange(width - 1, -1, -1)) & 1
    else:
        bits = np.zeros(num_patches, dtype=np.uint8)
        bits[positions] = 1
    position_field = np.packbits(bits.astype(np.uint8).ravel())
    header = bytes([(VERSION << 4) | (int(use_list) << 3), count >> 8, count & 0xFF])
    assert len(position_field) == n_bytes
    return header + position_field.tobytes() + np.ascontiguousarray(patches, dtype=np.uint8).tobytes()


def unpack(string: bytes, num_patches: int, patch_values: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse one string (any bytes-like object) into (K positions, K x P uint8 patches); raise
    BitstreamError if malformed (its length must be exactly what its header says: nothing appended)."""
    string = as_bytes(string)
    if len(string) < HEADER_BYTES:
        raise BitstreamError(f"truncated: {len(string)} bytes, shorter than the {HEADER_BYTES}-byte header")
    version, use_list, reserved = string[0] >> 4, (string[0] >> 3) & 1, string[0] & 0b111
    if version != VERSION or reserved:
        raise BitstreamError(f"unknown format: version {version}, reserved bits {reserved:03b} "
                             f"(expected {VERSION}, 000)")
    count = (string[1] << 8) | string[2]
    if not 1 <= count <= num_patches:
        raise BitstreamError(f"corrupted: header says {count} patches, the grid has {num_patches}")
    expected_list, n_bytes = position_bytes(count, num_patches)
    if bool(use_list) != expected_list:
        raise BitstreamError("corrupted: position mode is not the one the encoder would choose for this count")
    expected = HEADER_BYTES + n_bytes + count * patch_values
    if len(string) != expected:
        kind = "truncated" if len(string) < expected else "corrupted (trailing bytes)"
        raise BitstreamError(f"{kind}: {len(string)} bytes, expected {expected} for {count} patches")
    bits = np.unpackbits(np.frombuffer(string, dtype=np.uint8, count=n_bytes, offset=HEADER_BYTES))
    if use_list:
        width = index_bits(num_patches)
        positions = bits[: count * width].reshape(count, width).astype(np.int64) @ (1 << np.arange(width - 1, -1, -1))
        if (positions >= num_patches).any() or (np.diff(positions) <= 0).any():
            raise BitstreamError("corrupted: patch indices are out of range or not ascending")
    else:
        positions = np.flatnonzero(bits[:num_patches])
        if len(positions) != count:
            raise BitstreamError(f"corrupted: position mask has {len(positions)} patches, header says {count}")
    patches = np.frombuffer(string, dtype=np.uint8, offset=HEADER_BYTES + n_bytes).reshape(count, patch_values)
    return positions.astype(np.int64), patches
