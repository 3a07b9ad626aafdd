"""One image file to 8-bit RGB: every Pillow mode, high bit depths scaled, oversized and damaged files refused.

What a file's pixels become (8 bits a channel, R, G, B):

* RGB, gray (``L``), ``YCbCr``, ``HSV``, ``RGBX``: Pillow's conversion to RGB; gray repeated in every channel;
  1-bit images 0 or 255 (2- and 4-bit gray PNGs are spread over 0..255 by Pillow).
* alpha (``RGBA``, ``LA``, ``PA``, palette with transparency): the colour channels, alpha dropped (not composited).
* palette (``P``): the palette's colours.
* ``CMYK``: R = round((255 - C)(255 - K) / 255), G and B likewise from M and Y.
* 16 bits a sample (``I;16``, ``I;16B``, ..., and ``I`` holding 0..65535, as Pillow opens 16-bit PGM): the high
  byte, v >> 8 (65535 -> 255, 32768 -> 128), as Pillow reduces 16-bit RGB, RGBA and LA PNGs to 8 bits. ``I``
  values outside 0..65535 are an error: 32-bit data have no one right 8-bit scale.
* float (``F``): values in [0, 1] become round(255 v); values outside it, or NaN, are an error.

A file whose header claims more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (Pillow's decompression-bomb limit,
about 89.5 million by default; raise it to allow larger images) is refused before its pixels are decoded, and a
file Pillow cannot decode (truncated, corrupt, not an image) is refused: both one-line ValueErrors naming the file.
What Pillow warns about while decoding a file (a damaged tag, say) is warned again naming the file.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from semcomm.data.folders import DataWarning

SIXTEEN_BIT_MAX = 65535  # integer samples above it have no one right 8-bit scale


def read_image(path: Path) -> Image.Image:
    """The image in ``path`` as an 8-bit RGB Pillow image (see the module docstring).

    Raises:
        ValueError: naming the file: too many pixels, not decodable, or values outside its mode's range.
    """
    return to_rgb(_decoded(path), path)


def to_rgb(img: Image.Image, path: Path) -> Image.Image:
    """``img`` (decoded from ``path``, in any mode) as an 8-bit RGB image (see the module docstring)."""
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        gray = _gray_to_8_bits(np.asarray(img), path)
        return Image.fromarray(np.repeat(gray[..., None], 3, axis=-1))
    if mode == "CMYK":
        ink = np.asarray(img).astype(np.uint32)
        light = (255 - ink[..., :3]) * (255 - ink[..., 3:])
        return Image.fromarray(((light + 127) // 255).astype(np.uint8))  # rounded: x / 255 is never a tie
    if mode in ("P", "PA"):
        img = img.convert("RGBA")  # the palette's colours (straight to RGB warns about transparency)
    try:
        return img.convert("RGB")
    except ValueError as err:
        raise ValueError(f"cannot convert image {path} from mode {mode} to RGB: {_one_line(err)}") from err


def _decoded(path: Path) -> Image.Image:
    """The image in ``path``, decoded in Pillow's own mode; what Pillow warns about while decoding it (a damaged tag,
    say) is warned again as a :class:`~semcomm.data.folders.DataWarning` naming the file."""
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(f"image {path} claims more than PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS} pixels "
                         "(Pillow's decompression-bomb limit), so it is not decoded; shrink it, or raise that limit "
                         "to allow it") from err
    except Exception as err:  # a damaged file raises any of OSError, SyntaxError, EOFError, struct.error, zlib.error...
        raise ValueError(f"cannot read image {path}: {_one_line(err)}") from err
    for warning in said:
        warnings.warn(f"image {path}: {_one_line(warning.message)}", DataWarning, stacklevel=2)
    return img


def _gray_to_8_bits(values: np.ndarray, path: Path) -> np.ndarray:
    """H x W uint8 of one-channel integer (16-bit) or float (0..1) samples."""
    if values.dtype.kind == "f":
        outside = np.count_nonzero(~((values >= 0) & (values <= 1)))  # NaN counts as outside
        if outside:
            raise ValueError(f"image {path} holds {outside} float values outside [0, 1] or not a number; float images "
                             "are read as 0 (black) to 1 (white)")
        return np.rint(values * 255).astype(np.uint8)
    outside = np.count_nonzero((values < 0) | (values > SIXTEEN_BIT_MAX))
    if outside:
        raise ValueError(f"image {path} holds {outside} values outside 0..{SIXTEEN_BIT_MAX}; integer images are read "
                         f"as 16-bit, 0 (black) to {SIXTEEN_BIT_MAX} (white)")
    return (values.astype(np.uint32) >> 8).astype(np.uint8)


def _one_line(err: Exception) -> str:
    """An exception's message on one line (its type's name when it has none)."""
    return " ".join(str(err).split()) or type(err).__name__
