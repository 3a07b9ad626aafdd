"""The link sweep in shards of images: the same result whatever the engine's order or a resume, the unsharded
result over the ideal link, the same result for a split on disk as in memory, shards joined in image order, a lost
shard leaving its setting out, and clear errors.

Tiny sweeps: 24 CIFAR-10 test images in shards of 10 (shards of 10, 10 and 4 images), one semantic setting and
one image codec.
"""
from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest
import torch

from semcomm.cli import main
from semcomm.data import ShardedImages, load_split
from semcomm.experiments.engines import LocalTasks
from semcomm.experiments.link_sweep import LinkSweep, LinkSweepConfig, LinkTask, _joined
from semcomm.experiments.sweep import Sweep
from semcomm.rate.image_codecs import ImageCodec
from semcomm.transport.links import LinkSpec
from test_data_scale import make_folder, row_bytes

SETTING = ("spread-top-k", 16, 3)
WEBP = ImageCodec("webp", 40)


@pytest.fixture(scope="module")
def images(cifar_test):
    return cifar_test.subset(24)


@pytest.fixture(scope="module")
def link_sweep():
    return LinkSweep(config(), progress=False)


def config(link: LinkSpec = LinkSpec("gilbert-elliott"), conditions=(0.2,), **changes) -> LinkSweepConfig:
    """A small grid: spread-top-k 16 L3 in both framings and WebP q40, behind one gate threshold; by default over
    a link that loses a fifth of its code blocks in bursts (the draws matter; no decoder to run, so fast)."""
    return LinkSweepConfig(link=link, conditions=conditions, settings=(SETTING,), codecs=(WEBP,), thresholds=(0.8,),
                           **changes)


def run(link_sweep: LinkSweep, split, cfg: LinkSweepConfig, **kwargs):
    link_sweep.config = cfg
    return link_sweep.run(split, **kwargs)


def same(result) -> str:
    """The result as JSON, less what differs by nature between runs (wall time, engine)."""
    data = asdict(result)
    del data["seconds"], data["engine"]
    return json.dumps(data, sort_keys=True)


class Backwards(LocalTasks):
    """The local engine, running the tasks last first (the worst order for the per-shard caches)."""

    def run(self, function, context, tasks, on_result):
        return super().run(function, context, list(tasks)[::-1], on_result)


def test_shards_cut_every_setting_and_condition(link_sweep):
    link_sweep.config = config(conditions=(0.2, 0.3), shard_images=10)
    tasks = link_sweep.tasks(24)
    assert len(tasks) == 3 * 3 * 2  # (2 framings + 1 codec) x 3 shards x 2 conditions
    assert [t.shard for t in tasks[:6]] == [(0, 10)] * 6 and tasks[-1].shard == (20, 24)  # a shard's tasks together
    assert tasks[0].id == "packets|spread-top-k 16 3|0.2|[0:10]" and tasks[0].unit_id == "packets|spread-top-k 16 3|0.2"
    link_sweep.config = config(conditions=(0.2, 0.3))
    assert [t.id for t in link_sweep.tasks(24)] == [t.id for t in link_sweep.tasks()]  # unsharded: as ever
    assert link_sweep.tasks(24)[0].id == "packets|spread-top-k 16 3|0.2" and len(link_sweep.tasks(24)) == 6


def test_over_the_ideal_link_shards_give_the_unsharded_result(link_sweep, images):
    whole = run(link_sweep, images, config(LinkSpec("ideal"), (0.0,)))
    sharded = run(link_sweep, images, config(LinkSpec("ideal"), (0.0,), shard_images=10))
    assert whole.engine["tasks"] == 3 and sharded.engine["tasks"] == 9
    assert same(sharded) == same(whole)  # every point: accuracy, offload, channel uses, bits


def test_a_sharded_run_is_the_same_in_any_order_and_resumed(link_sweep, images, tmp_path):
    cfg = config(shard_images=10)
    path = tmp_path / "tasks.jsonl"
    first = run(link_sweep, images, cfg, state_path=path)
    point = first.find("spread-top-k 16 L3", 0.2)
    assert 0 < point.packet_loss < 1 and 0 < first.find("webp-q40", 0.2).images_lost < 1  # the draws matter
    assert same(run(link_sweep, images, cfg, engine=Backwards())) == same(first)
    lines = path.read_text().splitlines()
    assert len(lines) == 9
    path.write_text("".join(line + "\n" for i, line in enumerate(lines) if i % 3 != 1))  # 3 tasks lost
    resumed = run(link_sweep, images, cfg, state_path=path, engine=Backwards())
    assert resumed.engine["resumed"] == 6 and same(resumed) == same(first)
    # each shard draws its own channel: not the unsharded run's draws
    assert run(link_sweep, images, config()).find("spread-top-k 16 L3", 0.2).packet_loss != point.packet_loss


def test_a_split_on_disk_gives_the_result_of_the_same_split_in_memory(link_sweep, tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "toys", 24, 32)
    disk = load_split(folder, "train", cache_dir=tmp_path / "cache", in_memory=False, shard_bytes=7 * row_bytes(32))
    memory = replace(disk, images=disk.images[:])
    assert isinstance(disk.images, ShardedImages) and not isinstance(memory.images, ShardedImages)
    asked = []  # the tokens each task asks the sweep for: its shard's rows and pixels (what a pair's tokens are of)
    shard_hidden = Sweep.shard_hidden

    def spy(self, analysis, images, start, stop):
        asked.append((start, stop, torch.equal(images, memory.images[start:stop])))
        return shard_hidden(self, analysis, images, start, stop)

    monkeypatch.setattr(Sweep, "shard_hidden", spy)
    cfg = config(shard_images=10)
    assert same(run(link_sweep, disk, cfg)) == same(run(link_sweep, memory, cfg))
    assert asked == 2 * [(0, 10, True), (10, 20, True), (20, 24, True)]  # per run, once a shard (both framings')
    with pytest.raises(ValueError, match=r"stay on disk.*LinkSweepConfig\(shard_images=1024\).*--shard-images"):
        run(link_sweep, disk, config())


def test_shards_are_joined_in_image_order_and_only_when_all_finished():
    tasks = [LinkTask("codec", WEBP, 0.2, (0, 2)), LinkTask("codec", WEBP, 0.2, (2, 3))]
    second = dict(correct=[False], uses=[5], bits=[8], packets_lost=1, packets_sent=1, lost=[True])
    first = dict(correct=[True, True], uses=[3, 4], bits=[16, 24], packets_lost=0, packets_sent=2, lost=[False, False])
    assert _joined(tasks, {tasks[1].id: second, tasks[0].id: first}) == {"codec|webp-q40|0.2": dict(
        correct=[True, True, False], uses=[3, 4, 5], bits=[16, 24, 8], packets_lost=1, packets_sent=3,
        lost=[False, False, True])}
    assert _joined(tasks, {tasks[0].id: first}) == {}  # a shard missing: nothing of the setting at the condition


class Dropping(LocalTasks):
    """The local engine, losing one task as Ray does one whose worker died on every try."""

    def __init__(self, victim: str):
        self.victim = victim

    def run(self, function, context, tasks, on_result):
        super().run(function, context, [t for t in tasks if t.id != self.victim], on_result)
        return {self.victim: "WorkerCrashedError: the worker died"}


def test_a_lost_shard_leaves_its_setting_out_at_its_condition(link_sweep, images):
    victim = "codec|webp-q40|0.0|[10:20]"
    with pytest.warns(UserWarning, match=r"1 of 9 tasks failed.*left out: codec\|webp-q40\|0.0;"):
        result = run(link_sweep, images, config(LinkSpec("ideal"), (0.0,), shard_images=10), engine=Dropping(victim))
    assert result.engine["missing"] == [victim] and not [p for p in result.points if p.label == "webp-q40"]
    assert result.find("spread-top-k 16 L3", 0.0).offload_rate == 1.0  # the other settings are all there


@pytest.mark.parametrize("value", [0, -8, True, 2.5, "64"])
def test_bad_shard_sizes_are_refused_naming_the_field(value):
    with pytest.raises(ValueError, match=f"shard_images must be a positive integer, got {value!r}"):
        LinkSweepConfig(shard_images=value)


def test_the_command_runs_in_shards(tmp_path, capsys):
    argv = ["link", "--channel", "gilbert-elliott", "--snrs", "0.2", "--limit", "16", "--budgets", "16", "--codecs",
            "none", "--framings", "packets", "--thresholds", "0.8", "--json", str(tmp_path / "r.json")]
    assert main([*argv, "--shard-images", "8"]) == 0
    assert "local engine: 2 tasks" in capsys.readouterr().out  # one setting at one condition, two shards
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--shard-images", "0"])
    assert exit_.value.code == 2 and "--shard-images" in capsys.readouterr().err
