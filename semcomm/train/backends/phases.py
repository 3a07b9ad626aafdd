"""Resumable build phases: a long backend build saves each finished phase and skips it when run again.

A build is a sequence of named phases (``student0``, ``fusion``, ...). With a
run directory, :meth:`Phases.run` stores what a phase returned (modules,
losses: anything ``torch.save`` takes) together with the state of the build's
generator in ``<run_dir>/<phase>.pt``; a second run with the same settings
loads it and restores the generator instead of running the phase, so an
interrupted build continues where it stopped and ends exactly as an
uninterrupted one. The settings are kept in ``<run_dir>/settings.json``; a run
directory made with other settings is refused. Without a run directory
phases simply run. A phase that trains to the plateau
(:mod:`~semcomm.train.backends.plateau`) also keeps its last finished epoch in
``<run_dir>/<phase>.partial.pt`` (:meth:`Phases.partial`) while it runs, so it
resumes within the phase; the partial file is removed once the phase is saved.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm


class Phases:
    """Run (or reload) the phases of one build (module docstring).

    Args:
        run_dir: where finished phases are kept (None: nothing is kept).
        settings: JSON-able description of the build; must match the run directory's.
        generator: the build's generator, saved after each phase and restored when it is skipped.
        progress: print a line per phase.
    """

    def __init__(self, run_dir: str | Path | None, settings: dict, generator: torch.Generator,
                 progress: bool = False):
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.generator, self.progress = generator, progress
        if self.run_dir is None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(settings, indent=2, sort_keys=True, default=str)
        path = self.run_dir / "settings.json"
        if path.exists() and path.read_text() != text:
            raise ValueError(f"{self.run_dir} holds phases of a build with other settings (see {path}); use another "
                             "run directory or delete it")
        path.write_text(text)

    def done(self, name: str) -> bool:
        """True when phase ``name`` finished in an earlier run."""
        return self.run_dir is not None and (self.run_dir / f"{name}.pt").exists()

    def partial(self, name: str) -> Path | None:
        """The partial file of phase ``name`` (its last finished epoch; None without a run directory)."""
        return None if self.run_dir is None else self.run_dir / f"{name}.partial.pt"

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        """``fn()``, or what it returned in an earlier run (with the generator as it was after it)."""
        if self.done(name):
            saved = torch.load(self.run_dir / f"{name}.pt", weights_only=False, map_location="cpu")
            self.generator.set_state(saved["generator"])
            if self.progress:
                print(f"phase {name}: reloaded from {self.run_dir}", flush=True)
            return saved["result"]
        result = fn()
        if self.run_dir is not None:
            path = self.run_dir / f"{name}.pt"
            tmp = path.with_suffix(".tmp")
            torch.save({"result": result, "generator": self.generator.get_state()}, tmp)
            tmp.replace(path)
            self.partial(name).unlink(missing_ok=True)
        if self.progress:
            print(f"phase {name}: done", flush=True)
        return result


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    """One optimiser step on ``loss`` (gradients cleared first); returns the loss as a float."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def training_steps(steps: int, desc: str) -> range:
    """``range(steps)`` with a progress bar (``desc``, refreshed at most every 10 s) for a build's training loop."""
    return tqdm(range(steps), desc=desc, mininterval=10, leave=False, dynamic_ncols=True)


@contextmanager
def training_mode(module: nn.Module, generator: torch.Generator) -> Iterator[None]:
    """``module`` in train mode for the block, and in eval mode after it, with torch's global RNG (dropout,
    stochastic depth) forked and seeded from ``generator``, so a build's randomness all comes from its generator."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(2 ** 62, (1,), generator=generator)))
        module.train()
        try:
            yield
        finally:
            module.eval()
