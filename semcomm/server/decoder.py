"""The server: read each string with the codec pair of its format version, and classify what it carries.

The server decoder holds one codec pair per format version it reads: ``raw8`` for version 1 (built
from a pixel server, ``model``) and the codec pair of version-2 strings (``codec``). Each string goes
to the pair of the version in its first four bits; each pair decompresses its strings and classifies
every image from only the patches it received, each at its own position, fusing the edge's prediction
where it came along.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from semcomm.edge.codec import CODECS
from semcomm.inference import DEFAULT_BATCH, NonFiniteOutputError
from semcomm.models.adapter import ViTAdapter
from semcomm.rate.codec import create_codec
from semcomm.rate.pair import CodecPair, Received
from semcomm.wire.bits import as_bytes
from semcomm.wire.errors import BitstreamError
from semcomm.wire.v2 import read_version

ERRORS = ("raise", "nan")


@dataclass
class ServerDecoder:
    """Read strings (format version 1 or 2) and classify each image from the patches it carries.

    Args:
        model: the pixel server ViT (or a backend) of version-1 strings, read through the ``raw8`` pair;
            None if only version 2 arrives.
        codec: the codec pair of version-2 strings, or its registered name (the pair holds its own server).
    """

    model: ViTAdapter | None = None
    batch_size: int = DEFAULT_BATCH
    bf16: bool = True
    codec: CodecPair | str | None = None
    _pairs: dict[int, CodecPair] = field(init=False, repr=False)

    def __post_init__(self):
        if self.model is None and self.codec is None:
            raise ValueError("a ServerDecoder needs a pixel server model, a codec pair, or both")
        if self.codec is not None:
            self.codec = CODECS.create(self.codec)
        pairs = [p for p in (None if self.model is None else create_codec("raw8", server=self.model), self.codec)
                 if p is not None]
        self._pairs = {}
        for pair in pairs:
            if pair.version in self._pairs:
                raise ValueError(f"{self._pairs[pair.version].name} and {pair.name} both read format version "
                                 f"{pair.version}; give one pair per version")
            pair.bf16 = self.bf16
            self._pairs[pair.version] = pair

    @property
    def num_classes(self) -> int:
        return next(iter(self._pairs.values())).num_classes

    def decompress(self, strings: list[bytes | None], errors: str = "raise") -> list[Received | None]:
        """What each string carries, read by the codec pair of its format version.

        Args:
            strings: each a bytes-like object (``bytes``, ``bytearray``, ``memoryview``, a 1-D numpy
                uint8 array) or None for a lost string; any other type is a TypeError naming it.
            errors: ``"raise"`` raises :class:`~semcomm.wire.errors.BitstreamError` naming the first
                malformed or missing (None) string; ``"nan"`` gives None for it instead.
        """
        return [None if item is None else item[1] for item in self._read(strings, errors)]

    @torch.no_grad()
    def classify(self, strings: list[bytes | None], errors: str = "raise", fuse: bool = True) -> torch.Tensor:
        """len(strings) x C logits (log-probabilities where the edge's prediction was fused in).

        Args:
            strings: as :meth:`decompress` (bytes-like objects, None for a lost string).
            fuse: fuse the edge's prediction where a string carries it (False: the server's own logits).
            errors: ``"raise"`` raises :class:`~semcomm.wire.errors.BitstreamError`
                on a malformed or missing (None) string; ``"nan"`` gives its row NaN
                logits instead (a string damaged or lost on a link), which
                :func:`~semcomm.edge.encoder.collaborative_predictions` answers with the edge's prediction.
        """
        logits = torch.full((len(strings), self.num_classes), math.nan, device="cpu")
        items: dict[int, dict[int, Received]] = {version: {} for version in self._pairs}
        for i, item in enumerate(self._read(strings, errors)):
            if item is not None:
                items[item[0]][i] = item[1]
        for version, got in items.items():
            if got:
                try:
                    logits[list(got)] = self._pairs[version].classify(list(got.values()), self.batch_size, fuse)
                except NonFiniteOutputError as err:  # name the strings as the caller numbers them
                    raise err.within(list(got)) from None
        return logits

    def _read(self, strings: list[bytes | None], errors: str) -> list[tuple[int, Received] | None]:
        """(format version, what it carries) of each string, or None where ``errors="nan"`` forgives it."""
        if errors not in ERRORS:
            raise ValueError(f"errors must be 'raise' or 'nan', got {errors!r}")
        if not isinstance(strings, (list, tuple)):
            raise TypeError(f"strings must be a list of bytes (None for a lost string), got {type(strings).__name__}")
        # a wrong type is the caller's mistake, not damage on a link: raised whatever ``errors``, before any work
        strings = [None if string is None else as_bytes(string, f"string {i}") for i, string in enumerate(strings)]
        out: list[tuple[int, Received] | None] = []
        for i, string in enumerate(strings):
            try:
                if string is None:
                    raise BitstreamError("missing: no string (None)")
                version = read_version(string)
                if version not in self._pairs:
                    raise BitstreamError(f"unknown format: version {version} "
                                         f"(this decoder reads {sorted(self._pairs)})")
                out.append((version, self._pairs[version].decompress([string])[0]))
            except BitstreamError as err:
                if errors == "raise":
                    raise BitstreamError(f"string {i}: {err}") from err
                out.append(None)
        return out
