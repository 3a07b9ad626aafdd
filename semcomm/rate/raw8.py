"""Format version 1 as a codec pair: raw 8-bit pixel patches (no levels, no entropy coding, no CRC)."""
from __future__ import annotations

import numpy as np
import torch

from semcomm.wire import v1 as bitstream
from semcomm.models.adapter import ViTAdapter
from semcomm.wire import v2 as fmt
from semcomm.rate.pair import Received
from semcomm.rate.pixels import PixelPair


class RawPixels(PixelPair):
    """Reader of format version 1 (raw 8-bit pixel patches, no CRC) for a pixel server."""

    name = "raw8"

    def __init__(self, server: ViTAdapter):
        super().__init__(server)
        self.layout = fmt.Layout(0, server.num_patches, 1, entropy_coded=False)

    def decode(self, string: bytes) -> Received:
        positions, patches = bitstream.unpack(string, self.num_patches, self.patch_values)
        positions = torch.from_numpy(positions)
        return Received(positions, torch.ones_like(positions), torch.from_numpy(patches.astype(np.float32)))

    def source(self, images, hidden=None):
        return self.pixels(images)

    def symbols(self, source, level):
        raise NotImplementedError("version-1 strings are written by EdgeEncoder without a codec pair")

    table_indexes = dequantize = symbols

