"""The small interface the codec needs from a Vision Transformer.

Anything that subclasses :class:`ViTAdapter` and implements its two
abstract ``_``-methods (and, for the latent codec, :meth:`ViTAdapter._record_hidden`)
can serve as an edge encoder or a server model, whether it is built on timm
or not (see ``README.md``, "Plugging in your own ViT").

Conventions:
    images: B x 3 x H x W, uint8 in [0, 255] or float in [0, 1]; H and W
        equal the model's ``image_size`` (a whole number of patches).
    positions: B x K int64 indices into the patch grid, row-major
        (index ``r * grid_w + c``), distinct within each row.
    tokens: T = ``num_prefix_tokens`` + N, the prefix tokens (CLS, a
        distillation token, registers) first, then the N patches.
    attention: one entry per layer, B x heads x T x T (a B x T x T map
        averaged over heads is taken as one head); None for a layer the
        caller did not ask for (see ``forward_with_attention``).

What a subclass returns is checked at the boundary (no extra forward): a
wrong type or shape raises a TypeError / ValueError that names what came
back and what was expected; NaN or infinite logits, attention or hidden
tokens raise :class:`~semcomm.inference.NonFiniteOutputError` naming the
adapter's class, its method and the images.
"""
from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from semcomm.inference import check_finite


@dataclass
class ViTOutput:
    """Logits and per-layer attention of a full forward pass.

    Attributes:
        logits: B x C.
        attentions: one entry per layer: a B x heads x T x T tensor whose
            rows sum to 1 (the softmax output of that block's attention), or
            None for a layer whose attention was not recorded. A B x T x T
            map (already averaged over heads) is accepted and stored as
            B x 1 x T x T.
        num_prefix_tokens: tokens before the patches (1 for CLS, 2 for CLS +
            distillation token); T = num_prefix_tokens + N.
        hidden: block index -> B x N x D patch tokens after that block
            (prefix tokens dropped), for the blocks asked for via ``hidden``
            in ``forward_with_attention``; the latent codec reads them.

    Construction checks the parts against each other (types, 2-D logits,
    square maps of one T and the logits' batch size); the adapter checks
    them against the model.
    """

    logits: torch.Tensor
    attentions: list[torch.Tensor | None]
    num_prefix_tokens: int
    hidden: dict[int, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.logits, torch.Tensor) or self.logits.ndim != 2:
            raise _error(ValueError if isinstance(self.logits, torch.Tensor) else TypeError,
                         "ViTOutput.logits is", self.logits, "a B x C tensor")
        self.num_prefix_tokens = _count("ViTOutput.num_prefix_tokens", self.num_prefix_tokens, minimum=0)
        if not isinstance(self.attentions, (list, tuple)):
            raise TypeError(f"ViTOutput.attentions must be a list with one B x heads x T x T tensor (or None) per "
                            f"layer, got {_describe(self.attentions)}; wrap a one-layer model's map in a list")
        self.attentions = [_as_heads(a, f"ViTOutput.attentions[{i}]", len(self.logits))
                           for i, a in enumerate(self.attentions)]
        sizes = {a.shape[-1] for a in self.attentions if a is not None}
        if len(sizes) > 1:
            raise ValueError(f"ViTOutput.attentions have different token counts T across layers: "
                             f"{[None if a is None else a.shape[-1] for a in self.attentions]}")
        if sizes and self.num_prefix_tokens >= sizes.pop():
            raise ValueError(f"ViTOutput.num_prefix_tokens = {self.num_prefix_tokens} leaves no patch tokens in "
                             f"attention maps of T = {self.num_tokens} tokens")

    @property
    def num_tokens(self) -> int | None:
        """T, the tokens per attention map (None if no layer was recorded)."""
        return next((a.shape[-1] for a in self.attentions if a is not None), None)

    @property
    def recorded(self) -> list[int]:
        """Indices of the layers whose attention was recorded."""
        return [i for i, a in enumerate(self.attentions) if a is not None]

    def cls_attention(self, layer: int = -1) -> torch.Tensor:
        """B x heads x N: attention from the first (CLS) token to each patch in ``layer``."""
        return self.attention(layer)[:, :, 0, self.num_prefix_tokens :]

    def attention(self, layer: int) -> torch.Tensor:
        """B x heads x T x T attention of ``layer``; a clear error if it was not recorded."""
        maps = self.attentions[_layer_index(layer, len(self.attentions))]
        if maps is None:
            raise ValueError(f"the attention of layer {layer} was not recorded (recorded: {self.recorded}); "
                             "ask forward_with_attention for it via `layers`")
        return maps


class PatchGrid:
    """The patch grid of anything with ``image_size`` (H, W) and ``patch_size`` attributes (a ViT, a backend)."""

    image_size: tuple[int, int]
    patch_size: int

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid (rows, columns)."""
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def num_patches(self) -> int:
        """N, the patches per image (rows x columns of the grid)."""
        return self.grid_size[0] * self.grid_size[1]


class ViTAdapter(PatchGrid, nn.Module, ABC):
    """A ViT the codec can use: logits, attention and forwards on patch subsets.

    Subclasses pass ``image_size`` (H, W, or one int for a square image),
    ``patch_size``, ``num_classes``, ``mean`` and ``std`` (per-channel
    normalisation of [0, 1] pixels) and ``num_prefix_tokens`` (tokens before
    the patches: 1 for a CLS token) to ``__init__``, and implement
    :meth:`_forward_with_attention` and :meth:`_forward_tokens` on
    normalised float images. This base class validates the images and
    positions that come in, converts uint8 pixels, and checks what the two
    methods return (types, shapes, and finite values: NaN or infinities raise
    :class:`~semcomm.inference.NonFiniteOutputError` naming the method and the images).
    """

    image_size: tuple[int, int]
    patch_size: int
    num_classes: int
    num_prefix_tokens: int

    def __init__(self, image_size: int | Sequence[int], patch_size: int, num_classes: int, mean, std,
                 num_prefix_tokens: int = 1):
        super().__init__()
        self.image_size = _image_size(image_size)
        self.patch_size = _count("patch_size", patch_size, minimum=1)
        self.num_classes = _count("num_classes", num_classes, minimum=1)
        self.num_prefix_tokens = _count("num_prefix_tokens", num_prefix_tokens, minimum=0)
        if self.image_size[0] % self.patch_size or self.image_size[1] % self.patch_size:
            raise ValueError(f"image size {self.image_size} is not a whole number of {self.patch_size}-pixel patches")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """B x C logits of full B x 3 x H x W images."""
        x = self.normalize(images)
        return self._checked_logits(self._forward_tokens(x, None), len(x), "_forward_tokens", "forward")

    def forward_with_attention(self, images: torch.Tensor, layers: Sequence[int] | None = None,
                               hidden: Sequence[int] = ()) -> ViTOutput:
        """Logits and attention for full B x 3 x H x W images.

        Args:
            layers: the layers whose attention the caller needs (indices,
                negative from the end); None for every layer. Recording
                attention costs time (explicit softmax maps instead of fused
                attention), so e.g. last-layer importance asks for ``[-1]``
                only; the other entries of ``attentions`` are then None. An
                adapter may record more layers than asked, never fewer.
            hidden: block indices (0-based, negative from the end) whose
                output patch tokens to return in ``ViTOutput.hidden`` (keyed
                by the 0-based index); adapters implement
                :meth:`_record_hidden` to support it.
        """
        x = self.normalize(images)
        if not hidden:
            return self._checked_output(self._forward_with_attention(x, layers), len(x), layers)
        with self._record_hidden(tuple(hidden)) as states:
            output = self._checked_output(self._forward_with_attention(x, layers), len(x), layers)
        output.hidden = self._checked_hidden(dict(states), hidden, len(x), len(output.attentions))
        return output

    def forward_tokens(self, images: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """B x C logits from only the patches at ``positions`` (B x K, distinct within a row).

        Pixels outside the kept patches are ignored: each kept patch is
        embedded with its own position embedding, the prefix tokens are
        prepended, and the encoder runs on those prefix + K tokens.
        """
        x = self.normalize(images)
        logits = self._forward_tokens(x, self.check_positions(positions, len(x)).to(x.device))
        return self._checked_logits(logits, len(x), "_forward_tokens", "forward_tokens")

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Validate B x 3 x H x W images (on any device) and map them to normalised float32 on the model's device
        (``(x / 255 - mean) / std``); uint8 pixels cross before the conversion, a quarter of the bytes."""
        check_images(images, self.image_size)
        images = images.to(self.mean.device, non_blocking=True)
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        return (x - self.mean) / self.std

    def check_positions(self, positions: torch.Tensor, batch: int) -> torch.Tensor:
        """B x K int64 ``positions``, checked: integers in [0, N), at least one per row, none repeated in a row."""
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
        ordered = positions.sort(dim=1).values
        repeated = ordered[:, 1:] == ordered[:, :-1]
        if repeated.any():
            row = int(repeated.any(dim=1).nonzero()[0])
            patch = int(ordered[row, 1:][repeated[row]][0])
            raise ValueError(f"positions repeat patch {patch} in row {row}: each row must list distinct patch indices")
        return positions.long()

    @abstractmethod
    def _forward_with_attention(self, x: torch.Tensor, layers: Sequence[int] | None = None) -> ViTOutput:
        """Full forward on normalised B x 3 x H x W float images -> :class:`ViTOutput`.

        Record, for at least the layers in ``layers`` (None: every layer), the
        softmax output of the block's attention (B x heads x T x T, or
        B x T x T averaged over heads), with None for the others: one entry
        per layer.
        """

    def _record_hidden(self, blocks: tuple[int, ...]):
        """A context manager yielding a dict that fills, during a forward, with block index -> B x N x D tokens.

        Keys are 0-based block indices (``blocks`` may be negative, from the
        end); values are the patch tokens after that block, prefix tokens dropped.
        """
        raise NotImplementedError(f"{type(self).__name__} does not expose hidden token states; implement "
                                  "_record_hidden to use the latent codec with it")

    @abstractmethod
    def _forward_tokens(self, x: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        """B x C logits from the patches at ``positions`` (B x K int64; all patches, in order, when None)."""

    # ---- checks of what the subclass returned (no extra forward: this is the codec's hot path) -----------

    def _checked_logits(self, logits, batch: int, method: str, caller: str, field: str = "") -> torch.Tensor:
        """``logits`` if a B x C tensor of finite values, else an error naming the adapter's ``method`` (called by
        its public ``caller``), the ``field`` of its result holding them (none: the result itself) and what came
        back (for NaN or infinities: :class:`~semcomm.inference.NonFiniteOutputError`, naming the images)."""
        name = f"{type(self).__name__}.{method}"
        returned = f"{name} returned{f' {field}:' if field else ''}"
        expected = f"B x num_classes = {batch} x {self.num_classes} logits"
        if not isinstance(logits, torch.Tensor):
            raise _error(TypeError, returned, logits, f"a tensor of {expected}")
        if tuple(logits.shape) != (batch, self.num_classes):
            raise _error(ValueError, returned, logits, expected)
        return check_finite(logits, f"{name} (in {caller})", field or "logits")

    def _checked_output(self, output, batch: int, layers: Sequence[int] | None) -> ViTOutput:
        """``output`` if a :class:`ViTOutput` that fits this model, records ``layers``, all of it finite."""
        name = f"{type(self).__name__}._forward_with_attention"
        if not isinstance(output, ViTOutput):
            raise _error(TypeError, f"{name} returned", output,
                         "a semcomm.models.ViTOutput(logits, attentions, num_prefix_tokens)")
        self._checked_logits(output.logits, batch, "_forward_with_attention", "forward_with_attention",
                             "ViTOutput.logits")
        self._check_tokens(output, name)
        _check_recorded(output, layers, name)
        for i in output.recorded:
            check_finite(output.attentions[i], f"{name} (in forward_with_attention)",
                         f"attention in layer {i} (ViTOutput.attentions[{i}])")
        return output

    def _check_tokens(self, output: ViTOutput, name: str) -> None:
        """Raise unless ``output``'s prefix tokens are the adapter's and its maps have T = prefix + N tokens."""
        if output.num_prefix_tokens != self.num_prefix_tokens:
            raise ValueError(f"{name} returned ViTOutput.num_prefix_tokens = {output.num_prefix_tokens} but the "
                             f"adapter has num_prefix_tokens = {self.num_prefix_tokens}; pass "
                             f"num_prefix_tokens={output.num_prefix_tokens} to ViTAdapter.__init__ if that is right")
        tokens = self.num_prefix_tokens + self.num_patches
        if output.num_tokens is not None and output.num_tokens != tokens:
            shape = next(tuple(a.shape) for a in output.attentions if a is not None)
            raise ValueError(f"{name} returned attention maps of shape {shape} (T = {output.num_tokens}); expected "
                             f"T = num_prefix_tokens + num_patches = {self.num_prefix_tokens} + {self.num_patches} "
                             f"= {tokens} (prefix tokens first, then the patches; check num_prefix_tokens)")

    def _checked_hidden(self, states: dict, blocks: Sequence[int], batch: int, depth: int) -> dict[int, torch.Tensor]:
        """``states`` if it holds B x N x D finite patch tokens for every block in ``blocks``."""
        name = f"{type(self).__name__}._record_hidden"
        for block in blocks:
            key = _layer_index(block, depth)
            if key not in states:
                raise ValueError(f"{name} recorded blocks {sorted(states)}, not block {key} (asked for {list(blocks)})")
            tokens = states[key]
            shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else ()
            if len(shape) != 3 or shape[:2] != (batch, self.num_patches):
                raise _error(ValueError, f"{name} gave block {key}", tokens,
                             f"B x N x D = {batch} x {self.num_patches} x D patch tokens (prefix tokens dropped)")
            check_finite(tokens, f"{name} (in forward_with_attention)", f"patch tokens of block {key}")
        return states


def model_name(model: object) -> str:
    """A model's name for results: its ``name`` attribute where a non-empty string (e.g. a
    :class:`~semcomm.models.TimmViT`'s), else its class name."""
    name = getattr(model, "name", None)
    return name if isinstance(name, str) and name else type(model).__name__


def check_images(images: torch.Tensor, image_size: tuple[int, int] | None = None) -> None:
    """Raise a clear error unless ``images`` is B x 3 x H x W uint8 or finite float in [0, 1]."""
    if not isinstance(images, torch.Tensor):
        from semcomm.data.sharded import ShardedImages

        on_disk = ("; these are left on disk: pass a batch (images[a:b]), or load the split with "
                   "load_split(..., in_memory=True)") if isinstance(images, ShardedImages) else ""
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}{on_disk}")
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


def _check_recorded(output: ViTOutput, layers: Sequence[int] | None, name: str) -> None:
    """Raise unless ``output`` has one entry per layer and a map for each of ``layers`` (None: every layer)."""
    depth = len(output.attentions)
    if not depth:
        raise ValueError(f"{name} returned no attention (ViTOutput.attentions is empty); expected one entry per layer")
    wanted = range(depth) if layers is None else layers
    missing = [i for i in wanted if output.attentions[_layer_index(i, depth)] is None]
    if missing:
        raise ValueError(f"{name} was asked for the attention of layers "
                         f"{'all (layers=None)' if layers is None else list(layers)} but did not record {missing} "
                         f"(recorded: {output.recorded} of {depth}); return one entry per layer, None only for "
                         "layers not asked for")


def _layer_index(layer: int, depth: int) -> int:
    """0-based index of ``layer`` (negative from the end) in a ``depth``-layer model."""
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise TypeError(f"layers must be integer layer indices, got {layer!r}")
    if not -depth <= layer < depth:
        raise ValueError(f"layer {layer} out of range for a {depth}-layer model")
    return layer % depth


def _as_heads(maps, name: str, batch: int | None) -> torch.Tensor | None:
    """One layer's attention (called ``name`` in errors) as B x heads x T x T: a B x T x T map becomes one
    head, None stays None. ``batch``: the B it must have (None: any)."""
    expected = f"B x heads x T x T (or B x T x T averaged over heads){'' if batch is None else f' with B = {batch}'}"
    if maps is None:
        return None
    if not isinstance(maps, torch.Tensor):
        raise _error(TypeError, f"{name} is", maps, f"a tensor, {expected}, or None")
    if maps.ndim not in (3, 4) or maps.shape[-1] != maps.shape[-2] or batch not in (None, maps.shape[0]):
        raise _error(ValueError, f"{name} is", maps, expected)
    return maps.unsqueeze(1) if maps.ndim == 3 else maps


def _image_size(size) -> tuple[int, int]:
    """(H, W) from an int (square) or a pair of ints."""
    pair = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    if not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2:
        raise TypeError(f"image_size must be an int (square) or (H, W), got {size!r}")
    return _count("image_size[0]", pair[0], minimum=1), _count("image_size[1]", pair[1], minimum=1)


def _count(name: str, value, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (whole-valued numbers accepted), else a clear error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != int(value):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _describe(value) -> str:
    """What ``value`` is, for an error message: its type, and its shape or length."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"a {type(value).__name__}"


def _error(kind: type[Exception], what: str, value, expected: str) -> Exception:
    """``kind("{what} {value described}; expected {expected}")``."""
    return kind(f"{what} {_describe(value)}; expected {expected}")
