"""The CIFAR-10 recipes' pieces on tiny models (the full recipes run in benchmarks/backends_cifar10.py)."""
from __future__ import annotations

import pytest
import torch
from backend_helpers import one_thread, tiny_data, tiny_vit  # noqa: F401 (fixture)

from semcomm.inference import top1
from semcomm.rate.hint import fuse
from semcomm.server.backends import DecomposedBackend, Device, ExpertBackend, MonolithicBackend, PartitionedBackend
from semcomm.train.backends.measurements import (
    backend_logits, compare_offloading, measure_latencies, measure_latency, partial_input_accuracy,
)
from semcomm.train.backends.recipes import (
    baseline_recipe, build_backend, cifar10_recipe, evaluate_recipe, retime_recipe,
)


def test_the_recipes_size_their_devices_and_scale_their_steps():
    partitioned = cifar10_recipe("partitioned", 5)
    assert partitioned.name == "partitioned-cifar10-n5" and len(partitioned.devices["devices"]) == 5
    assert partitioned.devices["devices"][0]["memory_mb"] == pytest.approx(4 * 3_362_890 / 5 / 1e6, abs=1e-3)
    assert partitioned.build["recovery_steps"] == round(6 * 781 * 2 / 5)  # members of 2 classes: 2/N the steps
    assert cifar10_recipe("partitioned", 2).build["recovery_steps"] == 6 * 781
    assert cifar10_recipe("experts", 5).build["steps"] == round(3 * 781 * 2 / 5)
    devit = cifar10_recipe("devit", 2, scale=0.5)
    assert devit.build["distill_steps"] == round(5 * 781 * 0.5) and devit.build["student_keep"] == 1.0
    assert cifar10_recipe("devit", 5).build["student_depth"] == 4
    assert cifar10_recipe("experts", 2, test_limit=100).test_limit == 100
    with pytest.raises(ValueError, match="unknown backend kind 'monolith'"):
        cifar10_recipe("monolith", 2)
    with pytest.raises(ValueError, match="the number of devices must be an integer >= 1"):
        cifar10_recipe("devit", 0)


def test_a_baseline_is_one_vit_in_the_largest_device_or_all_of_them_by_the_partitioned_recipe(tmp_path):
    """The monolithic baseline of a backend (issue 28): one device with the memory of the backend's largest (or of
    all its devices), one group of every class, a sub-model's steps; built, it is one pruned ViT within it."""
    devit = cifar10_recipe("devit", 2)
    largest, total = baseline_recipe("devit", 2), baseline_recipe("devit", 2, total=True)
    assert largest.name == "baseline-of-devit-cifar10-n2" and total.name == "baseline-of-devit-cifar10-n2-total"
    assert largest.kind == total.kind == "partitioned"
    assert [d["memory_mb"] for d in largest.devices["devices"]] == [devit.devices["devices"][0]["memory_mb"]]
    assert [d["memory_mb"] for d in total.devices["devices"]] == [sum(d["memory_mb"] for d in devit.devices["devices"])]
    assert largest.build == {**cifar10_recipe("partitioned", 2).build}  # a sub-model's steps, options and data
    server = tiny_vit()
    images, labels = tiny_data(40)
    memory = 0.5 * 4 * sum(p.numel() for p in server.parameters()) / 1e6  # half the tiny server's float32 bytes
    recipe = baseline_recipe("partitioned", 2, scale=1e-4)
    recipe = type(recipe)(**{**recipe.__dict__, "devices": {"devices": [{**recipe.devices["devices"][0],
                                                                          "memory_mb": memory}]}})
    backend = build_backend(recipe, server, tiny_vit(seed=1, embed_dim=16, num_heads=2), images, labels, tmp_path,
                            progress=False)
    assert isinstance(backend, PartitionedBackend) and len(backend.placement()) == 1
    assert backend.groups.groups == (tuple(range(10)),)  # one group of every class
    logits, _ = backend_logits(backend, images, None, batch_size=16)
    assert logits.shape == (40, 10)


@pytest.mark.parametrize("kind, expected", [("partitioned", PartitionedBackend), ("devit", DecomposedBackend),
                                            ("experts", ExpertBackend)])
def test_every_recipe_builds_measures_and_compares_on_tiny_models(kind, expected, tmp_path):
    server, edge = tiny_vit(), tiny_vit(seed=1, embed_dim=16, num_heads=2)
    images, labels = tiny_data(40)
    recipe = cifar10_recipe(kind, 2, scale=1e-4, test_limit=20)
    if kind == "devit":
        recipe = cifar10_recipe(kind, 2, scale=1e-4, build={**recipe.build, "bf16": False})
    backend = build_backend(recipe, server, edge, images, labels, tmp_path, progress=False)
    assert isinstance(backend, expected) and len(backend.placement()) == 2
    assert sorted(p.name for p in tmp_path.glob("*.pt"))  # the phases were kept
    edge_logits = edge(images).detach()
    logits, reports = backend_logits(backend, images, edge_logits, batch_size=16)
    assert logits.shape == (40, 10) and len(reports) == 3
    latency = measure_latency(backend, images, batch=4, requests=3, edge_logits=edge_logits)
    assert latency["critical_path_ms"] > 0 and latency["bytes_per_image"] > 0 and latency["requests"] == 3
    rows = compare_offloading(edge, backend, images, labels, edge_logits, server(images).detach(), (0.25, 1.0))
    assert [r["offload_rate"] for r in rows] == [0.25, 1.0]
    everything = rows[1]  # all offloaded: the fused answers are fuse(backend, edge) and fuse(server, edge) everywhere
    edge_log_probs = edge_logits.log_softmax(-1)
    assert everything["fused_top1"] == pytest.approx(top1(fuse(logits, edge_log_probs), labels))
    assert everything["server_fused_top1"] == pytest.approx(top1(fuse(server(images).detach(), edge_log_probs), labels))
    if kind == "experts":
        assert sum(rows[1]["share_served"].values()) == pytest.approx(1.0)
        torch.testing.assert_close(torch.tensor(rows[1]["top1"]), torch.tensor(
            float((logits.argmax(1) == labels).float().mean())))  # everything offloaded: the backend's own top-1
    else:
        assert rows[0]["share_served"] is None
    partial = partial_input_accuracy(backend, server, edge, images, labels, edge_logits, (4, 16))
    assert [r["patches"] for r in partial] == [4, 16]
    whole = float((logits.argmax(1) == labels).float().mean())
    assert partial[1]["top1"] == pytest.approx(whole)  # 16 of 16 patches: the whole images
    for device, macs in partial[0]["macs_per_device"].items():  # 4 patches cost less than 16 on every device
        assert 0 < macs < partial[1]["macs_per_device"][device]


def test_latencies_time_the_backend_and_the_server_on_single_images_and_batches():
    server = tiny_vit()
    images, _ = tiny_data(70)
    backend = MonolithicBackend(tiny_vit(seed=1, depth=1), Device("edge-box", memory_mb=10))
    timed = measure_latencies(backend, server, images, None, latency_requests=2, threads=1)
    assert set(timed) == {"latency"} and set(timed["latency"]) == {"batch1", "batch64"}
    for batch, entry in timed["latency"].items():
        assert entry["backend"]["batch"] == entry["server"]["batch"] == int(batch[5:])
        assert entry["speedup"] == pytest.approx(entry["server"]["critical_path_ms"] / entry["backend"]["critical_path_ms"])
    assert timed["latency"]["batch64"]["backend"]["requests"] == 3  # at least 3 batched requests


def test_timing_again_needs_a_measured_recipe(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the recipe devit-cifar10-n2 before timing it again"):
        retime_recipe(cifar10_recipe("devit", 2), tmp_path / "unmeasured")
    assert not (tmp_path / "unmeasured").exists()  # nothing left behind


def test_evaluating_a_shipped_backend_measures_it_without_building_or_touching_its_card(tmp_path):
    from semcomm.server.backends.storage import read_backend_card

    recipe = cifar10_recipe("devit", 2, test_limit=64)
    card = read_backend_card(recipe.name)
    results = evaluate_recipe(recipe, tmp_path, latency_requests=1, threads=1)
    assert (tmp_path / "results.json").is_file() and not list(tmp_path.glob("*.pt"))  # nothing was built
    assert results["build_minutes"] is None and results["recipe"] == card.recipe  # the recipe it was built with
    assert results["test_images"] == 64 and 0.5 < results["top1"] <= 1.0  # the shipped students, not random ones
    assert results["parameters_per_device"] == card.parameters_per_device
    assert [p["patches"] for p in results["partial_inputs"]] == [16, 32]
    assert read_backend_card(recipe.name).to_dict() == card.to_dict()
