"""Backends without Ray: devices, requests, the monolithic and class-partitioned backends, the local engine."""
from __future__ import annotations

import copy
import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from backend_helpers import random_positions, tiny_data, tiny_vit

from semcomm.core.patches import unpatchify
from semcomm.edge.encoder import EdgeEncoder
from semcomm.edge.selection import TopK
from semcomm.rate import create_codec
from semcomm.server.backends import (
    Backend, ClassGroups, ClassSubModel, Device, DeviceConfig, FusionNetwork, KeepPlan, LocalEngine,
    MonolithicBackend, PartitionedBackend, Request, create_backend, list_backends, prune_vit,
)
from semcomm.server.decoder import ServerDecoder
from semcomm.train.backends import (
    assign_greedy, build_partitioned, confusion_matrix, finetune_submodel, group_by_confusion, group_randomly,
    keep_plan, plan_for_budget, pruned_parameters, train_fusion, unit_importance,
)
from semcomm.train.backends.distillation import logit_mse, soft_label_kl
from semcomm.train.backends.pruning import full_plan, minimal_plan

TWO_DEVICES = {"devices": [{"name": "fast", "memory_mb": 0.07, "speed": 2.0, "cpus": 0.5},
                           {"name": "slow", "memory_mb": 0.045, "speed": 1.0, "cpus": 0.5, "link_mbps": 10.0}]}


@pytest.fixture(scope="module")
def server():
    return tiny_vit()


@pytest.fixture(scope="module")
def data():
    return tiny_data()


@pytest.fixture(scope="module")
def partitioned(server, data):
    images, labels = data
    return build_partitioned(server, DeviceConfig.from_dict(TWO_DEVICES), images, labels, finetune_steps=1,
                             recovery_steps=1, fusion_steps=2, batch_size=16, augmentation="pad-crop-flip",
                             token_keep=(0.5, 1.0), kd_weight=1.0, bf16=True, generator=0)


def test_importing_semcomm_and_its_backends_never_imports_ray():
    code = "import sys, semcomm, semcomm.server.backends, semcomm.edge.encoder, semcomm.server.decoder, semcomm.experiments.sweep; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- devices ------------------------------------------------------------------------------------------

def test_device_config_round_trips_through_json_and_states_units(tmp_path):
    config = DeviceConfig.from_dict(TWO_DEVICES)
    path = tmp_path / "devices.json"
    path.write_text(json.dumps(config.to_dict()))
    again = DeviceConfig.from_json(path)
    assert again == config
    assert config["fast"].memory_bytes == 70_000 and config["slow"].link_mbps == 10.0
    assert config["slow"].transfer_s(1250) == pytest.approx(8 * 1250 / 10e6)
    assert config["fast"].transfer_s(10 ** 9) == 0.0  # an infinite link takes no time
    assert config.ray_resources() == {"semcomm_device_fast": 1.0, "semcomm_device_slow": 1.0}


@pytest.mark.parametrize("entry, message", [
    ({"name": "a", "memory_mb": 0}, "memory_mb must be a positive"),
    ({"name": "a", "memory_mb": 1, "speed": -1}, "speed must be a positive"),
    ({"name": "a b", "memory_mb": 1}, "device name"),
    ({"name": "a", "memory_mb": 1, "gpu": 1}, r"unknown fields \['gpu'\]"),
    ({"name": "a"}, r"missing \['memory_mb'\]"),
])
def test_bad_device_entries_are_named(entry, message):
    with pytest.raises(ValueError, match=message):
        DeviceConfig.from_dict({"devices": [entry]})


def test_device_names_must_be_distinct_and_a_config_non_empty():
    with pytest.raises(ValueError, match=r"repeated: \['a'\]"):
        DeviceConfig.from_dict([{"name": "a", "memory_mb": 1}, {"name": "a", "memory_mb": 2}])
    with pytest.raises(ValueError, match="at least one device"):
        DeviceConfig(())


# ---- requests -----------------------------------------------------------------------------------------

def test_a_request_carries_only_the_received_patches_and_rebuilds_them_in_place():
    images, _ = tiny_data(3)
    positions = random_positions(3, 5)
    request = Request.pack(images, positions, (32, 32), 8)
    assert request.patches.shape == (3, 5, 192) and request.patches.dtype == torch.uint8
    assert request.nbytes == 3 * 5 * 192 + 3 * 5 * 8  # uint8 values + int64 positions
    canvas, back = request.unpack()
    assert torch.equal(back, positions)
    mask = torch.zeros(3, 16, dtype=torch.bool).scatter_(1, positions, True)
    pixel_mask = mask.view(3, 1, 4, 1, 4, 1).expand(3, 3, 4, 8, 4, 8).reshape(3, 3, 32, 32)
    assert torch.equal(canvas[pixel_mask], images[pixel_mask])
    assert (canvas[~pixel_mask] == 0).all()
    whole = Request.pack(images.float() / 255, None, (32, 32), 8)
    assert whole.nbytes == 3 * 3 * 32 * 32 * 4 and whole.unpack()[1] is None


def test_requests_refuse_bad_positions_and_images():
    images, _ = tiny_data(2)
    with pytest.raises(ValueError, match=r"positions must lie in \[0, 16\)"):
        Request.pack(images, torch.tensor([[0, 16], [1, 2]]), (32, 32), 8)
    with pytest.raises(ValueError, match="B x K"):
        Request.pack(images, torch.tensor([0, 1]), (32, 32), 8)
    with pytest.raises(ValueError):
        Request.pack(images[:, :, :16], None, (32, 32), 8)


def test_a_request_made_from_the_received_patches_is_the_one_packed_from_an_image_holding_them():
    images, _ = tiny_data(3)
    positions = random_positions(3, 5)
    for pixels in (images, images.float() / 255):
        packed = Request.pack(pixels, positions, (32, 32), 8)
        direct = Request.from_patches(packed.patches.clone(), positions, (32, 32), 8)
        assert torch.equal(direct.patches, packed.patches) and torch.equal(direct.positions, packed.positions)
        assert direct.patches.dtype == packed.patches.dtype and direct.nbytes == packed.nbytes
        assert all(torch.equal(a, b) for a, b in zip(direct.unpack(), packed.unpack()))
    assert Request.from_patches(torch.rand(3, 5, 192, dtype=torch.float64), positions, (32, 32), 8).patches.dtype == \
        torch.float32  # float patches ship as float32, as float images do


def test_requests_from_patches_refuse_bad_patches_and_positions():
    positions = random_positions(2, 4)
    with pytest.raises(ValueError, match="B x K x P tensor with P = 3 x 8\\^2 = 192"):
        Request.from_patches(torch.zeros(2, 4, 48), positions, (32, 32), 8)
    with pytest.raises(ValueError, match=r"float patches must lie in \[0, 1\]"):
        Request.from_patches(torch.full((2, 4, 192), 255.0), positions, (32, 32), 8)
    with pytest.raises(TypeError, match="uint8 or floating point"):
        Request.from_patches(torch.zeros(2, 4, 192, dtype=torch.int32), positions, (32, 32), 8)
    with pytest.raises(ValueError, match="positions name 4 patches per image but 3 arrived"):
        Request.from_patches(torch.zeros(2, 3, 192), positions, (32, 32), 8)
    with pytest.raises(ValueError, match=r"positions must lie in \[0, 16\)"):
        Request.from_patches(torch.zeros(2, 2, 192), torch.tensor([[0, 16], [1, 2]]), (32, 32), 8)


# ---- the monolithic backend -----------------------------------------------------------------------------

def test_monolithic_backend_gives_the_server_logits_and_reports_the_request(server):
    images, _ = tiny_data(4)
    positions = random_positions(4, 6)
    backend = MonolithicBackend(server, Device("box", memory_mb=1.0, speed=4.0, link_mbps=1.0))
    with torch.no_grad():
        torch.testing.assert_close(backend.classify(images, positions), server.forward_tokens(images, positions),
                                   rtol=0, atol=1e-6)
        torch.testing.assert_close(backend(images), server(images), rtol=0, atol=1e-6)
    out = backend.run(images, positions)
    report = out.report
    (device,) = report.devices
    assert device.bytes_in == 4 * 6 * 192 + 4 * 6 * 8 and device.bytes_out == 4 * 10 * 4
    assert report.bytes_exchanged == device.bytes_in + device.bytes_out
    assert device.simulated_compute_s == pytest.approx(device.compute_s / 4.0)
    assert device.transfer_s == pytest.approx(8 * (device.bytes_in + device.bytes_out) / 1e6)
    assert report.latency_s == pytest.approx(device.latency_s + report.fusion_s)
    assert report.critical_device == "box" and backend.engine.history[-1] is report


def test_a_backend_stands_in_for_the_server_in_the_codec_unchanged(server):
    """Format version 1 (ServerDecoder) and a version-2 pixel pair read strings with a backend as their server."""
    images, _ = tiny_data(6)
    edge = tiny_vit(seed=1)
    backend = MonolithicBackend(server)
    sent = EdgeEncoder(edge, TopK(5), gate=None).encode(images)
    expected = ServerDecoder(server).classify(sent.strings)
    torch.testing.assert_close(ServerDecoder(backend).classify(sent.strings), expected, rtol=0, atol=1e-5)
    for pair_server in (server, backend):
        pair = create_codec("pixel-iaq", server=pair_server)
        strings = EdgeEncoder(edge, TopK(5), gate=None, codec=pair).encode(images).strings
        logits = ServerDecoder(codec=pair).classify(strings)
        if pair_server is server:
            reference = logits
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-5)
    assert len(backend.engine.history) >= 2  # every request the codec made was logged


def test_a_monolithic_server_too_big_for_its_device_is_refused(server):
    with pytest.raises(ValueError, match="device 'tiny' holds 0.09"):
        MonolithicBackend(server, Device("tiny", memory_mb=0.01))


# ---- grouping --------------------------------------------------------------------------------------------

def test_confusion_grouping_recovers_planted_blocks_of_confusable_classes():
    g = torch.Generator().manual_seed(0)
    blocks = [[0, 4, 8], [1, 5, 6], [2, 3, 7]]
    confusion = torch.rand(9, 9, generator=g) * 0.01
    for block in blocks:
        for a in block:
            for b in block:
                confusion[a, b] += 0.3
    groups = group_by_confusion(confusion, 3)
    assert sorted(groups.groups) == sorted(tuple(b) for b in blocks)


def test_confusion_matrix_rows_and_balanced_group_sizes():
    logits = torch.randn(50, 10, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(50) % 10
    confusion = confusion_matrix(logits, labels)
    torch.testing.assert_close(confusion.sum(1), torch.ones(10))
    assert group_by_confusion(confusion, 3).sizes == [4, 3, 3]
    assert sorted(c for g in group_by_confusion(confusion, 4) for c in g) == list(range(10))


def test_random_grouping_is_balanced_and_follows_its_seed():
    a, b, c = group_randomly(10, 3, 7), group_randomly(10, 3, 7), group_randomly(10, 3, 8)
    assert a == b and a != c and a.sizes == [4, 3, 3]


@pytest.mark.parametrize("groups, message", [
    ([[0, 1], [1, 2, 3]], "class 1 is in group 0 and group 1: groups must not overlap"),
    ([[0, 1], [2]], r"do not cover all 4 classes: \[3\] are in no group"),
    ([[0, 1], [2, 3, 4]], r"classes \[4\] outside 0..3"),
    ([[0, 1, 2, 3], []], "group 1 must be a non-empty list"),
])
def test_groups_that_overlap_or_miss_classes_are_refused(groups, message):
    with pytest.raises(ValueError, match=message):
        ClassGroups(groups, 4)


def test_groups_must_match_the_server_class_count(server, data):
    images, labels = data
    with pytest.raises(ValueError, match="groups cover 4 classes but the server has 10"):
        build_partitioned(server, DeviceConfig.from_dict(TWO_DEVICES), images, labels,
                          groups=ClassGroups([[0, 1], [2, 3]], 4))


# ---- sub-models and pruning ---------------------------------------------------------------------------

def test_a_sub_model_starts_as_the_server_restricted_to_its_classes(server):
    images, _ = tiny_data(4)
    sub = ClassSubModel.from_server(server, [7, 2, 5])
    assert sub.classes == (2, 5, 7)
    with torch.no_grad():
        torch.testing.assert_close(sub(images), server(images)[:, [2, 5, 7]], rtol=0, atol=1e-6)
    assert sub.vit.model.head.weight.data_ptr() != server.model.head.weight.data_ptr()


def test_finetuning_a_sub_model_trains_it_on_its_own_classes(server, data):
    images, labels = data
    sub = ClassSubModel.from_server(server, [0, 1, 2])
    targets = sub.targets(labels)
    mine, local = targets >= 0, targets[targets >= 0]

    def loss():
        with torch.no_grad():
            return float(F.cross_entropy(sub(images[mine]), local))

    before = loss()
    losses = finetune_submodel(sub, images, labels, steps=8, batch_size=18, lr=3e-3, generator=0)
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses)
    assert loss() < before
    again = ClassSubModel.from_server(server, [0, 1, 2])
    assert finetune_submodel(again, images, labels, steps=8, batch_size=18, lr=3e-3, generator=0) == losses
    with pytest.raises(ValueError, match=r"no training image belongs to the sub-model's classes \[0, 1, 2\]"):
        finetune_submodel(again, images[labels > 2], labels[labels > 2], steps=1)


def teacher_and_perturbed_student(server):
    """The server restricted to classes 0-2, and a copy of it with every weight perturbed (seeded)."""
    teacher = ClassSubModel.from_server(server, [0, 1, 2])
    student = ClassSubModel.from_server(server, [0, 1, 2])
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return teacher, student


def test_a_sub_model_trained_on_all_images_matches_the_teachers_logits_on_other_classes_images(server, data):
    images, labels = data
    teacher, student = teacher_and_perturbed_student(server)
    others = labels > 2  # images the sub-model never sees with data="group"

    def gap():
        with torch.no_grad():
            return float(logit_mse(student(images[others]), teacher(images[others])))

    before = gap()
    kwargs = dict(steps=10, batch_size=18, lr=1e-3, teacher=teacher, kd_weight=10.0, kd_loss="logits", generator=0)
    on_its_own = finetune_submodel(copy.deepcopy(student), images, labels, data="group", **kwargs)
    losses = finetune_submodel(student, images, labels, data="all", **kwargs)
    assert len(losses) == 10 and all(math.isfinite(x) for x in losses)
    assert losses != on_its_own  # other batches: every image, not the group's only
    assert gap() < 0.5 * before
    with pytest.raises(ValueError, match="unknown kd_loss 'mse'; choose from kl, logits"):
        finetune_submodel(student, images, labels, steps=1, teacher=teacher, kd_weight=1.0, kd_loss="mse")
    with pytest.raises(ValueError, match="unknown sub-model training data 'others'; choose from group, all"):
        finetune_submodel(student, images, labels, steps=1, data="others")


def test_logit_matching_keeps_the_offset_that_soft_labels_ignore():
    teacher = torch.tensor([[2.0, 1.0, 0.0]])
    shifted = teacher + 3.0
    assert float(soft_label_kl(shifted, teacher, 4.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(logit_mse(shifted, teacher)) == pytest.approx(27.0)  # 3 classes x 3^2


def test_a_sub_model_learns_from_a_teacher_on_augmented_partial_images(server, data):
    images, labels = data
    teacher, student = teacher_and_perturbed_student(server)
    mine = student.targets(labels) >= 0

    def gap():
        with torch.no_grad():
            return float(soft_label_kl(student(images[mine]), teacher(images[mine]), 4.0))

    before = gap()
    kwargs = dict(steps=10, batch_size=18, lr=3e-3, augmentation="pad-crop-flip", token_keep=(0.5, 1.0),
                  teacher=teacher, kd_weight=50.0, generator=0)
    losses = finetune_submodel(student, images, labels, **kwargs)
    assert len(losses) == 10 and all(math.isfinite(x) for x in losses)
    assert gap() < before
    with pytest.raises(ValueError, match="kd_weight > 0 needs a teacher sub-model over the same classes"):
        finetune_submodel(student, images, labels, steps=1, kd_weight=1.0)
    with pytest.raises(ValueError, match="kd_weight > 0 needs a teacher sub-model over the same classes"):
        finetune_submodel(student, images, labels, steps=1, teacher=ClassSubModel.from_server(server, [0, 1]),
                          kd_weight=1.0)
    with pytest.raises(ValueError, match="token_keep is a range"):
        finetune_submodel(student, images, labels, steps=1, token_keep=(0.0, 1.0))


def test_pruning_keeps_what_the_plan_keeps_and_counts_parameters_exactly(server):
    images, _ = tiny_data(4)
    positions = random_positions(4, 7)
    with torch.no_grad():
        same = prune_vit(server, full_plan(server))
        torch.testing.assert_close(same.forward_tokens(images, positions), server.forward_tokens(images, positions))
    plan = keep_plan(unit_importance(server, images, torch.tensor([0, 1, 2, 3])), 0.5)
    assert [len(h) for h in plan.heads] == [2, 2] and [len(u) for u in plan.units] == [32, 32]
    pruned = prune_vit(server, plan)
    assert sum(p.numel() for p in pruned.parameters()) == pruned_parameters(server, plan)
    assert pruned.forward_tokens(images, positions).shape == (4, 10)
    assert pruned.forward_with_attention(images).attentions[0].shape == (4, 2, 17, 17)  # still a ViT adapter


def test_the_taylor_criterion_ranks_a_dead_head_and_unit_last_and_removing_them_changes_nothing(server):
    images, labels = tiny_data(16)
    vit = prune_vit(server, full_plan(server))  # a copy
    blk = vit.model.blocks[0]
    hd = blk.attn.head_dim
    with torch.no_grad():
        blk.attn.proj.weight[:, 1 * hd:2 * hd] = 0  # head 1 of layer 0 contributes nothing
        blk.mlp.fc2.weight[:, 5] = 0  # nor does hidden unit 5
    importance = unit_importance(vit, images, labels)
    assert importance.heads[0][1] == 0 and (importance.heads[0][[0, 2, 3]] > 0).all()
    assert importance.units[0][5] == 0 and int((importance.units[0] > 0).sum()) >= 60
    plan = keep_plan(importance, 0.75)
    assert 1 not in plan.heads[0] and 5 not in plan.units[0]
    exact = KeepPlan(((0, 2, 3), (0, 1, 2, 3)), (tuple(i for i in range(64) if i != 5), tuple(range(64))))
    with torch.no_grad():
        torch.testing.assert_close(prune_vit(vit, exact)(images), vit(images), rtol=1e-5, atol=1e-6)


def test_pruning_sizes_to_a_budget_and_refuses_an_impossible_one(server):
    images, labels = tiny_data(8)
    importance = unit_importance(server, images, labels)
    full = pruned_parameters(server, full_plan(server))
    budget = (full + pruned_parameters(server, minimal_plan(server))) // 2
    plan, fraction = plan_for_budget(server, importance, budget)
    assert pruned_parameters(server, plan) <= budget < full and 0 < fraction < 1
    bigger = keep_plan(importance, min(1.0, fraction + 1 / 32))
    assert pruned_parameters(server, bigger) > budget  # the largest fraction that fits
    assert plan_for_budget(server, importance, full) == (keep_plan(importance, 1.0), 1.0)
    with pytest.raises(ValueError, match="needs at least .* parameters .* but its budget is 100"):
        plan_for_budget(server, importance, 100)


# ---- assignment -----------------------------------------------------------------------------------------

def test_greedy_assignment_puts_the_largest_group_on_the_fastest_device_within_memory():
    devices = DeviceConfig.from_dict([{"name": "slow", "memory_mb": 1, "speed": 0.9},
                                      {"name": "fast", "memory_mb": 1, "speed": 1.5},
                                      {"name": "mid", "memory_mb": 1, "speed": 1.0}])
    placed = assign_greedy([3, 4, 3], [200_000] * 3, devices, max_bytes=[800_000] * 3)
    assert placed.devices == ("mid", "fast", "slow")  # 4 -> fast (2.67), 3 -> mid (3.0), 3 -> slow (3.33)
    assert placed.budgets == (800_000, 800_000, 800_000)  # capped at the unpruned size
    much_faster = DeviceConfig.from_dict([{"name": "slow", "memory_mb": 1, "speed": 0.5},
                                          {"name": "fast", "memory_mb": 1, "speed": 3.0}])
    assert assign_greedy([4, 3], [200_000] * 2, much_faster).devices == ("fast", "fast")  # 7 / 3 < 3 / 0.5
    assert assign_greedy([4, 3], [600_000] * 2, much_faster).devices == ("fast", "slow")  # memory decides
    twice = DeviceConfig.from_dict([{"name": "a", "memory_mb": 9, "speed": 2.0}, {"name": "b", "memory_mb": 1}])
    assert assign_greedy([5, 5], [100_000] * 2, twice).devices == ("a", "b")  # a tie: the idle device takes it
    shared = assign_greedy([4, 3, 3, 2], [300_000] * 4, DeviceConfig.from_dict(
        [{"name": "big", "memory_mb": 1, "speed": 2.0}, {"name": "small", "memory_mb": 0.4}]))
    for device in ("big", "small"):
        mine = [b for d, b in zip(shared.devices, shared.budgets) if d == device]
        assert 300_000 * len(mine) <= sum(mine) <= {"big": 1_000_000, "small": 400_000}[device]
    assert shared.devices.count("small") == 1  # small's memory holds one minimal sub-model only


def test_a_device_config_that_cannot_hold_any_sub_model_is_refused(server, data):
    images, labels = data
    tiny = DeviceConfig.from_dict([{"name": "watch", "memory_mb": 0.01}, {"name": "ring", "memory_mb": 0.02}])
    with pytest.raises(ValueError, match="cannot hold any sub-model: sub-model 0 needs at least 0.0"):
        build_partitioned(server, tiny, images, labels)


# ---- fusion and the partitioned backend -----------------------------------------------------------------

def test_an_untrained_fusion_places_each_logit_at_its_class_and_training_lowers_its_loss():
    groups = ClassGroups([[0, 3], [1, 2, 4]], 5)
    fusion = FusionNetwork(groups, hidden=16)
    g = torch.Generator().manual_seed(0)
    outputs = [torch.randn(64, 2, generator=g), torch.randn(64, 3, generator=g)]
    torch.testing.assert_close(fusion(outputs)[:, [0, 3, 1, 2, 4]], torch.cat(outputs, 1))
    labels = torch.cat(outputs, 1).argmin(1)  # a rule the placement alone gets wrong
    labels = groups.order()[labels]
    losses = train_fusion(fusion, outputs, labels, steps=60, batch_size=64, lr=1e-2, generator=0)
    assert losses[-1] < 0.7 * losses[0]
    with pytest.raises(ValueError, match="mismatched class counts"):
        train_fusion(fusion, outputs, labels + 5, steps=1)
    with pytest.raises(ValueError, match="expects 2 sub-model outputs"):
        fusion(outputs[:1])


def test_the_partitioned_backend_fits_its_devices_and_answers_over_all_classes(partitioned, data):
    images, _ = data
    backend = partitioned.backend
    assert sorted(c for g in backend.groups for c in g) == list(range(10))
    assert set(partitioned.assignment.devices) == {"fast", "slow"}
    for sub, device, budget in zip(backend.submodels, backend.assigned, partitioned.assignment.budgets):
        assert 4 * sum(p.numel() for p in sub.parameters()) <= min(budget, backend.devices[device].memory_bytes)
    assert all(len(v) == 1 for k, v in partitioned.losses.items() if k != "fusion")
    positions = random_positions(5, 6)
    out = LocalEngine().run(backend, images[:5], positions)
    assert out.logits.shape == (5, 10) and torch.isfinite(out.logits).all()
    with torch.no_grad():
        expected = backend.fusion(backend.stage_outputs(images[:5], positions))
    torch.testing.assert_close(out.logits, expected, rtol=0, atol=1e-6)
    report = out.report
    assert [d.device for d in report.devices] == list(dict.fromkeys(backend.assigned))
    assert report.bytes_exchanged == 2 * (5 * 6 * 192 + 5 * 6 * 8) + 5 * 10 * 4
    slow = next(d for d in report.devices if d.device == "slow")
    assert slow.transfer_s == pytest.approx(8 * (slow.bytes_in + slow.bytes_out) / 10e6)
    assert report.latency_s == pytest.approx(max(d.latency_s for d in report.devices) + report.fusion_s)


def test_partitioned_backend_refuses_mismatched_parts(partitioned):
    backend = partitioned.backend
    subs = list(backend.submodels)
    with pytest.raises(ValueError, match="unknown device 'nowhere'"):
        PartitionedBackend(subs, backend.fusion, backend.devices, ["nowhere", "fast"])
    with pytest.raises(ValueError, match="device 'slow' holds .* MB of parameters"):
        PartitionedBackend(subs, backend.fusion, backend.devices, ["slow", "slow"])
    with pytest.raises(ValueError, match="do not cover all 10 classes"):
        PartitionedBackend(subs[:1], backend.fusion, backend.devices, ["fast"])


def test_mismatched_class_counts_between_backend_and_data_set_are_refused(server, partitioned):
    with pytest.raises(ValueError, match="logits over 10 classes but cifar100/test has 100"):
        partitioned.backend.check_dataset(100, "cifar100/test")
    images, _ = tiny_data(20)
    labels = torch.arange(20) * 5  # classes up to 95 for a 10-class server
    with pytest.raises(ValueError, match="mismatched class counts between the backend and the data set"):
        build_partitioned(server, DeviceConfig.from_dict(TWO_DEVICES), images, labels)


# ---- the registry ----------------------------------------------------------------------------------------

def _registered(name, server, data):
    images, labels = data
    if name == "monolithic":
        return create_backend(name, server=server)
    if name == "experts":
        return create_backend(name, edge=tiny_vit(seed=2), server=server, devices=TWO_DEVICES, images=images,
                              labels=labels, subsets="random", generator=1)
    if name == "devit":
        return create_backend(name, server=server, devices=TWO_DEVICES, images=images, labels=labels,
                              student={"embed_dim": 16, "depth": 1, "num_heads": 2}, generator=1)
    return create_backend(name, server=server, devices=TWO_DEVICES, images=images, labels=labels, groups="random",
                          generator=1)


@pytest.mark.parametrize("name", list_backends())
def test_every_registered_backend_keeps_the_contract(name, server, data):
    backend = _registered(name, server, data)
    assert isinstance(backend, Backend) and backend.num_classes == 10 and backend.num_patches == 16
    images, _ = data
    for positions in (random_positions(3, 4), None):
        out = backend.run(images[:3], positions)
        assert out.logits.shape == (3, 10) and torch.isfinite(out.logits).all()
        assert out.report.bytes_exchanged > 0 and out.report.latency_s > 0
    assert len(backend.engine.history) == 2


@pytest.mark.parametrize("name", list_backends())
def test_every_registered_backend_classifies_the_received_patches_as_the_image_holding_them(name, server, data):
    """A pixel pair's server that is a backend: B x K x P decoded values (0..255, not rounded) go to the devices as
    they are, with the logits and bytes of the image path (values on a canvas, an image, patches read back)."""
    backend = _registered(name, server, data)
    positions = random_positions(3, 5)
    values = torch.rand(3, 5, 192, generator=torch.Generator().manual_seed(0)) * 270 - 5
    canvas = torch.zeros(3, 16, 192).scatter_(1, positions[..., None].expand(-1, -1, 192), values)
    images = (unpatchify(canvas, 8, (4, 4)) / 255).clamp(0, 1)  # what PixelPair.server_logits makes today
    via_image = backend.run(images, positions, LocalEngine())
    direct = backend.run_patches((values / 255).clamp(0, 1), positions, LocalEngine())
    torch.testing.assert_close(direct.logits, via_image.logits, rtol=0, atol=1e-6)
    assert direct.report.bytes_exchanged == via_image.report.bytes_exchanged
    assert [d.bytes_in for d in direct.report.devices] == [d.bytes_in for d in via_image.report.devices]
    if getattr(backend, "routed", False):  # routed by the generalist on what arrived, as on the whole images
        with torch.no_grad():
            route = backend.router(backend.edge.forward_tokens(data[0][:3], positions))
        assert torch.equal(backend.run(data[0][:3], positions, LocalEngine()).route, route)
        assert torch.equal(direct.route, via_image.route)
    pair = create_codec("pixel-iaq", server=backend, hint=False)
    torch.testing.assert_close(backend.classify_patches((values / 255).clamp(0, 1), positions),
                               pair.server_logits(values, positions, None), rtol=0, atol=1e-6)
    assert backend.engine.history[-2].bytes_exchanged == backend.engine.history[-1].bytes_exchanged


def test_unknown_backends_are_named():
    assert {"devit", "experts", "monolithic", "partitioned"} <= set(list_backends())
    with pytest.raises(KeyError, match="unknown backend 'huge'; registered: devit, experts, monolithic, partitioned; "
                                       "saved: "):
        create_backend("huge")
    with pytest.raises(ValueError, match="pass devices=, images=, labels="):
        create_backend("partitioned")


def test_building_draws_every_random_number_from_its_generator_and_leaves_the_global_one_alone(server, data):
    images, labels = data
    devices = DeviceConfig.from_dict(TWO_DEVICES)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = build_partitioned(server, devices, images, labels, groups="random", finetune_steps=1, fusion_steps=1,
                              batch_size=8, generator=5)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)
    second = build_partitioned(server, devices, images, labels, groups="random", finetune_steps=1, fusion_steps=1,
                               batch_size=8, generator=5)
    assert first.losses == second.losses and first.backend.groups == second.backend.groups
    for a, b in zip(first.backend.state_dict().values(), second.backend.state_dict().values()):
        assert torch.equal(a, b)


def test_an_interrupted_partitioned_build_resumes_to_the_same_backend(server, data, tmp_path):
    images, labels = data
    kwargs = dict(groups="random", finetune_steps=2, recovery_steps=2, fusion_steps=2, batch_size=8,
                  token_keep=(0.5, 1.0), kd_weight=1.0, generator=4)
    devices = DeviceConfig.from_dict(TWO_DEVICES)
    whole = build_partitioned(server, devices, images, labels, **kwargs)
    build_partitioned(server, devices, images, labels, run_dir=tmp_path, **kwargs)
    assert {p.name for p in tmp_path.glob("*.pt")} == {"finetune0.pt", "submodel0.pt", "finetune1.pt",
                                                       "submodel1.pt", "fusion.pt"}
    for name in ("submodel1.pt", "fusion.pt"):  # as if stopped after the second sub-model's fine-tuning
        (tmp_path / name).unlink()
    mtime = (tmp_path / "finetune1.pt").stat().st_mtime_ns
    resumed = build_partitioned(server, devices, images, labels, run_dir=tmp_path, **kwargs)
    assert (tmp_path / "finetune1.pt").stat().st_mtime_ns == mtime  # reloaded, not redone
    assert resumed.losses == whole.losses and resumed.keep_fractions == whole.keep_fractions
    assert all(torch.equal(a, b) for a, b in zip(whole.backend.state_dict().values(),
                                                 resumed.backend.state_dict().values()))
