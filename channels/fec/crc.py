"""Cyclic redundancy checks on bit tensors (CRC-8, CRC-16/CCITT-FALSE, CRC-32), vectorised.

Parameters follow the Rocksoft model as listed in Greg Cook's "Catalogue of parametrised CRC
algorithms" (reveng.sourceforge.net/crc-catalogue), which also gives each variant's check value,
the CRC of the ASCII string "123456789":

============  =====  ==========  ==========  =====  ======  ==========  ==========
name          width  poly        init        refin  refout  xorout      check
============  =====  ==========  ==========  =====  ======  ==========  ==========
crc8          8      0x07        0x00        no     no      0x00        0xF4        (CRC-8/SMBUS)
crc16         16     0x1021      0xFFFF      no     no      0x0000      0x29B1      (CRC-16/CCITT-FALSE, alias IBM-3740)
crc32         32     0x04C11DB7  0xFFFFFFFF  yes    yes     0xFFFFFFFF  0xCBF43926  (CRC-32/ISO-HDLC, zlib)
============  =====  ==========  ==========  =====  ======  ==========  ==========

On bit tensors the message bits are fed to the register in the order given (the wire order;
for byte data with refin the bytes are unpacked LSB first, see :meth:`CRC.checksum`) and the
``width`` CRC bits are appended highest power of x first.  With that placement every codeword
is (up to the fixed init/xorout offsets) a multiple of the generator polynomial, so every
single-bit error and every burst of length <= width is detected.

The CRC is affine in the message bits: state = A m + c (mod 2).  ``A`` (width x k) is built
once per message length k and applied as one matrix product for the whole batch.
"""
from __future__ import annotations

from typing import Dict

import torch

from .._checks import check_bits, check_choice

_SPECS = {
    # name: (width, poly, init, refin, refout, xorout)
    "crc8": (8, 0x07, 0x00, False, False, 0x00),
    "crc16": (16, 0x1021, 0xFFFF, False, False, 0x0000),
    "crc32": (32, 0x04C11DB7, 0xFFFFFFFF, True, True, 0xFFFFFFFF),
}


def _reflect(v: int, width: int) -> int:
    return int(f"{v:0{width}b}"[::-1], 2)


class CRC:
    """A CRC code.

    Args:
        name: ``"crc8"``, ``"crc16"`` or ``"crc32"`` (see the module table).

    Attributes:
        width: number of CRC bits (the polynomial degree).

    Methods take bit tensors (..., k) of 0/1 in any dtype: :meth:`encode` appends the CRC,
    :meth:`check` verifies (..., k + width) and returns bool (...), :meth:`checksum` computes
    the standard integer CRC of a ``bytes`` object.
    """

    def __init__(self, name: str = "crc32") -> None:
        check_choice("CRC name", name, _SPECS)
        self.name = name
        self.width, self.poly, self.init, self.refin, self.refout, self.xorout = _SPECS[name]
        self._mask = (1 << self.width) - 1
        # The appended bits are in register order; the standard value is reflected when refout.
        self._xor_reg = _reflect(self.xorout, self.width) if self.refout else self.xorout
        self._cache: Dict[int, tuple[torch.Tensor, int]] = {}

    def __repr__(self) -> str:
        return f"CRC({self.name!r})"

    def _shift(self, state: int) -> int:
        """Multiply the register by x modulo the generator."""
        top = state >> (self.width - 1)
        state = (state << 1) & self._mask
        return state ^ self.poly if top else state

    def _affine(self, k: int) -> tuple[torch.Tensor, int]:
        """(A, c): register after feeding k message bits is A m + c (mod 2); A float (width, k)."""
        if k not in self._cache:
            cols = []
            r = self.poly  # x^width mod g: contribution of the last message bit
            for _ in range(k):
                cols.append(r)
                r = self._shift(r)
            cols.reverse()  # column j: x^(width + k - 1 - j) mod g
            shifts = torch.arange(self.width - 1, -1, -1, device="cpu")
            col_t = torch.tensor(cols, dtype=torch.int64, device="cpu").reshape(k)
            a = ((col_t[None, :] >> shifts[:, None]) & 1).to(torch.float32)
            c = self.init
            for _ in range(k):
                c = self._shift(c)
            self._cache[k] = (a, c)
        return self._cache[k]

    def _register_bits(self, bits: torch.Tensor) -> torch.Tensor:
        """CRC bits (..., width), highest power first, after init, message and xorout."""
        k = bits.shape[-1]
        a, c = self._affine(k)
        dtype = torch.float32 if k < 2**24 else torch.float64
        lin = torch.remainder(bits.to(dtype) @ a.to(device=bits.device, dtype=dtype).T, 2)
        const = c ^ self._xor_reg
        shifts = torch.arange(self.width - 1, -1, -1, device=bits.device)
        const_bits = ((const >> shifts) & 1).to(dtype)
        return torch.remainder(lin + const_bits, 2)

    def encode(self, bits: torch.Tensor) -> torch.Tensor:
        """Append the CRC: (..., k) -> (..., k + width), same dtype as ``bits``."""
        check_bits(bits)
        crc = self._register_bits(bits).to(bits.dtype)
        return torch.cat([bits, crc], dim=-1)

    def check(self, bits: torch.Tensor) -> torch.Tensor:
        """True where the last ``width`` bits are the CRC of the rest: (..., k + width) -> bool (...)."""
        check_bits(bits)
        if bits.shape[-1] <= self.width:
            raise ValueError(f"need more than {self.width} bits (message + CRC); got {bits.shape[-1]}")
        msg, crc = bits[..., : -self.width], bits[..., -self.width:]
        return (self._register_bits(msg) == crc.to(torch.float32)).all(-1)

    def checksum(self, data: bytes) -> int:
        """The standard CRC value of a byte string (e.g. ``CRC("crc32").checksum(b"123456789") == 0xCBF43926``)."""
        raw = torch.tensor(list(data), dtype=torch.int64, device="cpu")
        order = torch.arange(8, device="cpu") if self.refin else torch.arange(7, -1, -1, device="cpu")
        bits = ((raw[:, None] >> order) & 1).reshape(-1)
        reg = self._register_bits(bits).to(torch.int64)
        val = int((reg << torch.arange(self.width - 1, -1, -1, device="cpu")).sum()) ^ self._xor_reg  # undo xorout
        if self.refout:
            val = _reflect(val, self.width)
        return val ^ self.xorout
