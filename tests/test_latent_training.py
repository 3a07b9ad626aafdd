"""The latent codec's recipe: resumable, warm-startable, and its export ships exact tables."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from semcomm.rate.latent import LatentConfig
from semcomm.train.latent import LatentTrainConfig, load_codec_weights, train_latent, training_levels


@pytest.fixture(scope="module")
def tiny_config():
    return LatentTrainConfig(epochs=2, batch_size=16, eval_images=16, kd=0.5, warmup_epochs=0.5)


def test_training_levels_keep_one_count_per_batch(tiny_config):
    importance = torch.softmax(torch.randn(8, 64, generator=torch.Generator().manual_seed(0)), -1)
    for seed in range(20):
        level = training_levels(importance, tiny_config, (8, 8), torch.Generator().manual_seed(seed))
        counts = (level > 0).sum(1)
        assert (counts == counts[0]).all() and counts[0] >= 1 and level.max() <= tiny_config.codec.levels


def test_a_run_resumes_exactly_and_warm_starts(tmp_path, cifar_test, tiny_config):
    data = cifar_test.subset(64)
    _, first = train_latent(tiny_config, data, data, tmp_path / "a", stop_after=1, progress=False)
    codec, second = train_latent(tiny_config, data, data, tmp_path / "a", progress=False)
    assert [h["epoch"] for h in second] == [1, 2] and second[0] == first[0]
    with pytest.raises(ValueError, match="different config"):
        train_latent(replace(tiny_config, rate=9.0), data, data, tmp_path / "a", progress=False)
    from safetensors.torch import save_file

    save_file({f"weights.{k}": v.contiguous() for k, v in codec.state_dict().items() if not k.startswith("entropy.")},
              str(tmp_path / "shipped.safetensors"))
    warm, _ = train_latent(replace(tiny_config, epochs=1), data, data, tmp_path / "b", max_steps=1,
                           init_from=tmp_path / "shipped.safetensors", progress=False)
    assert warm.config == codec.config
    with pytest.raises(ValueError, match="does not fit"):
        load_codec_weights(type(codec)(LatentConfig(channels=8)), tmp_path / "shipped.safetensors")


@pytest.mark.parametrize("kwargs, message", [
    (dict(source="audio"), "pixels' or 'tokens"),
    (dict(source="tokens"), "needs the edge block"),
    (dict(tap=3), "needs the edge block"),
])
def test_bad_latent_configs_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LatentConfig(**kwargs)
