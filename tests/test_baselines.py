from dataclasses import asdict

import pytest
import torch

from semcomm.inference import predict_logits
from semcomm.models import create_model
from semcomm.rate.image_codecs import ImageCodec, standard_codecs


def smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Random smooth gradients plus mild Gaussian noise: n x 3 x size x size uint8."""
    g = torch.Generator().manual_seed(seed)
    x = torch.linspace(0, 1, size).view(1, 1, 1, size)
    y = torch.linspace(0, 1, size).view(1, 1, size, 1)
    a, b, c = (torch.rand(n, 3, 1, 1, generator=g) for _ in range(3))
    img = 255 * (0.2 + 0.6 * (a * x + b * y + c * x * y) / (a + b + c))
    img = img + 4 * torch.randn(n, 3, size, size, generator=g)
    return img.round().clamp(0, 255).to(torch.uint8)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = ((a.float() - b.float()) ** 2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def small() -> torch.Tensor:
    return smooth_images(4, 32, seed=0)


@pytest.fixture(scope="module")
def large() -> torch.Tensor:
    return smooth_images(2, 224, seed=1)


@pytest.mark.parametrize("codec", standard_codecs(), ids=lambda c: c.name)
def test_roundtrip_shape_dtype_and_bits(codec, small, large):
    for images in (small, large):
        decoded, bits = codec.roundtrip(images, batch_size=3)  # exercises chunking
        assert decoded.shape == images.shape and decoded.dtype == torch.uint8
        assert bits.shape == (images.shape[0],) and bits.dtype == torch.int64
        strings = codec.compress(images)
        assert bits.tolist() == [8 * len(s) for s in strings]
        assert (bits % 8 == 0).all()
        assert torch.equal(codec.decompress(strings), decoded)


def test_names():
    assert [c.name for c in standard_codecs()] == ["webp-q10", "webp-q40", "webp-q75", "jpeg-q50"]


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_bits_increase_with_quality(fmt, small, large):
    codecs = [ImageCodec(fmt, q) for q in (10, 40, 75, 90)]
    for images in (small, large):
        means = [c.roundtrip(images)[1].double().mean().item() for c in codecs]
        assert means == sorted(means), (fmt, means)


def test_high_quality_jpeg_psnr(small, large):
    for images in (small, large):
        decoded, _ = ImageCodec("jpeg", 90).roundtrip(images)
        assert (psnr(decoded, images) > 30).all()


def test_webp_q5_much_smaller_than_jpeg_q50_on_small_images(small):
    # Measured ~600 vs ~5500 bits per 32x32 image: JPEG's tables dominate.
    webp = ImageCodec("webp", 5).roundtrip(small)[1]
    jpeg = ImageCodec("jpeg", 50).roundtrip(small)[1]
    assert (webp * 4 < jpeg).all(), (webp.tolist(), jpeg.tolist())


def test_empty_batch():
    decoded, bits = ImageCodec("webp", 20).roundtrip(torch.zeros(0, 3, 8, 8, dtype=torch.uint8))
    assert decoded.shape == (0, 3, 8, 8) and bits.shape == (0,)


def test_bad_images(small):
    codec = ImageCodec("jpeg", 50)
    with pytest.raises(TypeError, match="uint8"):
        codec.compress(small.float())
    with pytest.raises(TypeError, match="torch.Tensor"):
        codec.compress(small.numpy())
    with pytest.raises(ValueError, match=r"\(4, 1, 32, 32\)"):
        codec.compress(small[:, :1])
    with pytest.raises(ValueError, match=r"\(3, 32, 32\)"):
        codec.roundtrip(small[0])


@pytest.mark.parametrize(
    "fmt, quality, match",
    [("jpeg", 101, "0..100"), ("webp", -1, "0..100"), ("jpeg", 50.0, "int"), ("png", 50, "jpeg, webp")],
)
def test_bad_codec(fmt, quality, match):
    with pytest.raises(ValueError, match=match):
        ImageCodec(fmt, quality)


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_truncated_string_names_index(fmt, small):
    codec = ImageCodec(fmt, 50)
    strings = codec.compress(small[:3])
    strings[2] = strings[2][: len(strings[2]) // 2]
    with pytest.raises(ValueError, match="item 2"):
        codec.decompress(strings)
    with pytest.raises(ValueError, match="item 0"):
        codec.decompress([b"not an image"])


def test_image_codecs_speak_the_codec_contract(small):
    """compress -> files, decompress -> images, classify -> the server's logits on them; the server is not a
    field (configs and their keys stay format and quality)."""
    torch.manual_seed(0)
    server = create_model("semcomm_vit_server_p4_32")
    codec = ImageCodec("webp", 40, server=server)
    assert codec == ImageCodec("webp", 40) and asdict(codec) == {"format": "webp", "quality": 40}
    files = codec.compress(codec.source(small))
    assert files == ImageCodec("webp", 40).compress(small)
    decoded = codec.decompress(files)
    assert codec.num_classes == 10
    torch.testing.assert_close(codec.classify(decoded, batch_size=3),
                               predict_logits(server, decoded, batch_size=3, bf16=codec.bf16))
    with pytest.raises(ValueError, match="whole images: no level map, no hint"):
        codec.compress(small, torch.ones(4, 64, dtype=torch.int64))
    with pytest.raises(ValueError, match="has no server"):
        ImageCodec("webp", 40).classify(decoded)
