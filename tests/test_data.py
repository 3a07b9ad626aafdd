"""Data loading: real CIFAR-10 from the shared archive, ImageFolder trees, torchvision's CIFAR format, errors."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from semcomm.data import DataNotFoundError, load_image_folder, load_split


def test_real_cifar10_test_split(cifar_test):
    assert cifar_test.images.shape == (500, 3, 32, 32) and cifar_test.images.dtype == torch.uint8
    assert cifar_test.labels.dtype == torch.int64 and cifar_test.labels.max() == 9
    assert cifar_test.classes[:3] == ["airplane", "automobile", "bird"]
    assert 20 < cifar_test.images.float().mean() < 235  # real pictures, not blank arrays


def test_image_folder_converts_grayscale_and_checks_sizes(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / "dog" / "gray.png")
    split = load_image_folder(tmp_path)
    assert split.images.shape == (7, 3, 8, 8) and split.classes == ["cat", "dog"]
    assert split.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    original = np.asarray(Image.open(tmp_path / "cat" / "0.png"))
    assert np.array_equal(split.images[0].permute(1, 2, 0).numpy(), original)
    Image.fromarray(rng.integers(0, 255, (9, 9, 3), dtype=np.uint8)).save(tmp_path / "dog" / "odd.png")
    with pytest.raises(ValueError, match="differ in size"):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path, image_size=8).images.shape == (8, 3, 8, 8)


def test_torchvision_cifar_format(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    data = rng.integers(0, 255, (4, 3072), dtype=np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": [0, 1, 2, 3]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    split = load_split("cifar10", "test", data_root=tmp_path, cache_dir=tmp_path / "cache")
    assert split.images.shape == (4, 3, 32, 32)
    assert np.array_equal(split.images[2].numpy().ravel(), data[2])
    assert split.classes[3] == "c3" and split.labels.tolist() == [0, 1, 2, 3]
    assert len(load_split("cifar10", "train", data_root=tmp_path, cache_dir=tmp_path / "cache")) == 20


def test_missing_data_names_every_place_searched(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMCOMM_DATA", str(tmp_path / "env"))
    (tmp_path / "given").mkdir()
    with pytest.raises(DataNotFoundError) as err:
        load_split("nosuchset", "test", data_root=tmp_path / "given", cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert str(tmp_path / "given") in message and str(tmp_path / "env") in message
    assert "--data-root" in message and "SEMCOMM_DATA" in message


def test_limit_must_be_positive(cifar_test):
    with pytest.raises(ValueError, match="positive"):
        cifar_test.subset(0)


def test_a_data_root_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(DataNotFoundError, match="data root .*nowhere is not a directory"):
        load_split("cifar10", "test", data_root=tmp_path / "nowhere", cache_dir=tmp_path / "cache")
