"""Saved backends: every kind round-trips through fp16 safetensors + a JSON card with identical logits, is found by
path or by name in the user zoo, and a damaged directory is a clear error. Tiny ViTs: seconds."""
from __future__ import annotations

import json

import pytest
import torch
from backend_helpers import one_thread, random_positions, tiny_data, tiny_vit  # noqa: F401 (fixture)

from semcomm.server.backends import (
    Device, DeviceConfig, MonolithicBackend, ViTSpec, create_backend, list_saved_backends, load_backend,
    read_backend_card, save_backend,
)
from semcomm.train.backends import build_decomposed, build_experts, build_partitioned
from semcomm.zoo import CheckpointError

DEVICES = DeviceConfig.from_dict([{"name": "fast", "memory_mb": 0.07, "speed": 2.0},
                                  {"name": "slow", "memory_mb": 0.045, "link_mbps": 10.0}])


def _build(kind):
    server = tiny_vit()
    images, labels = tiny_data()
    if kind == "monolithic":
        return MonolithicBackend(server, Device("box", memory_mb=1.0))
    if kind == "partitioned":  # pruned to the devices: per-layer shapes differ from the server's
        return build_partitioned(server, DEVICES, images, labels, fusion_steps=2, batch_size=16, generator=0).backend
    if kind == "devit":
        return build_decomposed(server, DeviceConfig.uniform(2, 0.1), images, labels, student=tiny_vit(seed=1),
                                student_depth=1, student_keep=0.5, fusion_steps=2, batch_size=16, generator=0).backend
    return build_experts(tiny_vit(seed=2, embed_dim=16, num_heads=2), server, DEVICES, images, labels,
                         subsets="random", generator=0).backend


@pytest.fixture(scope="module", params=["monolithic", "partitioned", "devit", "experts"])
def backend(request):
    return _build(request.param)


@pytest.fixture(scope="module")
def saved(backend, tmp_path_factory):
    directory = tmp_path_factory.mktemp("saved") / backend.kind
    card = save_backend(backend, directory=directory, accuracy={"dataset": "random", "top1": 0.1}, dataset="random")
    return directory, card


def test_every_kind_round_trips_with_identical_logits(backend, saved):
    directory, card = saved
    loaded = create_backend(str(directory))
    assert type(loaded) is type(backend)
    with torch.no_grad():  # the saved weights are fp16: compare with the original rounded the same way
        rounded = {k: v.half().float() if v.is_floating_point() else v for k, v in backend.state_dict().items()}
        reference = type(backend).skeleton(backend.describe(), backend.devices, [s.device for s in backend.stages])
        reference.load_state_dict(rounded)
    images, _ = tiny_data(6, seed=5)
    for positions in (random_positions(6, 7), None):
        assert torch.equal(loaded.classify(images, positions), reference.classify(images, positions))
    assert [s.device for s in loaded.stages] == [s.device for s in backend.stages]
    for a, b in zip(loaded.stages, backend.stages):
        if hasattr(a.module, "vit"):
            assert ViTSpec.of(a.module.vit) == ViTSpec.of(b.module.vit)  # pruned shapes came back
    assert loaded.devices == backend.devices


def test_the_card_states_kind_devices_groups_accuracy_and_parameters_per_device(backend, saved):
    directory, card = saved
    data = json.loads((directory / "backend.json").read_text())
    assert data["kind"] == backend.kind and data["num_devices"] == len(backend.placement())
    assert data["accuracy"] == {"dataset": "random", "top1": 0.1}
    assert sorted(c for g in data["groups"] for c in g) == list(range(10)) or data["kind"] == "experts"
    per_device = {d: sum(sum(p.numel() for p in s.module.parameters()) for s in stages)
                  for d, stages in backend.placement().items()}
    assert data["parameters_per_device"] == per_device
    assert data["parameters"] == sum(p.numel() for p in backend.parameters()) == sum(per_device.values()) + \
        data["host_parameters"]
    size = (directory / "weights.safetensors").stat().st_size
    assert size < 2.2 * data["parameters"] + 20_000  # fp16: two bytes a parameter plus the header
    assert read_backend_card(directory) == card


def test_a_saved_backend_is_found_by_name_in_the_user_zoo(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMCOMM_ZOO", str(tmp_path))
    backend = _build("monolithic")
    card = save_backend(backend, name="box-tiny", accuracy={"top1": 0.5})
    assert card.directory == tmp_path / "backends" / "box-tiny"
    assert [c.name for c in list_saved_backends() if c.directory.parent == tmp_path / "backends"] == ["box-tiny"]
    images, _ = tiny_data(3)
    torch.testing.assert_close(create_backend("box-tiny").classify(images), backend.classify(images), rtol=0,
                               atol=1e-2)
    with pytest.raises(TypeError, match="a saved backend is loaded as it is"):
        create_backend("box-tiny", devices=DEVICES)
    with pytest.raises(KeyError, match="unknown backend 'nowhere'; registered: .*; saved: box-tiny"):
        create_backend("nowhere")


def _copy(saved, tmp_path):
    import shutil

    directory, _ = saved
    target = tmp_path / "copy"
    shutil.copytree(directory, target)
    return target


def test_a_damaged_saved_backend_is_a_clear_error(saved, tmp_path):
    target = _copy(saved, tmp_path)
    weights = target / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="is corrupted or was replaced: its SHA-256 .* does not match"):
        load_backend(target)
    weights.unlink()
    with pytest.raises(CheckpointError, match="has no weights.safetensors"):
        load_backend(target)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(kind="hologram"), "unknown kind 'hologram'"),
    (lambda d: d.update(format=9), "has format 9"),
    (lambda d: d.pop("modules"), r"missing \['modules'\]"),
    (lambda d: d.update(colour="blue"), r"unknown fields \['colour'\]"),
    (lambda d: d.update(sha256=""), "records no SHA-256"),
])
def test_a_card_that_does_not_fit_is_a_clear_error(saved, tmp_path, edit, message):
    target = _copy(saved, tmp_path)
    card = json.loads((target / "backend.json").read_text())
    edit(card)
    (target / "backend.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=message):
        load_backend(target)


def test_weights_that_do_not_fit_the_card_and_missing_cards_are_named(tmp_path):
    target = tmp_path / "box"
    save_backend(_build("monolithic"), directory=target)
    card = json.loads((target / "backend.json").read_text())
    card["modules"]["server"]["units"] = [32, 32]  # narrower MLPs than the weights hold
    (target / "backend.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="does not fit the structure on its card"):
        load_backend(target)
    (target / "backend.json").unlink()
    with pytest.raises(CheckpointError, match="has no backend.json"):
        load_backend(target)
    (target / "backend.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        load_backend(target)


def test_listing_skips_a_broken_saved_backend_with_a_warning_naming_it(tmp_path, monkeypatch):
    from semcomm.zoo import ZooWarning

    monkeypatch.setenv("SEMCOMM_ZOO", str(tmp_path))
    save_backend(_build("monolithic"), name="box-tiny")
    broken = tmp_path / "backends" / "broken" / "backend.json"
    broken.parent.mkdir()
    broken.write_text('{"name": "broken"}')
    with pytest.warns(ZooWarning, match=rf"card {broken} is malformed: unknown fields \[\], missing \["):
        names = [card.name for card in list_saved_backends()]
    assert "box-tiny" in names and "broken" not in names
    with pytest.raises(CheckpointError, match=f"card {broken} is malformed"):
        load_backend("broken")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(num_classes="10"), r"field 'num_classes' must be an integer"),
    (lambda d: d.update(num_devices=0), "field 'num_devices' must be at least 1"),
    (lambda d: d.update(image_size=[32]), r"field 'image_size' must be \[height, width\]"),
    (lambda d: d.update(accuracy=[0.5]), "field 'accuracy' must be an object or null"),
    (lambda d: d.update(sha256="not-hex"), "field 'sha256' must be 64 lowercase hex digits"),
])
def test_a_card_field_error_names_the_card_and_the_field(saved, tmp_path, edit, message):
    target = _copy(saved, tmp_path)
    card = json.loads((target / "backend.json").read_text())
    edit(card)
    (target / "backend.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=rf"card {target / 'backend.json'} is malformed: .*{message}"):
        load_backend(target)


def test_a_loaded_backend_is_named_after_its_card(saved):
    directory, card = saved
    assert load_backend(directory).name == card.name == directory.name
