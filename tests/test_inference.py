"""bf16 autocast follows the CPU: on where it computes bf16 natively, float32 elsewhere."""
from __future__ import annotations

import pytest
import torch

from semcomm.inference import autocast


@pytest.mark.parametrize("native", [True, False])
def test_autocast_uses_bf16_only_when_asked_and_native(native, monkeypatch):
    monkeypatch.setattr("semcomm.inference.native_bf16", lambda: native)
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast(True):
        assert (a @ b).dtype == (torch.bfloat16 if native else torch.float32)
    with autocast(False):
        assert (a @ b).dtype == torch.float32
