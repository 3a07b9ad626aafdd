"""Bitrate-accuracy sweep: the semantic codec against its references, on real data.

One edge pass (cached on disk) gives every image's edge logits and patch
importance. For each selection setting, every image is packed into its real
byte string and classified by the server from the decoded string; a gate
threshold then only decides which images use the server's answer (and cost
their bits) and which the edge's (0 bits). So one server pass per selection
setting serves every gate threshold.

Every attention rule is paired with random selection keeping exactly as many
patches in every image (identical bits), and the table carries, from the
same run: edge alone, server on full images, the methods paper's default
point (attention-sum 0.97, min-entropy 0.8), and JPEG / WebP files of whole
images, sent always or behind the same gate.
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

from .baselines import ImageCodec, standard_codecs
from .codec import EdgeAnalysis, EdgeEncoder, ServerDecoder
from .data import ImageSplit, default_cache_dir
from .gating import Gate
from .inference import predict_logits
from .models import ViTAdapter, create_model, list_checkpoints
from .selection import AttentionSum, SelectionRule, SpreadTopK, Threshold, TopK, random_like

IMPORTANCE_METHODS = ("mean", "mean_layers", "rollout")


@dataclass
class OperatingPoint:
    """One row of the sweep table.

    Attributes:
        family: ``semantic`` (attention rule), ``random`` (its equal-bit random
            twin), ``reference`` (edge alone, server on full images, paper
            default) or ``codec`` (JPEG / WebP of whole images).
        label: what was sent, e.g. ``spread-top-k 16`` or ``webp-q20``.
        gate: gate label, ``none`` when every image is sent.
        accuracy: top-1 over all images (edge answers included).
        offload_rate: fraction of images sent to the server.
        bits_per_image: mean bits on the wire over all images (0 for edge answers).
        bits_per_offloaded: mean bits per sent image (NaN if none).
        raw_fraction: bits_per_image / bits of an uncompressed 8-bit image.
        patches_per_offloaded: mean patches per sent image (NaN for codecs).
        curve: points of one curve share it, e.g. ``top-k``, ``random as top-k``, ``webp``.
        budget: patches per image of a fixed-budget rule (None otherwise).
        vs_random: for an attention rule, the paired comparison with its
            equal-bit random twin on the same images: ``only_rule`` and
            ``only_random`` count images that only one of the two classifies
            right, ``p_value`` is McNemar's exact two-sided test.
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

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def from_json(cls, path: str | Path) -> "SweepResult":
        data = json.loads(Path(path).read_text())
        data["points"] = [OperatingPoint(**p) for p in data["points"]]
        return cls(**data)

    def find(self, label: str, gate: str = "none") -> OperatingPoint:
        for point in self.points:
            if point.label == label and point.gate == gate:
                return point
        raise KeyError(f"no point {label!r} with gate {gate!r}")

    def table(self) -> str:
        """The sweep as a Markdown table."""
        rows = ["| family | sent | gate | top-1 | offload | bits/image | bits/sent image | patches/sent | raw fraction "
                "| vs equal-bit random: images only it / only random gets right (McNemar p) |",
                "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
        for p in self.points:
            versus = (f"{p.vs_random['only_rule']} / {p.vs_random['only_random']} (p={p.vs_random['p_value']:.2g})"
                      if p.vs_random else "")
            rows.append(f"| {p.family} | {p.label} | {p.gate} | {100 * p.accuracy:.2f}% | {100 * p.offload_rate:.1f}% "
                        f"| {p.bits_per_image:,.0f} | {p.bits_per_offloaded:,.0f} | {p.patches_per_offloaded:.1f} "
                        f"| {p.raw_fraction:.4f} | {versus} |")
        return "\n".join(rows)


@dataclass
class SweepConfig:
    """The grid: selection budgets x gate thresholds, plus the references.

    The edge runs in fp32 (its numbers match its model card); the server,
    which runs once per selection setting and codec, in bf16 autocast by
    default (about 1.7x faster here; ``server_bf16=False`` for fp32).

    ``rules`` with a budget run at every entry of ``budgets``; ``threshold``
    (keep patches with importance >= ``importance_threshold``) and the
    paper's attention-sum 0.97 run once each.
    """

    edge: str = "vit-edge-cifar10"
    server: str = "vit-server-cifar10"
    importance: str = "mean"
    budgets: tuple[int, ...] = (8, 16, 32)
    rules: tuple[str, ...] = ("top-k", "spread-top-k")
    gate_kind: str = "min_entropy"
    thresholds: tuple[float, ...] = (0.4, 0.8, 1.2)
    importance_threshold: float = 1 / 64
    codecs: tuple[ImageCodec, ...] = field(default_factory=lambda: tuple(standard_codecs()))
    seed: int = 0
    edge_bf16: bool = False
    server_bf16: bool = True

    def selections(self) -> list[SelectionRule]:
        makers = {"top-k": TopK, "spread-top-k": SpreadTopK}
        unknown = set(self.rules) - set(makers)
        if unknown:
            raise ValueError(f"unknown selection rules {sorted(unknown)}; choose from {sorted(makers)}")
        return ([makers[rule](k) for rule in self.rules for k in self.budgets]
                + [Threshold(round(self.importance_threshold, 4)), AttentionSum(0.97)])


class Sweep:
    """Runs a :class:`SweepConfig` on one data split."""

    def __init__(self, config: SweepConfig, edge: ViTAdapter | None = None, server: ViTAdapter | None = None,
                 cache_dir: Path | None = None, progress: bool = True):
        self.config = config
        # the edge pass is cached only for zoo weights, which identify the model
        zoo = {card.name: card for card in list_checkpoints()}
        self._edge_weights = zoo[config.edge].weights_path if edge is None and config.edge in zoo else None
        self.edge = edge or create_model(config.edge)
        self.server = server or create_model(config.server)
        if self.edge.image_size != self.server.image_size or self.edge.patch_size != self.server.patch_size:
            raise ValueError(f"edge ({self.edge.image_size}, patch {self.edge.patch_size}) and server "
                             f"({self.server.image_size}, patch {self.server.patch_size}) must share the patch grid")
        self.encoder = EdgeEncoder(self.edge, selection=TopK(1), gate=None, importance=config.importance,
                                   bf16=config.edge_bf16)
        self.decoder = ServerDecoder(self.server, bf16=config.server_bf16)
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir() / "edge"
        self.progress = progress

    def run(self, split: ImageSplit) -> SweepResult:
        started = time.time()
        cfg = self.config
        images, labels = split.images, split.labels
        analysis = self.edge_analysis(split)
        edge_correct = analysis.logits.argmax(-1) == labels
        h, w = self.edge.image_size
        result = SweepResult(split.name, len(split), cfg.edge, cfg.server, cfg.importance, raw_bits_per_image=3 * h * w * 8,
                             machine=f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}")
        gates = [Gate(cfg.gate_kind, t) for t in cfg.thresholds]
        paper_gate = Gate("min_entropy", 0.8)
        generator = torch.Generator().manual_seed(cfg.seed)

        def add(family, label, server_correct, bits, patches, gate_list, curve="", budget=None, random_correct=None):
            for gate in gate_list:
                offload = gate.offload(analysis.logits) if gate is not None else torch.ones(len(labels), dtype=torch.bool)
                point = _point(family, label, gate, offload, edge_correct, server_correct, bits, patches,
                               result.raw_bits_per_image)
                point.curve, point.budget = curve or label, budget
                if random_correct is not None:  # images kept at the edge are answered alike by both
                    point.vs_random = paired_comparison(server_correct[offload], random_correct[offload])
                result.points.append(point)

        add("reference", "edge alone", edge_correct, torch.zeros(len(labels)), torch.zeros(len(labels)),
            [Gate(cfg.gate_kind, math.inf)])
        importance = analysis.importance[cfg.importance]
        grid = self.edge.grid_size
        full = torch.ones(len(labels), self.edge.num_patches, dtype=torch.bool)
        correct, bits = self._server_on(images, labels, analysis, full)
        add("reference", "full images", correct, bits, full.sum(1), [None, paper_gate])
        for rule in tqdm(cfg.selections(), desc="selection rules", disable=not self.progress):
            mask = rule(importance, grid, generator)
            twin = random_like(mask, generator)
            name, budget = rule.label.rsplit(" ", 1)[0], getattr(rule, "k", None)
            gate_list = [paper_gate] if isinstance(rule, AttentionSum) else [None, *gates]
            correct, bits = self._server_on(images, labels, analysis, mask)
            random_correct, _ = self._server_on(images, labels, analysis, twin)  # same bits, image by image
            add("semantic", rule.label, correct, bits, mask.sum(1), gate_list, name, budget, random_correct)
            add("random", f"random (as {rule.label})", random_correct, bits, twin.sum(1), gate_list,
                f"random as {name}", budget)
        for codec in tqdm(cfg.codecs, desc="image codecs", disable=not self.progress):
            decoded, bits = codec.roundtrip(images)
            correct = predict_logits(self.server, decoded, bf16=cfg.server_bf16).argmax(-1) == labels
            add("codec", codec.name, correct, bits.float(), torch.full((len(labels),), math.nan), [None, paper_gate],
                curve=codec.format)
        result.seconds = time.time() - started
        return result

    def _server_on(self, images, labels, analysis: EdgeAnalysis, mask):
        """Server correctness and bits per image when every image sends its ``mask`` patches."""
        transmission = self.encoder.transmit(images, analysis.logits, mask)  # the encoder has no gate: all sent
        logits = self.decoder.classify(transmission.strings)
        return logits.argmax(-1) == labels, transmission.bits.float()

    def edge_analysis(self, split: ImageSplit) -> EdgeAnalysis:
        """Edge logits and importance (all methods) for ``split``, cached by weights and data."""
        path = None
        if self._edge_weights is not None:
            key = hashlib.sha256(self._edge_weights.read_bytes())
            key.update(split.images.numpy().tobytes())
            key.update(str(self.config.edge_bf16).encode())
            path = self.cache_dir / f"{self.config.edge}-{key.hexdigest()[:20]}.pt"
            if path.exists():
                data = torch.load(path)
                return EdgeAnalysis(data["logits"], data["importance"])
        analysis = self.encoder.analyze(split.images, IMPORTANCE_METHODS, desc="edge pass" if self.progress else None)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(dict(logits=analysis.logits, importance=analysis.importance), path)
        return analysis


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
