"""Hostile data folders (issue 25): what must hold for every generated folder.

Each property builds a small data set in a fresh temporary folder and loads it. What must hold is a correct load
(every label the class that the image's folder or annotation names, every pixel the documented 8-bit RGB of the
file) or a ``ValueError`` naming the offending file or class folder: never a silent mislabel, never another
exception. Images are small (at most 8 x 8) and every property tries a bounded number of cases (``CASES``).
"""
from __future__ import annotations

import struct
import tempfile
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from semcomm.data import DataWarning, load_image_folder, load_images, load_split

CASES = 20
SETTINGS = settings(max_examples=CASES, deadline=None)
POOL = ("ant", "bee", "cat", "dog", "eel")
COLOURS = {name: (30 + 40 * i, 220 - 35 * i, 90 + 25 * i) for i, name in enumerate(POOL + ("zzz",))}


@contextmanager
def fresh_folder():
    """A new empty folder for one generated case (hypothesis runs many cases in one test)."""
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def solid(path: Path, cls: str, size: int = 4) -> None:
    """A lossless ``size`` x ``size`` image of the colour of class ``cls``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), COLOURS[cls]).save(path)


def class_of(image) -> str:
    """The class whose colour a loaded 3 x H x W image has."""
    pixel = tuple(int(v) for v in image[:, 0, 0])
    return next(name for name, colour in COLOURS.items() if colour == pixel)


def png(width: int, height: int, colour_type: int, depth: int, pixels: np.ndarray | None) -> bytes:
    """A PNG file written by hand (any bit depth Pillow cannot write): ``pixels`` H x W x C unsigned values of
    ``depth`` bits, or None for a header alone (IHDR and IEND, no image data)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    body = b""
    if pixels is not None:
        rows = []
        for row in pixels.reshape(height, -1):
            if depth == 16:
                packed = row.astype(">u2").tobytes()
            else:  # 1, 2, 4 or 8 bits a sample, packed from the most significant bit
                bits = ((row[:, None].astype(np.uint16) >> np.arange(depth - 1, -1, -1)) & 1).astype(np.uint8)
                packed = np.packbits(bits.ravel()).tobytes()
            rows.append(b"\x00" + packed)
        body = chunk(b"IDAT", zlib.compress(b"".join(rows)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + body + chunk(b"IEND", b"")


def bmp_header(width: int, height: int) -> bytes:
    """A 24-bit BMP file header claiming ``width`` x ``height`` pixels, with no pixel data."""
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0,
                                                                     2835, 2835, 0, 0)


def one_image_folder(root: Path, write) -> Path:
    """A one-class folder ``root/only/`` holding the image that ``write(path)`` writes; returns that path."""
    path = root / "only" / "image"
    path.parent.mkdir(parents=True)
    return write(path)


def loaded_pixels(root: Path) -> np.ndarray:
    """H x W x 3 uint8 pixels of the one image under ``root``, as the loader decodes it."""
    split = load_image_folder(root)
    assert len(split) == 1 and split.images.dtype.is_floating_point is False
    return split.images[0].permute(1, 2, 0).numpy()


# ----- 1. one class list for every split ---------------------------------------------------------------------

counts = st.dictionaries(st.sampled_from(POOL), st.integers(0, 2), min_size=1, max_size=4)


def make_split(folder: Path, images: dict[str, int]) -> None:
    for cls, n in images.items():
        (folder / cls).mkdir(parents=True)
        for i in range(n):
            solid(folder / cls / f"{i}.png", cls)


@SETTINGS
@given(train=counts, test=counts)
def test_every_split_labels_by_the_training_classes_or_names_the_empty_class_folder(train, test):
    """An empty class folder (in any split, or in train when loading another split) is a ValueError naming it; a
    held-out class that train lacks is a ValueError naming it; otherwise every label is the class of the image's
    folder, indexing train's sorted classes in both splits."""
    with fresh_folder() as root:
        data = root / "set"
        make_split(data / "train", train)
        make_split(data / "test", test)
        problems = {"train": [str(data / "train" / c) for c, n in train.items() if n == 0]}
        problems["test"] = problems["train"] + [str(data / "test" / c) for c, n in test.items() if n == 0] \
            + [c for c in test if c not in train]
        for split, images in (("train", train), ("test", test)):
            if problems[split]:
                with pytest.raises(ValueError) as err:
                    load_split(data, split, cache_dir=root / "cache")
                assert any(p in str(err.value) for p in problems[split]), (problems[split], str(err.value))
                assert "\n" not in str(err.value)
                continue
            loaded = load_split(data, split, cache_dir=root / "cache")
            assert loaded.classes == sorted(train) and len(loaded) == sum(images.values())
            assert [loaded.classes[label] for label in loaded.labels] == [class_of(im) for im in loaded.images]


def test_an_empty_training_class_folder_is_named_not_dropped(tmp_path):
    """The issue's case: train/cat_empty/ shifted every later class's label in test (deer 4 in train, 5 in test)."""
    for split in ("train", "test"):
        for cls in ("ant", "bee", "dog"):
            solid(tmp_path / "set" / split / cls / "0.png", cls)
    (tmp_path / "set" / "train" / "cat_empty").mkdir()
    for split in ("train", "test"):
        with pytest.raises(ValueError, match=f"class folder {tmp_path / 'set' / 'train' / 'cat_empty'} holds no "
                                             "images"):
            load_split(tmp_path / "set", split, cache_dir=tmp_path / "cache")
    (tmp_path / "set" / "train" / "cat_empty").rmdir()
    assert load_split(tmp_path / "set", "test", cache_dir=tmp_path / "cache").labels.tolist() == [0, 1, 2]
    (tmp_path / "set" / "test" / "cat").mkdir()  # added after the split was cached: refused, not served stale
    with pytest.raises(ValueError, match="class folder .*test/cat holds no images"):
        load_split(tmp_path / "set", "test", cache_dir=tmp_path / "cache")


# ----- 2. damaged files ----------------------------------------------------------------------------------------

FORMATS = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp", "GIF": "gif", "TIFF": "tif", "WEBP": "webp"}


@SETTINGS
@given(fmt=st.sampled_from(sorted(FORMATS)), damage=st.sampled_from(["truncate", "flip", "garbage", "empty"]),
       data=st.data())
def test_a_damaged_image_file_is_named_or_loads_with_the_right_labels(fmt, damage, data):
    """A truncated, bit-flipped, garbage or empty image file is a one-line ValueError naming it, or (damage a decoder
    cannot see) the split loads with every label right; any warning on the way is a DataWarning naming the file."""
    with fresh_folder() as root:
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
        for cls in ("ant", "bee"):
            for i in range(2):
                (root / cls).mkdir(exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                    root / cls / f"{i}.{FORMATS[fmt]}", fmt)
        damaged = root / "bee" / f"1.{FORMATS[fmt]}"
        raw = bytearray(damaged.read_bytes())
        if damage == "truncate":
            raw = raw[:data.draw(st.integers(0, len(raw) - 1), label="keep")]
        elif damage == "flip":
            for at in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=8), label="at"):
                raw[at] ^= data.draw(st.integers(1, 255), label="mask")
        else:
            raw = data.draw(st.binary(max_size=64), label="garbage") if damage == "garbage" else b""
        damaged.write_bytes(bytes(raw))
        with mock.patch.object(Image, "MAX_IMAGE_PIXELS", 10**6), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # a damaged header claims little memory here
            try:
                split = load_image_folder(root, image_size=8)
            except ValueError as err:
                assert str(damaged) in str(err) and "\n" not in str(err)
                return
            finally:  # what Pillow warns about is said again naming the file
                assert all(issubclass(w.category, DataWarning) and str(damaged) in str(w.message) for w in caught)
        assert split.labels.tolist() == [0, 0, 1, 1] and split.images.shape == (4, 3, 8, 8)


# ----- 3. bit depths and colour modes ---------------------------------------------------------------------------

shapes = st.tuples(st.integers(1, 6), st.integers(1, 6))


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2**32 - 1),
       kind=st.sampled_from(["png16", "tiff16", "pgm16", "tiff-int32", "gray1", "gray2", "gray4", "rgb16", "la16",
                             "rgba16", "float"]))
def test_high_depth_and_low_depth_images_scale_to_8_bits(shape, seed, kind):
    """16-bit samples keep their high byte (v >> 8: 65535 -> 255, 32768 -> 128, as Pillow reduces 16-bit RGB);
    1, 2 and 4-bit gray span 0..255; float images in [0, 1] become round(255 v)."""
    height, width = shape
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 65536, (height, width), dtype=np.uint16)
    values.flat[0] = 65535  # full scale is full scale
    with fresh_folder() as root:
        if kind in ("png16", "tiff16", "pgm16", "tiff-int32"):
            suffix, array = {"png16": ("png", values), "tiff16": ("tif", values), "pgm16": ("pgm", values),
                             "tiff-int32": ("tif", values.astype(np.int32))}[kind]
            one_image_folder(root, lambda p: Image.fromarray(array).save(p.with_suffix(f".{suffix}")))
            expected = np.stack([values >> 8] * 3, axis=-1)
        elif kind.startswith("gray"):
            depth = int(kind[4:])
            low = values >> (16 - depth)
            one_image_folder(root, lambda p: p.with_suffix(".png").write_bytes(png(width, height, 0, depth, low)))
            expected = np.stack([low * 255 // (2**depth - 1)] * 3, axis=-1)
        elif kind == "float":
            floats = rng.random((height, width), dtype=np.float32)
            floats.flat[0] = 1.0
            one_image_folder(root, lambda p: Image.fromarray(floats).save(p.with_suffix(".tif")))
            expected = np.stack([np.rint(floats * 255)] * 3, axis=-1)
        else:
            channels, colour_type = {"rgb16": (3, 2), "la16": (2, 4), "rgba16": (4, 6)}[kind]
            samples = rng.integers(0, 65536, (height, width, channels), dtype=np.uint16)
            one_image_folder(root, lambda p: p.with_suffix(".png").write_bytes(
                png(width, height, colour_type, 16, samples)))
            colour = samples[..., :3] if channels >= 3 else np.repeat(samples[..., :1], 3, axis=-1)
            expected = colour >> 8  # alpha dropped: the colour channels, as for 8-bit RGBA
        assert np.array_equal(loaded_pixels(root), expected.astype(np.uint8))


def test_a_16_bit_grayscale_png_is_not_white(tmp_path):
    """The issue's case: a 16-bit PNG (I;16) loaded with 99.6% of its pixels at 255."""
    ramp = np.linspace(0, 65535, 256 * 4).astype(np.uint16).reshape(32, 32)
    one_image_folder(tmp_path, lambda p: Image.fromarray(ramp).save(p.with_suffix(".png")))
    pixels = loaded_pixels(tmp_path)
    assert (pixels == 255).mean() < 0.01 and pixels[0, 0, 0] == 0 and pixels[-1, -1, 0] == 255
    assert pixels[16, 0, 0] == ramp[16, 0] >> 8 == 128  # 32799 = 0x801f


@pytest.mark.parametrize("values, mode, suffix", [
    (np.array([[0.5, 1.5]], dtype=np.float32), "F", "tif"),
    (np.array([[0.5, -0.1]], dtype=np.float32), "F", "tif"),
    (np.array([[0.5, np.nan]], dtype=np.float32), "F", "tif"),
    (np.array([[7, 70000]], dtype=np.int32), "I", "tif"),
    (np.array([[7, -1]], dtype=np.int32), "I", "tif"),
])
def test_values_out_of_an_images_documented_range_are_named(tmp_path, values, mode, suffix):
    """Float images outside [0, 1] and integer ones outside 0..65535 have no one right 8-bit scale: refused by name."""
    path = one_image_folder(tmp_path, lambda p: p.with_suffix(f".{suffix}"))
    Image.fromarray(values).save(path)
    with Image.open(path) as image:
        assert image.mode == mode
    with pytest.raises(ValueError, match=f"image {path} holds .* outside"):
        load_image_folder(tmp_path)


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2**32 - 1),
       kind=st.sampled_from(["cmyk", "palette-png", "palette-gif", "palette-alpha", "la", "rgba", "bilevel", "gray"]))
def test_colour_modes_become_the_right_rgb(shape, seed, kind):
    """CMYK becomes (255 - C)(255 - K) / 255 rounded (and so on for G, B); palette images their palette's colours
    (transparency or not); LA and L their gray in every channel; RGBA its colour channels; 1-bit 0 or 255."""
    height, width = shape
    rng = np.random.default_rng(seed)
    with fresh_folder() as root:
        if kind == "cmyk":
            cmyk = rng.integers(0, 256, (height, width, 4)).astype(np.uint8)
            image = Image.frombytes("CMYK", (width, height), cmyk.tobytes())
            one_image_folder(root, lambda p: image.save(p.with_suffix(".tif")))
            ink = cmyk.astype(np.int64)
            expected = np.rint((255 - ink[..., :3]) * (255 - ink[..., 3:]) / 255)
        elif kind.startswith("palette"):
            palette = rng.integers(0, 256, (256, 3)).astype(np.uint8)
            index = rng.integers(0, 256, (height, width)).astype(np.uint8)
            image = Image.frombytes("P", (width, height), index.tobytes())
            image.putpalette(palette.tobytes())
            extra = {"transparency": int(index.flat[0])} if kind == "palette-alpha" else {}
            suffix = ".gif" if kind == "palette-gif" else ".png"
            one_image_folder(root, lambda p: image.save(p.with_suffix(suffix), **extra))
            expected = palette[index]
        elif kind == "bilevel":
            bits = rng.integers(0, 2, (height, width)).astype(bool)
            one_image_folder(root, lambda p: Image.fromarray(bits).save(p.with_suffix(".png")))
            expected = np.stack([bits * 255] * 3, axis=-1)
        else:
            channels = {"la": 2, "rgba": 4, "gray": 1}[kind]
            samples = rng.integers(0, 256, (height, width, channels)).astype(np.uint8)
            mode = {"la": "LA", "rgba": "RGBA", "gray": "L"}[kind]
            image = Image.frombytes(mode, (width, height), samples.tobytes())
            one_image_folder(root, lambda p: image.save(p.with_suffix(".png")))
            expected = samples[..., :3] if kind == "rgba" else np.repeat(samples[..., :1], 3, axis=-1)
        assert np.array_equal(loaded_pixels(root), expected.astype(np.uint8))


def test_a_known_cmyk_pixel(tmp_path):
    """C, M, Y, K = 100, 50, 200, 30 is R, G, B = 137, 181, 49 (155 * 225 / 255 = 136.8, ...)."""
    image = Image.new("CMYK", (1, 1), (100, 50, 200, 30))
    one_image_folder(tmp_path, lambda p: image.save(p.with_suffix(".tif")))
    assert loaded_pixels(tmp_path)[0, 0].tolist() == [137, 181, 49]


# ----- 4. oversized headers -------------------------------------------------------------------------------------

@SETTINGS
@given(width=st.integers(900, 100_000), data=st.data(), fmt=st.sampled_from(["png", "bmp"]),
       labelled=st.booleans())
def test_a_header_claiming_too_many_pixels_is_refused_by_name(width, data, fmt, labelled):
    """A header claiming more than PIL.Image.MAX_IMAGE_PIXELS pixels (Pillow's decompression-bomb limit) is a
    one-line ValueError naming the file and the limit, before anything is decoded, in labelled and unlabelled
    loads."""
    height = data.draw(st.integers(Image.MAX_IMAGE_PIXELS // width + 1, 100_000), label="height")
    header = png(width, height, 2, 8, None) if fmt == "png" else bmp_header(width, height)
    with fresh_folder() as root:
        path = one_image_folder(root, lambda p: p.with_suffix(f".{fmt}"))
        path.write_bytes(header)
        with pytest.raises(ValueError) as err:
            load_image_folder(root, image_size=8) if labelled else load_images(root, image_size=8)
        assert str(path) in str(err.value) and "MAX_IMAGE_PIXELS" in str(err.value) and "\n" not in str(err.value)


def test_the_issues_20000_pixel_square_png_is_one_line_from_the_command_line(tmp_path, capsys, monkeypatch):
    """`semcomm evaluate --data` on a split holding a PNG whose header claims 20000 x 20000: exit 2, one line naming
    the file (was a traceback ending in Pillow's DecompressionBombError)."""
    from semcomm.cli import main

    monkeypatch.setenv("SEMCOMM_CACHE", str(tmp_path / "cache"))
    for split in ("train", "test"):
        for cls in POOL[:2]:
            solid(tmp_path / "set" / split / cls / "0.png", cls)
    bomb = tmp_path / "set" / "test" / "ant" / "bomb.png"
    bomb.write_bytes(png(20000, 20000, 2, 8, None))
    try:
        code = main(["evaluate", "vit-edge-cifar10", "--data", str(tmp_path / "set")])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert str(bomb) in err.strip().splitlines()[-1]


# ----- 5. annotation files --------------------------------------------------------------------------------------

@SETTINGS
@given(classes=st.lists(st.sampled_from(POOL[:3]), min_size=1, max_size=4),
       missing=st.integers(0, 2), stranger=st.booleans(), duplicate=st.booleans(), unannotated=st.booleans(),
       skip_missing=st.booleans(), data=st.data())
def test_annotations_label_every_image_as_written_or_name_the_problem(classes, missing, stranger, duplicate,
                                                                      unannotated, skip_missing, data):
    """A val split labelled by ``val_annotations.txt``: lines naming missing files are a ValueError naming one (or,
    with ``skip_missing``, skipped with a warning naming how many and every one); a class train lacks, a file
    labelled twice or an image without a line is a ValueError naming it; otherwise every image gets the label of
    its line, indexing train's classes."""
    with fresh_folder() as root:
        data_set = root / "set"
        for cls in POOL[:3]:
            solid(data_set / "train" / cls / "0.png", cls)
        lines, problems = [], []
        for i, cls in enumerate(classes):
            name = f"val_{i}.png"
            label = "zzz" if stranger and i == 0 else cls
            solid(data_set / "val" / "images" / name, label)
            if unannotated and i == len(classes) - 1:
                problems.append(name)
                continue
            lines.append(f"{name}\t{label}\t0\t0\t3\t3")
        problems += ["zzz"] if stranger else []
        if duplicate and lines:
            lines.append(lines[-1])
            problems.append(lines[-1].split("\t")[0])
        absent = [f"gone_{i}.png" for i in range(missing)]
        lines += [f"{name}\tant" for name in absent]
        problems += [] if skip_missing else absent
        lines = data.draw(st.permutations(lines), label="order")
        (data_set / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                val = load_split(data_set, "val", cache_dir=root / "cache", skip_missing=skip_missing)
            except ValueError as err:
                assert problems and any(p in str(err) for p in problems), (problems, str(err))
                assert "\n" not in str(err)
                return
        assert not problems, f"loaded although {problems}"
        assert val.classes == list(POOL[:3]) and len(val) == len(classes) - unannotated
        assert [val.classes[label] for label in val.labels] == [class_of(im) for im in val.images]
        said = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
        assert (len(said) == 1) == bool(absent)
        assert all(f"{len(absent)} files" in s and all(name in s for name in absent) for s in said)
