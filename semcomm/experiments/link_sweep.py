"""Accuracy against link quality and channel uses: the semantic codec and image codecs over one link.

For every scheme setting, every image is encoded once (as if offloaded) and
carried over the link at each channel condition (:class:`LinkSpec`); what
arrives is classified (edge hint fused, lost images answered by the edge).
A gate threshold then only decides which images use that outcome and cost
their channel uses, and which keep the edge's answer (0 uses): one link pass
per (setting, condition) serves every threshold, exactly as in the
link-less :class:`~semcomm.sweep.Sweep` (over the ``ideal`` link the
accuracies equal the link-less sweep's with fusion; tested).

Schemes:

* the semantic codec (a codec pair) at each selection setting and framing:
  ``packets``, independently decodable packets with a protected header
  (:class:`~semcomm.transport.Packetizer`), or ``whole``, the string as one
  packet like an image codec's file (:class:`~semcomm.transport.WholeString`);
  both are points of the codec's frontier, labelled by framing;
* image codecs (WebP, JPEG) of whole images: the edge hint and the file as
  one packet spanning as many link blocks as it needs; it arrives whole or
  is lost (then the edge answers);
* the edge alone (0 channel uses).

Per condition, each scheme's Pareto frontier of mean channel uses per image
against top-1 is kept, and the semantic frontier is compared with the best
image codec's at every image-codec frontier point (equal channel uses).

The server classifies each setting's strings once as sent; at every condition only
the images that arrived damaged or in part are classified again (exact: an intact
arrival is the sent string).

A run can resume: every finished (setting, condition) is saved in
``state_path`` with the configuration it belongs to.
"""
from __future__ import annotations

import hashlib
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from semcomm.rate.image_codecs import ImageCodec, standard_codecs
from semcomm.data import ImageSplit
from semcomm.edge.gating import Gate
from semcomm.inference import predict_logits
from semcomm.wire.bits import BitWriter
from semcomm.rate.hint import fuse
from semcomm.rate.policies import FixedLevel
from semcomm.edge.selection import SpreadTopK, TopK
from semcomm.experiments.sweep import DEFAULT_THRESHOLDS, Sweep, SweepConfig
from semcomm.transport.links import LinkSpec
from semcomm.wire.packets import Packetizer, WholeString
from semcomm.transport.over_link import over_link


FRAMINGS = ("packets", "whole")
_SEMANTIC = {"packets": "semantic", "whole": "semantic-whole"}  # unit kinds of the two framings


@dataclass
class LinkSweepConfig:
    """The grid: link x conditions x (selection settings, image codecs) x gate thresholds.

    Attributes:
        link: the link (channel, modulation, code).
        conditions: channel conditions (Es/N0 in dB on SNR channels, a probability on
            ``bsc`` / ``bec`` / ``gilbert-elliott``; one value for ``ideal``).
        settings: (rule, patches, level) of the semantic codec; rule ``spread-top-k`` or ``top-k``.
        thresholds: min-entropy gate thresholds; the edge alone is always a point.
        codecs: whole-image codecs (default WebP 10/40/75 and JPEG 50).
        framings: how the semantic codec's strings are framed: ``packets`` and/or ``whole``.
        packet_bytes: data packet size (``packets`` framing); default one link block's payload.
        header_copies: copies of each image's header packet.
        min_arrived: share of an image's sent patches that must arrive for the server to answer
            (else the edge does; see :func:`~semcomm.transport.over_link`). Half is the default:
            measured at the cliff, it gains 0.4 to 1.1 points over 0 and costs nothing above it.
    """

    link: LinkSpec = field(default_factory=LinkSpec)
    conditions: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 10.0)
    edge: str = "vit-edge-cifar10"
    server: str = "vit-server-cifar10"
    codec: str = "latent-cifar10"
    settings: tuple[tuple[str, int, int], ...] = (("spread-top-k", 16, 3), ("spread-top-k", 32, 3),
                                                  ("spread-top-k", 64, 3), ("spread-top-k", 64, 4))
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    codecs: tuple[ImageCodec, ...] = field(default_factory=lambda: tuple(standard_codecs()))
    framings: tuple[str, ...] = FRAMINGS
    packet_bytes: int | None = None
    header_copies: int = 2
    min_arrived: float = 0.5
    seed: int = 0

    def __post_init__(self):
        if not self.conditions:
            raise ValueError("give at least one channel condition")
        for rule, k, level in self.settings:
            if rule not in ("spread-top-k", "top-k"):
                raise ValueError(f"unknown selection rule {rule!r} in settings; choose spread-top-k or top-k")
        if not self.framings or set(self.framings) - set(FRAMINGS):
            raise ValueError(f"framings must be some of {', '.join(FRAMINGS)}, got {self.framings!r}")
        for name in ("header_copies",) + (("packet_bytes",) if self.packet_bytes is not None else ()):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= self.min_arrived <= 1:
            raise ValueError(f"min_arrived must be a share in [0, 1], got {self.min_arrived!r}")
        for condition in self.conditions:
            self.link.transport(condition)  # names a bad SNR or probability before anything runs

    def key(self, split: ImageSplit) -> str:
        """Identifies the configuration and the images (for resuming)."""
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode())
        digest.update(split.images.numpy().tobytes())
        return digest.hexdigest()[:24]


@dataclass
class LinkPoint:
    """One scheme setting at one gate threshold and channel condition.

    Attributes:
        scheme: codec pair name, ``webp``, ``jpeg`` or ``edge``.
        label: what was sent, e.g. ``spread-top-k 32 L3`` or ``webp-q40``.
        gate: gate label (``none``: every image sent).
        condition: the channel condition (see :class:`LinkSweepConfig`).
        accuracy: top-1 over all images.
        offload_rate: fraction of images sent.
        channel_uses_per_image: mean channel uses over all images (0 for edge answers).
        bits_per_image: mean bits of all packets sent, over all images.
        packet_loss: fraction of sent packets lost or damaged.
        images_lost: fraction of sent images answered by the edge because too little arrived.
        frontier: on its scheme's accuracy / channel-use frontier at this condition.
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


@dataclass
class LinkSweepResult:
    """Plain data for notebooks: every point, and the equal-channel-use comparison per condition."""

    dataset: str
    images: int
    link: str
    condition_name: str
    edge_accuracy: float
    points: list[LinkPoint] = field(default_factory=list)
    comparison: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    machine: str = ""

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def from_json(cls, path: str | Path) -> "LinkSweepResult":
        data = json.loads(Path(path).read_text())
        data["points"] = [LinkPoint(**p) for p in data["points"]]
        return cls(**data)

    def find(self, label: str, condition: float, gate: str = "none") -> LinkPoint:
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


class LinkSweep:
    """Runs a :class:`LinkSweepConfig` on one data split."""

    def __init__(self, config: LinkSweepConfig, progress: bool = True, sweep: Sweep | None = None):
        self.config = config
        self.progress = progress
        self.sweep = sweep or Sweep(SweepConfig(edge=config.edge, server=config.server, codec=config.codec,
                                                codecs=(), fusion=True), progress=progress)
        self.codec = self.sweep.codec
        if self.codec is None or self.sweep.hint is None:
            raise ValueError("the link sweep needs a codec pair and the edge's hint coder")
        self.codec.hint_coder = self.sweep.hint

    def run(self, split: ImageSplit, state_path: str | Path | None = None) -> LinkSweepResult:
        started = time.time()
        cfg, labels = self.config, split.labels
        analysis = self.sweep.edge_analysis(split)
        edge_correct = analysis.logits.argmax(-1) == labels
        state = _load_state(state_path, cfg.key(split))
        units = ([(_SEMANTIC[f], s) for f in cfg.framings for s in cfg.settings]
                 + [("codec", c) for c in cfg.codecs])
        for kind, setting in tqdm(units, desc="link sweep", disable=not self.progress):
            todo = [c for c in cfg.conditions if _unit_key(kind, setting, c) not in state["outcomes"]]
            if not todo:
                continue
            outcomes = (self._image_codec(split, analysis, setting, todo) if kind == "codec"
                        else self._semantic(split, analysis, setting, todo, whole=kind == _SEMANTIC["whole"]))
            for condition, outcome in zip(todo, outcomes):
                state["outcomes"][_unit_key(kind, setting, condition)] = outcome
            _save_state(state_path, state)
        result = LinkSweepResult(split.name, len(split), cfg.link.label, cfg.link.condition_name,
                                 float(edge_correct.float().mean()),
                                 machine=f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}")
        gates = [None] + [Gate("min_entropy", t) for t in cfg.thresholds]
        offloads = [torch.ones(len(labels), dtype=torch.bool) if g is None else g.offload(analysis.logits) for g in gates]
        for condition in cfg.conditions:
            result.points.append(LinkPoint("edge", "edge alone", "min_entropy inf", condition,
                                           float(edge_correct.float().mean()), 0.0, 0.0, 0.0, 0.0, 0.0))
            for kind, setting in units:
                outcome = state["outcomes"][_unit_key(kind, setting, condition)]
                for gate, offload in zip(gates, offloads):
                    result.points.append(_point(outcome, offload, edge_correct, condition,
                                                "none" if gate is None else gate.label))
        _mark_frontiers(result.points)
        result.comparison = [_compare(result, self.codec.name, c) for c in cfg.conditions]
        result.seconds = time.time() - started
        return result

    def _semantic(self, split, analysis, setting, conditions, whole: bool) -> list[dict]:
        cfg = self.config
        rule_name, k, level = setting
        rule = (SpreadTopK if rule_name == "spread-top-k" else TopK)(k)
        encoder = self.sweep.encoder
        encoder.policy, encoder.hint = FixedLevel(level), self.sweep.hint
        importance = analysis.importance[self.sweep.config.importance]
        mask = rule(importance, self.sweep.edge.grid_size, torch.Generator().manual_seed(cfg.seed))
        sent = encoder.transmit(split.images, analysis.logits, mask, importance, analysis.hidden)
        label = f"{rule.label} L{level}" + (" whole" if whole else "")
        offloaded = sent.offloaded.nonzero().flatten().tolist()
        intact_logits = torch.full((len(sent.strings), self.codec.num_classes), float("nan"))
        intact_logits[offloaded] = self.codec.classify([self.codec.decode(sent.strings[i]) for i in offloaded])
        outcomes = []
        for condition in conditions:
            transport, snr = cfg.link.transport(condition)
            packet_bytes = cfg.packet_bytes or transport.link.payload_bits // 8
            packetizer = (WholeString(self.codec) if whole
                          else Packetizer(self.codec, packet_bytes=packet_bytes, header_copies=cfg.header_copies))
            out = over_link(sent, self.codec, packetizer, transport, snr_db=snr,
                            generator=torch.Generator().manual_seed(cfg.seed), min_arrived=cfg.min_arrived,
                            intact_logits=intact_logits)
            outcomes.append(dict(scheme=self.codec.name, label=label, correct=(out.predictions == split.labels).tolist(),
                                 uses=out.channel_uses.tolist(), bits=out.link_bits.tolist(),
                                 packets_lost=out.packets_lost, packets_sent=out.packets_sent,
                                 lost=out.lost.tolist()))
        return outcomes

    def _image_codec(self, split, analysis, codec: ImageCodec, conditions) -> list[dict]:
        cfg, hint = self.config, self.sweep.hint
        symbols = hint.symbols(analysis.logits)
        files, logits = [], []
        for start in range(0, len(split), 256):
            part = codec.compress(split.images[start : start + 256])
            files.extend(part)
            decoded = codec.decompress(part)
            logits.append(predict_logits(self.sweep.server, decoded, bf16=self.sweep.config.server_bf16))
        fused = fuse(torch.cat(logits), hint.log_probs(symbols))
        server_correct = fused.argmax(-1) == split.labels
        edge_correct = analysis.logits.argmax(-1) == split.labels
        packets = [[_hint_bytes(hint, symbols[i]) + f] for i, f in enumerate(files)]
        outcomes = []
        for condition in conditions:
            transport, snr = cfg.link.transport(condition)
            delivery = transport.send(packets, snr_db=snr, generator=torch.Generator().manual_seed(cfg.seed))
            arrived = torch.tensor([got[0] == sent[0] for got, sent in zip(delivery.packets, packets)])
            # a packet that passed the link's CRCs with wrong bytes (an undetected error) is dropped here too
            correct = torch.where(arrived, server_correct, edge_correct)
            outcomes.append(dict(scheme=codec.format, label=codec.name, correct=correct.tolist(),
                                 uses=delivery.channel_uses.tolist(), bits=[8 * len(p[0]) for p in packets],
                                 packets_lost=int((~arrived).sum()), packets_sent=len(packets),
                                 lost=(~arrived).tolist()))
        return outcomes


def _hint_bytes(hint, row: torch.Tensor) -> bytes:
    writer = BitWriter()
    hint.write(writer, row)
    return writer.to_bytes()


def _unit_key(kind: str, setting, condition: float) -> str:
    name = setting.name if isinstance(setting, ImageCodec) else " ".join(map(str, setting))
    return f"{kind}|{name}|{condition!r}"


def _point(outcome: dict, offload: torch.Tensor, edge_correct: torch.Tensor, condition: float, gate: str) -> LinkPoint:
    correct = torch.where(offload, torch.tensor(outcome["correct"]), edge_correct)
    uses = torch.where(offload, torch.tensor(outcome["uses"], dtype=torch.float64), 0.0)
    bits = torch.where(offload, torch.tensor(outcome["bits"], dtype=torch.float64), 0.0)
    lost = torch.tensor(outcome["lost"]) & offload
    sent = int(offload.sum())
    loss = outcome["packets_lost"] / outcome["packets_sent"] if outcome["packets_sent"] else 0.0
    return LinkPoint(outcome["scheme"], outcome["label"], gate, condition, float(correct.float().mean()),
                     sent / len(offload), float(uses.mean()), float(bits.mean()), loss,
                     float(lost.sum()) / sent if sent else 0.0)


def _mark_frontiers(points: list[LinkPoint]) -> None:
    """Per (condition, scheme): points not beaten by one with no more channel uses and higher top-1."""
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


def _compare(result: LinkSweepResult, semantic: str, condition: float) -> dict:
    """At each image-codec frontier point, the semantic frontier's accuracy with no more channel uses, minus its."""
    codec_points = [p for p in result.points if p.frontier and p.condition == condition and p.scheme in ("webp", "jpeg")]
    ours = result.frontier(semantic, condition)
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


def _load_state(path, key: str) -> dict:
    if path is not None and Path(path).is_file():
        state = torch.load(path, weights_only=False)
        if state.get("key") == key:
            return state
    return dict(key=key, outcomes={})


def _save_state(path, state: dict) -> None:
    if path is None:
        return
    tmp = Path(path).with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
