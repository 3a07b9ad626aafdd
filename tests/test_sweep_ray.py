"""Sweeps on Ray (issue 29): the same result as the local engine, resumable, and a dying task left out by name.

One local Ray instance for the module (2 CPUs, 100 MiB object store); the last test replaces it with a local
two-node cluster. The sweeps are tiny (24 CIFAR-10 test images in shards of 8: 9 tasks).
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, replace

import pytest

from semcomm.cli import main
from semcomm.experiments.engines import RayTasks, TaskStore
from semcomm.experiments.link_sweep import LinkSweep, LinkSweepConfig
from semcomm.experiments.sweep import Sweep, SweepConfig
from semcomm.rate.image_codecs import ImageCodec
from semcomm.transport.links import LinkSpec

ray = pytest.importorskip("ray")

WEBP = ImageCodec("webp", 40)
CONFIG = SweepConfig(budgets=(16,), levels=(3,), policies=(), codecs=(WEBP,), thresholds=(0.8,), shard_images=8)
SEMANTIC = "spread-top-k 16 L3"


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, object_store_memory=100 * 2 ** 20, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def images(cifar_test):
    return cifar_test.subset(24)


@pytest.fixture(scope="module")
def sweep():
    return Sweep(CONFIG, progress=False)


@pytest.fixture(scope="module")
def local(sweep, images):
    return sweep.run(images)


def same(result) -> str:
    """The result as JSON, less what differs by nature between engines (wall time, engine)."""
    data = asdict(result)
    del data["seconds"], data["engine"]
    return json.dumps(data, sort_keys=True)


def dying(victim: str, marker: str | None = None):
    """A task function that kills its own worker on the task ``victim`` (with ``marker``: only while that file does
    not exist, creating it: the first try dies, the retry runs). Made in a function, so Ray ships it by value."""
    from semcomm.experiments.sweep import _sweep_task

    def function(context, task):
        if task.id == victim and (marker is None or not os.path.exists(marker)):
            if marker is not None:
                open(marker, "w").close()
            os._exit(1)
        return _sweep_task(context, task)

    return function


class KillingRay(RayTasks):
    """Ray tasks one of which kills its worker (:func:`dying`)."""

    def __init__(self, victim: str, marker: str | None = None):
        super().__init__(max_retries=1)
        self.victim, self.marker = victim, marker

    def run(self, function, context, tasks, on_result):
        return super().run(dying(self.victim, self.marker), context, tasks, on_result)


def test_the_ray_sweep_equals_the_local_one(sweep, images, local):
    remote = sweep.run(images, RayTasks())
    assert same(remote) == same(local)
    assert remote.engine["engine"] == "ray" and remote.engine["tasks"] == 9 and remote.engine["missing"] == []
    assert sum(remote.engine["tasks_per_node"].values()) == 9 and remote.engine["nodes"] == 1
    assert local.engine == dict(engine="local", nodes=1, tasks=9, resumed=0, tasks_per_node={"local": 9}, missing=[])
    # the tiny sweep has every kind of point: references, the setting, its random twin, the image codec
    assert {p.family for p in local.points} == {"reference", "semantic", "random", "codec"}
    assert local.find(SEMANTIC).vs_random is not None


def test_a_rerun_resumes_from_its_task_file(sweep, images, local, tmp_path):
    path = tmp_path / "sweep.tasks.jsonl"
    first = sweep.run(images, state_path=path)
    assert same(first) == same(local)
    lines = path.read_text().splitlines()
    assert len(lines) == 9
    path.write_text("\n".join(lines[:5]) + "\n" + lines[5][:40])  # as if killed while writing the sixth
    assert len(TaskStore(path, sweep.task_keys(images, sweep.tasks(len(images)))).results()) == 5
    resumed = sweep.run(images, RayTasks(), state_path=path)
    assert same(resumed) == same(local)
    assert resumed.engine["resumed"] == 5 and sum(resumed.engine["tasks_per_node"].values()) == 4
    again = sweep.run(images, state_path=path)  # everything saved: nothing runs
    assert again.engine["resumed"] == 9 and again.engine["tasks_per_node"] == {} and same(again) == same(local)
    assert len(TaskStore(path, "another configuration").results()) == 0  # another key starts afresh


def test_a_sweep_of_another_grid_reuses_the_references_and_image_codecs(sweep, images, local, tmp_path):
    path = tmp_path / "sweep.tasks.jsonl"
    sweep.run(images, state_path=path)
    other = Sweep(replace(CONFIG, budgets=(8,)), progress=False).run(images, state_path=path)
    assert other.engine["resumed"] == 6 and other.engine["tasks_per_node"] == {"local": 3}  # its setting runs

    def points(result, families):  # as JSON (NaN equals NaN), less the frontier marks, which depend on all points
        return [json.dumps({k: v for k, v in asdict(p).items() if k != "frontier"}, sort_keys=True)
                for p in result.points if p.family in families]

    assert points(other, {"reference", "codec"}) == points(local, {"reference", "codec"})
    assert {p.label for p in other.points if p.family == "semantic"} == {"spread-top-k 8 L3"}


def test_a_task_whose_worker_dies_is_retried(sweep, images, local, tmp_path):
    victim = sweep.tasks(len(images))[4].id  # the semantic setting's second shard
    assert SEMANTIC in victim
    result = sweep.run(images, KillingRay(victim, marker=str(tmp_path / "died-once")))
    assert (tmp_path / "died-once").exists() and same(result) == same(local)


def test_a_task_that_always_dies_is_left_out_by_name_and_a_rerun_resumes(sweep, images, local, tmp_path):
    victim = sweep.tasks(len(images))[4].id
    path = tmp_path / "sweep.tasks.jsonl"
    with pytest.warns(UserWarning, match=rf"1 of 9 tasks failed on every one of their 2 tries on Ray "
                                         rf"\(WorkerCrashedError.*\); left out: {SEMANTIC}; rerun the same sweep to "
                                         rf"resume: its 8 finished tasks are saved in .*sweep.tasks.jsonl"):
        partial = sweep.run(images, KillingRay(victim), state_path=path)
    assert partial.engine["missing"] == [victim] and partial.notes[-1].startswith("1 of 9 tasks failed")
    assert not any(p.family in ("semantic", "random") for p in partial.points)
    assert partial.find("webp-q40").accuracy == local.find("webp-q40").accuracy  # the rest finished
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed = sweep.run(images, RayTasks(), state_path=path)
    assert resumed.engine["resumed"] == 8 and sum(resumed.engine["tasks_per_node"].values()) == 1
    assert same(resumed) == same(local)


def test_the_ray_link_sweep_equals_the_local_one(sweep, images):
    config = LinkSweepConfig(link=LinkSpec("awgn"), conditions=(1.5,), settings=(("spread-top-k", 16, 3),),
                             codecs=(WEBP,), thresholds=(0.8,), framings=("packets", "whole"))
    link_sweep = LinkSweep(config, progress=False, sweep=sweep)
    local = link_sweep.run(images)
    remote = link_sweep.run(images, engine=RayTasks())
    assert same(remote) == same(local)
    assert local.engine["tasks"] == remote.engine["tasks"] == 3 and remote.engine["engine"] == "ray"
    assert local.find("spread-top-k 16 L3", 1.5).packet_loss > 0  # a condition that loses packets: draws matter


def test_the_commands_run_on_ray_and_resume(tmp_path, capsys):
    common = ["sweep", "--limit", "16", "--codec", "raw8", "--budgets", "16", "--thresholds", "0.8", "--codecs",
              "none", "--no-twins", "--engine", "ray", "--json", str(tmp_path / "r.json")]
    assert main(common) == 0
    assert "ray engine: 2 tasks" in capsys.readouterr().out  # full images and the one setting, one shard each
    assert main(common) == 0
    assert "ray engine: 2 tasks, 2 resumed" in capsys.readouterr().out
    assert len((tmp_path / "r.tasks.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("command", ["sweep", "link"])
def test_an_unreachable_address_or_a_bad_engine_is_one_line_naming_it(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--engine", "ray", "--address", "127.0.0.1:1"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"semcomm {command}: error: --address: cannot reach a Ray cluster at '127.0.0.1:1'" in err
    with pytest.raises(SystemExit) as exit_:
        main([command, "--engine", "dask"])
    assert exit_.value.code == 2 and "--engine: invalid choice: 'dask'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([command, "--address", "127.0.0.1:1"])
    assert exit_.value.code == 2 and "add --engine ray" in capsys.readouterr().err


def test_a_two_node_cluster_runs_tasks_on_both_nodes_with_the_local_result(sweep, images, local):
    """Last in the module: it replaces the module's Ray instance with a cluster of two one-CPU nodes."""
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=1, object_store_memory=100 * 2 ** 20))
    try:
        cluster.add_node(num_cpus=1, object_store_memory=100 * 2 ** 20)
        remote = sweep.run(images, RayTasks(address=cluster.address))
        assert same(remote) == same(local)
        assert remote.engine["nodes"] == 2 and all(n > 0 for n in remote.engine["tasks_per_node"].values())
        assert sum(remote.engine["tasks_per_node"].values()) == 9
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_the_ray_engine_refuses_models_off_the_cpu():
    """Ray's tasks ask for CPUs: models on a GPU are refused by name before Ray starts (no GPU needed to check)."""
    from types import SimpleNamespace

    import torch

    from semcomm.experiments.engines import run_tasks

    with pytest.raises(ValueError, match="CPU workers, but the models are on cuda"):
        run_tasks(lambda context, task: {}, None, [SimpleNamespace(id="a")], RayTasks(), device=torch.device("cuda"))
