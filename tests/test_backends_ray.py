"""The Ray engine: one local Ray instance for the module (2 CPUs, 100 MiB object store), shut down at the end.

Ray and the local engine give the same logits and the same bytes; a device's
actor killed mid-request is restarted and the request answered correctly,
or, with no restarts allowed, the request fails with a clear error; an
unreachable address and an undeclared device are clear errors too.
"""
from __future__ import annotations

import os
import signal
import socket

import pytest
import torch
from backend_helpers import random_positions, tiny_data, tiny_vit

from semcomm.edge.encoder import EdgeEncoder
from semcomm.edge.selection import TopK
from semcomm.server.backends import (
    DeviceConfig, EngineError, ExpertBackend, ExpertStage, LocalEngine, MonolithicBackend, RayEngine,
)
from semcomm.server.backends.devices import Device
from semcomm.server.decoder import ServerDecoder
from semcomm.train.backends import build_decomposed, build_partitioned

ray = pytest.importorskip("ray")

DEVICES = DeviceConfig.from_dict([{"name": "fast", "memory_mb": 0.07, "speed": 2.0, "cpus": 0.5},
                                  {"name": "slow", "memory_mb": 0.045, "speed": 1.0, "cpus": 0.5, "link_mbps": 10.0}])


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, object_store_memory=100 * 2 ** 20, include_dashboard=False,
             resources=DEVICES.ray_resources(), log_to_driver=False)
    yield
    ray.shutdown()  # the module's duration is a speed figure: `pytest --durations`, not an assertion here


@pytest.fixture(scope="module")
def backend():
    images, labels = tiny_data()
    return build_partitioned(tiny_vit(), DEVICES, images, labels, groups="random", fusion_steps=2,
                             batch_size=16, generator=0).backend


@pytest.fixture(scope="module")
def engine():
    engine = RayEngine()
    yield engine
    engine.shutdown()


@pytest.mark.parametrize("whole, as_float", [(False, False), (True, True)])
def test_ray_and_local_engines_give_the_same_logits_and_bytes(backend, engine, whole, as_float):
    images, _ = tiny_data(8, seed=1)
    images = images.float() / 255 if as_float else images
    positions = None if whole else random_positions(8, 6)
    local = LocalEngine().run(backend, images, positions)
    remote = engine.run(backend, images, positions)
    torch.testing.assert_close(remote.logits, local.logits, rtol=0, atol=1e-5)
    assert remote.report.engine == "ray" and remote.report.bytes_exchanged == local.report.bytes_exchanged
    assert [d.bytes_in for d in remote.report.devices] == [d.bytes_in for d in local.report.devices]
    assert all(d.compute_s > 0 for d in remote.report.devices)
    assert remote.report.latency_s == pytest.approx(max(d.latency_s for d in remote.report.devices)
                                                    + remote.report.fusion_s)
    assert engine.history[-1] is remote.report


def test_the_monolithic_backend_runs_on_one_actor(engine):
    server = tiny_vit(seed=3)
    backend = MonolithicBackend(server, Device("fast", memory_mb=1.0, cpus=0.5))
    images, _ = tiny_data(4, seed=2)
    positions = random_positions(4, 9)
    out = engine.run(backend, images, positions)
    with torch.no_grad():
        torch.testing.assert_close(out.logits, server.forward_tokens(images, positions), rtol=0, atol=1e-5)
    assert [d.device for d in out.report.devices] == ["fast"]
    engine.release(backend)


def test_an_actor_killed_mid_request_is_restarted_and_the_answer_is_right(backend, engine):
    images, _ = tiny_data(8, seed=4)
    positions = random_positions(8, 5)
    expected = LocalEngine().run(backend, images, positions).logits
    actor = engine.actors(backend)["fast"]
    pid = ray.get(actor.pid.remote())
    pending = engine.submit(backend, images, positions)
    os.kill(pid, signal.SIGKILL)
    torch.testing.assert_close(pending.result().logits, expected, rtol=0, atol=1e-5)
    assert ray.get(actor.pid.remote()) != pid  # a new process serves the device
    torch.testing.assert_close(engine.run(backend, images, positions).logits, expected, rtol=0, atol=1e-5)


def test_an_actor_that_dies_with_no_restarts_left_fails_the_request_clearly(backend):
    engine = RayEngine(max_restarts=0)
    images, _ = tiny_data(4, seed=5)
    try:
        expected = engine.run(backend, images).logits
        ray.kill(engine.actors(backend)["slow"], no_restart=False)
        with pytest.raises(EngineError, match="device 'slow': its Ray actor died .* the request has no answer"):
            engine.run(backend, images)
        torch.testing.assert_close(engine.run(backend, images).logits, expected, rtol=0, atol=1e-5)  # new actors
    finally:
        engine.shutdown()


def test_weights_changed_in_place_reach_the_actors_before_the_next_request(engine):
    server = tiny_vit(seed=6)
    backend = MonolithicBackend(server, Device("slow", memory_mb=1.0, cpus=0.5))
    images, _ = tiny_data(3, seed=6)
    before = engine.run(backend, images).logits
    with torch.no_grad():
        server.model.head.bias.add_(1.0)
    after = engine.run(backend, images).logits
    torch.testing.assert_close(after, before + 1.0, rtol=0, atol=1e-5)
    engine.release(backend)


def test_an_unreachable_address_is_a_clear_error():
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EngineError, match=f"cannot reach a Ray cluster at '127.0.0.1:{port}'"):
        RayEngine(address=f"127.0.0.1:{port}", connect_timeout_s=2).connect()
    with pytest.raises(EngineError, match="is not host:port"):
        RayEngine(address="no-port-here").connect()


def test_a_device_the_cluster_does_not_declare_is_a_clear_error():
    backend = MonolithicBackend(tiny_vit(seed=7), Device("phone", memory_mb=1.0, cpus=0.5))
    engine = RayEngine()
    with pytest.raises(EngineError, match=r"declares no resource \['semcomm_device_phone'\]"):
        engine.run(backend, tiny_data(2)[0])


def test_the_callers_autocast_reaches_the_actors(backend, engine):
    """Under the caller's bf16 autocast (ServerDecoder's, where the CPU has native bf16) the actors compute in
    bf16 too."""
    images, _ = tiny_data(4, seed=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        local = LocalEngine().run(backend, images).logits
        remote = engine.run(backend, images).logits
    full = LocalEngine().run(backend, images).logits
    torch.testing.assert_close(remote, local, rtol=0, atol=1e-3)
    assert (remote - full).abs().max() > 1e-4  # bf16 really was used


def test_the_codec_reads_strings_through_a_backend_on_ray(backend, engine):
    images, _ = tiny_data(6, seed=10)
    strings = EdgeEncoder(tiny_vit(seed=11), TopK(5), gate=None).encode(images).strings
    expected = ServerDecoder(backend, bf16=False).classify(strings)  # default engine: in-process
    backend.engine = engine
    try:
        torch.testing.assert_close(ServerDecoder(backend, bf16=False).classify(strings), expected, rtol=0, atol=1e-5)
        assert engine.history[-1].engine == "ray"
    finally:
        backend.engine = None


@pytest.mark.parametrize("whole", [False, True])
def test_a_decomposed_backend_gives_the_same_logits_and_bytes_on_ray(engine, whole):
    images, labels = tiny_data()
    devit = build_decomposed(tiny_vit(), DEVICES, images, labels, student={"embed_dim": 16, "depth": 1, "num_heads": 2},
                             fusion_steps=2, batch_size=16, generator=0).backend
    positions = None if whole else random_positions(6, 5)
    local = LocalEngine().run(devit, images[:6], positions)
    remote = engine.run(devit, images[:6], positions)
    torch.testing.assert_close(remote.logits, local.logits, rtol=0, atol=1e-5)
    assert remote.report.bytes_exchanged == local.report.bytes_exchanged
    assert [d.bytes_out for d in remote.report.devices] == [6 * 16 * 4] * 2  # the class tokens
    engine.release(devit)


def test_an_expert_backend_sends_each_image_to_its_one_expert_on_ray(engine):
    edge = tiny_vit(seed=12, embed_dim=16, num_heads=2)
    experts = [ExpertStage(tiny_vit(seed=13 + i, embed_dim=16, num_heads=2), subset)
               for i, subset in enumerate([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])]
    routed = ExpertBackend(edge, experts, DEVICES, ["fast", "slow"], top_k=2)
    images, _ = tiny_data(6, seed=14)
    positions = random_positions(6, 7)
    for route in ([0, 1, 1, 0, 1, 1], [1] * 6):
        route = torch.tensor(route)
        local = LocalEngine().run(routed, images, positions, route=route)
        remote = engine.run(routed, images, positions, route=route)
        torch.testing.assert_close(remote.logits, local.logits, rtol=0, atol=1e-5)
        assert torch.equal(remote.route, route)
        assert {d.device: d.images for d in remote.report.devices} == \
            {name: int((route == i).sum()) for i, name in enumerate(["fast", "slow"]) if (route == i).any()}
        assert remote.report.bytes_exchanged == local.report.bytes_exchanged
    engine.release(routed)


def test_an_engine_with_no_ray_running_starts_a_bounded_local_instance_and_stops_it(backend):
    """Last in the module: it stops the module's instance first."""
    ray.shutdown()
    engine = RayEngine(num_cpus=2, object_store_memory=80 * 2 ** 20)
    images, _ = tiny_data(4, seed=9)
    try:
        out = engine.run(backend, images)
        resources = ray.cluster_resources()
        assert resources["object_store_memory"] == pytest.approx(80 * 2 ** 20, rel=0.01)
        assert resources["semcomm_device_fast"] == resources["semcomm_device_slow"] == 1
        torch.testing.assert_close(out.logits, LocalEngine().run(backend, images).logits, rtol=0, atol=1e-5)
    finally:
        engine.shutdown()
    assert not ray.is_initialized()


def test_the_sweep_command_runs_a_saved_backend_on_ray_with_the_local_results(tmp_path, monkeypatch, capsys):
    from semcomm.server.backends.storage import save_backend
    from semcomm.cli import main
    from semcomm.models import create_model
    from semcomm.experiments.results import SweepResult

    monkeypatch.setenv("SEMCOMM_ZOO", str(tmp_path / "zoo"))
    save_backend(MonolithicBackend(create_model("vit-server-cifar10"), Device("fast", memory_mb=16.0, cpus=0.5)),
                 name="server-on-fast", dataset="cifar10")
    common = ["sweep", "--limit", "24", "--codec", "raw8", "--budgets", "16", "--thresholds", "0.8", "--codecs",
              "none", "--no-twins", "--backend", "server-on-fast"]
    assert main([*common, "--json", str(tmp_path / "local.json")]) == 0
    assert main([*common, "--engine", "ray", "--json", str(tmp_path / "ray.json")]) == 0
    assert "backend server-on-fast on the ray engine" in capsys.readouterr().out
    local, remote = (SweepResult.from_json(tmp_path / f"{n}.json") for n in ("local", "ray"))
    assert [p.accuracy for p in remote.points] == [p.accuracy for p in local.points]
