"""The analog path's side information: what the server must know of one image besides its analog symbols.

It travels as bits on a digital control channel (see :mod:`semcomm.transport.analog`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from semcomm.wire.bits import BitReader, BitWriter, HintCode, subset_bits, subset_rank, subset_unrank, width_for
from semcomm.wire.errors import BitstreamError

SCALE_BITS = 8  # the image's amplitude code


@dataclass
class SideInfo:
    """What the server must know of one image besides its analog symbols.

    Bits, MSB first: w(N) K - 1; ceil(log2 C(N, K)) rank of the positions;
    1 hint flag; the hint's Huffman codewords (if flagged); K x ``power_bits``
    power levels (importance allocation only); 8 amplitude code (unless the scheme has none).

    Attributes:
        positions: K int64 sent patch indices, ascending.
        hint: the edge's C hint symbols (int64) or None.
        power_levels: K int64 power levels (in position order) or None (uniform allocation).
        scale_code: the image's amplitude code (0..255), or None for a scheme that sends none (a learned
            JSCC pair sends at the power budget exactly).
    """

    positions: torch.Tensor
    hint: torch.Tensor | None
    power_levels: torch.Tensor | None
    scale_code: int | None


def pack_side_info(info: SideInfo, num_patches: int, hint_coder: HintCode | None = None,
                   power_bits: int = 0) -> tuple[bytes, int]:
    """(bytes, exact bit count) of ``info`` (see :class:`SideInfo`; no CRC here: the control channel adds its own)."""
    positions = info.positions.tolist()
    writer = BitWriter()
    writer.write(len(positions) - 1, width_for(num_patches))
    writer.write(subset_rank(positions, num_patches), subset_bits(num_patches, len(positions)))
    writer.write(int(info.hint is not None), 1)
    if info.hint is not None:
        hint_coder.write(writer, info.hint)
    if power_bits:
        for level in info.power_levels.tolist():
            writer.write(level, power_bits)
    if info.scale_code is not None:
        writer.write(info.scale_code, SCALE_BITS)
    return writer.to_bytes(), writer.bits


def unpack_side_info(data: bytes, bits: int, num_patches: int, hint_coder: HintCode | None = None,
                     classes: int = 0, power_bits: int = 0, scale: bool = True) -> SideInfo:
    """Inverse of :func:`pack_side_info` (``scale``: the bits end with an amplitude code)."""
    reader = BitReader(data, bits)
    k = reader.read(width_for(num_patches), "patches - 1") + 1
    positions = subset_unrank(reader.read(subset_bits(num_patches, k), "positions"), num_patches, k)
    hint = hint_coder.read(reader, classes) if reader.read(1, "hint flag") else None
    levels = (torch.tensor([reader.read(power_bits, "power level") for _ in range(k)], device="cpu") if power_bits
              else None)
    code = reader.read(SCALE_BITS, "amplitude code") if scale else None
    return SideInfo(torch.tensor(positions, dtype=torch.int64, device="cpu"), hint, levels, code)


def read_side_info(data: bytes | None, bits: int, patches: int, num_patches: int, hint_coder: HintCode | None = None,
                   classes: int = 0, power_bits: int = 0, scale: bool = True) -> SideInfo | None:
    """The side information of an image of ``patches`` sent patches as it arrived over a control channel
    (``data`` None: its CRC failed); None where it is lost, or (a CRC false positive) it does not parse or
    names another number of patches."""
    if data is None:
        return None
    try:
        info = unpack_side_info(data, bits, num_patches, hint_coder, classes, power_bits, scale)
    except BitstreamError:
        return None
    return info if len(info.positions) == patches else None
