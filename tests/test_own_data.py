"""Your own ImageFolder data (issue 12): Tiny-ImageNet's layout, nested folders, gray / RGBA / mixed sizes,
resizing, a cache keyed by content, and the command line end to end (train, export, evaluate, sweep)."""
from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from semcomm.cli import main
from semcomm.data import DataNotFoundError, DataWarning, evaluation_split, load_images, load_split, square_image

CLASSES = ("n01", "n02", "n03")


def _picture(seed: int, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A random ``size`` (width, height) picture in ``mode``, different for every seed."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    array = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(array[..., 0] if mode == "L" else array, mode)


def make_tiny_imagenet(root, per_class: int = 4, val_per_class: int = 2):
    """Tiny-ImageNet's layout at toy scale, every image 16 x 16 except where the split folders mix them.

    ``train/<class>/images/<class>_<i>.JPEG`` (+ ``<class>_boxes.txt``), ``val/images/val_<i>.JPEG`` labelled by
    ``val/val_annotations.txt`` (``file<TAB>class<TAB>box``), and an unlabelled ``test/images/``. Train has a
    grayscale JPEG, an RGBA PNG and a 24 x 20 image. Returns {val file name: class}.
    """
    for c, cls in enumerate(CLASSES):
        folder = root / "train" / cls / "images"
        folder.mkdir(parents=True)
        (root / "train" / cls / f"{cls}_boxes.txt").write_text("")
        for i in range(per_class):
            _picture(10 * c + i, (16, 16)).save(folder / f"{cls}_{i}.JPEG")
    _picture(90, (16, 16), "L").save(root / "train" / "n01" / "images" / "n01_gray.JPEG")
    _picture(91, (16, 16), "RGBA").save(root / "train" / "n02" / "images" / "n02_alpha.png")
    _picture(92, (24, 20)).save(root / "train" / "n03" / "images" / "n03_wide.JPEG")
    (root / "val" / "images").mkdir(parents=True)
    labels, lines = {}, []
    for i in range(val_per_class * len(CLASSES)):
        name, cls = f"val_{i}.JPEG", CLASSES[i % len(CLASSES)]
        _picture(100 + i, (16, 16)).save(root / "val" / "images" / name)
        labels[name] = cls
        lines.append(f"{name}\t{cls}\t0\t0\t15\t15")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (root / "test" / "images").mkdir(parents=True)
    _picture(200, (16, 16)).save(root / "test" / "images" / "test_0.JPEG")
    return labels


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache and user zoo for the test."""
    monkeypatch.setenv("SEMCOMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SEMCOMM_ZOO", str(tmp_path / "zoo"))
    return tmp_path / "cache"


def test_tiny_imagenet_layout_loads_with_annotations_nested_folders_and_mixed_images(tmp_path, cache):
    data = tmp_path / "tiny"
    val_labels = make_tiny_imagenet(data)
    train = load_split(data, "train", image_size=16)
    assert train.name == "tiny/train" and train.classes == list(CLASSES)
    assert train.images.shape == (15, 3, 16, 16) and train.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    gray = np.asarray(Image.open(data / "train" / "n01" / "images" / "n01_gray.JPEG"))
    assert np.array_equal(train.images[4].numpy(), np.stack([gray] * 3))  # sorted after n01_0..3
    rgba = np.asarray(Image.open(data / "train" / "n02" / "images" / "n02_alpha.png"))
    assert np.array_equal(train.images[9].permute(1, 2, 0).numpy(), rgba[..., :3])
    wide = square_image(Image.open(data / "train" / "n03" / "images" / "n03_wide.JPEG").convert("RGB"), 16)
    assert np.array_equal(train.images[14].permute(1, 2, 0).numpy(), np.asarray(wide))

    val = load_split(data, "val", image_size=16)
    assert val.classes == train.classes and len(val) == len(val_labels)
    first = np.asarray(Image.open(data / "val" / "images" / "val_0.JPEG"))
    row = [i for i in range(len(val)) if np.array_equal(val.images[i].permute(1, 2, 0).numpy(), first)]
    assert len(row) == 1 and val.classes[val.labels[row[0]]] == val_labels["val_0.JPEG"]
    assert sorted(val.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert evaluation_split(data) == "val"  # test/ is unlabelled


def test_class_folder_layout_labels_every_split_by_the_training_classes(tmp_path, cache):
    for split, classes in (("train", ("ant", "bee", "cat")), ("test", ("ant", "cat"))):
        for c, cls in enumerate(classes):
            (tmp_path / "set" / split / cls).mkdir(parents=True)
            _picture(c, (10, 14)).save(tmp_path / "set" / split / cls / "0.png")
    test = load_split(tmp_path / "set", "test")
    assert test.images.shape == (2, 3, 14, 10) and test.classes == ["ant", "bee", "cat"]
    assert test.labels.tolist() == [0, 2]  # "cat" keeps its training label although "bee" is missing
    assert load_split(tmp_path / "set", "test", image_size=8).images.shape == (2, 3, 8, 8)


def test_a_zip_with_a_top_folder_loads_like_the_folder(tmp_path, cache):
    import zipfile

    make_tiny_imagenet(tmp_path / "tiny")
    with zipfile.ZipFile(tmp_path / "tiny.zip", "w") as zipped:
        for path in sorted((tmp_path / "tiny").rglob("*")):
            zipped.write(path, path.relative_to(tmp_path).as_posix())
    from_zip = load_split(tmp_path / "tiny.zip", "val", image_size=16)
    from_folder = load_split(tmp_path / "tiny", "val", image_size=16)
    assert from_zip.name == "tiny/val" and torch.equal(from_zip.images, from_folder.images)
    assert torch.equal(from_zip.labels, from_folder.labels)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn01\nnope.JPEG\tn02\n"),
         "names 1 files that are not images under .*nope.JPEG"),
        (lambda d: (d / "val" / "val_annotations.txt").write_text("val_0.JPEG n01\n"), "line 1: expected 'file<TAB>"),
        (lambda d: (d / "val" / "val_annotations.txt").write_text(
            "".join(f"val_{i}.JPEG\tn0{i % 3 + 1}\n" for i in range(5)) + "val_5.JPEG\tn99\n"),
         "classes that the training split does not have .*n99"),
        (lambda d: (d / "val" / "val_annotations.txt").unlink(), "looks unlabelled"),
    ],
)
def test_bad_annotations_are_named(tmp_path, cache, damage, message):
    make_tiny_imagenet(tmp_path / "tiny")
    damage(tmp_path / "tiny")
    with pytest.raises(ValueError, match=message):
        load_split(tmp_path / "tiny", "val", image_size=16)


def test_annotated_files_that_do_not_exist_refuse_the_split_or_are_skipped_with_a_warning(tmp_path, cache):
    """Strict by default (the error says how to skip); skip_missing=True loads the rest and names every skipped file,
    on every load, cached or not; a strict load afterwards is not served the skipping load's arrays."""
    data = tmp_path / "tiny"
    val_labels = make_tiny_imagenet(data)
    for gone in ("val_1.JPEG", "val_4.JPEG"):
        (data / "val" / "images" / gone).unlink()
    with pytest.raises(ValueError, match="names 2 files that are not images under .*val_1.JPEG, val_4.JPEG.*"
                                         "skip_missing=True"):
        load_split(data, "val", image_size=16)
    for _ in ("decoded", "cached"):
        with pytest.warns(DataWarning, match="names 2 files that are not images under .*skipped them: val_1.JPEG, "
                                             "val_4.JPEG$"):
            val = load_split(data, "val", image_size=16, skip_missing=True)
        assert len(val) == 4 and sorted(val.classes[i] for i in val.labels) == sorted(
            cls for name, cls in val_labels.items() if name not in ("val_1.JPEG", "val_4.JPEG"))
    with pytest.raises(ValueError, match="names 2 files that are not images"):
        load_split(data, "val", image_size=16)


def test_unlabelled_images_load_for_prediction_with_their_file_names(tmp_path, cache):
    """Tiny-ImageNet's test/images/ has no labels: load_split refuses it, load_images reads it (by data set and
    split, by folder, from an archive), with each image's path, at the model's size."""
    data = tmp_path / "tiny"
    make_tiny_imagenet(data)
    _picture(201, (20, 16)).save(data / "test" / "images" / "test_1.JPEG")
    with pytest.raises(ValueError, match="looks unlabelled"):
        load_split(data, "test", image_size=16)
    test = load_images(data, "test", image_size=16)
    assert test.name == "tiny/test" and test.files == ["images/test_0.JPEG", "images/test_1.JPEG"]
    assert test.images.shape == (2, 3, 16, 16) and test.images.dtype == torch.uint8
    first = np.asarray(Image.open(data / "test" / "images" / "test_0.JPEG"))
    assert np.array_equal(test.images[0].permute(1, 2, 0).numpy(), first)
    wide = square_image(Image.open(data / "test" / "images" / "test_1.JPEG").convert("RGB"), 16)
    assert np.array_equal(test.images[1].permute(1, 2, 0).numpy(), np.asarray(wide))

    by_folder = load_images(data / "test" / "images", image_size=16)
    assert by_folder.name == "images" and by_folder.files == ["test_0.JPEG", "test_1.JPEG"]
    assert torch.equal(by_folder.images, test.images)
    with tarfile.open(tmp_path / "tiny.tar.gz", "w:gz") as tar:
        tar.add(data, "tiny")
    assert torch.equal(load_images(tmp_path / "tiny.tar.gz", "test", image_size=16).images, test.images)

    train = load_images(data, "train", limit=3, image_size=16)  # class folders ignored: every image, by path
    assert train.files == ["n01/images/n01_0.JPEG", "n01/images/n01_1.JPEG", "n01/images/n01_2.JPEG"]
    with pytest.raises(ValueError, match="differ in size.*give an image size"):
        load_images(data, "test")
    with pytest.raises(ValueError, match="limit must be a positive number of images, got 0"):
        load_images(data, "test", limit=0)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataNotFoundError, match="no images found under .*nothing"):
        load_images(tmp_path / "nothing")


def test_sizes_and_paths_are_checked(tmp_path, cache):
    make_tiny_imagenet(tmp_path / "tiny")
    with pytest.raises(ValueError, match="differ in size.*give an image size"):
        load_split(tmp_path / "tiny", "train")
    for bad in (0, -3, 2.5, "16", True):
        with pytest.raises(ValueError, match="image_size must be a positive whole number"):
            load_split(tmp_path / "tiny", "train", image_size=bad)
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_split(tmp_path / "elsewhere", "train")
    with pytest.raises(DataNotFoundError, match="has no split 'holdout'; it has \\['test', 'train', 'val'\\]"):
        load_split(tmp_path / "tiny", "holdout")


def test_cache_is_keyed_by_content_never_stale(tmp_path, cache, monkeypatch):
    for root, seed in ((tmp_path / "a", 0), (tmp_path / "b", 1)):  # two roots, one data set name
        folder = root / "pets" / "train" / "cat"
        folder.mkdir(parents=True)
        _picture(seed, (8, 8)).save(folder / "0.png")
    first = load_split("pets", "train", data_root=tmp_path / "a")
    second = load_split("pets", "train", data_root=tmp_path / "b")
    assert not torch.equal(first.images, second.images)
    assert torch.equal(second.images[0].permute(1, 2, 0), torch.from_numpy(np.array(_picture(1, (8, 8)))))

    import semcomm.data.decode

    def no_decoding(*args):
        raise AssertionError("decoded again although the data did not change")

    with monkeypatch.context() as patched:
        patched.setattr(semcomm.data.decode, "read_rgb", no_decoding)
        assert torch.equal(load_split("pets", "train", data_root=tmp_path / "a").images, first.images)
        assert torch.equal(load_split("pets", "train", data_root=tmp_path / "a", image_size=8).images, first.images)

    _picture(2, (8, 8)).save(tmp_path / "a" / "pets" / "train" / "cat" / "0.png")  # the same file, new content
    changed = load_split("pets", "train", data_root=tmp_path / "a")
    assert torch.equal(changed.images[0].permute(1, 2, 0), torch.from_numpy(np.array(_picture(2, (8, 8)))))
    entries = sorted(p.name for p in (cache / "arrays").iterdir())
    assert len(entries) == 2  # one per root: the entry of the file's earlier content was dropped

    with tarfile.open(tmp_path / "pets.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "b" / "pets" / "train", "train")
    from_archive = load_split(tmp_path / "pets.tar.gz", "train")
    assert torch.equal(from_archive.images, second.images)


def _cli(argv, capsys):
    """Run the command line; returns (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_command_line_trains_exports_evaluates_and_sweeps_own_data(tmp_path, cache, capsys):
    data = tmp_path / "tiny"
    make_tiny_imagenet(data)
    zoo = tmp_path / "zoo"
    for size in ("edge", "server"):
        code, out, err = _cli(["train", "--data", data, "--size", size, "--geometry", "16/4", "--epochs", "1",
                               "--batch-size", "4", "--threads", "1", "--export", "--to", zoo], capsys)
        assert code == 0, err
        assert f"run vit-{size}-tiny-16p4" in out and "3 classes, 15 training images" in out
        card = json.loads((zoo / f"vit-{size}-tiny-16p4.json").read_text())
        assert card["dataset"] == "tiny" and card["classes"] == list(CLASSES) and card["test_images"] == 6

    evaluated = tmp_path / "eval.json"
    code, _, err = _cli(["evaluate", "vit-edge-tiny-16p4", "--data", data, "--json", evaluated], capsys)
    assert code == 0, err
    result = json.loads(evaluated.read_text())
    assert (result["dataset"], result["split"], result["images"]) == ("tiny", "val", 6)

    code, out, err = _cli(["fit", "hint", "--edge", "vit-edge-tiny-16p4", "--data", data, "--images", "15"], capsys)
    assert code == 0, err
    assert (zoo / "codecs" / "hint-vit-edge-tiny-16p4.json").is_file()  # the user zoo, not the package

    swept = tmp_path / "sweep.json"
    code, out, err = _cli(["sweep", "--data", data, "--edge", "vit-edge-tiny-16p4", "--server", "vit-server-tiny-16p4",
                           "--codec", "raw8", "--no-twins", "--budgets", "4", "--rules", "top-k",
                           "--thresholds", "0", "--codecs", "none", "--limit", "4", "--json", swept], capsys)
    assert code == 0, err
    from semcomm.experiments.results import SweepResult

    sweep = SweepResult.from_json(swept)
    assert sweep.images == 4 and sweep.dataset == "tiny/val[4]" and len(sweep.points) > 1

    code, _, err = _cli(["evaluate", "vit-edge-cifar10", "--data", data, "--limit", "4"], capsys)
    assert code == 2 and "classifies 10 classes of cifar10, but tiny/val[4] has 3 classes" in err


def test_train_by_preset_name_resumes_the_same_run(tmp_path, cache, capsys):
    root = tmp_path / "root"
    make_tiny_imagenet(root / "tiny")
    argv = ["train", "vit-edge-tiny", "--geometry", "16/4", "--data-root", root, "--batch-size", "8",
            "--epochs", "1", "--threads", "1"]
    code, out, err = _cli(argv, capsys)
    assert code == 0, err
    assert "run vit-edge-tiny-16p4" in out
    assert (cache / "runs" / "vit-edge-tiny-16p4" / "state.pt").is_file()
    code, out, err = _cli(["train", "vit-edge-tiny-16p4", "--data-root", root, "--batch-size", "8",
                           "--epochs", "1", "--threads", "1"], capsys)
    assert code == 0, err
    assert "epoch" not in out.split("state in")[-1]  # already done: nothing trained again


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "tiny-imagenet-200"], "unknown preset 'tiny-imagenet-200'; choose from vit-edge-cifar10, "
                                         "vit-server-cifar10, vit-server-dct-cifar10, vit-edge-imagenette"),
        (["train", "vit-edge-tiny"], "no preset trains vit-edge-tiny: give its geometry"),
        (["train", "--data", "{data}", "--size", "edge"], "give a preset"),
        (["train", "--data", "{data}", "--size", "edge", "--geometry", "16/5"], "not IMAGE/PATCH"),
        (["train", "vit-edge-cifar10", "--data", "{data}"], "trains on cifar10 but --data"),
        (["evaluate", "vit-edge-cifar10", "--data-root", "{tmp}/nowhere"], "--data-root {tmp}/nowhere does not exist"),
        (["sweep", "--data", "{tmp}/nowhere"], "--data {tmp}/nowhere does not exist"),
        (["evaluate", "vit-edge-cifar10", "--data", "{data}", "--split", "test"], "looks unlabelled"),
        (["export", "vit-edge-tiny-16p4"], "no training run in"),
    ],
)
def test_command_line_errors_are_one_line(tmp_path, cache, capsys, argv, message):
    make_tiny_imagenet(tmp_path / "tiny")
    fill = dict(data=tmp_path / "tiny", tmp=tmp_path)
    code, _, err = _cli([a.format(**fill) for a in argv], capsys)
    assert code == 2 and message.format(**fill) in err.strip().splitlines()[-1]
    assert "Traceback" not in err


def test_recipes_at_any_geometry_keep_the_presets_and_name_the_rest():
    from semcomm.train.presets import PRESETS, parse_run_name, recipe

    for name in ("vit-edge-cifar10", "vit-server-cifar10", "vit-edge-imagenette", "vit-server-imagenette"):
        size, dataset, geometry = parse_run_name(name)
        assert geometry is None
        geometry = (32, 4) if dataset == "cifar10" else (224, 16)
        assert recipe(size, dataset, geometry) == (name, PRESETS[name])
    assert recipe("server", "cifar10", (32, 4), base="vit-server-dct-cifar10") == (
        "vit-server-dct-cifar10", PRESETS["vit-server-dct-cifar10"])

    name, config = recipe("server", "cifar10", (64, 8))
    assert name == "vit-server-cifar10-64p8" and config.architecture == "semcomm_vit_server_p8_64"
    assert config.augment == "pad-crop-flip" and config.token_keep == PRESETS["vit-server-cifar10"].token_keep
    assert config.guide is None  # the shipped guide sees another patch grid

    name, config = recipe("edge", "tiny-imagenet-200", (64, 8))
    assert name == "vit-edge-tiny-imagenet-200-64p8" and config.augment == "deit" and config.low_res is None
    assert parse_run_name(name) == ("edge", "tiny-imagenet-200", (64, 8))
    assert recipe("edge", "tiny", (16, 4))[1].augment == "pad-crop-flip"
    with pytest.raises(ValueError, match="unknown ViT size 'huge'"):
        recipe("huge", "tiny", (16, 4))
