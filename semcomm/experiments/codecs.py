"""Codecs as an experiment builds them and counts their bits with the edge's prediction.

An experiment names its codec pair (:data:`~semcomm.edge.codec.CODECS`) and holds one pixel server (a
zoo ViT or a backend): a pair that classifies pixels (its factory takes a ``server``: ``raw8``,
``pixel-iaq``, ``dct-cifar10``) is built with that server, a pair with a server of its own
(``latent-cifar10``) as it is registered.

With fusion the edge's prediction (its hint) travels with every string: inside it where the codec's
strings carry a hint (``with_hint``, format version 2), else as its own bytes ahead of the string (raw
8-bit strings, image files), whole bytes either way.
"""
from __future__ import annotations

import inspect

import torch

from semcomm.edge.codec import CODECS
from semcomm.inference import DEFAULT_BATCH, predict_logits
from semcomm.models import ViTAdapter
from semcomm.rate.codec import Codec
from semcomm.rate.hint import HintCoder
from semcomm.rate.image_codecs import ImageCodec
from semcomm.rate.pair import CodecPair
from semcomm.wire.bits import BitWriter


def takes_pixel_server(name: str) -> bool:
    """Whether the codec pair registered as ``name`` classifies pixels with a server it is given."""
    return "server" in inspect.signature(CODECS.get(name)).parameters


def pixel_codecs() -> list[str]:
    """The registered codec pairs that classify pixels with a server they are given, sorted."""
    return [name for name in CODECS if takes_pixel_server(name)]


def latent_codecs() -> list[str]:
    """The registered codec pairs whose server reads latent rows that a backend reading latents can take
    (:meth:`~semcomm.rate.latent.LatentPair.with_backend`; registered with ``server_reads="latents"``), sorted."""
    return sorted(name for name in CODECS if CODECS.info(name).get("server_reads") == "latents")


def codec_pair(name: str, server: ViTAdapter) -> CodecPair:
    """The codec pair registered as ``name``, with ``server`` if it classifies pixels (module docstring)."""
    factory = CODECS.get(name)
    return factory(server=server) if takes_pixel_server(name) else factory()


def hint_bytes(hint: HintCoder, symbols: torch.Tensor) -> bytes:
    """The edge's prediction (C hint symbols of one image) as bytes of its own (padded to a whole byte)."""
    writer = BitWriter()
    hint.write(writer, symbols)
    return writer.to_bytes()


def with_hint(codec: Codec, string: bytes, hint: HintCoder, symbols: torch.Tensor) -> bytes:
    """``string`` as it travels with the edge's prediction (``symbols``: its C hint symbols): re-framed with
    the hint inside where ``codec``'s strings carry one, else after the hint's own bytes."""
    if hasattr(codec, "with_hint"):
        return codec.with_hint(string, symbols)
    return hint_bytes(hint, symbols) + string


def image_codec_pass(codec: ImageCodec, images: torch.Tensor, server: ViTAdapter, bf16: bool,
                     batch_size: int = DEFAULT_BATCH) -> tuple[list[bytes], torch.Tensor]:
    """Each of B images (B x 3 x H x W uint8) as ``codec``'s string, and B x C logits of ``server`` on the decoded
    strings, ``batch_size`` images at a time. The receiver knows the images' size (a carried frame needs it)."""
    codec = ImageCodec(codec.format, codec.quality, image_size=tuple(images.shape[-2:]))
    files, logits = [], []
    for start in range(0, len(images), batch_size):
        part = codec.compress(images[start : start + batch_size])
        files += part
        logits.append(predict_logits(server, codec.decompress(part), bf16=bf16))
    return files, torch.cat(logits)
