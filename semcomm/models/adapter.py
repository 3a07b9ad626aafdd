"""The small interface the codec needs from a Vision Transformer.

Anything that subclasses :class:`ViTAdapter` and implements its three
``_``-methods can serve as an edge encoder or a server model, whether it is
built on timm or not (see ``README.md``, "Plugging in your own ViT").

Conventions:
    images: B x 3 x H x W, uint8 in [0, 255] or float in [0, 1]; H and W
        equal the model's ``image_size`` (a whole number of patches).
    positions: B x K int64 indices into the patch grid, row-major
        (index ``r * grid_w + c``), distinct within each row.
    attention: one tensor per layer, B x heads x T x T with T the number of
        tokens (prefix tokens such as CLS first, then the patches); None for
        a layer the caller did not ask for (see ``forward_with_attention``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class ViTOutput:
    """Logits and per-layer attention of a full forward pass.

    Attributes:
        logits: B x C.
        attentions: one B x heads x T x T tensor per layer, rows sum to 1;
            None for a layer whose attention was not recorded.
        num_prefix_tokens: tokens before the patches (1 for CLS, 2 for CLS +
            distillation token).
        hidden: block index -> B x N x D patch tokens after that block
            (prefix tokens dropped), for the blocks asked for via ``hidden``
            in ``forward_with_attention``; the latent codec reads them.
    """

    logits: torch.Tensor
    attentions: list[torch.Tensor]
    num_prefix_tokens: int
    hidden: dict[int, torch.Tensor] = field(default_factory=dict)

    def cls_attention(self, layer: int = -1) -> torch.Tensor:
        """B x heads x N: attention from the first (CLS) token to each patch in ``layer``."""
        return self.attention(layer)[:, :, 0, self.num_prefix_tokens :]

    def attention(self, layer: int) -> torch.Tensor:
        """B x heads x T x T attention of ``layer``; a clear error if it was not recorded."""
        maps = self.attentions[layer]
        if maps is None:
            recorded = [i for i, a in enumerate(self.attentions) if a is not None]
            raise ValueError(f"the attention of layer {layer} was not recorded (recorded: {recorded}); "
                             "ask forward_with_attention for it via `layers`")
        return maps


class ViTAdapter(nn.Module, ABC):
    """A ViT the codec can use: logits, attention and forwards on patch subsets.

    Subclasses set ``image_size`` (H, W), ``patch_size``, ``num_classes``,
    ``mean`` and ``std`` (per-channel normalisation of [0, 1] pixels) and
    implement :meth:`_forward_with_attention` and :meth:`_forward_tokens` on
    normalised float images; this base class validates inputs and converts
    uint8 pixels.
    """

    image_size: tuple[int, int]
    patch_size: int
    num_classes: int

    def __init__(self, image_size, patch_size: int, num_classes: int, mean, std):
        super().__init__()
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.patch_size = int(patch_size)
        self.num_classes = int(num_classes)
        if self.image_size[0] % self.patch_size or self.image_size[1] % self.patch_size:
            raise ValueError(f"image size {self.image_size} is not a whole number of {self.patch_size}-pixel patches")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid (rows, columns)."""
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """B x C logits of full images."""
        return self._forward_tokens(self.normalize(images), None)

    def forward_with_attention(self, images: torch.Tensor, layers: Sequence[int] | None = None,
                               hidden: Sequence[int] = ()) -> ViTOutput:
        """Logits and attention for full images.

        Args:
            layers: the layers whose attention the caller needs (indices,
                negative from the end); None for every layer. Recording
                attention costs time (explicit softmax maps instead of fused
                attention), so e.g. last-layer importance asks for ``[-1]``
                only; the other entries of ``attentions`` are then None. An
                adapter may record more layers than asked.
            hidden: block indices (0-based, negative from the end) whose
                output patch tokens to return in ``ViTOutput.hidden`` (keyed
                by the 0-based index); adapters implement
                :meth:`_record_hidden` to support it.
        """
        x = self.normalize(images)
        if not hidden:
            return self._forward_with_attention(x, layers)
        with self._record_hidden(tuple(hidden)) as states:
            output = self._forward_with_attention(x, layers)
        output.hidden = dict(states)
        return output

    def forward_tokens(self, images: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """B x C logits from only the patches at ``positions`` (B x K).

        Pixels outside the kept patches are ignored: each kept patch is
        embedded with its own position embedding, the prefix tokens are
        prepended, and the encoder runs on those 1 + K tokens.
        """
        return self._forward_tokens(self.normalize(images), self.check_positions(positions, len(images)))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Validate B x 3 x H x W images and map them to normalised float32."""
        check_images(images, self.image_size)
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        return (x - self.mean) / self.std

    def check_positions(self, positions: torch.Tensor, batch: int) -> torch.Tensor:
        if not isinstance(positions, torch.Tensor) or positions.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"positions must be an int64 tensor of patch indices, got {type(positions).__name__} "
                            f"{getattr(positions, 'dtype', '')}")
        if positions.ndim != 2 or positions.shape[0] != batch:
            raise ValueError(f"positions must be B x K = {batch} x K, got shape {tuple(positions.shape)}")
        if positions.shape[1] == 0:
            raise ValueError("positions is empty: at least one patch must be kept")
        if positions.min() < 0 or positions.max() >= self.num_patches:
            raise ValueError(f"positions must lie in [0, {self.num_patches}), got "
                             f"[{int(positions.min())}, {int(positions.max())}]")
        return positions.long()

    @abstractmethod
    def _forward_with_attention(self, x: torch.Tensor, layers: Sequence[int] | None = None) -> ViTOutput:
        """Full forward on normalised float images, recording attention of ``layers`` (None: all)."""

    def _record_hidden(self, blocks: tuple[int, ...]):
        """A context manager yielding a dict that fills, during a forward, with block index -> B x N x D tokens."""
        raise NotImplementedError(f"{type(self).__name__} does not expose hidden token states; implement "
                                  "_record_hidden to use the latent codec with it")

    @abstractmethod
    def _forward_tokens(self, x: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        """Logits from the patches at ``positions`` (all patches when None)."""


def check_images(images: torch.Tensor, image_size: tuple[int, int] | None = None) -> None:
    """Raise a clear error unless ``images`` is B x 3 x H x W uint8 or finite float in [0, 1]."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be B x 3 x H x W, got shape {tuple(images.shape)}")
    if image_size is not None and tuple(images.shape[-2:]) != tuple(image_size):
        raise ValueError(f"images are {tuple(images.shape[-2:])} pixels but the model takes {tuple(image_size)}")
    if images.dtype == torch.uint8:
        return
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or infinite values")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"float images must lie in [0, 1], got [{float(images.min()):.3g}, {float(images.max()):.3g}]")


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """8-bit pixels of uint8 or [0, 1] float images (rounded)."""
    check_images(images)
    return images if images.dtype == torch.uint8 else (images * 255).round().to(torch.uint8)
