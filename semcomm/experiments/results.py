"""What a bitrate-accuracy sweep returns: its operating points, each scheme's frontier, and the comparison.

Plain dataclasses that read and write JSON (``to_json`` / ``from_json``) and render Markdown tables.
Every point records the settings that made it as fields (selection rule, budget, level policy, gate,
codec), so nothing has to read a display label back into settings.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

REFERENCE_GATE = 0.8  # the methods paper's default min-entropy threshold


@dataclass
class OperatingPoint:
    """One row of the sweep.

    Attributes:
        family: ``semantic`` (attention rule), ``random`` (its equal-budget
            random twin), ``reference`` (edge alone, server on full images,
            paper default) or ``codec`` (JPEG / WebP of whole images).
        label: what was sent, e.g. ``spread-top-k 16 L2`` or ``webp-q20`` (for display and :meth:`SweepResult.find`).
        gate: gate label, ``none`` when every image is sent.
        accuracy: top-1 over all images (edge answers included).
        offload_rate: fraction of images sent to the server.
        bits_per_image: mean bits on the wire over all images (0 for edge answers).
        bits_per_offloaded: mean bits per sent image (NaN if none).
        raw_fraction: bits_per_image / bits of an uncompressed 8-bit image.
        patches_per_offloaded: mean patches per sent image (NaN for codecs).
        curve: points of one curve share it, e.g. ``spread-top-k L2``, ``webp``.
        budget: patches per image of a fixed-budget rule (None otherwise).
        vs_random: for an attention rule, the paired comparison with its
            random twin on the same images: ``only_rule`` and ``only_random``
            count images that only one of the two classifies right,
            ``p_value`` is McNemar's exact two-sided test.
        scheme: what made the strings: a codec pair's name, ``raw8``
            (format version 1), ``webp``, ``jpeg``, ``random <scheme>``, ``edge``.
        fusion: the edge's prediction travelled with each string and was fused.
        frontier: the point lies on its scheme's Pareto frontier.
        rule: the selection rule's registered name (``spread-top-k``, ``attention-sum``, ...) of a semantic
            point and its random twin; None otherwise.
        rule_settings: that rule's parameters, e.g. ``{"k": 16, "cell": 2, "random_within": false}``.
        policy: the level policy's registered name (``fixed``, ``iaq``, ``uniform``) of a codec pair's point;
            None for raw 8-bit patches, image codecs and the edge.
        policy_settings: that policy's parameters, e.g. ``{"level": 3}`` or ``{"bits": 300.0, ...}``.
        gate_kind: the gate's uncertainty measure (``min_entropy``, ...); None when every image is sent.
        threshold: the gate's threshold (``inf``: the edge alone); None when every image is sent.
        codec: the codec that wrote the strings by its registered name (``latent-cifar10``, ``raw8``,
            ``webp``, ``jpeg``); None for the edge alone.
        quality: an image codec's quality setting (None otherwise).
    """

    family: str
    label: str
    gate: str
    accuracy: float
    offload_rate: float
    bits_per_image: float
    bits_per_offloaded: float
    raw_fraction: float
    patches_per_offloaded: float = math.nan
    curve: str = ""
    budget: int | None = None
    vs_random: dict | None = None
    scheme: str = ""
    fusion: bool = False
    frontier: bool = False
    rule: str | None = None
    rule_settings: dict | None = None
    policy: str | None = None
    policy_settings: dict | None = None
    gate_kind: str | None = None
    threshold: float | None = None
    codec: str | None = None
    quality: int | None = None


@dataclass
class Frontier:
    """The Pareto frontier of one scheme: points ordered by bits, each more accurate than all cheaper ones.

    Attributes:
        scheme, fusion: the scheme's points (:attr:`OperatingPoint.scheme`), with or without fusion.
        points: dicts ``{"bits_per_image", "accuracy", "label", "gate"}`` of the points on it.
        random: the scheme is a semantic codec's equal-budget random twin.
        codec: the codec that wrote the scheme's strings (:attr:`OperatingPoint.codec`).
    """

    scheme: str
    fusion: bool
    points: list[dict] = field(default_factory=list)
    random: bool = False
    codec: str | None = None

    def bits_for(self, accuracy: float) -> float:
        """Fewest mean bits per image of a frontier point reaching ``accuracy`` (inf if none does)."""
        return min((p["bits_per_image"] for p in self.points if p["accuracy"] >= accuracy - 1e-12), default=math.inf)

    @property
    def name(self) -> str:
        return f"{self.scheme}{' + fusion' if self.fusion else ''}"


@dataclass
class SweepResult:
    """Everything a notebook needs to plot or test a sweep (``raw_bits_per_image``: 3 x H x W x 8).

    Attributes:
        edge, server: the models' zoo names, or the ``name`` attribute (else the class name) of models given as
            objects.
        comparison: bits each frontier needs at each accuracy (:func:`~semcomm.experiments.frontiers.compare_frontiers`).
        comparison_note: why ``comparison`` is empty (None when it is not).
        notes: what a reader of the result should know about its gates (one sentence each, e.g. a gate that
            offloads every image; :mod:`semcomm.experiments.gates`).
        engine: where the tasks ran (:meth:`TaskRun.metadata <semcomm.experiments.engines.TaskRun.metadata>`:
            engine, nodes, tasks, resumed, tasks per node, missing tasks).
        device: the torch device the edge model ran on (``cpu``, ``cuda:0``, ...).
    """

    dataset: str
    images: int
    edge: str
    server: str
    importance: str
    raw_bits_per_image: int
    points: list[OperatingPoint] = field(default_factory=list)
    seconds: float = 0.0
    machine: str = ""
    codec: str | None = None
    frontiers: list[Frontier] = field(default_factory=list)
    comparison: list[dict] = field(default_factory=list)
    comparison_note: str | None = None
    notes: list[str] = field(default_factory=list)
    engine: dict = field(default_factory=dict)
    device: str = ""

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def from_json(cls, path: str | Path) -> "SweepResult":
        data = json.loads(Path(path).read_text())
        data["points"] = [OperatingPoint(**p) for p in data["points"]]
        data["frontiers"] = [Frontier(**f) for f in data.get("frontiers", [])]
        return cls(**data)

    def find(self, label: str, gate: str = "none", fusion: bool = False) -> OperatingPoint:
        """The point sent as ``label`` behind ``gate`` (labels as in :attr:`OperatingPoint.label`)."""
        for point in self.points:
            if point.label == label and point.gate == gate and point.fusion == fusion:
                return point
        raise KeyError(f"no point {label!r} with gate {gate!r}{' and fusion' if fusion else ''}")

    def frontier(self, scheme: str, fusion: bool = False) -> Frontier:
        for f in self.frontiers:
            if f.scheme == scheme and f.fusion == fusion:
                return f
        raise KeyError(f"no frontier for {scheme!r}{' with fusion' if fusion else ''}; have "
                       f"{[f.name for f in self.frontiers]}")

    @property
    def edge_accuracy(self) -> float:
        """Top-1 of the edge alone (every image answered at the edge, 0 bits)."""
        return next(p.accuracy for p in self.points if p.scheme == "edge")

    def table(self, everything: bool = False) -> str:
        """The sweep as a Markdown table: references, every ungated and paper-gate point and every
        frontier point (``everything``: all points). ``F`` marks frontier points, ``<`` points below the edge alone."""
        edge = self.edge_accuracy
        rows = ["| family | scheme | sent | gate | fusion | top-1 | offload | bits/image | bits/sent image | patches/sent "
                "| marks | vs random: images only it / only random gets right (McNemar p) |",
                "|---|---|---|---|---|---:|---:|---:|---:|---:|---|---|"]
        shown_gates = ("none", f"min_entropy {REFERENCE_GATE:g}")
        for p in self.points:
            if not (everything or p.frontier or p.family == "reference" or p.gate in shown_gates):
                continue
            marks = ("F" if p.frontier else "") + ("<" if p.accuracy < edge and p.bits_per_image > 0 else "")
            versus = (f"{p.vs_random['only_rule']} / {p.vs_random['only_random']} (p={p.vs_random['p_value']:.2g})"
                      if p.vs_random else "")
            rows.append(f"| {p.family} | {p.scheme} | {p.label} | {p.gate} | {'yes' if p.fusion else 'no'} "
                        f"| {100 * p.accuracy:.2f}% | {100 * p.offload_rate:.1f}% | {p.bits_per_image:,.0f} "
                        f"| {p.bits_per_offloaded:,.0f} | {p.patches_per_offloaded:.1f} | {marks} | {versus} |")
        return "\n".join(rows)

    def comparison_table(self) -> str:
        """Bits each frontier needs for each accuracy (the semantic codec against the best image codec)."""
        if not self.comparison:
            return ""
        names = [k for k in self.comparison[0] if k != "accuracy"]
        rows = ["| top-1 at least | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
        for row in self.comparison:
            rows.append(f"| {100 * row['accuracy']:.2f}% | "
                        + " | ".join(_cell(row[n]) for n in names) + " |")
        return "\n".join(rows)


def _cell(value) -> str:
    """A comparison table's cell: bits (``unreached`` for None) or a name."""
    if isinstance(value, str):
        return value
    return "unreached" if value is None else f"{value:,.0f}"
