"""A sweep over a split left on disk (issue 29): the same result as in memory, holding neither its pixels nor the
latent codec's tokens of every image."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from PIL import Image

from semcomm.data import ShardedImages, load_split
from semcomm.experiments.sweep import Sweep, SweepConfig
from semcomm.rate.hyperlatent import HyperLatentPair
from semcomm.rate.hyperprior import HyperConfig, HyperLatentCodec
from semcomm.rate.zoo import load_hint

CONFIG = SweepConfig(budgets=(16,), levels=(3,), policies=(), codecs=(), full_images=False, thresholds=(0.8,),
                     shard_images=16)  # the semantic setting and its twin: what reads the pixels and the tokens


@pytest.fixture(scope="module")
def on_disk(cifar_test, tmp_path_factory):
    """32 CIFAR-10 test images written as an ImageFolder and loaded with their pixels left in shards of 10 images."""
    root = tmp_path_factory.mktemp("cifar-folder")
    chosen = cifar_test.subset(32)
    for i, (image, label) in enumerate(zip(chosen.images, chosen.labels)):
        (root / "train" / f"class{int(label)}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / "train" / f"class{int(label)}" / f"{i:03d}.png")
    split = load_split(root, "train", cache_dir=tmp_path_factory.mktemp("cache"), in_memory=False,
                       shard_bytes=10 * 3 * 32 * 32)
    assert isinstance(split.images, ShardedImages) and len(split) == 32
    return split


def as_json(result) -> str:
    data = dataclasses.asdict(result)
    del data["seconds"], data["engine"]
    return json.dumps(data, sort_keys=True)


@pytest.fixture(scope="module")
def token_pair():
    """A hyperlatent pair with random weights that codes the edge's tokens (its server: an edge-sized ViT)."""
    torch.manual_seed(0)
    codec = HyperLatentCodec(HyperConfig(server_architecture="semcomm_vit_edge_p4_32"))
    assert codec.config.tap is not None
    return HyperLatentPair.from_codec(codec, hint_coder=load_hint("vit-edge-cifar10"), bf16=False)


def test_a_sweep_of_images_on_disk_equals_the_sweep_in_memory(on_disk, token_pair, tmp_path):
    """The pair reads the edge's tokens: on disk each task computes its shard's, in batches of 16 as one pass over
    the split in memory does (the edge's batch set to the shard size), so every number is the same."""
    sweep = Sweep(CONFIG, progress=False, cache_dir=tmp_path, codec=token_pair)
    sweep.encoder.batch_size = 16
    in_memory = dataclasses.replace(on_disk, images=on_disk.images[:])
    assert sweep.edge_analysis(in_memory).hidden is not None
    pass_on_disk = sweep.edge_analysis(on_disk)
    assert pass_on_disk.hidden is None and list(pass_on_disk.importance) == [CONFIG.importance]
    disk, memory = sweep.run(on_disk), sweep.run(in_memory)
    assert as_json(disk) == as_json(memory)
    assert {p.family for p in disk.points} == {"reference", "semantic", "random"}
    assert sweep._held_masks is None  # a finished run lets go of the last setting's masks
