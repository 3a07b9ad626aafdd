"""What a link sweep returns: every point at every channel condition, the frontiers, and the comparison.

Per condition, each scheme's Pareto frontier of mean channel uses per image against top-1 is marked on
its points (the edge alone, 0 uses, is on every one), and the semantic frontier is compared with the best
image codec's at every image-codec frontier point (equal channel uses). Every point records the settings
that made it as fields, so nothing has to read a display label back into settings.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class LinkPoint:
    """One scheme setting at one gate threshold and channel condition.

    Attributes:
        scheme: codec pair name, ``webp``, ``jpeg`` or ``edge``.
        label: what was sent, e.g. ``spread-top-k 32 L3`` or ``webp-q40`` (for display and
            :meth:`LinkSweepResult.find`).
        gate: gate label (``none``: every image sent).
        condition: the channel condition (see :class:`~semcomm.experiments.link_sweep.LinkSweepConfig`).
        accuracy: top-1 over all images.
        offload_rate: fraction of images sent.
        channel_uses_per_image: mean channel uses over all images (0 for edge answers).
        bits_per_image: mean bits of all packets sent, over all images.
        packet_loss: fraction of sent packets lost or damaged.
        images_lost: fraction of sent images answered by the edge because too little arrived.
        frontier: on its scheme's accuracy / channel-use frontier at this condition.
        family: ``semantic`` (the codec pair), ``codec`` (an image codec) or ``reference`` (the edge alone).
        rule: the semantic codec's selection rule by its registered name (None for image codecs and the edge).
        budget: its patches per image.
        level: its quantizer level (every selected patch at this level); None under a level policy.
        policy: the level policy's label where one chose the levels (e.g. ``IAQ 600b``), else None.
        framing: how its strings crossed the link: ``packets`` or ``whole``.
        codec: the codec by its registered name (``latent-cifar10``, ``webp``, ``jpeg``); None for the edge.
        quality: an image codec's quality setting.
        gate_kind: the gate's uncertainty measure; None when every image is sent.
        threshold: the gate's threshold; None when every image is sent or none is (the edge alone).
        interval: the exact (Clopper-Pearson) 95% interval of ``accuracy`` over the images (a random channel's
            draws and the images both vary; paired comparisons of two points use the same images and draws).
    """

    scheme: str
    label: str
    gate: str
    condition: float
    accuracy: float
    offload_rate: float
    channel_uses_per_image: float
    bits_per_image: float
    packet_loss: float
    images_lost: float
    frontier: bool = False
    family: str = ""
    rule: str | None = None
    budget: int | None = None
    level: int | None = None
    policy: str | None = None
    framing: str | None = None
    codec: str | None = None
    quality: int | None = None
    gate_kind: str | None = None
    threshold: float | None = None
    interval: list[float] | None = None


@dataclass
class LinkSweepResult:
    """Plain data for notebooks: every point, and the equal-channel-use comparison per condition.

    ``notes``: what a reader should know about the gates (one sentence each; :mod:`semcomm.experiments.gates`).
    ``engine``: where the tasks ran (:meth:`TaskRun.metadata <semcomm.experiments.engines.TaskRun.metadata>`);
    ``device``: the torch device the edge model ran on.
    """

    dataset: str
    images: int
    link: str
    condition_name: str
    edge_accuracy: float
    points: list[LinkPoint] = field(default_factory=list)
    comparison: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    machine: str = ""
    notes: list[str] = field(default_factory=list)
    engine: dict = field(default_factory=dict)
    device: str = ""

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def from_json(cls, path: str | Path) -> "LinkSweepResult":
        data = json.loads(Path(path).read_text())
        data["points"] = [LinkPoint(**p) for p in data["points"]]
        return cls(**data)

    def find(self, label: str, condition: float, gate: str = "none") -> LinkPoint:
        """The point sent as ``label`` behind ``gate`` at ``condition`` (labels as in :attr:`LinkPoint.label`)."""
        for p in self.points:
            if p.label == label and p.gate == gate and p.condition == condition:
                return p
        raise KeyError(f"no point {label!r} with gate {gate!r} at condition {condition}")

    def frontier(self, scheme: str, condition: float) -> list[LinkPoint]:
        """Frontier points of ``scheme`` (the edge alone included) at ``condition``, by channel uses."""
        return sorted((p for p in self.points if p.frontier and p.condition == condition and p.scheme in (scheme, "edge")),
                      key=lambda p: p.channel_uses_per_image)

    def operating_point(self, condition: float, max_channel_uses: float = math.inf,
                        schemes: tuple[str, ...] | None = None) -> LinkPoint:
        """Rate control and a link-aware gate: the most accurate point at ``condition`` that spends at most
        ``max_channel_uses`` per image on average (the edge alone, 0 uses, when nothing else fits or helps).

        Choose on a calibration split, then read the same label, gate and condition from a sweep of the
        images it will serve (:meth:`find`): choosing on the images scored flatters the choice.

        Args:
            schemes: restrict to these schemes (e.g. the codec pair's name); the edge alone always qualifies.
        """
        if condition not in {p.condition for p in self.points}:
            raise ValueError(f"condition {condition!r} was not swept; swept: {sorted({p.condition for p in self.points})}")
        fits = [p for p in self.points if p.condition == condition and p.channel_uses_per_image <= max_channel_uses
                and (schemes is None or p.scheme in schemes or p.scheme == "edge")]
        return max(fits, key=lambda p: (p.accuracy, -p.channel_uses_per_image))

    def table(self) -> str:
        """Markdown: the semantic codec against the best image codec at equal channel uses, per condition."""
        rows = [f"| {self.condition_name} | image-codec frontier points | semantic >= image codec at each | "
                "worst margin (points) | at channel uses/image |", "|---:|---:|---|---:|---:|"]
        for c in self.comparison:
            rows.append(f"| {c['condition']:g} | {c['codec_points']} | {'yes' if c['holds'] else 'NO'} | "
                        f"{100 * c['worst_margin']:+.2f} | {c['worst_at_uses']:,.0f} |")
        return "\n".join(rows)


def mark_link_frontiers(points: list[LinkPoint]) -> None:
    """Per (condition, scheme): mark the points not beaten by one with no more channel uses and higher top-1."""
    edge = {p.condition: p for p in points if p.scheme == "edge"}
    for p in edge.values():
        p.frontier = True
    for condition, scheme in dict.fromkeys((p.condition, p.scheme) for p in points if p.scheme != "edge"):
        members = sorted([p for p in points if (p.condition, p.scheme) == (condition, scheme)],
                         key=lambda p: (p.channel_uses_per_image, -p.accuracy))
        best = edge[condition].accuracy
        for p in members:
            if p.accuracy > best:
                p.frontier, best = True, p.accuracy


def compare_at(result: LinkSweepResult, semantic: str | tuple[str, ...], condition: float) -> dict:
    """At each image-codec frontier point, the semantic frontier's accuracy with no more channel uses, minus its
    (``semantic``: the scheme, or schemes whose frontiers are joined, e.g. the digital pair and a JSCC pair).

    Returns:
        ``{"condition", "codec_points", "holds", "worst_margin", "worst_at_uses"}``: the number of image-codec
        frontier points, whether the semantic frontier is at or above every one, the smallest margin (top-1
        as a fraction) and the channel uses per image where it occurs.
    """
    codec_points = [p for p in result.points if p.frontier and p.condition == condition and p.family == "codec"]
    ours = [p for scheme in ((semantic,) if isinstance(semantic, str) else semantic)
            for p in result.frontier(scheme, condition)]
    worst, at = math.inf, 0.0
    for p in codec_points:
        best = max((q.accuracy for q in ours if q.channel_uses_per_image <= p.channel_uses_per_image + 1e-9),
                   default=result.edge_accuracy)
        if best - p.accuracy < worst:
            worst, at = best - p.accuracy, p.channel_uses_per_image
    if not codec_points:
        worst = 0.0
    return dict(condition=condition, codec_points=len(codec_points), holds=worst >= 0, worst_margin=worst,
                worst_at_uses=at)
