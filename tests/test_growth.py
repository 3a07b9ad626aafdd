"""Progressive stacking: a deeper ViT started from a trained shallower one (semcomm.models.growth)."""
from __future__ import annotations

import pytest
import torch
from backend_helpers import tiny_vit
from torch import nn

from semcomm.models import create_model, model_card
from semcomm.train.growth import grow_by_stacking
from semcomm.train.vit import TrainConfig, build


def test_each_block_of_the_deeper_model_is_the_shallower_ones_block_i_mod_depth():
    shallow, deep = tiny_vit(seed=1, depth=2), tiny_vit(seed=2, depth=5)
    grow_by_stacking(deep, shallow)
    source = shallow.model.state_dict()
    for key, value in deep.model.state_dict().items():
        if key.startswith("blocks."):
            i, rest = key.split(".", 2)[1:]
            assert torch.equal(value, source[f"blocks.{int(i) % 2}.{rest}"]), key
        else:
            assert torch.equal(value, source[key]), key
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    assert torch.isfinite(deep(images)).all()


def test_stacking_onto_the_same_depth_copies_the_model():
    shallow, same = tiny_vit(seed=1), tiny_vit(seed=2)
    grow_by_stacking(same, shallow)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(same(images), shallow(images))


def test_stacking_refuses_models_it_cannot_grow_naming_why():
    with pytest.raises(ValueError, match="the target has 2 blocks, fewer than the source's 3"):
        grow_by_stacking(tiny_vit(depth=2), tiny_vit(depth=3))
    with pytest.raises(ValueError, match=r"'cls_token' is \(1, 1, 48\) in the target but 'cls_token' is \(1, 1, 32\) "
                                         r"in the source; stacking needs the same width"):
        grow_by_stacking(tiny_vit(embed_dim=48, depth=3), tiny_vit(depth=2))
    with pytest.raises(ValueError, match="'head.weight' is .* stacking needs the same width, heads, MLP size"):
        grow_by_stacking(tiny_vit(num_classes=5, depth=3), tiny_vit(depth=2))
    with pytest.raises(TypeError, match="stacking grows timm VisionTransformers"):
        grow_by_stacking(nn.Linear(2, 2), tiny_vit())


def test_a_training_run_grown_from_a_zoo_model_starts_from_its_stacked_blocks():
    edge = create_model("vit-edge-cifar10")
    config = TrainConfig(architecture=model_card("vit-edge-cifar10").architecture, grown_from="vit-edge-cifar10")
    grown = build(config).eval()
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(grown(images), edge(images), atol=1e-5)  # same depth: a copy
    fresh = build(config, grow=False).eval()
    assert not torch.allclose(fresh(images), edge(images), atol=1e-2)
    with pytest.raises(ValueError, match="'vit-nope' is not in the zoo"):
        build(TrainConfig(architecture="semcomm_vit_edge_p4_32", grown_from="vit-nope"))


def test_a_warm_restart_of_a_grown_run_starts_from_its_own_weights(tmp_path):
    from semcomm.models import save_weights

    config = TrainConfig(architecture=model_card("vit-edge-cifar10").architecture, grown_from="vit-edge-cifar10")
    own = build(TrainConfig(architecture=config.architecture), grow=False)
    save_weights(own.model, tmp_path / "own.safetensors")
    restarted = build(config, init_from=tmp_path / "own.safetensors")
    assert all(torch.equal(a.half().float(), b) for a, b in zip(own.state_dict().values(),
                                                                restarted.state_dict().values()))  # fp16 file
