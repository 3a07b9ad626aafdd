"""The server: parse strings (format version 1 or 2) and classify each image from the patches it carries.

The server decoder parses strings of either version and classifies each
image from only the patches it received, each at its own position, fusing
the edge's prediction where it came along.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from semcomm.inference import DEFAULT_BATCH
from semcomm.models.adapter import ViTAdapter
from semcomm.wire import v2 as fmt
from semcomm.rate.pair import CodecPair, Received
from semcomm.rate.raw8 import RawPixels
from semcomm.wire.errors import BitstreamError


@dataclass
class ServerDecoder:
    """Parse strings (format version 1 or 2) and classify each image from the patches it carries.

    Args:
        model: the pixel server ViT, for version-1 strings (and None if only version 2 arrives).
        codec: the codec pair of version-2 strings (it holds its own server).
    """

    model: ViTAdapter | None = None
    batch_size: int = DEFAULT_BATCH
    bf16: bool = True
    codec: CodecPair | None = None
    _readers: dict = field(init=False, repr=False)

    def __post_init__(self):
        if self.model is None and self.codec is None:
            raise ValueError("a ServerDecoder needs a pixel server model, a codec pair, or both")
        self._readers = {1: RawPixels(self.model) if self.model is not None else None, 2: self.codec}
        for reader in self._readers.values():
            if reader is not None:
                reader.bf16 = self.bf16

    @property
    def num_classes(self) -> int:
        return (self.model or self.codec).num_classes

    def decode(self, string: bytes) -> tuple[int, Received]:
        """(format version, what the string carries); :class:`~semcomm.wire.errors.BitstreamError` if malformed."""
        version = fmt.read_version(string)
        reader = self._readers.get(version)
        if reader is None:
            known = [v for v, r in self._readers.items() if r is not None]
            raise BitstreamError(f"unknown format: version {version} (this decoder reads {known})")
        return version, reader.decode(string)

    @torch.no_grad()
    def classify(self, strings: list[bytes | None], errors: str = "raise", fuse: bool = True) -> torch.Tensor:
        """len(strings) x C logits (log-probabilities where the edge's prediction was fused in).

        Args:
            fuse: fuse the edge's prediction where a string carries it (False: the server's own logits).
            errors: ``"raise"`` raises :class:`~semcomm.wire.errors.BitstreamError`
                on a malformed or missing (None) string; ``"nan"`` gives its row NaN
                logits instead (a string damaged or lost on a link), which
                :func:`collaborative_predictions` answers with the edge's prediction.
        """
        if errors not in ("raise", "nan"):
            raise ValueError(f"errors must be 'raise' or 'nan', got {errors!r}")
        if not isinstance(strings, (list, tuple)):
            raise TypeError(f"strings must be a list of bytes (None for a lost string), got {type(strings).__name__}")
        logits = torch.full((len(strings), self.num_classes), math.nan)
        items: dict[int, dict[int, Received]] = {1: {}, 2: {}}
        for i, string in enumerate(strings):
            try:
                if string is None:
                    raise BitstreamError("missing: no string (None)")
                version, received = self.decode(string)
            except BitstreamError as err:
                if errors == "raise":
                    raise BitstreamError(f"string {i}: {err}") from err
                continue
            items[version][i] = received
        for version, got in items.items():
            if got:
                rows = list(got)
                logits[rows] = self._readers[version].classify(list(got.values()), self.batch_size, fuse)
        return logits

