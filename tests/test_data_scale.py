"""Data sets larger than memory (issue 29): the decoded cache as checksummed shards read a batch at a time, decoding
over a process pool (or Ray) into the same bytes as one process, damaged shards decoded again, loading, evaluating
and training on a data set larger than a memory cap within that cap (peak RSS of a subprocess), training and the
codec fitting on disk as in memory, and what needs every image in memory refusing a split on disk by name."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import semcomm.data.decode
from semcomm.data import DataWarning, ShardedImages, load_images, load_split, update_digest
from semcomm.data.shards import ShardStore

CLASSES = ("ant", "bee", "cat")


def make_folder(root, n: int, side: int, classes=CLASSES):
    """An ImageFolder split ``root/train/<class>/<i>.png`` of ``n`` side x side pictures (blocky, so that they
    compress well and write fast), different for every i; returns the split folder's parent (the data set)."""
    rng = np.random.default_rng(0)
    for cls in classes:
        (root / "train" / cls).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        picture = Image.fromarray(small).resize((side, side), Image.NEAREST)
        picture.save(root / "train" / classes[i % len(classes)] / f"{i:05d}.png", compress_level=1)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """300 pictures of 16 x 16 in three classes."""
    return make_folder(tmp_path_factory.mktemp("scale") / "toys", 300, 16)


def row_bytes(side: int) -> int:
    return 3 * side * side


def test_images_on_disk_index_like_the_tensor(folder, tmp_path):
    disk = load_split(folder, "train", cache_dir=tmp_path, in_memory=False, shard_bytes=7 * row_bytes(16))
    memory = load_split(folder, "train", cache_dir=tmp_path, in_memory=True)
    tensor, images = memory.images, disk.images
    assert isinstance(tensor, torch.Tensor) and isinstance(images, ShardedImages)
    assert len(images) == 300 and images.shape == tensor.shape and images.dtype == torch.uint8 and images.ndim == 4
    assert len(images.store.shards) == 43  # 7 images a shard: the entry written first, here with those shards
    mask = torch.arange(300) % 7 == 3
    index = torch.tensor([299, 0, 150, 6, 7, 7, -1])
    for key in (5, -3, np.int64(7), torch.tensor(8), slice(None), slice(3, 40), slice(250, None, 9), index, index.numpy(),
                index.tolist(), mask, (slice(10, 20), 1), (4, slice(None), 3)):
        assert torch.equal(images[key], tensor[key]), key
    assert torch.equal(images[::-1], tensor.flip(0))  # as numpy (a tensor takes no negative step)
    assert torch.equal(torch.cat(list(images.batches(64))), tensor)
    assert torch.equal(torch.stack(list(images)), tensor)
    assert torch.equal(images.to_tensor(), tensor)
    assert torch.equal(disk.labels, memory.labels) and disk.classes == memory.classes == list(CLASSES)
    one, other = hashlib.sha256(), hashlib.sha256(tensor.numpy().tobytes())
    update_digest(one, images)
    assert one.hexdigest() == other.hexdigest()


def test_subsets_stay_on_disk_and_pick_the_same_images(folder, tmp_path):
    memory = load_split(folder, "train", cache_dir=tmp_path, in_memory=True)
    disk = load_split(folder, "train", cache_dir=tmp_path, in_memory=False)
    subset = disk.subset(40)
    assert isinstance(subset.images, ShardedImages) and subset.images.store is disk.images.store  # an index, no copy
    assert torch.equal(subset.images.to_tensor(), memory.subset(40).images)
    assert torch.equal(subset.labels, memory.subset(40).labels)
    assert torch.equal(load_split(folder, "train", cache_dir=tmp_path, limit=40).images, memory.subset(40).images)
    nested = subset.images.rows(slice(5, 15)).rows([9, 0])
    assert torch.equal(nested[:], memory.subset(40).images[[14, 5]])
    assert load_split(folder, "train", cache_dir=tmp_path, limit=40, in_memory=False).images.nbytes == 40 * 768


def test_the_pool_decodes_the_same_bytes_as_one_process(folder, tmp_path):
    serial = load_split(folder, "train", cache_dir=tmp_path / "one", workers=1, in_memory=False)
    pooled = load_split(folder, "train", cache_dir=tmp_path / "two", workers=2, in_memory=False)
    shards = [json.loads((split.images.store.folder / "shards.json").read_text()) for split in (serial, pooled)]
    assert shards[0] == shards[1]  # same shards, same SHA-256 of each
    assert torch.equal(serial.images[:], pooled.images[:])
    single, many = (load_images(folder / "train", workers=w).images for w in (1, 2))
    assert torch.equal(single, many) and torch.equal(single[0], serial.images[0])


@pytest.mark.skipif(sys.platform != "linux", reason="worker processes see the patched reader when forked")
def test_what_worker_processes_warn_is_said_again(folder, tmp_path, monkeypatch):
    read_rgb = semcomm.data.decode.read_rgb

    def warning_reader(path, image_size):
        if path.name == "00299.png":
            warnings.warn(f"image {path}: odd tag", DataWarning)
        return read_rgb(path, image_size)

    monkeypatch.setattr(semcomm.data.decode, "read_rgb", warning_reader)
    with pytest.warns(DataWarning, match="00299.png: odd tag"):
        load_split(folder, "train", cache_dir=tmp_path, workers=2)


def damage(path, how: str) -> None:
    if how == "changed":
        raw = bytearray(path.read_bytes())
        raw[-5] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    else:
        path.unlink()


@pytest.mark.parametrize("how", ["changed", "truncated", "missing"])
@pytest.mark.parametrize("in_memory", [False, True])
def test_a_damaged_shard_is_decoded_again_with_a_warning_naming_it(folder, tmp_path, how, in_memory):
    first = load_split(folder, "train", cache_dir=tmp_path, in_memory=False, shard_bytes=50 * row_bytes(16))
    pixels = first.images[:]
    shard = first.images.store.path(2)
    recorded = first.images.store.shards[2]["sha256"]
    damage(shard, how)
    with pytest.warns(DataWarning, match=f"cache shard {shard} is {how if how == 'missing' else ''}"):
        again = load_split(folder, "train", cache_dir=tmp_path, in_memory=in_memory)
        assert torch.equal(again.images[:], pixels)
    assert hashlib.sha256(shard.read_bytes()).hexdigest() == recorded  # rewritten as it was
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once repaired, no warning
        assert torch.equal(load_split(folder, "train", cache_dir=tmp_path, in_memory=in_memory).images[:], pixels)


def test_a_damaged_shard_without_a_way_to_decode_it_is_refused_by_name(folder, tmp_path):
    split = load_split(folder, "train", cache_dir=tmp_path, in_memory=False, shard_bytes=50 * row_bytes(16))
    damage(split.images.store.path(1), "changed")
    images = ShardedImages(ShardStore(split.images.store.folder))
    assert torch.equal(images[:50], split.images[:50])  # shard 0 is sound
    with pytest.raises(ValueError, match=f"cache shard {split.images.store.path(1)} is changed"):
        images[50]


@pytest.mark.parametrize("call, message", [
    (dict(workers=0), "workers must be a positive number of processes, got 0"),
    (dict(shard_bytes=-1), "shard_bytes must be a positive whole number of bytes, got -1"),
    (dict(in_memory="yes"), "in_memory must be True, False or None"),
])
def test_bad_arguments_are_named(folder, tmp_path, call, message):
    with pytest.raises(ValueError, match=message):
        load_split(folder, "train", cache_dir=tmp_path, **call)


def test_bad_indices_are_named(folder, tmp_path):
    images = load_split(folder, "train", cache_dir=tmp_path, in_memory=False).images
    with pytest.raises(IndexError, match="image 300 is out of range for 300 images"):
        images[300]
    with pytest.raises(IndexError, match="index 400 is out of range for 300 images"):
        images[[1, 400]]
    with pytest.raises(IndexError, match="indexed by an int, a slice, or a 1-d list"):
        images[torch.tensor([0.5])]
    with pytest.raises(AttributeError, match="ShardedImages has no attribute 'float' .* in_memory=True"):
        images.float()


def test_the_edge_pass_over_images_on_disk_matches_the_one_in_memory(tmp_path):
    from semcomm import create_model
    from semcomm.edge import EdgeEncoder, TopK
    from semcomm.experiments.edge_pass import _analyze

    data = make_folder(tmp_path / "toys", 40, 32)
    split = load_split(data, "train", cache_dir=tmp_path, in_memory=False, shard_bytes=6 * row_bytes(32))
    encoder = EdgeEncoder(create_model("semcomm_vit_edge_p4_32"), TopK(4), gate=None, batch_size=2)  # chunks of 32
    disk, memory = (_analyze(encoder, images, ("mean",), False) for images in (split.images, split.images[:]))
    assert torch.equal(disk.logits, memory.logits) and disk.logits.shape == (40, 10)
    assert torch.equal(disk.importance["mean"], memory.importance["mean"])


PEAK = textwrap.dedent("""
    def status(field):  # bytes, from /proc/self/status (kB there)
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    def reset():  # the peak (VmHWM) set back to what is resident now, which is returned
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return status("VmRSS")
""")

MEASURE = PEAK + textwrap.dedent("""
    import sys, json
    import torch
    from semcomm.data import load_split
    from semcomm.inference import predict_logits

    class Mean(torch.nn.Module):  # stands in for a model: a per-image number from the pixels
        def forward(self, images):
            return images.float().mean((2, 3))

    data, warm, cache, shard_bytes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    warmed = load_split(warm, "train", cache_dir=cache, in_memory=False, workers=2)  # first calls, off the count
    predict_logits(Mean(), warmed.images, batch_size=64, bf16=False)
    base = reset()
    split = load_split(data, "train", cache_dir=cache, in_memory=False, workers=2, shard_bytes=shard_bytes)
    decoded = status("VmHWM") - base
    base = reset()
    split = load_split(data, "train", cache_dir=cache, in_memory=False)
    logits = predict_logits(Mean(), split.images, batch_size=64, bf16=False)
    subset = predict_logits(Mean(), split.subset(500).images, batch_size=64, bf16=False)
    evaluated = status("VmHWM") - base
    base = reset()
    whole = load_split(data, "train", cache_dir=cache, in_memory=True)
    in_memory = status("VmHWM") - base
    assert torch.equal(logits, predict_logits(Mean(), whole.images, batch_size=64, bf16=False))
    print(json.dumps(dict(decoded=decoded, evaluated=evaluated, in_memory=in_memory, n=len(split),
                          nbytes=whole.images.numel())))
""")


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """2400 pictures of 64 x 64 (29.5 MB decoded) in three classes."""
    return make_folder(tmp_path_factory.mktemp("big") / "big", 2400, 64)


def measure(script: str, tmp_path, *args) -> dict:
    """The JSON that ``script`` prints last, run with ``args`` in a subprocess of its own.

    glibc's dynamic mmap threshold would keep freed batch buffers in its heap (here up to 100 MB, the allocator's
    cache rather than memory in use): a fixed threshold returns them, so that the peak counts what is held."""
    path = tmp_path / "measure.py"
    path.write_text(script)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(128 * 1024))
    run = subprocess.run([sys.executable, str(path), *map(str, args)], capture_output=True, text=True, timeout=300,
                         env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's resettable peak RSS")
def test_loading_and_evaluating_a_data_set_larger_than_the_memory_cap_stays_within_it(big, tmp_path):
    """2400 pictures of 64 x 64 (29.5 MB decoded) against a cap of 12 MiB on the peak resident memory above what
    was resident before (a subprocess's VmHWM, reset through /proc/self/clear_refs): decoding into 1 MiB shards,
    then evaluating every image and a subset a batch at a time, stay within it; holding the split in memory does
    not (the measurement sees it)."""
    cap = 12 * 2**20  # measured: 6.3 MB decoding (chunks in flight), 6.7 MB evaluating (batches of 64, as float)
    measured = measure(MEASURE, tmp_path, big, make_folder(tmp_path / "warm", 3, 64), tmp_path / "cache", 2**20)
    assert measured["n"] == 2400 and measured["nbytes"] == 2400 * row_bytes(64) > 2 * cap
    assert measured["decoded"] < cap, measured
    assert measured["evaluated"] < cap, measured
    assert measured["in_memory"] > measured["nbytes"] * 0.9, measured


def test_decoding_over_ray_gives_the_same_shards_as_the_pool(folder, tmp_path):
    """``engine="ray"`` decodes into the same shards (and images) as the local pool; a Ray it started for the
    decoding (none was running) is stopped after it."""
    ray = pytest.importorskip("ray")
    was_running = ray.is_initialized()
    pooled = load_split(folder, "train", cache_dir=tmp_path / "pool", workers=2, in_memory=False,
                        shard_bytes=50 * row_bytes(16))
    over_ray = load_split(folder, "train", cache_dir=tmp_path / "ray", workers=2, in_memory=False,
                          shard_bytes=50 * row_bytes(16), engine="ray")
    assert ray.is_initialized() == was_running
    shards = [json.loads((split.images.store.folder / "shards.json").read_text()) for split in (pooled, over_ray)]
    assert shards[0] == shards[1] and len(shards[0]["shards"]) == 6  # same shards, same SHA-256 of each
    assert torch.equal(over_ray.images[:], pooled.images[:])


def test_decoding_over_ray_without_ray_installed_says_how_to_install_it(folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ImportError, match=r"decoding with engine='ray' needs Ray: pip install 'semcomm\[ray\]'"):
        load_split(folder, "train", cache_dir=tmp_path, engine="ray")
    with pytest.raises(ValueError, match="engine must be one of 'processes', 'ray', got 'spark'"):
        load_split(folder, "train", cache_dir=tmp_path, engine="spark")


def tiny_vit(side: int, patch: int, classes: int = 3):
    """A side x side ViT of the project's edge architecture in patch x patch patches, shrunk (width 32, 2 blocks),
    seeded: the same start every time."""
    import timm

    from semcomm.models import TimmViT
    from semcomm.models.architectures import vit_architecture

    torch.manual_seed(0)
    return TimmViT(timm.create_model(vit_architecture("edge", side, patch), num_classes=classes, embed_dim=32,
                                     depth=2, num_heads=4, mlp_ratio=2.0))


def test_training_on_a_split_on_disk_gives_the_same_weights_as_in_memory(folder, tmp_path):
    """One epoch of train() over a split left on disk (random batches gathered across 7-image shards, a subset
    evaluated) matches the same run over the split in memory exactly: weights, loss and test top-1."""
    from semcomm.models.architectures import vit_architecture
    from semcomm.train.vit import TrainConfig, train

    disk = load_split(folder, "train", cache_dir=tmp_path, in_memory=False, shard_bytes=7 * row_bytes(16))
    memory = dataclasses.replace(disk, images=disk.images[:])
    config = TrainConfig(vit_architecture("edge", 16, 4), num_classes=3, epochs=1, batch_size=32, eval_images=100,
                         bf16=False)
    runs = [train(config, split, split, tmp_path / name, progress=False, model=tiny_vit(16, 4), device="cpu")
            for name, split in (("disk", disk), ("memory", memory))]
    (on_disk, disk_history), (in_memory, memory_history) = runs
    assert isinstance(disk.images, ShardedImages) and len(disk.images.store.shards) == 43
    for (name, a), b in zip(on_disk.state_dict().items(), in_memory.state_dict().values()):
        assert torch.equal(a, b), name
    assert [{k: v for k, v in e.items() if k != "minutes"} for e in disk_history.epochs] == \
        [{k: v for k, v in e.items() if k != "minutes"} for e in memory_history.epochs]


def test_fitting_and_measuring_a_dct_pair_on_a_split_on_disk_matches_memory(tmp_path):
    """The DCT pair's tables (fit_dct's fitting) and measure_pair's card numbers, from a split left on disk read a
    batch at a time, are those of the split in memory."""
    from semcomm.rate.dct import DCTPair
    from semcomm.train.fitting import measure_pair

    data = make_folder(tmp_path / "toys", 24, 32)
    disk = load_split(data, "train", cache_dir=tmp_path, in_memory=False, shard_bytes=6 * row_bytes(32))
    memory = dataclasses.replace(disk, images=disk.images[:])
    pair = DCTPair(tiny_vit(32, 4, classes=10), levels=2)
    tables = pair.fit_tables(disk.images, batch=10)
    distortion = pair.distortion
    again = pair.fit_tables(memory.images)
    assert all(torch.equal(a, b) for a, b in zip(tables.state_dict("t.").values(), again.state_dict("t.").values()))
    assert torch.equal(distortion, pair.distortion)
    torch.manual_seed(1)
    measured = measure_pair(pair, "semcomm_vit_edge_p4_32", disk, chunk=10)  # 10 + 10 + 4 images
    torch.manual_seed(1)  # the same random edge
    assert measured == measure_pair(pair, "semcomm_vit_edge_p4_32", memory)
    assert measured["test_images"] == 24 and set(measured) >= {"L1", "L2"}


def test_what_needs_every_image_in_memory_refuses_a_split_on_disk_by_name(folder, tmp_path):
    from semcomm.edge import EdgeEncoder, TopK
    from semcomm.server.backends.devices import DeviceConfig
    from semcomm.train.backends.partitioned import build_partitioned

    disk = load_split(folder, "train", cache_dir=tmp_path, in_memory=False)
    with pytest.raises(TypeError, match=r"build_partitioned holds every image in memory, but these 300 images are "
                                        r"left on disk .* load_split\(\.\.\., in_memory=True\)"):
        build_partitioned(tiny_vit(16, 4), DeviceConfig.uniform(2, 1.0), disk.images, disk.labels)
    with pytest.raises(TypeError, match=r"got ShardedImages; these are left on disk: pass a batch \(images\[a:b\]\), "
                                        r"or load the split with load_split\(\.\.\., in_memory=True\)"):
        EdgeEncoder(tiny_vit(16, 4), TopK(4), gate=None).analyze(disk.images)


def test_the_evaluate_command_reads_a_split_left_on_disk(folder, tmp_path, monkeypatch):
    import semcomm.data.load
    import semcomm.inference
    from semcomm.cli import main

    monkeypatch.setenv("SEMCOMM_CACHE", str(tmp_path))
    monkeypatch.setattr(semcomm.data.load, "IN_MEMORY_BYTES", 0)  # every split is left on disk
    predict_logits, seen = semcomm.inference.predict_logits, []

    def spy(model, images, *args, **kwargs):
        seen.append(type(images))
        return predict_logits(model, images, *args, **kwargs)

    monkeypatch.setattr(semcomm.inference, "predict_logits", spy)
    path = tmp_path / "result.json"
    assert main(["evaluate", "semcomm_vit_edge_p4_32", "--data", str(folder), "--split", "train", "--limit", "50",
                 "--fp32", "--device", "cpu", "--json", str(path)]) == 0
    assert seen == [ShardedImages]
    assert json.loads(path.read_text())["images"] == 50


TRAIN_MEASURE = PEAK + textwrap.dedent("""
    import dataclasses, gc, sys, json
    import timm, torch
    from semcomm.data import load_split
    from semcomm.models import TimmViT
    from semcomm.models.architectures import vit_architecture
    from semcomm.train.vit import TrainConfig, train

    def tiny_vit(side, patch):  # as the tests' tiny_vit: 3 classes, width 32, 2 blocks, seeded
        torch.manual_seed(0)
        return TimmViT(timm.create_model(vit_architecture("edge", side, patch), num_classes=3, embed_dim=32, depth=2,
                                         num_heads=4, mlp_ratio=2.0))

    torch.set_num_threads(1)
    data, warm, cache = sys.argv[1], sys.argv[2], sys.argv[3]
    config = TrainConfig(vit_architecture("edge", 64, 16), num_classes=3, epochs=1, batch_size=32, eval_images=64,
                         bf16=False)
    warmed = load_split(warm, "train", cache_dir=cache, in_memory=False, workers=1)  # first calls, off the count
    train(config, warmed, warmed, cache + "/warm", progress=False, model=tiny_vit(64, 16), device="cpu")
    split = load_split(data, "train", cache_dir=cache, in_memory=False, workers=2, shard_bytes=2**20)
    whole = dataclasses.replace(split, images=split.images[:])
    base = reset()  # training itself (the pixels already in memory): what reading from disk is compared with
    in_memory, _ = train(config, whole, whole, cache + "/memory", progress=False, model=tiny_vit(64, 16),
                         device="cpu")
    training = status("VmHWM") - base
    del whole
    gc.collect()
    base = reset()
    on_disk, history = train(config, split, split, cache + "/disk", progress=False, model=tiny_vit(64, 16),
                             device="cpu")
    trained = status("VmHWM") - base
    assert all(torch.equal(a, b) for a, b in zip(on_disk.state_dict().values(), in_memory.state_dict().values()))
    base = reset()
    whole = load_split(data, "train", cache_dir=cache, in_memory=True)
    loaded = status("VmHWM") - base
    print(json.dumps(dict(trained=trained, training=training, loaded=loaded, n=len(split),
                          nbytes=whole.images.numel(), epochs=len(history.epochs),
                          shards=len(split.images.store.shards))))
""")


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's resettable peak RSS")
def test_training_on_a_data_set_larger_than_the_memory_cap_stays_within_it(big, tmp_path):
    """One epoch of train() (75 random batches of 32, then 64 test images) over 2400 pictures of 64 x 64 left on
    disk (29.5 MB decoded, in 1 MiB shards) stays within a 16 MiB cap on the peak resident memory above what was
    resident before (a subprocess's VmHWM, reset through /proc/self/clear_refs; a first run on a small split warmed
    torch up off the count), within 3 MiB of the same training with the pixels already in memory (the training's own
    activations, optimizer and checkpoint: about 10 MiB, whatever the data set's size); reading the split into
    memory takes its size (the measurement sees it)."""
    cap = 16 * 2**20  # measured (2 loaded cores): 10.4-11.7 MiB on disk, 11.9-12.0 MiB in memory (pixels not counted)
    measured = measure(TRAIN_MEASURE, tmp_path, big, make_folder(tmp_path / "warm", 32, 64), tmp_path / "cache")
    assert measured["n"] == 2400 and measured["nbytes"] == 2400 * row_bytes(64) > 1.5 * cap
    assert measured["epochs"] == 1 and measured["shards"] == 29
    assert measured["trained"] < cap, measured
    assert measured["trained"] < measured["training"] + 3 * 2**20, measured
    assert measured["loaded"] > measured["nbytes"] * 0.9, measured
