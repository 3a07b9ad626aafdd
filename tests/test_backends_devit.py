"""The decomposed backend (DeViT): token relations, distillation, students, the fusion head, building, resuming.

Tiny ViTs on random images, one torch thread: the whole module takes seconds. The Ray engine's
agreement with the local one is in tests/test_backends_ray.py.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from backend_helpers import one_thread, random_positions, tiny_data, tiny_vit  # noqa: F401 (fixture)

from semcomm.server.backends import (
    ClassGroups, ClassSubModel, DecomposedBackend, DeviceConfig, LocalEngine, StudentStage, TokenFusion, ViTSpec,
    class_token,
)
from semcomm.train.backends import (
    DistillConfig, Phases, build_decomposed, distill, distill_together, distillation_loss, finetune_jointly,
    keep_blocks, layer_pairs, make_student, recording_qkv, relation_kl, student_vit, token_relations,
    train_token_fusion,
)

SMALL = {"embed_dim": 16, "depth": 1, "num_heads": 2}
DEVICES = DeviceConfig.from_dict([{"name": "a", "memory_mb": 0.05, "speed": 2.0},
                                  {"name": "b", "memory_mb": 0.05, "link_mbps": 10.0}])


@pytest.fixture(scope="module")
def server():
    return tiny_vit()


@pytest.fixture(scope="module")
def data():
    return tiny_data()


@pytest.fixture(scope="module")
def built(server, data):
    images, labels = data
    return build_decomposed(server, DEVICES, images, labels, student=SMALL, distill_steps=2, fusion_steps=3,
                            joint_steps=2, batch_size=16, token_keep=(0.5, 1.0), generator=0)


# ---- token relations -----------------------------------------------------------------------------------

def test_token_relations_are_row_distributions_and_do_not_depend_on_width():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 8, generator=g)
    relations = token_relations(x)
    assert relations.shape == (3, 1, 5, 5)
    torch.testing.assert_close(relations.exp().sum(-1), torch.ones(3, 1, 5))
    expected = (x @ x.transpose(1, 2) / math.sqrt(8)).softmax(-1)
    torch.testing.assert_close(relations[:, 0].exp(), expected)
    # a 16-wide student whose q is the teacher's rotated into more dimensions (Q Q^T = I) and rescaled so that
    # X' X'^T / sqrt(16) = X X^T / sqrt(8): same relations, KL zero, although the widths differ
    q, _ = torch.linalg.qr(torch.randn(16, 8, generator=g))
    wide = x @ q.T * 2 ** 0.25
    teacher = {0: (x, x, x)}
    student = {0: (wide, wide, wide)}
    assert float(relation_kl(teacher, student, [(0, 0)])) < 1e-6
    other = {0: (torch.randn(3, 5, 16, generator=g),) * 3}
    assert float(relation_kl(teacher, other, [(0, 0)])) > 1e-2
    assert token_relations(x, relation_heads=2).shape == (3, 2, 5, 5)
    with pytest.raises(ValueError, match="3 relation heads do not divide the width 8"):
        token_relations(x, relation_heads=3)


def test_recorded_qkv_are_the_blocks_projections_also_after_pruning(server):
    images, _ = tiny_data(3)
    m = server.model
    with torch.no_grad(), recording_qkv(server, [0, 1]) as recorded:
        server(images)
        tokens = m.norm_pre(m._pos_embed(m.patch_embed(server.normalize(images))))
        expected = m.blocks[0].attn.qkv(m.blocks[0].norm1(tokens))
    assert sorted(recorded) == [0, 1]
    q, k, v = recorded[0]
    assert q.shape == k.shape == v.shape == (3, 17, 32)
    torch.testing.assert_close(torch.cat([q, k, v], -1), expected)
    assert not m.blocks[0].attn.qkv._forward_hooks  # hooks removed on exit
    pruned = make_student(server, server, range(10), *tiny_data(20), keep=0.5, generator=0).vit
    with torch.no_grad(), recording_qkv(pruned, [1]) as recorded:
        pruned.forward_tokens(images, random_positions(3, 5))
    assert [t.shape for t in recorded[1]] == [(3, 6, 16)] * 3  # 2 heads of 8 kept, CLS + 5 patches


def test_layer_pairs_map_student_blocks_to_teacher_blocks():
    assert layer_pairs(3, 9, "last") == [(2, 8)]
    assert layer_pairs(3, 9, "uniform") == [(0, 2), (1, 5), (2, 8)]
    assert layer_pairs(2, 9, [(0, 3), (-1, -1)]) == [(0, 3), (1, 8)]
    with pytest.raises(ValueError, match="outside the student's 2 or the teacher's 9 blocks"):
        layer_pairs(2, 9, [(2, 0)])
    with pytest.raises(ValueError, match="'last', 'uniform' or a non-empty list"):
        layer_pairs(2, 9, "first")


# ---- the distillation loss and distillation ------------------------------------------------------------

def test_a_student_identical_to_its_teacher_has_no_kd_or_relation_loss(server):
    images, labels = tiny_data(8)
    pairs = [(1, 1), (0, 0)]
    with torch.no_grad(), recording_qkv(server, [0, 1]) as qkv:
        logits = server(images)
    loss, parts = distillation_loss(logits, logits, labels, qkv, qkv, pairs, DistillConfig(alpha=0.3))
    assert parts["kd"] < 1e-6 and parts["relation"] < 1e-6
    ce = F.cross_entropy(logits, labels)
    torch.testing.assert_close(loss, 0.7 * ce, rtol=1e-5, atol=1e-6)
    outside = torch.full_like(labels, -1)  # no image has a class among the outputs: no CE term
    assert float(distillation_loss(logits, logits, outside, qkv, qkv, pairs, DistillConfig())[0]) < 1e-6


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=0), "temperature must be a positive"), (dict(alpha=1.5), r"alpha must lie in \[0, 1\]"),
    (dict(relation_weight=-1), "relation_weight must be >= 0"), (dict(relation_heads=0), "relation_heads must be"),
])
def test_bad_distillation_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DistillConfig(**kwargs)


def _distill_loss_on(student, teacher, images, targets, config):
    pairs = layer_pairs(len(student.model.blocks), len(teacher.model.blocks), config.layers)
    with torch.no_grad(), recording_qkv(teacher, [t for _, t in pairs]) as t_qkv, \
            recording_qkv(student, [s for s, _ in pairs]) as s_qkv:
        t_logits, s_logits = teacher(images), student(images)
    return distillation_loss(s_logits, t_logits, targets, s_qkv, t_qkv, pairs, config)[1]


def test_distillation_really_trains_the_student_and_follows_its_generator(server, data):
    images, labels = data
    teacher = ClassSubModel.from_server(server, [0, 1, 2, 3, 4])
    targets = teacher.targets(labels)
    none = torch.full_like(labels, -1)

    def fresh():
        return student_vit(server, 5, generator=3, **SMALL)

    # each term alone is driven down: soft labels only, then token relations only (every block pair)
    for config, part, targets_used in ((DistillConfig(alpha=1.0, relation_weight=0.0), "kd", none),
                                       (DistillConfig(alpha=0.0, layers="uniform"), "relation", none)):
        student = fresh()
        before = _distill_loss_on(student, teacher.vit, images, none, config)[part]
        distill(student, teacher.vit, images, targets_used, steps=40, config=config, batch_size=30, lr=3e-3,
                augmentation="none", generator=1)
        assert _distill_loss_on(student, teacher.vit, images, none, config)[part] < 0.5 * before
    # the full loss: labels, soft labels and relations together; the teacher is left as it was
    config = DistillConfig(layers="uniform")
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = fresh()
    before = _distill_loss_on(student, teacher.vit, images, targets, config)["ce"]
    torch.manual_seed(7)
    state = torch.get_rng_state()
    losses = distill(student, teacher.vit, images, targets, steps=40, config=config, batch_size=30, lr=3e-3,
                     token_keep=(0.5, 1.0), generator=1)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator was not used
    assert _distill_loss_on(student, teacher.vit, images, targets, config)["ce"] < before
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_state.items())
    again = distill(fresh(), teacher.vit, images, targets, steps=40, config=config, batch_size=30, lr=3e-3,
                    token_keep=(0.5, 1.0), generator=1)
    assert again == losses and all(math.isfinite(x) for x in losses)


def test_students_distilled_together_learn_as_each_would_alone_from_its_sub_teacher(server, data):
    # one batch and one server forward per step for both students, each matching its group's columns of the
    # server's logits: the same as distilling each alone from the server restricted to its group
    images, labels = data
    groups = [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    config = DistillConfig(layers="uniform")
    options = dict(config=config, batch_size=16, lr=3e-3, augmentation="none", token_keep=(0.5, 1.0))
    together = [student_vit(server, 5, generator=i, **SMALL) for i in range(2)]
    targets = [ClassSubModel(s, g).targets(labels) for s, g in zip(together, groups)]
    losses = distill_together(together, server, images, targets, 5, columns=groups, generator=3, **options)
    for i, group in enumerate(groups):
        alone = student_vit(server, 5, generator=i, **SMALL)
        teacher = ClassSubModel.from_server(server, group)
        torch.testing.assert_close(distill(alone, teacher.vit, images, targets[i], 5, generator=3, **options),
                                   losses[i])
        for a, b in zip(alone.parameters(), together[i].parameters()):
            torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="2 students but 1 target sets and 2 column sets"):
        distill_together(together, server, images, targets[:1], 1, columns=groups)
    with pytest.raises(ValueError, match=r"the teacher has outputs 0..9, got columns \[6, 7, 8, 9, 10\]"):
        distill_together(together[:1], server, images, targets[:1], 1, columns=[[6, 7, 8, 9, 10]])


def test_distillation_refuses_models_that_cannot_be_matched(server, data):
    images, labels = data
    with pytest.raises(ValueError, match="the student has 4 outputs but the teacher 10"):
        distill(student_vit(server, 4, generator=0, **SMALL), server, images, labels, 1)
    other_geometry = tiny_vit(embed_dim=16, num_heads=2)
    other_geometry.patch_size = 4  # reads other tokens than the teacher
    with pytest.raises(ValueError, match="token relations need the same tokens"):
        distill(other_geometry, server, images, labels, 1)
    with pytest.raises(ValueError, match=r"targets must lie in -1..9"):
        distill(student_vit(server, 10, generator=0, **SMALL), server, images, labels + 5, 1)


# ---- students and the fusion head ---------------------------------------------------------------------

def test_a_student_copied_from_a_vit_starts_as_it_restricted_to_its_group(server, data):
    images, labels = data
    edge = tiny_vit(seed=1)
    student = make_student(edge, server, [7, 1, 4], images, labels, generator=0)
    assert student.classes == (1, 4, 7)
    with torch.no_grad():
        token, logits = class_token(student.vit, images[:4])
        torch.testing.assert_close(logits, edge(images[:4])[:, [1, 4, 7]])
        torch.testing.assert_close(student(images[:4]), token)
    assert token.shape == (4, 32) and student.width == 32
    short = make_student(edge, server, [7, 1, 4], images, labels, depth=1, keep=0.5, generator=0)
    spec = ViTSpec.of(short.vit)
    assert spec.heads == (2,) and spec.units == (32,) and spec.num_classes == 3
    assert keep_blocks(edge, 1).model.blocks[0] is not edge.model.blocks[-1]  # a copy
    fresh = make_student({"embed_dim": 8, "depth": 1, "num_heads": 2}, server, [0, 5], images, labels, generator=0)
    assert ViTSpec.of(fresh.vit).embed_dim == 8 and fresh.vit.num_patches == server.num_patches


@pytest.mark.parametrize("init, message", [
    ({"embed_dim": 8, "depth": 1}, "a fresh student's shape is"),
    ({"embed_dim": 9, "depth": 1, "num_heads": 2}, "embed_dim divisible by num_heads"),
    ("edge", "init is a TimmViT or a dict"),
])
def test_bad_student_shapes_are_named(server, data, init, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make_student(init, server, [0, 1], *data, generator=0)


def test_the_fusion_head_reads_concatenated_class_tokens_and_training_lowers_its_loss():
    g = torch.Generator().manual_seed(0)
    tokens = [torch.randn(128, 6, generator=g), torch.randn(128, 4, generator=g)]
    labels = (tokens[0][:, 0] + tokens[1][:, 1] > 0).long() * 3  # classes 0 and 3 of 5
    fusion = TokenFusion([6, 4], 5, generator=0)
    assert torch.equal(TokenFusion([6, 4], 5, generator=0).net[0].weight, fusion.net[0].weight)
    assert fusion(tokens).shape == (128, 5) and TokenFusion([6, 4], 5, hidden=8, generator=0)(tokens).shape == (128, 5)
    teacher = torch.randn(128, 5, generator=g)
    losses = train_token_fusion(fusion, tokens, labels, steps=80, teacher_logits=teacher, alpha=0.2, lr=1e-2,
                                batch_size=64, generator=0)
    assert losses[-1] < 0.7 * losses[0]
    with pytest.raises(ValueError, match="fusion expects 2 class tokens"):
        fusion(tokens[:1])
    with pytest.raises(ValueError, match="class token 1 has shape"):
        fusion([tokens[0], tokens[0]])
    with pytest.raises(ValueError, match="teacher_logits must be N x C = 128 x 5"):
        train_token_fusion(fusion, tokens, labels, 1, teacher_logits=teacher[:, :4])


# ---- the backend ---------------------------------------------------------------------------------------

def test_the_decomposed_backend_reports_class_tokens_as_the_bytes_to_the_fusion_device(built, data):
    images, _ = data
    backend = built.backend
    assert isinstance(backend, DecomposedBackend) and backend.kind == "devit"
    assert sorted(c for g in backend.groups for c in g) == list(range(10)) and backend.groups.sizes == [5, 5]
    assert backend.groups == ClassGroups(backend.groups.groups, 10)
    assert set(backend.assigned) == {"a", "b"} and built.parameters == [5717, 5717]
    assert set(built.losses) == {"distill/0", "distill/1", "fusion", "joint"}
    positions = random_positions(4, 6)
    out = LocalEngine().run(backend, images[:4], positions)
    with torch.no_grad():
        expected = backend.fusion(backend.stage_outputs(images[:4], positions))
    torch.testing.assert_close(out.logits, expected, rtol=0, atol=1e-6)
    request = 4 * 6 * 192 + 4 * 6 * 8  # uint8 patches + int64 positions, to each student's device
    assert [d.bytes_out for d in out.report.devices] == [4 * 16 * 4] * 2  # one float32 class token per image
    assert out.report.bytes_exchanged == 2 * request + 2 * 4 * 16 * 4
    b = next(d for d in out.report.devices if d.device == "b")
    assert b.transfer_s == pytest.approx(8 * (request + 4 * 16 * 4) / 10e6)
    assert out.report.latency_s == pytest.approx(max(d.latency_s for d in out.report.devices) + out.report.fusion_s)


def test_joint_finetuning_lowers_the_fused_loss(built, server, data):
    images, labels = data
    backend = DecomposedBackend([StudentStage(s.vit, s.classes) for s in _copies(built.backend.students)],
                                TokenFusion([16, 16], 10, generator=1), DEVICES, ["a", "b"])

    def fused_loss():
        with torch.no_grad():
            return float(F.cross_entropy(backend.classify(images), labels))

    before = fused_loss()
    losses = finetune_jointly(backend, server, images, labels, steps=25, alpha=0.0, batch_size=30, lr=3e-3,
                              generator=0)
    assert len(losses) == 25 and fused_loss() < before


def _copies(modules):
    import copy

    return [copy.deepcopy(m) for m in modules]


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(num_students=0), ValueError, "the number of students N must be an integer >= 1"),
    (dict(num_students=11), ValueError, "N = 11 students need at least N classes"),
    (dict(groups=ClassGroups([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]], 10)), ValueError, "the groups are 1 over 10 classes"),
    (dict(groups="by-colour"), ValueError, "groups must be 'confusion', 'random' or a ClassGroups"),
    (dict(data="some"), ValueError, "data must be 'all' or 'group'"),
])
def test_bad_decomposition_settings_are_named(server, data, kwargs, error, message):
    with pytest.raises(error, match=message):
        build_decomposed(server, DEVICES, *data, student=SMALL, **kwargs)


def test_students_too_big_for_their_devices_are_refused(server, data):
    tiny = DeviceConfig.uniform(2, 0.01)
    with pytest.raises(ValueError, match=r"student 0 has 0.096 MB of parameters but the largest device holds 0.010 MB"):
        build_decomposed(server, tiny, *data, student={"embed_dim": 32, "depth": 2, "num_heads": 4})


def test_students_that_do_not_fit_the_devices_together_are_refused(server, data):
    devices = DeviceConfig.from_dict([{"name": "a", "memory_mb": 0.1}, {"name": "b", "memory_mb": 0.01}])
    with pytest.raises(ValueError, match=r"students \(0.096, 0.096 MB\) do not fit the devices \(a 0.1, b 0.01 MB\)"):
        build_decomposed(server, devices, *data, student={"embed_dim": 32, "depth": 2, "num_heads": 4})


def test_random_groups_follow_their_seed_and_the_build_its_generator(server, data):
    images, labels = data
    first = build_decomposed(server, DEVICES, images, labels, student=SMALL, distill_steps=1, fusion_steps=1,
                             batch_size=8, generator=4)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    second = build_decomposed(server, DEVICES, images, labels, student=SMALL, distill_steps=1, fusion_steps=1,
                              batch_size=8, generator=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert first.losses == second.losses and first.backend.groups == second.backend.groups
    assert all(torch.equal(a, b) for a, b in zip(first.backend.state_dict().values(),
                                                 second.backend.state_dict().values()))
    other = build_decomposed(server, DEVICES, images, labels, student=SMALL, group_seed=1)
    assert other.backend.groups != first.backend.groups


# ---- resuming ------------------------------------------------------------------------------------------

def test_phases_are_kept_skipped_when_run_again_and_restore_the_generator(tmp_path):
    calls = []

    def phase(gen):
        def run():
            calls.append(1)
            return {"drawn": torch.rand(3, generator=gen)}
        return run

    gen = torch.Generator().manual_seed(0)
    first = Phases(tmp_path, {"a": 1}, gen).run("one", phase(gen))
    after_first = torch.rand(2, generator=gen)
    gen2 = torch.Generator().manual_seed(99)  # another state: reloading restores the saved one
    phases = Phases(tmp_path, {"a": 1}, gen2)
    assert phases.done("one") and not phases.done("two")
    assert torch.equal(phases.run("one", phase(gen2))["drawn"], first["drawn"]) and len(calls) == 1
    assert torch.equal(torch.rand(2, generator=gen2), after_first)
    with pytest.raises(ValueError, match="holds phases of a build with other settings"):
        Phases(tmp_path, {"a": 2}, gen)


@pytest.mark.parametrize("data_used, kept, redone", [("all", "students", "fusion"),  # distilled together
                                                   ("group", "student0", "student1")])  # one phase each
def test_an_interrupted_build_resumes_to_the_same_backend(server, data, tmp_path, data_used, kept, redone):
    images, labels = data
    kwargs = dict(student=SMALL, distill_steps=2, fusion_steps=2, batch_size=8, data=data_used, generator=2)
    whole = build_decomposed(server, DEVICES, images, labels, **kwargs)
    build_decomposed(server, DEVICES, images, labels, run_dir=tmp_path, **kwargs)
    (tmp_path / f"{redone}.pt").unlink()  # as if stopped after the phase kept
    (tmp_path / "fusion.pt").unlink(missing_ok=True)
    mtime = (tmp_path / f"{kept}.pt").stat().st_mtime_ns
    resumed = build_decomposed(server, DEVICES, images, labels, run_dir=tmp_path, **kwargs)
    assert (tmp_path / f"{kept}.pt").stat().st_mtime_ns == mtime  # reloaded, not redone
    assert resumed.losses == whole.losses
    assert all(torch.equal(a, b) for a, b in zip(whole.backend.state_dict().values(),
                                                 resumed.backend.state_dict().values()))
