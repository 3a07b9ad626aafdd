"""The codec contract: the same four calls for every codec, and the registry of codec pairs by name.

A codec owns one string format, both ends of it (as CompressAI's codecs do):

========  ====================================================  ===========================================
half      call                                                  what
========  ====================================================  ===========================================
edge      ``source(images, hidden=None)``                       what is coded, from what the edge has
edge      ``compress(source, level=None, hint=None)``           one string (``bytes``) per image
server    ``decompress(strings)``                               what the codec's server consumes, per string
server    ``classify(decoded, batch_size, fuse)``               B x C logits
========  ====================================================  ===========================================

Codec pairs (:class:`~semcomm.rate.pair.CodecPair`: ``raw8``, ``pixel-iaq``, DCT, latent) code the
patches an edge selected, each at its level (``level``: B x N, 0 = not sent), with the edge's hint
symbols (``hint``: B x C) when given; their server consumes one
:class:`~semcomm.rate.pair.Received` per string. Whole-image codecs
(:class:`~semcomm.rate.image_codecs.ImageCodec`, WebP / JPEG) code the images themselves; their strings
are the files and their server reads the decoded images.

Devices: a codec's networks (bottleneck, analysis, server) compute on the device :meth:`Codec.to` moves them
to; its entropy coding, its entropy-side networks (kept in float64 on the CPU, so that a string written on any
device is read the same on any other) and its strings stay on the CPU. :meth:`~Codec.source` and
:meth:`~Codec.classify` return CPU tensors (see :mod:`semcomm.core.devices`).

Codec pairs are registered by name in :data:`semcomm.edge.codec.CODECS` (the edge encoder resolves
names there, so the registry sits in the edge stage and this stage fills it), built with
:func:`create_codec` and listed by :func:`list_codecs`, like timm's models.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from semcomm.core.devices import module_device, resolve_device
from semcomm.edge.codec import CODECS
from semcomm.inference import DEFAULT_BATCH


class Codec(ABC):
    """One codec, both halves (see the module docstring).

    Attributes:
        name: the codec's label (``raw8``, ``latent``, ``webp-q40``, ...).
        num_classes: C, the classes its server tells apart.
        bf16: its server runs in bf16 autocast (on CPUs with native bf16).
    """

    name: str
    num_classes: int
    bf16: bool = True

    def to(self, device: str | torch.device | None) -> "Codec":
        """This codec with its networks moved to ``device`` (``"cuda"``, ``"cpu"``, None: CUDA if available);
        attributes whose names start with ``_`` (the entropy side) stay where they are. Returns ``self``."""
        device = resolve_device(device)
        for name, value in vars(self).items():
            if isinstance(value, nn.Module) and not name.startswith("_"):
                value.to(device)
        return self

    @property
    def device(self) -> torch.device:
        """The device of the codec's networks (the CPU for a codec without any)."""
        for name, value in vars(self).items():
            if isinstance(value, nn.Module) and not name.startswith("_"):
                return module_device(value)
        return torch.device("cpu")

    def source(self, images: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """What :meth:`compress` codes, from B x 3 x H x W uint8 images (or the edge's B x N x D tokens
        ``hidden``); the images themselves unless the codec transforms them first."""
        return images

    @abstractmethod
    def compress(self, source: torch.Tensor, level: torch.Tensor | None = None,
                 hint: torch.Tensor | None = None) -> list[bytes]:
        """One string per image of ``source`` (:meth:`source`).

        Args:
            level: B x N int64 level of each patch (0 = not sent), for codecs that code patches at levels;
                None for whole-image codecs.
            hint: B x C hint symbols of the edge's prediction, for codecs whose strings carry it; or None.
        """

    @abstractmethod
    def decompress(self, strings: Sequence[bytes]) -> Any:
        """What the codec's server consumes of each string; :class:`~semcomm.wire.errors.BitstreamError`
        if one is malformed."""

    @abstractmethod
    def classify(self, decoded: Any, batch_size: int = DEFAULT_BATCH, fuse: bool = True) -> torch.Tensor:
        """len(decoded) x C logits of the codec's server on :meth:`decompress`'s output (log-probabilities
        where the edge's hint arrived and ``fuse``)."""


def create_codec(name: str, **kwargs: Any) -> Codec:
    """Build a registered codec pair by name (``semcomm codecs`` lists them); ``kwargs`` go to its factory."""
    return CODECS.get(name)(**kwargs)


def list_codecs() -> list[str]:
    """The registered codec pairs' names, sorted."""
    return CODECS.names()
