"""Training recipe: augmentation, schedule, token dropping, and an exact resume."""
from __future__ import annotations

import pytest
import torch

from semcomm.train.augmentation import pad_crop_flip
from semcomm.train.token_dropping import random_positions
from semcomm.train.vit import TrainConfig, learning_rate, train


def test_augment_is_a_crop_or_its_mirror():
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = pad_crop_flip(images, torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images.float(), (4, 4, 4, 4), mode="reflect")
    for img, src in zip(out.float(), padded):
        found = any(torch.equal(img, cand[:, dy : dy + 32, dx : dx + 32])
                    for cand in (src, src.flip(-1)) for dy in range(9) for dx in range(9))
        assert found
    assert torch.equal(pad_crop_flip(images, torch.Generator().manual_seed(1)), out)


def test_learning_rate_warms_up_then_decays_to_min():
    config = TrainConfig("semcomm_vit_edge_p4_32", epochs=10, lr=1e-3, min_lr=1e-5, warmup_epochs=2)
    rates = [learning_rate(config, step, 100) for step in range(1000)]
    assert rates[0] < rates[100] < rates[199] == 1e-3
    assert all(a >= b for a, b in zip(rates[200:], rates[201:]))
    assert abs(rates[-1] - 1e-5) < 1e-7


@pytest.mark.parametrize("epochs, warmup", [(2, 5.0), (1, 2.0), (3, 3.0)])
def test_a_short_run_warms_up_within_a_quarter_of_it_then_peaks_and_decays(epochs, warmup):
    """A recipe's warm-up longer than a quarter of a short schedule (``--epochs 2`` with the DeiT recipe's 5) is cut
    to that quarter: the rate reaches its peak, then decays to the minimum by the last step."""
    config = TrainConfig("semcomm_vit_edge_p4_32", epochs=epochs, lr=1e-3, min_lr=1e-5, warmup_epochs=warmup)
    steps = 40
    rates = [learning_rate(config, step, steps) for step in range(epochs * steps)]
    peak = round(epochs * steps / 4)  # the last warm-up step
    assert rates[peak - 1] == 1e-3 and all(a < b for a, b in zip(rates[: peak - 1], rates[1:peak]))
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1:]))
    assert 1e-5 <= rates[-1] < 1e-5 + 0.01 * (1e-3 - 1e-5)  # the last step within 1% of the range from the minimum


def test_the_presets_keep_the_warm_up_they_were_trained_with():
    """Every shipped recipe's warm-up is within a quarter of its schedule: the rate peaks exactly where it did."""
    from semcomm.train.latent import LATENT_PRESETS
    from semcomm.train.presets import PRESETS
    from semcomm.train.schedule import warmup_cosine

    for name, config in PRESETS.items():
        warmup = round(config.warmup_epochs * 10)
        assert learning_rate(config, warmup - 1, 10) == config.lr > learning_rate(config, warmup - 2, 10), name
    for name, config in LATENT_PRESETS.items():
        warmup = round(config.warmup_epochs * 10)
        rate = [warmup_cosine(step, 10, config.epochs, config.warmup_epochs, 1.0, 0.0) for step in (warmup - 2, warmup - 1)]
        assert rate[1] == 1.0 > rate[0], name


def test_random_positions_are_sorted_distinct_subsets():
    positions = random_positions(8, 64, 20, torch.Generator().manual_seed(0))
    assert positions.shape == (8, 20)
    assert all(len(set(row.tolist())) == 20 for row in positions)
    assert (positions.diff(dim=1) > 0).all()


def test_resumed_run_equals_uninterrupted_run(tmp_path, cifar_test):
    data = cifar_test.subset(96)
    config = TrainConfig("semcomm_vit_edge_p4_32", epochs=2, batch_size=32, token_keep=(0.2, 0.8),
                         full_image_prob=0.3, eval_images=32, bf16=False)
    straight, history = train(config, data, data, tmp_path / "a", progress=False)
    assert [e["epoch"] for e in history.epochs] == [1, 2]
    _, first = train(config, data, data, tmp_path / "b", stop_after=1, progress=False)
    assert [e["epoch"] for e in first.epochs] == [1]
    resumed, history_b = train(config, data, data, tmp_path / "b", progress=False)
    assert [e["epoch"] for e in history_b.epochs] == [1, 2]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert history_b.epochs[1]["loss"] == history.epochs[1]["loss"]


def test_resume_refuses_a_different_config(tmp_path, cifar_test):
    data = cifar_test.subset(32)
    config = TrainConfig("semcomm_vit_edge_p4_32", epochs=1, batch_size=32, eval_images=32, bf16=False)
    train(config, data, data, tmp_path, progress=False)
    with pytest.raises(ValueError, match="different config"):
        train(TrainConfig(**{**config.__dict__, "lr": 5e-4}), data, data, tmp_path, progress=False)


def test_resume_may_lengthen_the_schedule(tmp_path, cifar_test):
    data = cifar_test.subset(32)
    config = TrainConfig("semcomm_vit_edge_p4_32", epochs=1, batch_size=32, eval_images=32, bf16=False)
    train(config, data, data, tmp_path, progress=False)
    _, history = train(TrainConfig(**{**config.__dict__, "epochs": 2}), data, data, tmp_path, progress=False)
    assert [(e["epoch"], e["schedule_epochs"]) for e in history.epochs] == [(1, 1), (2, 2)]


def test_warm_restart_continues_the_schedule_and_keeps_the_earlier_history(tmp_path, cifar_test):
    from semcomm.models import save_weights

    data = cifar_test.subset(32)
    config = TrainConfig("semcomm_vit_edge_p4_32", epochs=2, batch_size=32, eval_images=32, bf16=False)
    model, first = train(config, data, data, tmp_path / "a", stop_after=1, progress=False)
    save_weights(model.model, tmp_path / "w.safetensors")
    _, history = train(config, data, data, tmp_path / "b", init_from=tmp_path / "w.safetensors", start_epoch=1,
                       earlier_history=first.epochs, progress=False)
    assert [e["epoch"] for e in history.epochs] == [1, 2]
    assert history.epochs[0] == first.epochs[0]
    assert history.epochs[1]["warm_restart"] is True
    _, again = train(config, data, data, tmp_path / "b", progress=False)  # resumes the state: nothing left to do
    assert again.epochs == history.epochs


def test_export_ships_fp16_weights_with_a_measured_card(tmp_path, cifar_test, monkeypatch):
    import semcomm.models.zoo as zoo
    import semcomm.train.vit as training
    from semcomm import create_model
    from semcomm.inference import predict_logits, top1

    monkeypatch.setenv("SEMCOMM_ZOO", str(tmp_path / "zoo"))  # exports go to the user zoo, not the package
    data = cifar_test.subset(64)
    config = TrainConfig("semcomm_vit_edge_p4_32", epochs=1, batch_size=32, eval_images=32, bf16=False)
    train(config, data, data, tmp_path / "run", progress=False)
    card = training.export("tiny-edge", tmp_path / "run", data)
    assert (tmp_path / "zoo" / "tiny-edge.safetensors").stat().st_size < 2 * 811_146 + 100_000  # fp16
    assert card.epochs == 1 and card.test_images == 64 and len(card.history) == 1
    assert card.params == 811_146 and card.recipe["architecture"] == "semcomm_vit_edge_p4_32"
    shipped = create_model("tiny-edge")
    assert top1(predict_logits(shipped, data.images, bf16=False), data.labels) == card.test_top1
    assert zoo.model_card("tiny-edge") == card


def test_deit_augmentation_is_reproducible_and_leaves_global_generators_alone():
    import random

    import numpy as np

    from semcomm.train.augmentation import ImageNetAugment

    images = torch.randint(0, 256, (8, 3, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(8) % 4
    recipe = ImageNetAugment(num_classes=4)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    out, targets = recipe(images, labels, 32, torch.Generator().manual_seed(3))
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == _draws_after_seed(1)
    again, _ = recipe(images, labels, 32, torch.Generator().manual_seed(3))
    assert out.shape == (8, 3, 32, 32) and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, again)
    assert targets.shape == (8, 4) and torch.allclose(targets.sum(1), torch.ones(8))


def _draws_after_seed(seed: int):
    import random

    import numpy as np

    random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_deit_recipe_with_a_low_resolution_phase_resumes_exactly(tmp_path):
    from semcomm.data import ImageSplit

    generator = torch.Generator().manual_seed(0)
    data = ImageSplit(torch.randint(0, 256, (8, 3, 224, 224), dtype=torch.uint8, generator=generator),
                      torch.arange(8) % 10, [str(i) for i in range(10)], "synthetic")
    config = TrainConfig("semcomm_vit_edge_p16_224", epochs=2, batch_size=4, augment="deit", low_res=(64, 1),
                         drop_path=0.1, token_keep=(0.3, 0.6), full_image_prob=0.5, eval_images=4, bf16=False)
    straight, history = train(config, data, data, tmp_path / "a", progress=False)
    train(config, data, data, tmp_path / "b", stop_after=1, progress=False)
    resumed, _ = train(config, data, data, tmp_path / "b", progress=False)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert all(0 < e["loss"] < 10 for e in history.epochs)


def test_imagenette_presets_train_on_imagenette_and_score_on_its_val_split():
    from semcomm.data import evaluation_split
    from semcomm.train.presets import PRESET_DATASETS, PRESETS, recipe

    for name in ("vit-edge-imagenette", "vit-server-imagenette"):
        assert PRESET_DATASETS[name] == "imagenette" and PRESETS[name].augment == "deit"
    assert evaluation_split("imagenette") == "val" and evaluation_split("cifar10") == "test"
    assert PRESET_DATASETS["vit-server-dct-cifar10"] == "cifar10"
    # the Imagenette server starts from the edge's stacked blocks; other geometries and data start from scratch
    assert PRESETS["vit-server-imagenette"].grown_from == "vit-edge-imagenette"
    _, other = recipe("server", "mydata", (64, 8))
    assert other.grown_from is None and other.epochs == 150 and other.lr == 1e-3


def test_quantization_aware_training_sees_what_the_codec_delivers(tmp_path, cifar_test):
    data = cifar_test.subset(16)
    config = TrainConfig("semcomm_vit_server_p4_32", epochs=1, batch_size=16, eval_images=16, bf16=False,
                         codec="dct-cifar10", codec_levels=(1, 6), token_keep=(0.5, 1.0))
    _, history = train(config, data, data, tmp_path, progress=False)
    assert [e["epoch"] for e in history.epochs] == [1] and torch.isfinite(torch.tensor(history.epochs[0]["loss"]))
