"""Batched inference helpers shared by training, the codec and evaluation."""
from __future__ import annotations

import contextlib
import functools
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

DEFAULT_BATCH = 256


@functools.cache
def native_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX).

    Elsewhere torch emulates bf16: the server's forward took 8.4x longer in bf16 than in
    float32 on a 2-core AMD EPYC without AVX-512 (``benchmarks/bf16_speed.py``).
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def autocast(bf16: bool):
    """bf16 autocast on CPU when ``bf16`` and the CPU has native bf16 (about 1.7x faster than float32
    there, see :func:`native_bf16`); else a no-op, float32."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 and native_bf16() else contextlib.nullcontext()


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
    """Concatenate ``fn(batch_slice)`` over ``n`` items, as float32, under no_grad/autocast."""
    outputs = []
    for part in tqdm(list(batches(n, batch_size)), desc=desc, disable=desc is None, leave=False):
        with autocast(bf16):
            outputs.append(fn(part).float())
    return torch.cat(outputs) if outputs else torch.empty(0)


def predict_logits(model, images: torch.Tensor, batch_size: int = DEFAULT_BATCH, bf16: bool = True,
                   desc: str | None = None) -> torch.Tensor:
    """N x C logits of ``model`` on full images (N x 3 x H x W)."""
    model.eval()
    return map_batches(lambda s: model(images[s]), len(images), batch_size, bf16, desc)


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose arg-max equals the label."""
    return float((logits.argmax(-1) == labels).float().mean()) if len(labels) else float("nan")
