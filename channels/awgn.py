"""Additive white Gaussian noise on complex symbols."""
from __future__ import annotations

import math
from typing import Optional, Union

import torch

from ._checks import as_tensor, resolve_no

Number = Union[float, torch.Tensor]


def complex_noise(shape, no: torch.Tensor, generator: Optional[torch.Generator] = None,
                  device: Optional[torch.device] = None) -> torch.Tensor:
    """Circular complex Gaussian noise with E|n|^2 = ``no`` (no/2 per real dimension), complex64."""
    re = torch.randn(shape, generator=generator, device=device)
    im = torch.randn(shape, generator=generator, device=device)
    std = torch.sqrt(as_tensor(no, dtype=torch.float32, device=device) / 2.0)
    return torch.complex(re * std, im * std)


class AWGN:
    """y = x + n, n ~ CN(0, no).

    Call: ``x`` complex (...) (real inputs are treated as complex with zero imaginary part),
    exactly one of ``snr_db`` (Es/N0 in dB, Es = 1) or ``no`` (noise variance per complex symbol;
    scalar or tensor broadcastable to x), and an optional ``generator`` -> complex64 (...).
    """

    def __call__(self, x: torch.Tensor, snr_db: Optional[Number] = None, no: Optional[Number] = None,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        no_t = resolve_no(snr_db, no).to(x.device)
        if not torch.is_complex(x):
            x = torch.complex(x.float(), torch.zeros_like(x, dtype=torch.float32))
        return x + complex_noise(x.shape, no_t, generator, x.device)
