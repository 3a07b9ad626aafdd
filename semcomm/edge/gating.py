"""Entropy gating: answer at the edge when the edge model is sure enough.

Each gate turns B x C edge logits into a B uncertainty score (higher = less
sure) and offloads an image when its score is >= ``threshold``. A threshold
of 0 therefore offloads every image and ``math.inf`` none. The scores live
in the registry :data:`GATES`; wherever a gate's kind is expected, its name
or the score function itself (B x C logits -> B scores) is accepted. A score
registered with ``ceiling=`` (a function of the number of classes C: the
score of C equally likely classes, its largest) lets defaults scale with C
(:func:`score_ceiling`).

* ``min_entropy``: H_min = -log2 max_c p_c, in bits (the methods paper's
  default, threshold 0.8: offload when p_max < 2^-0.8 = 0.574); at most log2 C.
* ``shannon``: H = -sum_c p_c log2 p_c, in bits; at most log2 C.
* ``margin``: 1 - (p_1 - p_2), the top-two probability gap subtracted from 1; at most 1.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from semcomm.core.registry import Registry
from semcomm.inference import describe_rows, nonfinite_rows

GateScore = Callable[[torch.Tensor], torch.Tensor]
GATES: Registry[GateScore] = Registry("gate")
COMPARED = ("min_entropy", "shannon", "margin")  # the gates compare_gates compares by default, in its row order


@GATES.register("min_entropy", ceiling=math.log2)
def min_entropy(logits: torch.Tensor) -> torch.Tensor:
    """B min-entropies -log2 max_c p_c (bits) of B x C logits."""
    return -logits.float().log_softmax(dim=-1).max(dim=-1).values / math.log(2)


@GATES.register("shannon", ceiling=math.log2)
def shannon(logits: torch.Tensor) -> torch.Tensor:
    """B Shannon entropies -sum_c p_c log2 p_c (bits) of B x C logits."""
    log_p = logits.float().log_softmax(dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1) / math.log(2)


@GATES.register("margin", ceiling=lambda classes: 1.0)
def margin(logits: torch.Tensor) -> torch.Tensor:
    """B scores 1 - (p_1 - p_2) of B x C logits: the top-two probability gap subtracted from 1."""
    top2 = logits.float().log_softmax(dim=-1).exp().topk(2, dim=-1).values
    return 1 - (top2[:, 0] - top2[:, 1])


def score_ceiling(kind: str | GateScore, classes: int) -> float | None:
    """The largest score of gate ``kind`` (a name of :data:`GATES` or a registered score function) on logits of
    ``classes`` classes, reached when all are equally likely (log2 C bits for ``min_entropy`` and ``shannon``, 1
    for ``margin``); None for a score registered without ``ceiling=``, or not registered."""
    ceiling = GATES.info(kind).get("ceiling")
    return None if ceiling is None else float(ceiling(classes))


def uncertainty(logits: torch.Tensor, kind: str | GateScore = "min_entropy") -> torch.Tensor:
    """B uncertainty scores of B x C logits by ``kind``, a name of :data:`GATES` or a score function (see the
    module docstring for units)."""
    score = GATES.resolve(kind)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must be B x C with C >= 2 classes, got shape {tuple(logits.shape)}")
    rows = nonfinite_rows(logits)
    if rows:
        raise ValueError(f"logits contain NaN or infinite values in {describe_rows(rows, 'row')}")
    return score(logits)


@dataclass(frozen=True)
class Gate:
    """Offload an image when ``uncertainty(logits, kind) >= threshold``.

    ``kind``: a name of :data:`GATES` or a score function (B x C logits -> B scores).
    """

    kind: str | GateScore = "min_entropy"
    threshold: float = 0.8

    def __post_init__(self):
        if isinstance(self.kind, str):
            GATES.get(self.kind)  # an unknown name is refused here, listing the valid ones
        elif not callable(self.kind):
            raise TypeError(f"a gate's kind is a name ({GATES.help()}) or a function of B x C logits, "
                            f"got {self.kind!r}")
        if math.isnan(self.threshold) or self.threshold < 0:
            raise ValueError(f"gate threshold must be >= 0 (0 offloads all, inf none), got {self.threshold}")

    def offload(self, logits: torch.Tensor) -> torch.Tensor:
        """B booleans: True where the image is sent to the server."""
        return uncertainty(logits, self.kind) >= self.threshold

    @property
    def label(self) -> str:
        return f"{GATES.name_of(self.kind)} {self.threshold:g}"

    @classmethod
    def calibrate(cls, logits: torch.Tensor, offload_rate: float, kind: str | GateScore = "min_entropy") -> "Gate":
        """The gate that offloads ``offload_rate`` of the images in ``logits`` (held-out data).

        The threshold is the score of the ``round(rate * B)``-th most uncertain
        image, so exactly that many are offloaded unless scores tie.
        """
        if not 0 <= offload_rate <= 1:
            raise ValueError(f"offload_rate is a fraction in [0, 1], got {offload_rate}")
        scores = uncertainty(logits, kind).sort(descending=True).values
        count = round(offload_rate * len(scores))
        if count == 0:
            return cls(kind, math.inf)
        return cls(kind, float(scores[count - 1]))


def compare_gates(edge_logits: torch.Tensor, server_logits: torch.Tensor, labels: torch.Tensor,
                  rates: tuple[float, ...], seed: int = 0,
                  kinds: tuple[str | GateScore, ...] = COMPARED) -> list[dict]:
    """Gates (``kinds``: names of :data:`GATES` or score functions) at equal offload rates: calibrated on a random
    half of the images, evaluated on the other.

    Offloaded images take the server's answer, the rest the edge's.

    Args:
        edge_logits, server_logits: N x C logits of the same N images.
        labels: N true classes.
        rates: target offload rates in [0, 1].

    Returns:
        per rate and kind: ``{"gate", "target", "threshold", "offload", "top1"}`` (fractions), plus one row
        ``{"gate": "edge alone" | "server alone", "top1"}`` each first, all on the evaluation half.
    """
    if not (len(edge_logits) == len(server_logits) == len(labels) >= 2):
        raise ValueError(f"need matching logits and labels of at least 2 images, got {len(edge_logits)}, "
                         f"{len(server_logits)} and {len(labels)}")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    held_out, evaluation = order[: len(order) // 2], order[len(order) // 2:]
    edge_ok = edge_logits[evaluation].argmax(-1) == labels[evaluation]
    server_ok = server_logits[evaluation].argmax(-1) == labels[evaluation]
    rows = [{"gate": "edge alone", "top1": float(edge_ok.float().mean())},
            {"gate": "server alone", "top1": float(server_ok.float().mean())}]
    for rate in rates:
        for kind in kinds:
            gate = Gate.calibrate(edge_logits[held_out], rate, kind)
            offload = gate.offload(edge_logits[evaluation])
            rows.append({"gate": GATES.name_of(kind), "target": rate, "threshold": gate.threshold,
                         "offload": float(offload.float().mean()),
                         "top1": float(torch.where(offload, server_ok, edge_ok).float().mean())})
    return rows
