"""What the host sends each device: the patches that arrived and their positions, or whole images.

The server receives, per image, K patches at their own positions (decoded
from a string) or a whole decoded image. The host forwards exactly that to
every device that runs a sub-model: the K patches' values (not the empty
canvas around them) and their positions, in the dtype they arrived in
(uint8 pixels 1 byte per value, float pixels in [0, 1] 4 bytes). The
device rebuilds the canvas and runs its sub-model on the K tokens. Bytes
are the tensors' raw sizes (numel x element size), without any framing.

A request is made from images (:meth:`Request.pack`, which reads the K
patches out of them) or straight from the received patches
(:meth:`Request.from_patches`: a decoder that holds B x K x P patch values
ships them as they are, with the same numbers and bytes, without placing
them on a canvas first).

A backend behind a latent codec pair reads no pixels: its host ships each device a :class:`LatentRequest`, the
K received latent rows of each image (C float32 values), their levels (1 byte each) and positions, and every
device embeds them itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from semcomm.core.patches import patchify, unpatchify
from semcomm.models.adapter import check_images


@dataclass(frozen=True)
class Request:
    """One request (a batch of B images) as shipped to a device.

    Attributes:
        image_size: (H, W) pixels of the images the request came from.
        patch_size: pixels per patch side.
        images: B x 3 x H x W whole images when no positions came, else None.
        patches: B x K x P values of the received patches (P = 3 patch_size^2, patchify order), or None.
        positions: B x K int64 patch indices (row-major), or None for whole images.
    """

    image_size: tuple[int, int]
    patch_size: int
    images: torch.Tensor | None = None
    patches: torch.Tensor | None = None
    positions: torch.Tensor | None = None

    @classmethod
    def pack(cls, images: torch.Tensor, positions: torch.Tensor | None, image_size: tuple[int, int],
             patch_size: int) -> "Request":
        """The request for B x 3 x H x W ``images`` (only the patches at B x K ``positions`` are read)."""
        check_images(images, image_size)
        if images.dtype != torch.uint8:
            images = images.float()
        if positions is None:
            return cls(tuple(image_size), patch_size, images=images.contiguous())
        positions = checked_positions(positions, len(images), image_size, patch_size)
        values = patchify(images, patch_size)
        patches = values.gather(1, positions[..., None].expand(-1, -1, values.shape[-1]))
        return cls(tuple(image_size), patch_size, patches=patches.contiguous(), positions=positions.contiguous())

    @classmethod
    def from_patches(cls, patches: torch.Tensor, positions: torch.Tensor, image_size: tuple[int, int],
                     patch_size: int) -> "Request":
        """The request for B images of which only K patches arrived, built from the patches themselves.

        What :meth:`pack` ships for images holding these patches at these positions, without making the images.

        Args:
            patches: B x K x P received values, P = 3 patch_size^2 in patchify order (row, column, channel);
                uint8, or float in [0, 1] (shipped as float32).
            positions: B x K int64 patch indices (row-major) of the patches.
        """
        p = 3 * patch_size * patch_size
        if not isinstance(patches, torch.Tensor) or patches.ndim != 3 or patches.shape[2] != p:
            raise ValueError(f"patches must be a B x K x P tensor with P = 3 x {patch_size}^2 = {p} values per patch, "
                             f"got {tuple(getattr(patches, 'shape', ())) or type(patches).__name__}")
        if patches.dtype != torch.uint8:
            if not patches.is_floating_point():
                raise TypeError(f"patches must be uint8 or floating point, got {patches.dtype}")
            if not torch.isfinite(patches).all():
                raise ValueError("patches contain NaN or infinite values")
            if patches.numel() and (patches.min() < 0 or patches.max() > 1):
                raise ValueError(f"float patches must lie in [0, 1], got [{float(patches.min()):.3g}, "
                                 f"{float(patches.max()):.3g}]")
            patches = patches.float()
        positions = checked_positions(positions, len(patches), image_size, patch_size)
        if positions.shape[1] != patches.shape[1]:
            raise ValueError(f"positions name {positions.shape[1]} patches per image but {patches.shape[1]} arrived")
        return cls(tuple(image_size), patch_size, patches=patches.contiguous(), positions=positions.contiguous())

    def unpack(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B x 3 x H x W images, B x K positions or None): the received patches on an empty (zero) canvas."""
        if self.positions is None:
            return self.images, None
        b, k, p = self.patches.shape
        grid = (self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size)
        canvas = torch.zeros(b, grid[0] * grid[1], p, dtype=self.patches.dtype, device=self.patches.device)
        canvas.scatter_(1, self.positions[..., None].expand(-1, -1, p), self.patches)
        return unpatchify(canvas, self.patch_size, grid), self.positions

    def select(self, rows: torch.Tensor) -> "Request":
        """The request for the images at ``rows`` (1-D int64 indices into the batch) only."""
        pick = (lambda t: None if t is None else t[rows].contiguous())
        return Request(self.image_size, self.patch_size, pick(self.images), pick(self.patches), pick(self.positions))

    @property
    def batch(self) -> int:
        return len(self.images if self.positions is None else self.positions)

    @property
    def nbytes(self) -> int:
        """Bytes shipped to one device: the tensors' raw sizes."""
        return sum(tensor_bytes(t) for t in (self.images, self.patches, self.positions) if t is not None)


@dataclass(frozen=True)
class LatentRequest:
    """One request of a backend that reads a latent codec pair's rows (a batch of B images).

    Attributes:
        image_size, patch_size: the patch grid the positions index.
        values: B x K x C float32 dequantized latents of the patches that arrived.
        positions: B x K int64 patch indices (row-major).
        level: B x K uint8 quantizer levels (1..L) of those patches.
    """

    image_size: tuple[int, int]
    patch_size: int
    values: torch.Tensor
    positions: torch.Tensor
    level: torch.Tensor

    @classmethod
    def make(cls, values: torch.Tensor, positions: torch.Tensor, level: torch.Tensor, image_size: tuple[int, int],
             patch_size: int) -> "LatentRequest":
        """The request for B images' received latent rows; a ValueError naming what does not fit."""
        if not isinstance(values, torch.Tensor) or values.ndim != 3 or not values.is_floating_point():
            raise ValueError(f"latent values must be a B x K x C float tensor, got "
                             f"{getattr(values, 'dtype', type(values).__name__)} {tuple(getattr(values, 'shape', ()))}")
        if not torch.isfinite(values).all():
            raise ValueError("latent values contain NaN or infinite values")
        positions = checked_positions(positions, len(values), image_size, patch_size)
        if not isinstance(level, torch.Tensor) or tuple(level.shape) != tuple(positions.shape) \
                or level.is_floating_point():
            raise ValueError(f"level must be a B x K integer tensor like positions {tuple(positions.shape)}, got "
                             f"{getattr(level, 'dtype', type(level).__name__)} {tuple(getattr(level, 'shape', ()))}")
        if level.numel() and (level.min() < 1 or level.max() > 255):
            raise ValueError(f"levels of received patches lie in 1..255, got {int(level.min())}..{int(level.max())}")
        if positions.shape[1] != values.shape[1]:
            raise ValueError(f"positions name {positions.shape[1]} patches per image but {values.shape[1]} arrived")
        return cls(tuple(image_size), patch_size, values.float().contiguous(), positions.contiguous(),
                   level.to(torch.uint8).contiguous())

    def unpack(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(values, positions, level as int64): what a latent stage takes."""
        return self.values, self.positions, self.level.long()

    def select(self, rows: torch.Tensor) -> "LatentRequest":
        """The request for the images at ``rows`` (1-D int64 indices into the batch) only."""
        return LatentRequest(self.image_size, self.patch_size, self.values[rows].contiguous(),
                             self.positions[rows].contiguous(), self.level[rows].contiguous())

    @property
    def batch(self) -> int:
        return len(self.positions)

    @property
    def nbytes(self) -> int:
        """Bytes shipped to one device: the tensors' raw sizes."""
        return sum(tensor_bytes(t) for t in (self.values, self.positions, self.level))


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Raw size of a tensor in bytes (numel x element size)."""
    return tensor.numel() * tensor.element_size()


def checked_positions(positions: torch.Tensor, batch: int, image_size: tuple[int, int],
                      patch_size: int) -> torch.Tensor:
    """B x K ``positions`` as int64 if they are patch indices of the (H / patch_size) x (W / patch_size) grid for
    ``batch`` images, else a clear ValueError."""
    if not isinstance(positions, torch.Tensor) or positions.ndim != 2 or len(positions) != batch:
        raise ValueError(f"positions must be a B x K = {batch} x K tensor of patch indices, got "
                         f"{getattr(positions, 'shape', type(positions).__name__)}")
    positions = positions.long()
    grid = (image_size[0] // patch_size) * (image_size[1] // patch_size)
    if positions.numel() and (positions.min() < 0 or positions.max() >= grid):
        raise ValueError(f"positions must lie in [0, {grid}), got [{int(positions.min())}, {int(positions.max())}]")
    return positions
