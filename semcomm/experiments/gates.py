"""The gates a sweep traces: thresholds scaled to the number of classes, or offload rates calibrated on the data.

A sweep's gate thresholds are, in order of precedence:

* the thresholds it is given, in the gate score's own units;
* offload-rate targets it is given, each gate's threshold calibrated on the edge's logits of the swept images
  (:meth:`~semcomm.edge.gating.Gate.calibrate`: the uncertainty that many images reach; no labels are read);
* by default :data:`DEFAULT_THRESHOLDS`, chosen in min-entropy bits for 10 classes (CIFAR-10), scaled to the
  gate's score and the number of classes C: each times the score's ceiling (its largest value, e.g. log2 C bits,
  :func:`~semcomm.edge.gating.score_ceiling`) over log2 10, so it sits at the same share of the score's range
  (unchanged for min-entropy and Shannon entropy over 10 classes; as given for a score without a known ceiling).
  Where no default threshold above 0 keeps a single image at the edge (an edge unsure of every image), the
  gates are :data:`DEFAULT_OFFLOAD_RATES` calibrated as above instead.

A gate above 0 (or a target below 100%) that still offloads every image repeats the ungated points: each sweep
says so in its result's ``notes`` and as a warning.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch

from semcomm.edge.gating import GATES, Gate, GateScore, score_ceiling, uncertainty

DEFAULT_THRESHOLDS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0)  # min-entropy bits for 10 classes
DEFAULT_OFFLOAD_RATES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
REFERENCE_CLASSES = 10  # the number of classes DEFAULT_THRESHOLDS were chosen for


def scaled_thresholds(kind: str | GateScore, classes: int,
                      thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> tuple[float, ...]:
    """``thresholds`` chosen in min-entropy bits for 10 classes, as thresholds of gate ``kind`` on ``classes``
    classes: each times ``score_ceiling(kind, classes) / log2 10``, rounded to 3 decimals (module docstring)."""
    ceiling = score_ceiling(kind, classes)
    if ceiling is None:
        return tuple(thresholds)
    scale = ceiling / math.log2(REFERENCE_CLASSES)  # exactly 1.0 for an entropy over 10 classes
    return tuple(t if scale == 1.0 else round(t * scale, 3) for t in thresholds)


def check_gate_grid(thresholds: Sequence[float] | None, offload_rates: Sequence[float] | None) -> None:
    """Raise unless at most one of ``thresholds`` and ``offload_rates`` is given, the rates each in [0, 1]."""
    if thresholds is not None and offload_rates is not None:
        raise ValueError("give gate thresholds or offload-rate targets, not both")
    bad = [rate for rate in offload_rates or () if not 0 <= rate <= 1]
    if bad:
        raise ValueError(f"offload rates are shares of the images in [0, 1], got {', '.join(map(str, bad))}")


def sweep_gates(kind: str | GateScore, logits: torch.Tensor, thresholds: Sequence[float] | None = None,
                offload_rates: Sequence[float] | None = None) -> tuple[list[Gate], list[str]]:
    """The gates of kind ``kind`` a sweep traces over the edge's B x C ``logits`` (module docstring), and notes on
    them: one sentence each, also issued as warnings.

    Args:
        thresholds: the gates' thresholds (None: by default, or ``offload_rates``).
        offload_rates: target shares of the B images offloaded, each in [0, 1] (not with ``thresholds``).
    """
    check_gate_grid(thresholds, offload_rates)
    notes = []
    name = GATES.name_of(kind)
    if thresholds is not None:
        gates = [Gate(kind, t) for t in thresholds]
    elif offload_rates is not None:
        gates = [Gate.calibrate(logits, rate, kind) for rate in offload_rates]
    else:
        defaults = scaled_thresholds(kind, logits.shape[1])
        gates = [Gate(kind, t) for t in defaults]
        if len(logits) and not any(gate.threshold > 0 and not _offloads_all(gate, logits) for gate in gates):
            offload_rates = DEFAULT_OFFLOAD_RATES
            gates = [Gate.calibrate(logits, rate, kind) for rate in offload_rates]
            notes.append(f"no default {name} threshold (up to {max(defaults):g}) keeps any of the {len(logits)} "
                         f"images at the edge, whose least uncertain scores {_least(kind, logits):.3g}: the gates "
                         f"are offload rates {', '.join(f'{r:g}' for r in offload_rates)} instead, each threshold "
                         "calibrated on the edge's logits of these images")
    targets = offload_rates if offload_rates is not None else (None,) * len(gates)
    everything = [gate for gate, target in zip(gates, targets)
                  if gate.threshold > 0 and target != 1 and _offloads_all(gate, logits)]
    if everything and len(logits):
        several = len(everything) > 1
        notes.append(f"gate{'s' if several else ''} {', '.join(g.label for g in everything)} "
                     f"offload{'' if several else 's'} every one of the {len(logits)} images, whose least uncertain "
                     f"scores {_least(kind, logits):.3g}: {'their' if several else 'its'} points repeat the ungated "
                     "ones; give higher thresholds or offload-rate targets")
    for note in notes:
        warnings.warn(note, stacklevel=3)
    return gates, notes


def _offloads_all(gate: Gate, logits: torch.Tensor) -> bool:
    return bool(gate.offload(logits).all())


def _least(kind: str | GateScore, logits: torch.Tensor) -> float:
    """The lowest uncertainty (gate ``kind``'s score) among the images of ``logits``."""
    return float(uncertainty(logits, kind).min())
