"""Classical image codecs (JPEG, WebP, AVIF via Pillow) as rate-distortion reference points.

An :class:`ImageCodec` offers the codec contract (:class:`~semcomm.rate.codec.Codec`) for whole
images: ``compress`` writes one string per image, ``decompress`` decodes them, and ``classify``
runs its server (a pixel ViT given at construction) on the decoded images. Shapes and units:

* images are ``B x 3 x H x W`` uint8 torch tensors (RGB, values 0..255);
* a compressed image is ``bytes``, one per image: for ``jpeg``, ``webp`` and ``avif`` the complete file as
  Pillow writes it; for ``vp8`` and ``av1`` what a transport carries of the WebP or AVIF file (the coded frame
  without the container a receiver rebuilds, plus a codec id and a CRC-16: :mod:`semcomm.wire.carried`);
* bits are ``8 * len(string)`` per image, every byte included. Returned as an int64 tensor of shape ``B``.

Settings: JPEG at ``quality``; WebP lossy, method 6; AVIF (AV1 intra, libavif's default encoder) at speed 4,
4:2:0 chroma subsampling.
"""
from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from dataclasses import InitVar, dataclass

import numpy as np
import torch
from PIL import Image

from semcomm.core.devices import module_device, resolve_device
from semcomm.inference import DEFAULT_BATCH, predict_logits
from semcomm.models import ViTAdapter
from semcomm.rate.codec import Codec
from semcomm.wire.carried import AVIFContainer, WebPContainer
from semcomm.wire.errors import BitstreamError

FORMATS = ("jpeg", "webp", "avif", "vp8", "av1")
CARRIED = {"vp8": "webp", "av1": "avif"}  # a carried format: the file format it is cut from
AVIF_SPEED, AVIF_SUBSAMPLING = 4, "4:2:0"


@dataclass
class ImageCodec(Codec):
    """A Pillow codec at one quality setting (``format`` in FORMATS, ``quality`` in 0..100).

    ``server`` (optional, not a field): the pixel ViT that :meth:`classify` runs on decoded images.
    ``image_size`` (optional, not a field): H, W of the images, which a receiver of a carried frame (``vp8``,
    ``av1``) knows by configuration (default: the server's).

    >>> codec = ImageCodec("webp", 40)
    >>> files = codec.compress(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    >>> codec.decompress(files).shape
    torch.Size([2, 3, 32, 32])
    """

    format: str
    quality: int
    server: InitVar[ViTAdapter | None] = None
    image_size: InitVar[tuple[int, int] | None] = None

    def __post_init__(self, server: ViTAdapter | None, image_size: tuple[int, int] | None) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; accepted: {', '.join(FORMATS)}")
        if isinstance(self.quality, bool) or not isinstance(self.quality, int):
            raise ValueError(f"quality must be an int in 0..100, got {self.quality!r}")
        if not 0 <= self.quality <= 100:
            raise ValueError(f"quality must be in 0..100, got {self.quality}")
        self._server = server
        self._image_size = None if image_size is None else tuple(image_size)

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
        """Decode strings back to a ``B x 3 x H x W`` uint8 tensor (all images must share H, W; a carried frame is
        first rebuilt into its file, at the size the codec knows).

        Raises :class:`~semcomm.wire.errors.BitstreamError` (a ValueError) naming the index of any
        string that does not rebuild or that Pillow cannot decode.
        """
        return self._decode(strings, self._decoded_size() if self.format in CARRIED else None)

    def _decode(self, strings: Sequence[bytes], size: tuple[int, int] | None) -> torch.Tensor:
        """Decode ``strings`` (carried frames of ``size`` H, W; None for files)."""
        decoded = []
        for i, s in enumerate(strings):
            try:
                file = self._container(size).rebuild(s) if self.format in CARRIED else s
                with Image.open(io.BytesIO(file)) as img:
                    decoded.append(np.asarray(img.convert("RGB")))
            except Exception as e:  # Pillow raises OSError, SyntaxError, ...
                raise BitstreamError(f"{self.name}: could not decode item {i} ({len(s)} bytes): {e}") from e
        if not decoded:
            return torch.empty(0, 3, 0, 0, dtype=torch.uint8, device="cpu")
        return torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).contiguous()

    def to(self, device: str | torch.device | None) -> "ImageCodec":
        """This codec with its server (if it has one) moved to ``device`` (None: CUDA if available); the files are
        written and read on the CPU whatever the device. Returns ``self``."""
        device = resolve_device(device)
        if self._server is not None:
            self._server.to(device)
        return self

    @property
    def device(self) -> torch.device:
        """The device of the codec's server (the CPU without one)."""
        return torch.device("cpu") if self._server is None else module_device(self._server)

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
            decoded.append(self._decode(strings, tuple(images.shape[-2:])))
            bits.extend(8 * len(s) for s in strings)
        if not decoded:
            return images.detach().cpu().clone(), torch.zeros(0, dtype=torch.int64, device="cpu")
        return torch.cat(decoded), torch.tensor(bits, dtype=torch.int64, device="cpu")

    def _files(self, images: torch.Tensor) -> list[bytes]:
        arrays = images.detach().cpu().permute(0, 2, 3, 1).contiguous().numpy()
        files = [_file(CARRIED.get(self.format, self.format), self.quality, arr) for arr in arrays]
        if self.format not in CARRIED:
            return files
        size = tuple(arrays.shape[1:3])
        if self._known_size() not in (None, size):
            raise ValueError(f"{self.name} codes {self._known_size()} images, got {size}")
        container = self._container(size)
        return [container.strip(f) for f in files]

    def _container(self, size: tuple[int, int]) -> WebPContainer | AVIFContainer:
        """The constant container of this codec's files of ``size`` (H, W)."""
        return _container(self.format, self.quality, *size)

    def _known_size(self) -> tuple[int, int] | None:
        """H, W of the images: ``image_size``, else the server's, else None."""
        if self._image_size is not None:
            return self._image_size
        return None if self._server is None else tuple(self._server.image_size)

    def _decoded_size(self) -> tuple[int, int]:
        size = self._known_size()
        if size is None:
            raise BitstreamError(f"{self.name}: a carried frame decodes only at a known image size; give "
                                 f"ImageCodec({self.format!r}, {self.quality}, image_size=(H, W)) or a server")
        return size

    def _classifier(self) -> ViTAdapter:
        if self._server is None:
            raise ValueError(f"{self.name} has no server to classify with; give one: "
                             f"ImageCodec({self.format!r}, {self.quality}, server=model)")
        return self._server


def _file(fmt: str, quality: int, array: np.ndarray) -> bytes:
    """One H x W x 3 uint8 image as a ``jpeg``, ``webp`` or ``avif`` file."""
    buf = io.BytesIO()
    img = Image.fromarray(array)
    if fmt == "jpeg":
        img.save(buf, "JPEG", quality=quality)
    elif fmt == "webp":
        img.save(buf, "WEBP", quality=quality, method=6, lossless=False)
    else:
        img.save(buf, "AVIF", quality=quality, speed=AVIF_SPEED, subsampling=AVIF_SUBSAMPLING)
    return buf.getvalue()


@functools.lru_cache(maxsize=None)
def _container(fmt: str, quality: int, height: int, width: int) -> WebPContainer | AVIFContainer:
    """The container a receiver rebuilds for ``fmt`` (``vp8`` / ``av1``) at ``quality`` and this size: from the
    file of a mid-grey image encoded with the same settings."""
    reference = _file(CARRIED[fmt], quality, np.full((height, width, 3), 128, dtype=np.uint8))
    return (WebPContainer if fmt == "vp8" else AVIFContainer).of(reference)


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


AV1_QUALITIES = (0, 5, 10, 15, 20, 25, 30, 40, 50, 60, 75)
WEBP_QUALITIES = (1, 5, 10, 20, 30, 40, 50, 60, 75, 90)


def frontier_codecs() -> list[ImageCodec]:
    """The dense grid of the error-free frontier (``benchmarks/rate_frontier.py``; CLI ``--codecs frontier``): AV1
    as its transport carries it at 11 qualities, VP8 as carried and WebP files at 10 each, AVIF files at 10/40/75,
    JPEG at 5/25/50/75/95."""
    return ([ImageCodec("av1", q) for q in AV1_QUALITIES]
            + [ImageCodec(fmt, q) for fmt in ("vp8", "webp") for q in WEBP_QUALITIES]
            + [ImageCodec("avif", q) for q in (10, 40, 75)]
            + [ImageCodec("jpeg", q) for q in (5, 25, 50, 75, 95)])
