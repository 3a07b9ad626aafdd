"""The resumable, exact epoch loop shared by the codec pairs trained end to end (:mod:`semcomm.train.e2e`,
:mod:`semcomm.train.jscc`).

A run is a :class:`Run`: its config (a dataclass with ``epochs``, ``batch_size``, ``seed``, ``save_every`` and
``from_dict``), the module trained, its optimizers, one optimizer step on a batch of training indexes, and the
held-out evaluation after each epoch. :func:`run_epochs` drives it:

* the full state (fp32 weights, every optimizer, the step within the epoch, the data generator's and torch's
  RNG states, running sums, history) is saved to ``run_dir/state.pt`` every ``save_every`` steps and after every
  epoch; calling it again continues exactly where it stopped;
* the data order and the random draws of every epoch depend on the seed and the epoch only;
* after each epoch the evaluation is appended to the history (``run_dir/history.json``) and, with a
  ``snapshot`` folder, the weights (fp16 safetensors, SHA-256 in ``snapshot.json``) and history are written
  there, small enough to commit. A call that finds no ``state.pt`` but a snapshot of the same config starts from
  it at the next epoch: the weights rounded to fp16 and fresh optimizer moments (the one difference from an
  uninterrupted run, recorded in that epoch's history as ``warm_start``).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from semcomm.zoo.tensors import load_state, load_tensors, save_tensors

OPTIMIZER_KEYS = ("optimizer", "aux_optimizer")  # the state file's names of a run's optimizers, in order


@dataclass
class Run:
    """One resumable training run.

    Attributes:
        config: the run's config (a dataclass; ``epochs`` may change between calls, nothing else).
        module: what is trained (its ``state_dict`` is saved and snapshotted).
        optimizers: one or two optimizers (saved under :data:`OPTIMIZER_KEYS`).
        step: ``step(index, generator, global_step, sums)``: one optimizer step on the training images
            ``index`` (int64), drawing from ``generator``, at ``global_step`` of the schedule; adds its
            losses to the dict ``sums``.
        evaluate: the held-out measurement after an epoch (a dict of plain data).
        sum_keys: the running sums' names (their epoch means go into the history).
        train_size: training images (the epoch has train_size // batch_size steps).
        name: the progress bar's label.
    """

    config: object
    module: nn.Module
    optimizers: tuple
    step: Callable
    evaluate: Callable[[], dict]
    sum_keys: tuple[str, ...]
    train_size: int
    name: str

    @property
    def steps_per_epoch(self) -> int:
        return self.train_size // self.config.batch_size


def save_snapshot(directory: str | Path, config, module: nn.Module, history: list[dict]) -> Path:
    """Write ``directory/weights.safetensors`` (floats as fp16) and ``directory/snapshot.json`` (config, epochs
    done, history, the weights' SHA-256) after epoch ``len(history)``; returns the JSON's path."""
    directory = Path(directory)
    weights = {k: v.detach().half() if v.is_floating_point() else v.detach() for k, v in module.state_dict().items()}
    sha256 = save_tensors(weights, directory / "weights.safetensors")
    path = directory / "snapshot.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(config=asdict(config), epoch=len(history), sha256=sha256, history=history),
                              indent=2) + "\n")
    tmp.replace(path)
    return path


def load_snapshot(directory: str | Path, config, module: nn.Module) -> list[dict] | None:
    """Load the snapshot in ``directory`` into ``module`` and return its history (epochs done = its length);
    None when there is none. Raises ValueError when it was made with another config (the schedule's length
    aside), CheckpointError when its weights are missing, corrupted or do not fit."""
    path = Path(directory) / "snapshot.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if not _same_run(record["config"], config):
        raise ValueError(f"snapshot {path} was made with a different config; use another snapshot directory")
    tensors = load_tensors(Path(directory) / "weights.safetensors", sha256=record["sha256"])
    load_state(module, tensors, f"snapshot {path}")
    return record["history"]


def _same_run(saved: dict, config) -> bool:
    """Whether a saved config is ``config`` but for the schedule's length."""
    return replace(type(config).from_dict(saved), epochs=config.epochs) == config


def run_epochs(run: Run, run_dir: str | Path, stop_after: int | None = None, stop_after_steps: int | None = None,
               progress: bool = True, snapshot: str | Path | None = None) -> list[dict]:
    """Train (or resume) ``run``; returns its per-epoch history (the module is left in eval mode).

    Args:
        stop_after: at most this many epochs ended in this call.
        stop_after_steps: at most this many steps in this call (the state is saved there: resumable mid-epoch).
        snapshot: a folder the weights and history are written to after every epoch, and warm-started from
            when ``run_dir`` holds no state (see the module docstring).
    """
    config, module = run.config, run.module
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / "state.pt"
    resume = dict(epoch=0, step=0, history=[], sums=None, generator=None)
    warm_start = None  # the epoch a snapshot was loaded after
    if state_path.exists():
        state = torch.load(state_path, weights_only=False, map_location="cpu")
        if not _same_run(state["config"], config):
            raise ValueError(f"{state_path} was made with a different config; use another run directory")
        module.load_state_dict(state["model"])
        for key, optimizer in zip(OPTIMIZER_KEYS, run.optimizers):
            optimizer.load_state_dict(state[key])
        torch.set_rng_state(state["rng"])
        resume.update({k: state[k] for k in resume})
    elif snapshot is not None and (warm := load_snapshot(snapshot, config, module)) is not None:
        torch.manual_seed(config.seed * 100_003 + len(warm) + 90_000)
        resume.update(epoch=len(warm), history=warm)
        warm_start = len(warm)
    (run_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))
    history = resume["history"]
    steps = run.steps_per_epoch
    end_epoch = config.epochs if stop_after is None else min(config.epochs, resume["epoch"] + stop_after)
    budget = stop_after_steps
    for epoch in range(resume["epoch"], end_epoch):
        started = time.time()
        order = torch.randperm(run.train_size, generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch))
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch + 50_000)
        first, sums = 0, dict.fromkeys(run.sum_keys, 0.0)
        if epoch == resume["epoch"] and resume["step"]:
            first, sums = resume["step"], resume["sums"]
            generator.set_state(resume["generator"])
        module.train()
        position = dict(epoch=epoch, sums=sums, generator=generator)
        bar = tqdm(range(first, steps), desc=f"{run.name} epoch {epoch + 1}/{config.epochs}", disable=not progress,
                   initial=first, total=steps)
        for i in bar:
            if budget is not None and budget <= 0:
                _save(state_path, run, history, position, i)
                module.eval()
                return history
            run.step(order[i * config.batch_size : (i + 1) * config.batch_size], generator, epoch * steps + i, sums)
            budget = None if budget is None else budget - 1
            if i % 10 == 0:
                bar.set_postfix({k: f"{v / (i + 1):.3g}" for k, v in sums.items() if k != "loss"})
            if (i + 1) % config.save_every == 0 and i + 1 < steps:
                _save(state_path, run, history, position, i + 1)
        record = dict(epoch=epoch + 1, schedule_epochs=config.epochs, steps=steps,
                      **{k: v / steps for k, v in sums.items()}, minutes=(time.time() - started) / 60)
        if warm_start == epoch:
            record["warm_start"] = dict(snapshot_epoch=epoch, weights="fp16", optimizer="fresh moments")
        record["eval"] = run.evaluate()
        history.append(record)
        _save(state_path, run, history, dict(position, epoch=epoch + 1), 0)
        (run_dir / "history.json").write_text(json.dumps(history, indent=2))
        if snapshot is not None:
            save_snapshot(snapshot, config, module, history)
        if progress:
            print(json.dumps(record), flush=True)
    module.eval()
    return history


def _save(path: Path, run: Run, history: list[dict], position: dict, step: int) -> None:
    """Write the full state atomically: after ``step`` steps of epoch ``position["epoch"]`` (0-based; step 0:
    at its start), with that epoch's running ``sums`` and data ``generator``, and torch's RNG state."""
    tmp = path.with_suffix(".tmp")
    optimizers = {key: optimizer.state_dict() for key, optimizer in zip(OPTIMIZER_KEYS, run.optimizers)}
    torch.save(dict(config=asdict(run.config), model=run.module.state_dict(), **optimizers, history=history,
                    epoch=position["epoch"], step=step, sums=position["sums"],
                    generator=position["generator"].get_state(), rng=torch.get_rng_state()), tmp)
    tmp.replace(path)
