"""MACs per device are counted from the operations that run: checked against the closed-form count of a ViT."""
from __future__ import annotations

import pytest
import torch
from backend_helpers import one_thread, random_positions, tiny_data, tiny_vit  # noqa: F401 (fixture)

from semcomm.server.backends import Device, MonolithicBackend
from semcomm.server.backends.cost import device_macs, macs_per_image


def vit_macs(tokens: int, width: int, depth: int, hidden: int, patches: int, patch_values: int, classes: int) -> int:
    """Closed form: per block q/k/v/projection (4 D^2 T), attention (2 T^2 D) and MLP (2 D M T) on T tokens; the
    patch embedding of ``patches`` patches and the head."""
    block = 4 * width * width * tokens + 2 * tokens * tokens * width + 2 * width * hidden * tokens
    return depth * block + patches * patch_values * width + width * classes


def test_a_vits_macs_match_the_closed_form_on_whole_images_and_on_arrived_patches():
    vit = tiny_vit(embed_dim=32, depth=2, num_heads=4)  # 16 patches of 8 x 8 x 3, MLP 64 units
    images, _ = tiny_data(3)
    assert macs_per_image(vit, images) == vit_macs(17, 32, 2, 64, 16, 192, 10)
    # five patches arrived: the blocks see six tokens; the patch embedding runs on the whole canvas (all 16)
    assert macs_per_image(vit, images, random_positions(3, 5)) == vit_macs(6, 32, 2, 64, 16, 192, 10)


def test_device_macs_sum_each_devices_stages_and_reject_bad_images():
    vit = tiny_vit()
    backend = MonolithicBackend(vit, Device("server", memory_mb=1))
    images, _ = tiny_data(2)
    assert device_macs(backend, images) == {"server": macs_per_image(vit, images)}
    with pytest.raises(ValueError, match="non-empty B x 3 x H x W"):
        macs_per_image(vit, torch.zeros(0, 3, 32, 32))
