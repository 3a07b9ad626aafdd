"""Classical image codecs (JPEG, WebP via Pillow) as rate-distortion reference points.

An :class:`ImageCodec` offers the codec contract (:class:`~semcomm.rate.codec.Codec`) for whole
images: ``compress`` writes one file per image, ``decompress`` decodes the files, and ``classify``
runs its server (a pixel ViT given at construction) on the decoded images. Shapes and units:

* images are ``B x 3 x H x W`` uint8 torch tensors (RGB, values 0..255);
* a compressed image is one complete, decodable file as Pillow writes it
  (``bytes``), one per image;
* bits are ``8 * len(file)`` per image, headers included: that is what would
  be sent over the link. Returned as an int64 tensor of shape ``B``.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import InitVar, dataclass

import numpy as np
import torch
from PIL import Image

from semcomm.inference import DEFAULT_BATCH, predict_logits
from semcomm.models import ViTAdapter
from semcomm.rate.codec import Codec
from semcomm.wire.errors import BitstreamError

FORMATS = ("jpeg", "webp")


@dataclass
class ImageCodec(Codec):
    """A Pillow codec at one quality setting (``format`` in FORMATS, ``quality`` in 0..100).

    ``server`` (optional, not a field): the pixel ViT that :meth:`classify` runs on decoded images.

    >>> codec = ImageCodec("webp", 40)
    >>> files = codec.compress(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    >>> codec.decompress(files).shape
    torch.Size([2, 3, 32, 32])
    """

    format: str
    quality: int
    server: InitVar[ViTAdapter | None] = None

    def __post_init__(self, server: ViTAdapter | None) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; accepted: {', '.join(FORMATS)}")
        if isinstance(self.quality, bool) or not isinstance(self.quality, int):
            raise ValueError(f"quality must be an int in 0..100, got {self.quality!r}")
        if not 0 <= self.quality <= 100:
            raise ValueError(f"quality must be in 0..100, got {self.quality}")
        self._server = server

    @property
    def name(self) -> str:
        """Short label such as ``"jpeg-q50"``."""
        return f"{self.format}-q{self.quality}"

    @property
    def num_classes(self) -> int:
        return self._classifier().num_classes

    def compress(self, source: torch.Tensor, level: torch.Tensor | None = None,
                 hint: torch.Tensor | None = None) -> list[bytes]:
        """Encode ``B x 3 x H x W`` uint8 images; returns one file (bytes) per image. Whole images: no
        level map; the files carry no hint (a link sends it beside them)."""
        if level is not None or hint is not None:
            raise ValueError(f"{self.name} codes whole images: no level map, no hint")
        _check_images(source)
        return self._files(source)

    def decompress(self, strings: Sequence[bytes]) -> torch.Tensor:
        """Decode files back to a ``B x 3 x H x W`` uint8 tensor (all images must share H, W).

        Raises :class:`~semcomm.wire.errors.BitstreamError` (a ValueError) naming the index of any
        file Pillow cannot decode.
        """
        decoded = []
        for i, s in enumerate(strings):
            try:
                with Image.open(io.BytesIO(s)) as img:
                    decoded.append(np.asarray(img.convert("RGB")))
            except Exception as e:  # Pillow raises OSError, SyntaxError, ...
                raise BitstreamError(f"{self.name}: could not decode item {i} ({len(s)} bytes): {e}") from e
        if not decoded:
            return torch.empty(0, 3, 0, 0, dtype=torch.uint8)
        return torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).contiguous()

    def classify(self, decoded: torch.Tensor, batch_size: int = DEFAULT_BATCH, fuse: bool = True) -> torch.Tensor:
        """B x C logits of the server on decoded ``B x 3 x H x W`` images (the files carry no hint to fuse)."""
        return predict_logits(self._classifier(), decoded, batch_size=batch_size, bf16=self.bf16)

    def roundtrip(self, images: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """Compress and decode ``B x 3 x H x W`` uint8 images in chunks of ``batch_size``.

        Returns ``(decoded, bits)``: decoded is ``B x 3 x H x W`` uint8, bits is an
        int64 tensor of shape ``B`` holding ``8 * len(file)`` (headers included).
        """
        _check_images(images)
        decoded, bits = [], []
        for start in range(0, images.shape[0], batch_size):
            strings = self._files(images[start:start + batch_size])
            decoded.append(self.decompress(strings))
            bits.extend(8 * len(s) for s in strings)
        if not decoded:
            return images.detach().cpu().clone(), torch.zeros(0, dtype=torch.int64)
        return torch.cat(decoded), torch.tensor(bits, dtype=torch.int64)

    def _files(self, images: torch.Tensor) -> list[bytes]:
        arrays = images.detach().cpu().permute(0, 2, 3, 1).contiguous().numpy()
        out = []
        for arr in arrays:
            buf = io.BytesIO()
            self._save(Image.fromarray(arr), buf)
            out.append(buf.getvalue())
        return out

    def _save(self, img: Image.Image, buf: io.BytesIO) -> None:
        if self.format == "jpeg":
            img.save(buf, "JPEG", quality=self.quality)
        else:
            img.save(buf, "WEBP", quality=self.quality, method=6, lossless=False)

    def _classifier(self) -> ViTAdapter:
        if self._server is None:
            raise ValueError(f"{self.name} has no server to classify with; give one: "
                             f"ImageCodec({self.format!r}, {self.quality}, server=model)")
        return self._server


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 (0..255), got dtype {images.dtype}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be B x 3 x H x W, got shape {tuple(images.shape)}")


def standard_codecs() -> list[ImageCodec]:
    """Default sweep: WebP at qualities 10, 40 and 75, JPEG at 50.

    (At 32 x 32, JPEG's headers alone cost about 5,000 bits whatever the
    quality, so one JPEG point shows it; WebP is the stronger competitor,
    and ``benchmarks/rate_frontier.py`` sweeps both densely.)
    """
    return [ImageCodec("webp", q) for q in (10, 40, 75)] + [ImageCodec("jpeg", 50)]
