"""Bitrate-accuracy sweep: the semantic codec against its references, on real data, with frontiers.

One edge pass (cached on disk) gives every image's edge logits, patch
importance and, for a latent codec, the edge tokens it codes. For each
setting (selection rule x budget x level policy) every image is packed into
its real byte string and classified by the server from the decoded string;
a gate threshold then only decides which images use the server's answer (and
cost their bits) and which the edge's (0 bits). So one server pass per
setting serves every gate threshold, with and without fusion: fusion adds
the edge's prediction to every string (its bits counted) and the server
fuses it with its own.

Schemes (each traced over every gate threshold, with and without fusion):

* the semantic codec: a codec pair (format version 2) or, with ``codec=None``,
  raw 8-bit patches (format version 1), for each selection setting, and its
  equal-budget random twin (same images, same patch count and policy,
  patches drawn at random);
* image codecs (WebP, JPEG) of whole images, the server on the decoded image;
* references: the edge alone, the server on every patch of every image.

Each scheme's Pareto frontier (mean bits per image against top-1) is
computed over all its points, the edge alone (0 bits) included, and the
semantic frontier is compared with the best image-codec frontier at every
accuracy from the edge's + 1 point up to the server's full-image accuracy.
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
from scipy.stats import binom
from tqdm.auto import tqdm

from semcomm.rate.image_codecs import ImageCodec, standard_codecs
from semcomm.edge.encoder import EdgeAnalysis, EdgeEncoder
from semcomm.server.decoder import ServerDecoder
from semcomm.data import ImageSplit
from semcomm.core.paths import default_cache_dir
from semcomm.edge.gating import Gate
from semcomm.inference import predict_logits
from semcomm.models import ViTAdapter, create_model, list_checkpoints
from semcomm.rate import create_codec
from semcomm.rate.hint import HintCoder, fuse
from semcomm.rate.pair import CodecPair
from semcomm.rate.policies import FixedLevel, LevelPolicy
from semcomm.rate.zoo import load_hint
from semcomm.edge.selection import AttentionSum, SelectionRule, SpreadTopK, Threshold, TopK, random_like

IMPORTANCE_METHODS = ("mean", "mean_layers", "rollout")
DEFAULT_THRESHOLDS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0)
REFERENCE_GATE = 0.8  # the methods paper's default min-entropy threshold


@dataclass
class OperatingPoint:
    """One row of the sweep.

    Attributes:
        family: ``semantic`` (attention rule), ``random`` (its equal-budget
            random twin), ``reference`` (edge alone, server on full images,
            paper default) or ``codec`` (JPEG / WebP of whole images).
        label: what was sent, e.g. ``spread-top-k 16 L2`` or ``webp-q20``.
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


@dataclass
class Frontier:
    """The Pareto frontier of one scheme: points ordered by bits, each more accurate than all cheaper ones."""

    scheme: str
    fusion: bool
    points: list[dict] = field(default_factory=list)  # bits_per_image, accuracy, label, gate

    def bits_for(self, accuracy: float) -> float:
        """Fewest mean bits per image of a frontier point reaching ``accuracy`` (inf if none does)."""
        return min((p["bits_per_image"] for p in self.points if p["accuracy"] >= accuracy - 1e-12), default=math.inf)

    @property
    def name(self) -> str:
        return f"{self.scheme}{' + fusion' if self.fusion else ''}"


@dataclass
class SweepResult:
    """Everything a notebook needs to plot or test a sweep."""

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

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def from_json(cls, path: str | Path) -> "SweepResult":
        data = json.loads(Path(path).read_text())
        data["points"] = [OperatingPoint(**p) for p in data["points"]]
        data["frontiers"] = [Frontier(**f) for f in data.get("frontiers", [])]
        return cls(**data)

    def find(self, label: str, gate: str = "none", fusion: bool = False) -> OperatingPoint:
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
        return self.find("edge alone", "min_entropy inf").accuracy

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
                        + " | ".join("unreached" if row[n] is None else f"{row[n]:,.0f}" for n in names) + " |")
        return "\n".join(rows)


@dataclass
class SweepConfig:
    """The grid: selection settings x level policies x gate thresholds, plus the references.

    The edge runs in fp32 (its numbers match its model card); servers, which
    run once per setting and codec, in bf16 autocast by default
    (``server_bf16=False`` for fp32).

    Attributes:
        codec: the semantic codec pair (``semcomm.rate.list_codecs()``), or
            None for raw 8-bit patches (format version 1).
        rules, budgets: fixed-budget selection rules, each at every budget
            (patches per image); ``threshold`` and ``attention-sum`` in
            ``rules`` run once each (at ``importance_threshold`` and 0.97).
        levels: a :class:`~semcomm.rate.policies.FixedLevel` per entry (codec pairs only), with every
            rule and budget.
        policies: further level policies (e.g. :class:`~semcomm.rate.policies.IAQ`), each with the
            first fixed-budget rule at every budget of ``policy_budgets`` (default 64: IAQ chooses
            among all patches).
        thresholds: gate thresholds (``gate_kind``); the edge alone (inf) is always added.
        fusion: also report every point with the edge's prediction sent and fused.
        twins: an equal-budget random twin for every attention setting.
        codecs: whole-image reference codecs.
        full_images: the server on every patch of every image (raw 8-bit) as a reference.
    """

    edge: str = "vit-edge-cifar10"
    server: str = "vit-server-cifar10"
    importance: str = "mean"
    codec: str | None = "latent-cifar10"
    rules: tuple[str, ...] = ("spread-top-k",)
    budgets: tuple[int, ...] = (16, 32, 64)
    levels: tuple[int, ...] = (3,)
    policies: tuple[LevelPolicy, ...] = (FixedLevel(4),)
    policy_budgets: tuple[int, ...] = (64,)
    gate_kind: str = "min_entropy"
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    importance_threshold: float = 1 / 64
    fusion: bool = True
    twins: bool = True
    codecs: tuple[ImageCodec, ...] = field(default_factory=lambda: tuple(standard_codecs()))  # WebP 10/40/75, JPEG 50
    full_images: bool = True
    seed: int = 0
    edge_bf16: bool = False
    server_bf16: bool = True

    def selections(self) -> list[SelectionRule]:
        makers = {"top-k": TopK, "spread-top-k": SpreadTopK}
        singles = {"threshold": lambda: Threshold(round(self.importance_threshold, 4)),
                   "attention-sum": lambda: AttentionSum(0.97)}
        unknown = set(self.rules) - set(makers) - set(singles)
        if unknown:
            raise ValueError(f"unknown selection rules {sorted(unknown)}; choose from {sorted([*makers, *singles])}")
        return ([makers[r](k) for r in self.rules if r in makers for k in self.budgets]
                + [singles[r]() for r in self.rules if r in singles])

    def settings(self) -> list[tuple[SelectionRule, LevelPolicy | None]]:
        """Every (selection rule, level policy) pair the sweep runs."""
        if self.codec is None:
            return [(rule, None) for rule in self.selections()]
        fixed = [(rule, FixedLevel(m)) for rule in self.selections() for m in self.levels]
        first = [r for r in self.rules if r in ("spread-top-k", "top-k")][:1]
        budgets = SweepConfig(rules=tuple(first), budgets=self.policy_budgets).selections() if self.policies else []
        return fixed + [(rule, policy) for rule in budgets for policy in self.policies]


class Sweep:
    """Runs a :class:`SweepConfig` on one data split."""

    def __init__(self, config: SweepConfig, edge: ViTAdapter | None = None, server: ViTAdapter | None = None,
                 cache_dir: Path | None = None, progress: bool = True, codec: CodecPair | None = None,
                 hint: HintCoder | None = None):
        self.config = config
        # the edge pass is cached only for zoo weights, which identify the model
        zoo = {card.name: card for card in list_checkpoints()}
        self._edge_weights = zoo[config.edge].weights_path if edge is None and config.edge in zoo else None
        self.edge = edge or create_model(config.edge)
        self.server = server or create_model(config.server)
        if self.edge.image_size != self.server.image_size or self.edge.patch_size != self.server.patch_size:
            raise ValueError(f"edge ({self.edge.image_size}, patch {self.edge.patch_size}) and server "
                             f"({self.server.image_size}, patch {self.server.patch_size}) must share the patch grid")
        self.codec = codec or (create_codec(config.codec, hint=False) if config.codec else None)
        self.hint = hint or (load_hint(config.edge) if config.fusion else None)
        if self.codec is not None:
            self.codec.bf16 = config.server_bf16
            self.codec.hint_coder = self.hint
        self.encoder = EdgeEncoder(self.edge, selection=TopK(1), gate=None, importance=config.importance,
                                   bf16=config.edge_bf16, codec=self.codec)
        self.raw_encoder = EdgeEncoder(self.edge, selection=TopK(1), gate=None, bf16=config.edge_bf16)
        self.decoder = ServerDecoder(self.server, bf16=config.server_bf16, codec=self.codec)
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir() / "edge"
        self.progress = progress

    def run(self, split: ImageSplit) -> SweepResult:
        started = time.time()
        cfg = self.config
        images, labels = split.images, split.labels
        analysis = self.edge_analysis(split)
        edge_correct = analysis.logits.argmax(-1) == labels
        edge_log_probs = None
        hint_bits = torch.zeros(len(labels))
        if self.hint is not None:
            symbols = self.hint.symbols(analysis.logits)
            edge_log_probs, hint_bits = self.hint.log_probs(symbols), self.hint.bits(symbols).float()
        h, w = self.edge.image_size
        scheme = self.codec.name if self.codec is not None else "raw8"
        result = SweepResult(split.name, len(split), cfg.edge, cfg.server, cfg.importance, raw_bits_per_image=3 * h * w * 8,
                             machine=f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
                             codec=cfg.codec)
        gates = [Gate(cfg.gate_kind, t) for t in cfg.thresholds]
        generator = torch.Generator().manual_seed(cfg.seed)

        def add(family, scheme_name, label, outcome, gate_list, curve="", budget=None, random_outcome=None):
            """Points of one setting at every gate, without and (if measured) with fusion."""
            for fused in (False, True) if outcome.get("fused_correct") is not None else (False,):
                correct = outcome["fused_correct" if fused else "correct"]
                bits = outcome["fused_bits" if fused else "bits"]
                for gate in gate_list:
                    offload = gate.offload(analysis.logits) if gate is not None else torch.ones(len(labels), dtype=torch.bool)
                    point = _point(family, label, gate, offload, edge_correct, correct, bits, outcome["patches"],
                                   result.raw_bits_per_image)
                    point.curve, point.budget, point.scheme, point.fusion = curve or label, budget, scheme_name, fused
                    if random_outcome is not None:  # images kept at the edge are answered alike by both
                        twin = random_outcome["fused_correct" if fused else "correct"]
                        point.vs_random = paired_comparison(correct[offload], twin[offload])
                    result.points.append(point)

        result.points.extend(
            _tagged(_point("reference", "edge alone", Gate(cfg.gate_kind, math.inf), torch.zeros(len(labels), dtype=torch.bool),
                           edge_correct, edge_correct, torch.zeros(len(labels)), torch.zeros(len(labels)),
                           result.raw_bits_per_image), scheme="edge", fusion=fused)
            for fused in ((False, True) if self.hint is not None else (False,)))
        importance = analysis.importance[cfg.importance]
        grid = self.edge.grid_size
        if cfg.full_images:
            full = torch.ones(len(labels), self.edge.num_patches, dtype=torch.bool)
            outcome = self._raw_outcome(images, labels, analysis, full, edge_log_probs, hint_bits)
            add("reference", "raw8", "full images", outcome, [None, *gates], curve="full images")
        for rule, policy in tqdm(cfg.settings(), desc="semantic settings", disable=not self.progress):
            mask = rule(importance, grid, generator)
            name, budget = rule.label.rsplit(" ", 1)[0], getattr(rule, "k", None)
            suffix = f" {policy.label}" if policy is not None else ""
            outcome = self._outcome(images, labels, analysis, mask, policy, edge_log_probs, hint_bits)
            twin_outcome = None
            if cfg.twins and not mask.all():  # a twin of "every patch" would be the same strings
                twin = random_like(mask, generator)
                twin_outcome = self._outcome(images, labels, analysis, twin, policy, edge_log_probs, hint_bits)
            add("semantic", scheme, rule.label + suffix, outcome, [None, *gates], name + suffix, budget, twin_outcome)
            if twin_outcome is not None:
                add("random", f"random {scheme}", f"random (as {rule.label}{suffix})", twin_outcome, [None, *gates],
                    f"random as {name}{suffix}", budget)
        for codec in tqdm(cfg.codecs, desc="image codecs", disable=not self.progress):
            decoded, bits = codec.roundtrip(images)
            logits = predict_logits(self.server, decoded, bf16=cfg.server_bf16)
            outcome = self._logit_outcome(logits, labels, bits.float(), torch.full((len(labels),), math.nan),
                                          edge_log_probs, hint_bits, container=True)
            add("codec", codec.format, codec.name, outcome, [None, *gates], curve=codec.format)
        result.frontiers = pareto_frontiers(result.points)
        for f in result.frontiers:
            for p in result.points:
                if p.scheme in (f.scheme, "edge") and p.fusion == f.fusion and any(
                        q["label"] == p.label and q["gate"] == p.gate for q in f.points):
                    p.frontier = True
        result.comparison = compare_frontiers(result)
        result.seconds = time.time() - started
        return result

    def _outcome(self, images, labels, analysis: EdgeAnalysis, mask, policy, edge_log_probs, hint_bits) -> dict:
        """Correctness, bits and patch counts of every image sent with ``mask`` (and ``policy``)."""
        if self.codec is None:
            return self._raw_outcome(images, labels, analysis, mask, edge_log_probs, hint_bits)
        encoder = self.encoder
        encoder.policy, encoder.hint = policy, None
        plain = encoder.transmit(images, analysis.logits, mask, analysis.importance[self.config.importance],
                                 analysis.hidden)
        logits = self.decoder.classify(plain.strings)
        outcome = self._logit_outcome(logits, labels, plain.bits.float(), (plain.level > 0).sum(1).float(),
                                      edge_log_probs, None)
        if edge_log_probs is not None:  # the same strings with the edge's prediction in them: exact bits
            symbols = self.hint.symbols(analysis.logits)
            outcome["fused_bits"] = torch.tensor([8 * len(self.codec.with_hint(s, symbols[i]))
                                                  for i, s in enumerate(plain.strings)], dtype=torch.float32)
        return outcome

    def _raw_outcome(self, images, labels, analysis, mask, edge_log_probs, hint_bits) -> dict:
        transmission = self.raw_encoder.transmit(images, analysis.logits, mask)
        logits = self.decoder.classify(transmission.strings)
        return self._logit_outcome(logits, labels, transmission.bits.float(), mask.sum(1).float(), edge_log_probs,
                                   hint_bits, container=True)

    @staticmethod
    def _logit_outcome(logits, labels, bits, patches, edge_log_probs, hint_bits, container=False) -> dict:
        """Correctness and bits, plus the fused variant when the edge's prediction is available.

        ``container``: the strings have no hint field of their own, so fusion
        prepends the hint's bits, padded to a whole byte, to each string.
        """
        outcome = dict(correct=logits.argmax(-1) == labels, bits=bits, patches=patches, fused_correct=None)
        if edge_log_probs is not None:
            outcome["fused_correct"] = fuse(logits, edge_log_probs).argmax(-1) == labels
            if container:
                outcome["fused_bits"] = bits + 8 * torch.ceil(hint_bits / 8)
        return outcome

    def edge_analysis(self, split: ImageSplit) -> EdgeAnalysis:
        """Edge logits, importance (all methods) and the codec's edge tokens for ``split``, cached by weights and data."""
        encoder = self.encoder
        path = None
        if self._edge_weights is not None:
            key = hashlib.sha256(self._edge_weights.read_bytes())
            key.update(split.images.numpy().tobytes())
            key.update(str(self.config.edge_bf16).encode())
            tap = None if self.codec is None else self.codec.tap
            key.update(f"tap {tap}".encode())
            path = self.cache_dir / f"{self.config.edge}-{key.hexdigest()[:20]}.pt"
            if path.exists():
                data = torch.load(path)
                return EdgeAnalysis(data["logits"], data["importance"], data.get("hidden"))
        analysis = encoder.analyze(split.images, IMPORTANCE_METHODS, desc="edge pass" if self.progress else None)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(dict(logits=analysis.logits, importance=analysis.importance, hidden=analysis.hidden), path)
        return analysis


def _tagged(point: OperatingPoint, **fields) -> OperatingPoint:
    for key, value in fields.items():
        setattr(point, key, value)
    return point


def pareto_frontiers(points: list[OperatingPoint]) -> list[Frontier]:
    """Per (scheme, fusion): the points not beaten by a point with no more bits and higher top-1.

    The edge alone (0 bits) is every scheme's cheapest point: any scheme can
    keep every image at the edge.
    """
    edge = {p.fusion: p for p in points if p.scheme == "edge"}
    frontiers = []
    for key in dict.fromkeys((p.scheme, p.fusion) for p in points if p.scheme != "edge"):
        members = [p for p in points if (p.scheme, p.fusion) == key]
        if key[1] in edge:
            members.append(edge[key[1]])
        members.sort(key=lambda p: (p.bits_per_image, -p.accuracy))
        front, best = [], -1.0
        for p in members:
            if p.accuracy > best:
                front.append(dict(bits_per_image=p.bits_per_image, accuracy=p.accuracy, label=p.label, gate=p.gate))
                best = p.accuracy
        frontiers.append(Frontier(key[0], key[1], front))
    return frontiers


def compare_frontiers(result: SweepResult, step: float = 0.0025) -> list[dict]:
    """Bits each frontier needs (None: never) at each accuracy from the edge's + 1 point to the server's
    full-image accuracy.

    Compares, with and without fusion, the semantic scheme with the image
    codecs; accuracies every ``step``.
    """
    try:
        top = result.find("full images").accuracy
    except KeyError:
        return []
    low = result.edge_accuracy + 0.01
    names = [f for f in result.frontiers if not f.scheme.startswith("random") and f.scheme != "raw8"]

    def row(target):  # None where a frontier never reaches the accuracy (JSON has no infinity)
        return dict(accuracy=target, **{f.name: None if math.isinf(b := f.bits_for(target)) else b for f in names})

    rows = []
    target = low
    while target <= top + 1e-9:
        rows.append(row(round(target, 6)))
        target += step
    if rows and abs(rows[-1]["accuracy"] - top) > 1e-9:
        rows.append(row(top))
    return rows


def paired_comparison(rule_correct: torch.Tensor, random_correct: torch.Tensor) -> dict:
    """Images only one of two classifiers gets right, and McNemar's exact two-sided p-value."""
    only_rule = int((rule_correct & ~random_correct).sum())
    only_random = int((random_correct & ~rule_correct).sum())
    n = only_rule + only_random
    p_value = 1.0 if n == 0 else float(min(1.0, 2 * binom.cdf(min(only_rule, only_random), n, 0.5)))
    return dict(only_rule=only_rule, only_random=only_random, p_value=p_value)


def _point(family, label, gate, offload, edge_correct, server_correct, bits, patches, raw_bits) -> OperatingPoint:
    correct = torch.where(offload, server_correct, edge_correct)
    sent_bits = torch.where(offload, bits, torch.zeros_like(bits))
    n_sent = int(offload.sum())
    return OperatingPoint(
        family=family,
        label=label,
        gate=gate.label if gate is not None else "none",
        accuracy=float(correct.float().mean()),
        offload_rate=n_sent / len(offload),
        bits_per_image=float(sent_bits.mean()),
        bits_per_offloaded=float(bits[offload].mean()) if n_sent else math.nan,
        raw_fraction=float(sent_bits.mean()) / raw_bits,
        patches_per_offloaded=float(patches[offload].float().mean()) if n_sent else math.nan,
    )
