"""Expert routing: class subsets, the top-k mass router, one expert per image, progressive specialists,
the edge and a backend together (share served per expert).

Tiny ViTs on random images, one torch thread: seconds. Ray: tests/test_backends_ray.py.
"""
from __future__ import annotations

import doctest

import pytest
import torch
import torch.nn.functional as F
from backend_helpers import one_thread, random_positions, tiny_data, tiny_vit  # noqa: F401 (fixture)

import semcomm.server.backends.experts as experts_module
from semcomm.edge.gating import Gate
from semcomm.server.backends import (
    DeviceConfig, ExpertBackend, ExpertClasses, ExpertStage, LocalEngine, MonolithicBackend, TopKMassRouter, ViTSpec,
    collaborate,
)
from semcomm.train.backends import ProgressiveSchedule, build_experts, train_specialist
from semcomm.train.backends.specialists import domain_batch

THREE = DeviceConfig.from_dict([{"name": "slow", "memory_mb": 1.0, "speed": 0.5},
                                {"name": "fast", "memory_mb": 1.0, "speed": 3.0, "link_mbps": 10.0},
                                {"name": "mid", "memory_mb": 1.0, "speed": 1.0}])


@pytest.fixture(scope="module")
def server():
    return tiny_vit()


@pytest.fixture(scope="module")
def edge():
    return tiny_vit(seed=1, embed_dim=16, num_heads=2)


@pytest.fixture(scope="module")
def data():
    return tiny_data()


@pytest.fixture(scope="module")
def backend(edge, server):
    """Three different experts (other seeds) over planted subsets."""
    subsets = [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    stages = [ExpertStage(tiny_vit(seed=10 + i), s) for i, s in enumerate(subsets)]
    return ExpertBackend(edge, stages, THREE, ["fast", "slow", "mid"], top_k=3)


def edge_logits_for(route: list[int], subsets=((0, 1, 2, 3), (4, 5, 6), (7, 8, 9))) -> torch.Tensor:
    """B x 10 edge logits whose top-3 mass lies in the wanted expert's subset."""
    logits = torch.zeros(len(route), 10)
    for row, expert in enumerate(route):
        logits[row, list(subsets[expert])[:3]] = 4.0
    return logits


def test_the_modules_examples_hold():
    assert doctest.testmod(experts_module).failed == 0


# ---- subsets and the router --------------------------------------------------------------------------

@pytest.mark.parametrize("subsets, overlap, message", [
    ([[0, 1], [1, 2, 3]], False, "class 1 is in the subsets of expert 0 and expert 1: expert subsets must not overlap"),
    ([[0, 1], [2]], False, r"do not cover all 4 classes: \[3\] belong to no expert"),
    ([[0, 1], [2, 3, 4]], False, r"expert 1's class subset holds classes \[4\] outside 0..3"),
    ([[0, 1, 2, 3], []], False, "expert 1's class subset must be a non-empty list"),
    ([[0, 1, 1], [2, 3]], True, "must hold distinct integer class indices"),
    ([[0, 1], [1, 2]], True, r"do not cover all 4 classes: \[3\]"),
])
def test_expert_subsets_that_miss_classes_or_overlap_when_they_must_not_are_refused(subsets, overlap, message):
    with pytest.raises(ValueError, match=message):
        ExpertClasses(subsets, 4, allow_overlap=overlap)


def test_the_router_sums_the_edges_top_k_probabilities_per_expert():
    classes = ExpertClasses([[0, 1], [2, 3], [4]], 5)
    logits = torch.log(torch.tensor([[0.30, 0.05, 0.25, 0.22, 0.18],    # top-3 0, 2, 3: expert 1, not the top-1's
                                     [0.50, 0.00, 0.25, 0.25, 0.00],    # a tie: expert 0 holds the top-1 class
                                     [0.05, 0.05, 0.12, 0.08, 0.70]]))
    router = TopKMassRouter(classes, k=3)
    expected = torch.tensor([[0.30, 0.47, 0.0], [0.50, 0.50, 0.0], [0.0, 0.20, 0.70]], dtype=torch.float64)
    torch.testing.assert_close(router.mass(logits), expected, rtol=0, atol=1e-6)
    assert router(logits).tolist() == [1, 0, 2]
    assert TopKMassRouter(classes, k=1)(logits).tolist() == [0, 0, 2]  # k = 1: the expert of the top-1 class
    three = TopKMassRouter(ExpertClasses([[0], [1, 2], [3, 4]], 5), k=5)
    tie = torch.log(torch.tensor([[0.30, 0.20, 0.15, 0.20, 0.15]]))  # experts 1 and 2 tie, neither has class 0
    assert three(tie).tolist() == [1]  # the lower index
    overlapping = TopKMassRouter(ExpertClasses([[0, 1, 2], [2, 3, 4]], 5, allow_overlap=True), k=2)
    torch.testing.assert_close(overlapping.mass(torch.log(torch.tensor([[0.1, 0.1, 0.5, 0.3, 0.0]]))),
                               torch.tensor([[0.5, 0.8]], dtype=torch.float64))
    with pytest.raises(ValueError, match="k must be an integer in 1..5"):
        TopKMassRouter(classes, k=6)
    with pytest.raises(ValueError, match="edge logits must be B x C = B x 5"):
        router(torch.zeros(2, 4))


# ---- the backend -----------------------------------------------------------------------------------

def test_each_image_runs_on_its_one_expert_and_only_its_bytes_and_compute_are_counted(backend):
    images, _ = tiny_data(6, seed=3)
    positions = random_positions(6, 5)
    route = [1, 0, 1, 1, 0, 1]  # nothing for expert 2
    out = LocalEngine().run(backend, images, positions, edge_logits=edge_logits_for(route))
    assert out.route.tolist() == route
    with torch.no_grad():
        for i, expert in enumerate(backend.experts):
            rows = [r for r, e in enumerate(route) if e == i]
            if rows:
                torch.testing.assert_close(out.logits[rows], expert(images[rows], positions[rows]), rtol=0,
                                           atol=1e-6)
    reports = {d.device: d for d in out.report.devices}
    assert set(reports) == {"fast", "slow"}  # expert 2's device ("mid") was sent nothing and ran nothing
    per_image = 5 * 192 + 5 * 8  # uint8 patches + int64 positions
    assert reports["slow"].images == 4 and reports["slow"].bytes_in == 4 * per_image
    assert reports["fast"].images == 2 and reports["fast"].bytes_out == 2 * 10 * 4
    assert reports["slow"].stages == ("expert1",)
    assert out.report.bytes_exchanged == 6 * per_image + 6 * 10 * 4
    assert reports["slow"].simulated_compute_s == pytest.approx(reports["slow"].compute_s / 0.5)
    assert out.report.latency_s == pytest.approx(max(d.latency_s for d in out.report.devices) + out.report.fusion_s)


def test_a_route_can_be_given_and_without_the_edges_logits_the_generalist_routes_what_arrived(backend, edge):
    images, _ = tiny_data(5, seed=4)
    given = backend.run(images, route=torch.tensor([2, 2, 0, 1, 2]))
    assert given.route.tolist() == [2, 2, 0, 1, 2]
    positions = random_positions(5, 7)
    alone = backend.run(images, positions)  # as behind ServerDecoder: only the received patches
    with torch.no_grad():
        expected = backend.router(edge.forward_tokens(images, positions))
    assert torch.equal(alone.route, expected)
    with pytest.raises(ValueError, match=r"route must hold B = 5 expert indices in 0..2"):
        backend.run(images, route=torch.tensor([0, 1, 2, 3, 0]))
    with pytest.raises(ValueError, match="edge_logits has 2 rows for 5 images"):
        backend.run(images, edge_logits=torch.zeros(2, 10))


def test_expert_backends_refuse_inconsistent_parts(edge):
    stages = [ExpertStage(tiny_vit(seed=20), [0, 1, 2, 3, 4]), ExpertStage(tiny_vit(seed=21), [5, 6, 7, 8, 9])]
    with pytest.raises(ValueError, match="one expert per device"):
        ExpertBackend(edge, stages, THREE, ["fast", "fast"])
    with pytest.raises(ValueError, match="do not cover all 10 classes"):
        ExpertBackend(edge, stages[:1], THREE, ["fast"])
    with pytest.raises(ValueError, match="expert 0 has 4 classes but the edge 10"):
        ExpertBackend(edge, [ExpertStage(tiny_vit(num_classes=4), [0, 1, 2, 3])], THREE, ["fast"])
    with pytest.raises(ValueError, match="device 'fast0' holds 0.097 MB"):
        ExpertBackend(edge, stages, DeviceConfig.uniform(2, 0.05, prefix="fast"), ["fast0", "fast1"])


# ---- progressive specialists ---------------------------------------------------------------------------

def test_the_schedule_narrows_from_the_natural_share_to_the_final_one():
    schedule = ProgressiveSchedule(phases=3, final_share=0.9)
    shares = schedule.shares(9, natural=0.3)
    assert shares == pytest.approx([0.3] * 3 + [0.6] * 3 + [0.9] * 3)
    assert ProgressiveSchedule(phases=1).shares(4, 0.3) == [0.9] * 4  # a static specialist
    assert ProgressiveSchedule(final_share=0.5).shares(3, 0.7) == [0.7] * 3  # never below the natural share
    with pytest.raises(ValueError, match="phases must be a positive integer"):
        ProgressiveSchedule(phases=0)
    with pytest.raises(ValueError, match=r"final_share must lie in \(0, 1\]"):
        ProgressiveSchedule(final_share=0.0)


def test_a_batch_holds_the_scheduled_share_of_domain_images():
    g = torch.Generator().manual_seed(0)
    inside, outside = torch.arange(0, 10), torch.arange(10, 50)
    batch = domain_batch(inside, outside, 0.75, 40, g)
    assert len(batch) == 40 and int((batch < 10).sum()) == 30
    assert (domain_batch(inside, torch.arange(0), 0.1, 8, g) < 10).all()


def test_progressive_training_specialises_the_expert_on_its_domain(server, data):
    images, labels = data
    expert = ExpertStage(ViTSpec.of(server).build(), [0, 1, 2])
    expert.load_state_dict({"vit." + k: v for k, v in server.state_dict().items()})
    mine = labels < 3

    def domain_loss():
        with torch.no_grad():
            return float(F.cross_entropy(expert(images[mine]), labels[mine]))

    before = domain_loss()
    torch.manual_seed(3)
    state = torch.get_rng_state()
    losses = train_specialist(expert, images, labels, steps=30, schedule=ProgressiveSchedule(3, 1.0), batch_size=24,
                              lr=3e-3, teacher=server, kd_weight=0.5, generator=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert len(losses) == 30 and domain_loss() < 0.8 * before
    with pytest.raises(ValueError, match="kd_weight > 0 needs the teacher"):
        train_specialist(expert, images, labels, 1, kd_weight=1.0)
    with pytest.raises(ValueError, match="routed must be N = 60 booleans"):
        train_specialist(expert, images, labels, 1, routed=torch.zeros(60))
    with pytest.raises(ValueError, match=r"no training image is in the domain of the expert of classes \[0, 1, 2\]"):
        train_specialist(expert, images[labels > 2], labels[labels > 2], 1)


def test_building_experts_places_prunes_and_trains_them(edge, server, data):
    images, labels = data
    devices = DeviceConfig.from_dict([{"name": "small", "memory_mb": 0.06, "speed": 1.0},
                                      {"name": "big", "memory_mb": 1.0, "speed": 2.0}])
    subsets = ExpertClasses([[0, 1, 2], [3, 4, 5, 6, 7, 8, 9]], 10)
    build = build_experts(edge, server, devices, images, labels, subsets=subsets, steps=2, batch_size=8,
                          generator=0)
    backend = build.backend
    assert backend.assigned == ("small", "big")  # the larger subset on the faster device
    assert build.parameters[1] == sum(p.numel() for p in server.parameters())  # fits: a full copy
    assert 4 * build.parameters[0] <= 60_000 < 4 * build.parameters[1]  # pruned to the small device
    assert sum(build.routed_share) == pytest.approx(1.0)
    assert [len(v) for v in build.losses.values()] == [2, 2]
    out = backend.run(images[:4], random_positions(4, 6))
    assert out.logits.shape == (4, 10) and len(out.route) == 4
    again = build_experts(edge, server, devices, images, labels, subsets=subsets, steps=2, batch_size=8,
                          generator=0)
    assert again.losses == build.losses


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_experts=0), "the number of experts must be an integer >= 1"),
    (dict(num_experts=4), "4 experts need 4 devices"),
    (dict(subsets=ExpertClasses([[0, 1], [2, 3]], 4)), "the subsets are 2 over 4 classes"),
    (dict(subsets="alphabetical"), "subsets must be 'confusion', 'random' or an ExpertClasses"),
])
def test_bad_expert_settings_are_named(edge, server, data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_experts(edge, server, THREE, *data, **kwargs)


def test_mismatched_class_counts_are_refused(edge, data):
    with pytest.raises(ValueError, match="mismatched class counts"):
        build_experts(edge, tiny_vit(num_classes=5), THREE, *data)


# ---- the edge and the backend together ---------------------------------------------------------------

def test_the_edge_answers_what_it_keeps_and_each_offloaded_image_reports_its_expert(backend, edge):
    images, labels = tiny_data(40, seed=6)
    g = torch.Generator().manual_seed(1)
    route = torch.randint(3, (40,), generator=g).tolist()
    edge_logits = edge_logits_for(route) + 0.5 * torch.randn(40, 10, generator=g)
    gate = Gate.calibrate(edge_logits, 0.5)
    result = collaborate(edge, backend, images, gate, batch_size=8, edge_logits=edge_logits)
    assert result.offload_rate == pytest.approx(0.5)
    kept = ~result.offloaded
    assert torch.equal(result.logits[kept], edge_logits[kept]) and (result.route[kept] == -1).all()
    off = result.offloaded.nonzero().flatten()
    direct = backend.run(images[off], edge_logits=edge_logits[off])
    torch.testing.assert_close(result.logits[off], direct.logits, rtol=0, atol=1e-6)
    assert torch.equal(result.route[off], direct.route)
    share = result.share_served()
    assert list(share) == ["expert0", "expert1", "expert2"] and sum(share.values()) == pytest.approx(1.0)
    assert share["expert1"] == pytest.approx(float((direct.route == 1).float().mean()))
    assert len(result.reports) == 3 and result.bytes_exchanged == sum(r.bytes_exchanged for r in result.reports)
    assert 0 <= result.top1(labels) <= 1


def test_a_backend_that_is_not_routed_serves_every_offloaded_image_with_every_stage(server, edge):
    images, _ = tiny_data(10, seed=7)
    result = collaborate(edge, MonolithicBackend(server), images, Gate("min_entropy", 0.0))
    assert result.offloaded.all() and result.route is None
    with torch.no_grad():
        torch.testing.assert_close(result.logits, server(images), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="share served per expert is defined for a routed backend"):
        result.share_served()
    with pytest.raises(ValueError, match="mismatched class counts"):
        collaborate(tiny_vit(num_classes=4), MonolithicBackend(server), images, Gate("min_entropy", 0.0))


def test_the_codec_reads_strings_through_an_expert_backend_routed_on_what_arrived(backend):
    from semcomm.edge.encoder import EdgeEncoder
    from semcomm.server.decoder import ServerDecoder
    from semcomm.edge.selection import TopK

    images, _ = tiny_data(6, seed=8)
    sent = EdgeEncoder(tiny_vit(seed=9), TopK(5), gate=None).encode(images)
    positions = sent.mask.nonzero()[:, 1].view(6, 5)
    decoded = ServerDecoder(backend, bf16=False).classify(sent.strings)  # version-1 strings: raw 8-bit patches
    direct = backend.run(images, positions)  # no edge logits: the generalist routes on the received patches
    torch.testing.assert_close(decoded, direct.logits, rtol=0, atol=1e-5)
    assert backend.engine.history[-1].batch == 6
