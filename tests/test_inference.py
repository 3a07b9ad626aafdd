"""bf16 autocast follows the CPU (on where it computes bf16 natively, float32 elsewhere); NaN or infinite outputs
are named by the images holding them."""
from __future__ import annotations

import pytest
import torch

from semcomm.inference import NonFiniteOutputError, autocast, check_finite, map_batches, nonfinite_rows


@pytest.mark.parametrize("native", [True, False])
def test_autocast_uses_bf16_only_when_asked_and_native(native, monkeypatch):
    monkeypatch.setattr("semcomm.core.devices.native_bf16", lambda: native)
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast(True):
        assert (a @ b).dtype == (torch.bfloat16 if native else torch.float32)
    with autocast(False):
        assert (a @ b).dtype == torch.float32


def test_nonfinite_outputs_are_named_by_row_and_renamed_within_a_larger_call():
    values = torch.zeros(30, 4)
    values[[3, 7] + list(range(12, 24)), 1] = float("nan")
    values[29, 0] = float("-inf")
    rows = nonfinite_rows(values)
    assert rows == [3, 7, *range(12, 24), 29] and nonfinite_rows(torch.zeros(0, 4)) == []
    with pytest.raises(NonFiniteOutputError, match=r"^M\.f returned NaN or infinite logits for images 3, 7, 12, 13, "
                                                   r"14, 15, 16, 17, 18, 19, \.\.\. \(15 in all\)$") as caught:
        check_finite(values, "M.f", "logits")
    assert caught.value.within(range(100, 130)).images == [103, 107, *range(112, 124), 129]
    assert check_finite(values[:3], "M.f", "logits") is not None


def test_map_batches_names_an_image_by_its_index_among_all():
    def fn(part):
        out = torch.arange(part.start, part.stop, dtype=torch.float32)[:, None]
        return check_finite(out.masked_fill(out == 5, float("nan")), "f", "values")

    with pytest.raises(NonFiniteOutputError, match=r"for image 5$"):
        map_batches(fn, 9, batch_size=4, bf16=False)
