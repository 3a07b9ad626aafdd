"""Batched inference helpers shared by training, the codec and evaluation, and the check that a model's outputs
are finite (:class:`NonFiniteOutputError`)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

from semcomm.core.devices import autocast, host, native_bf16  # noqa: F401  (native_bf16: public here too)

DEFAULT_BATCH = 256
SHOWN = 10  # image indices an error lists before it only counts the rest


class NonFiniteOutputError(ValueError):
    """A model returned NaN or infinite values for some images.

    Attributes:
        source: what returned them, e.g. ``"MyViT._forward_tokens (in forward_tokens)"``.
        what: which output, e.g. ``"logits"`` or ``"attention in layer 1 (ViTOutput.attentions[1])"``.
        images: the images concerned, as indices into the images given to the call that raised (batched
            calls such as :func:`map_batches` rename a batch's indices to the whole call's).
    """

    def __init__(self, source: str, what: str, images: Sequence[int]):
        self.source, self.what, self.images = source, what, [int(i) for i in images]
        super().__init__(f"{source} returned NaN or infinite {what} for {describe_rows(self.images, 'image')}")

    def within(self, index: Sequence[int]) -> "NonFiniteOutputError":
        """The same error with image ``i`` renamed ``index[i]`` (a batch's images within a larger call)."""
        return NonFiniteOutputError(self.source, self.what, [index[i] for i in self.images])


def nonfinite_rows(values: torch.Tensor) -> list[int]:
    """Indices of the rows (first dimension) of ``values`` holding a NaN or an infinity; [] when all are finite."""
    finite = torch.isfinite(values)
    if bool(finite.all()):
        return []
    return (~finite.reshape(len(values), -1).all(dim=1)).nonzero().flatten().tolist()


def check_finite(values: torch.Tensor, source: str, what: str) -> torch.Tensor:
    """``values`` (B x ...), unless rows hold NaN or infinities: then a :class:`NonFiniteOutputError` naming
    ``source``, ``what`` and those rows."""
    rows = nonfinite_rows(values)
    if rows:
        raise NonFiniteOutputError(source, what, rows)
    return values


def describe_rows(rows: Sequence[int], noun: str) -> str:
    """``"images 2, 5"`` of ``rows`` (the first :data:`SHOWN`, then a count of all) for errors."""
    shown = ", ".join(map(str, rows[:SHOWN])) + (f", ... ({len(rows)} in all)" if len(rows) > SHOWN else "")
    return f"{noun}{'s' if len(rows) != 1 else ''} {shown}"


def batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


@torch.no_grad()
def map_batches(
    fn: Callable[[slice], torch.Tensor],
    n: int,
    batch_size: int = DEFAULT_BATCH,
    bf16: bool = True,
    desc: str | None = None,
) -> torch.Tensor:
    """Concatenate ``fn(batch_slice)`` over ``n`` items, as float32 on the CPU, under no_grad/autocast (each
    device's own mixed precision when ``bf16``: :func:`semcomm.core.devices.autocast`).

    A :class:`NonFiniteOutputError` of one batch is raised naming the images by their index among all ``n``.
    """
    outputs = []
    for part in tqdm(list(batches(n, batch_size)), desc=desc, disable=desc is None, leave=False):
        try:
            with autocast(bf16):
                outputs.append(host(fn(part).float()))
        except NonFiniteOutputError as err:
            raise err.within(range(part.start, part.stop)) from None
    return torch.cat(outputs) if outputs else torch.empty(0)


def predict_logits(model, images: torch.Tensor, batch_size: int = DEFAULT_BATCH, bf16: bool = True,
                   desc: str | None = None) -> torch.Tensor:
    """N x C logits of ``model`` on full images (N x 3 x H x W)."""
    model.eval()
    return map_batches(lambda s: model(images[s]), len(images), batch_size, bf16, desc)


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose arg-max equals the label."""
    return float((logits.argmax(-1) == labels).float().mean()) if len(labels) else float("nan")
