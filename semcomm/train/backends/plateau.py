"""Training to the plateau: epochs until the accuracy on held-out training images stops gaining, resumable.

A backend build trains its sub-models, students and experts either for a
fixed number of optimiser steps (the default) or, with a :class:`Plateau`
(the builders' ``plateau=`` option), in *epochs* until the plateau:

* before anything else the build holds out ``holdout`` of its training images
  (:func:`split_holdout`: drawn with the build's generator, so fixed by its
  seed); nothing of the build (grouping, pruning criteria, training, fusion)
  ever sees them;
* one epoch is ``ceil(pool / batch_size)`` optimiser steps, ``pool`` being the
  images the loop draws its batches from (batches are drawn at random, with
  replacement, as in the fixed-step loops);
* after each epoch :func:`train_to_plateau` measures the held-out top-1 of
  what the loop trains (:func:`held_out_top1`; epoch 0 is the model before
  training) and records the curve ``[{epoch, accuracy, loss}, ...]``
  (accuracy in [0, 1], loss the mean training loss of the epoch, None at
  epoch 0);
* it stops once ``patience`` epochs in a row gained less than ``min_gain``
  (0.001: 0.1 point of top-1) over the best accuracy before them (never
  before ``min_epochs``), or after ``max_epochs``;
* it keeps the weights of the best epoch on the held-out images (the
  earliest of equal ones; epoch 0, the start, included), so an epoch that made
  things worse is not shipped. The held-out images choose that epoch: they
  are not a test set (the recipes measure on the test split).

Each finished epoch saves the loop's modules, optimisers, the build's
generator, torch's global RNG (dropout), the curve and the best weights to a
partial file (``<run_dir>/<phase>.partial.pt``, :meth:`Phases.partial
<semcomm.train.backends.phases.Phases.partial>`); a phase run again resumes
from its last finished epoch and ends exactly as an uninterrupted run would.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from semcomm.inference import map_batches
from semcomm.train.backends.phases import training_steps


@dataclass(frozen=True)
class Plateau:
    """Train in epochs until the plateau (module docstring).

    Attributes:
        max_epochs: at most this many epochs per sub-model, student or expert (>= 1).
        holdout: training images held out to measure the plateau on (>= 1; never trained on).
        min_gain: the smallest gain in held-out top-1 (a fraction: 0.001 is 0.1 point) that counts as progress.
        patience: epochs in a row without such a gain over the best before stopping (>= 1).
    """

    max_epochs: int
    holdout: int
    min_gain: float = 0.001
    patience: int = 1

    def __post_init__(self):
        for name in ("max_epochs", "holdout", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"plateau {name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.min_gain, (int, float)) and 0 <= self.min_gain < 1):
            raise ValueError(f"plateau min_gain is a gain in top-1 per epoch in [0, 1) (0.001 = 0.1 point), got "
                             f"{self.min_gain!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def as_plateau(value: Plateau | dict | None) -> Plateau | None:
    """``value`` as a :class:`Plateau` (from its dict, as a recipe stores it), or None (fixed steps)."""
    if value is None or isinstance(value, Plateau):
        return value
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"max_epochs", "holdout", "min_gain", "patience"})
        if unknown or not {"max_epochs", "holdout"} <= set(value):
            raise ValueError(f"a plateau is {{'max_epochs', 'holdout'[, 'min_gain', 'patience']}}, got "
                             f"{sorted(value)}")
        return Plateau(**value)
    raise TypeError(f"plateau must be a Plateau, its dict or None, got {type(value).__name__}")


def split_holdout(n: int, holdout: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(training rows, held-out rows) of ``n`` images, ``holdout`` of them held out at random (drawn with
    ``generator``); both int64, ascending, disjoint, together 0..n-1."""
    if not 1 <= holdout < n:
        raise ValueError(f"cannot hold out {holdout} of {n} training images: hold out at least 1 and leave some to "
                         "train on")
    order = torch.randperm(n, generator=generator)
    return order[holdout:].sort().values, order[:holdout].sort().values


def held_out_top1(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, bf16: bool = False,
                  batch_size: int = 256) -> float:
    """Top-1 in [0, 1] of ``model(images)`` (B x C logits; whole images, no augmentation) against ``targets``
    (B int64 indices into the C outputs) over the rows whose target is >= 0 (-1: not counted). The model is
    evaluated in eval mode and left in the mode it was in.

    Raises:
        ValueError: no row has a target (hold out more images).
    """
    counted = targets >= 0
    if not counted.any():
        raise ValueError("none of the held-out images belongs to the model's classes: hold out more images")
    rows = counted.nonzero().flatten()
    was_training = model.training
    model.eval()
    try:
        logits = map_batches(lambda s: model(images[rows[s]]), len(rows), batch_size, bf16)
    finally:
        model.train(was_training)
    return float((logits.argmax(-1) == targets[rows]).float().mean())


class History(list):
    """The training loss of every optimiser step (a list, as the fixed-step loops return), and with a plateau
    its held-out ``curve`` (``[{epoch, accuracy, loss}, ...]``), the ``kept_epoch`` whose weights were kept and
    why it stopped (``stopped_by``: ``"plateau"`` or ``"max_epochs"``)."""

    def __init__(self, losses=(), curve: list[dict] | None = None, kept_epoch: int | None = None,
                 stopped_by: str | None = None):
        super().__init__(losses)
        self.curve, self.kept_epoch, self.stopped_by = curve or [], kept_epoch, stopped_by

    def report(self) -> dict:
        """``{"curve", "kept_epoch", "stopped_by"}``, JSON-able (what a build's ``curves`` holds)."""
        return {"curve": self.curve, "kept_epoch": self.kept_epoch, "stopped_by": self.stopped_by}


def curves_of(losses: dict[str, list[float]]) -> dict[str, dict]:
    """The reports (:meth:`History.report`) of the loops in a build's ``losses`` that trained to the plateau, by
    the same names (``recover/0``, ``distill/1``, ``expert/2``, ...)."""
    return {name: history.report() for name, history in losses.items() if getattr(history, "curve", None)}


def train_to_plateau(step: Callable[[int], float | Sequence[float]], steps_per_epoch: int,
                     evaluate: Callable[[], float | dict], modules: Sequence[nn.Module],
                     optimizers: Sequence[torch.optim.Optimizer], generator: torch.Generator, plateau: Plateau,
                     partial: str | Path | None = None, min_epochs: int = 1, desc: str = "epoch") -> History:
    """Run ``step`` epoch after epoch until the plateau of ``evaluate`` or ``plateau.max_epochs`` (module
    docstring); the ``modules`` end with the weights of the best epoch.

    Args:
        step: one optimiser step, given the 0-based epoch; returns its loss (or one loss per trained model).
        steps_per_epoch: optimiser steps per epoch (>= 1).
        evaluate: the held-out top-1 in [0, 1], or a dict with it as ``"accuracy"`` and more JSON-able entries
            for the curve (e.g. each model's own accuracy).
        modules, optimizers: everything ``step`` trains (saved each epoch, restored on resume).
        generator: the build's generator (``step`` draws its batches from it), saved and restored with them.
        partial: the partial file of this phase (None: nothing is saved; resume when it exists).
        min_epochs: never stop at the plateau before this many epochs.

    Returns:
        a :class:`History`: what ``step`` returned at every step, with the curve (``loss``: the epoch's mean
        loss, over the models too; when ``step`` trains several models, ``losses``: each one's).
    """
    if steps_per_epoch < 1 or min_epochs < 1:
        raise ValueError(f"steps_per_epoch and min_epochs must be >= 1, got {steps_per_epoch} and {min_epochs}")
    partial = None if partial is None else Path(partial)

    def measured(epoch: int, loss: float | None) -> dict:
        value = evaluate()
        extra = dict(value) if isinstance(value, dict) else {"accuracy": value}
        return {"epoch": epoch, "accuracy": float(extra.pop("accuracy")), "loss": loss, **extra}

    if partial is not None and partial.exists():
        state = torch.load(partial, weights_only=False, map_location="cpu")
        for module, saved in zip(modules, state["modules"]):
            module.load_state_dict(saved)
        for optimizer, saved in zip(optimizers, state["optimizers"]):
            optimizer.load_state_dict(saved)
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        losses, curve, best, stale = state["losses"], state["curve"], state["best"], state["stale"]
        best_epoch, best_weights = state["best_epoch"], state["best_weights"]
    else:
        losses, curve, stale = [], [measured(0, None)], 0
        best, best_epoch, best_weights = curve[0]["accuracy"], 0, [copy.deepcopy(m.state_dict()) for m in modules]

    def flat() -> bool:
        return len(curve) - 1 >= min_epochs and stale >= plateau.patience

    while not (flat() or len(curve) - 1 >= plateau.max_epochs):
        epoch = len(curve) - 1
        epoch_losses = [step(epoch) for _ in training_steps(steps_per_epoch, f"{desc} {epoch + 1}")]
        losses.extend(epoch_losses)
        curve.append(measured(epoch + 1, _mean([_mean(loss) for loss in epoch_losses])))
        if not isinstance(epoch_losses[0], (int, float)):  # several models: each one's mean loss too
            curve[-1]["losses"] = [_mean(column) for column in zip(*epoch_losses)]
        accuracy = curve[-1]["accuracy"]
        stale = 0 if accuracy >= best + plateau.min_gain else stale + 1
        if accuracy > best:
            best, best_epoch, best_weights = accuracy, epoch + 1, [copy.deepcopy(m.state_dict()) for m in modules]
        if partial is not None:
            tmp = partial.with_suffix(".tmp")
            torch.save({"modules": [m.state_dict() for m in modules], "optimizers": [o.state_dict() for o in optimizers],
                        "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "losses": losses,
                        "curve": curve, "best": best, "stale": stale, "best_epoch": best_epoch,
                        "best_weights": best_weights}, tmp)
            tmp.replace(partial)
    for module, weights in zip(modules, best_weights):
        module.load_state_dict(weights)
    return History(losses, curve, best_epoch, "plateau" if flat() else "max_epochs")


def epoch_steps(pool: int, batch_size: int) -> int:
    """Optimiser steps of one epoch over ``pool`` images in batches of ``batch_size``: ceil(pool / batch)."""
    return max(1, math.ceil(pool / batch_size))


def _mean(values: float | Sequence[float]) -> float:
    return float(values) if isinstance(values, (int, float)) else sum(values) / len(values)
