"""The published comparisons of methods.md sections 1 and 2 on any data set with its edge and server.

:func:`published_comparisons` runs them on one split, with raw 8-bit patches
(format version 1: header, positions and pixels, every bit in the strings
counted) unless noted:

1. importance, mean (last layer's CLS attention) against mean over layers
   against rollout: top-k and spread-top-k at 1/8, 1/4 and 1/2 of the patches
   and attention-sum 0.97, with no gate and behind the min-entropy gate at 0.8,
   each against an equal-bit random choice of patches on the same images
   (McNemar's exact p);
2. selection at the paper's default operating point (min-entropy 0.8,
   attention-sum 0.97) against top-k, spread-top-k and random, as the paper
   counts it (the fraction of patches sent) and as real bits;
3. gates, min-entropy against Shannon entropy against margin, at equal offload
   rates (calibrated on one half of the split, evaluated on the other);
4. IAQ against uniform quantization (the pixel IAQ pair) on the same
   spread-top-k patches (1/8 and 1/4 of them) at equal payload budgets: those
   of a uniform 1, 2 and 4 bits per value, behind no gate and the 0.8 gate.

The result is plain data (:class:`Comparisons`); :func:`markdown` renders the
four tables. ``benchmarks/published_comparisons.py`` is the command line.
"""
from __future__ import annotations

import math
import platform
import time
from dataclasses import asdict, dataclass, field

import torch

from semcomm.data import ImageSplit
from semcomm.edge.gating import compare_gates
from semcomm.experiments.results import OperatingPoint
from semcomm.experiments.sweep import Sweep, SweepConfig
from semcomm.inference import predict_logits
from semcomm.models import create_model
from semcomm.rate import create_codec
from semcomm.rate.policies import IAQ, UniformBudget

METHODS = ("mean", "mean_layers", "rollout")  # the importance methods compared (names of IMPORTANCE)
RULES = ("top-k", "spread-top-k", "attention-sum")
FRACTIONS = (1 / 8, 1 / 4, 1 / 2)  # fixed budgets, as fractions of the patches
DEPTHS = (1, 2, 4)  # bits per pixel value of the uniform quantizer IAQ is compared with
RATES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7)  # offload rates of the gate comparison


@dataclass
class Comparisons:
    """All four comparisons on one split (fractions in [0, 1], bits per image).

    Attributes:
        importance: importance method -> its sweep's points (dicts of
            :class:`~semcomm.experiments.results.OperatingPoint`).
        gates: :func:`~semcomm.edge.gating.compare_gates` rows.
        iaq: one row per (patches, payload budget, gate): ``{"patches", "payload", "gate", "iaq", "uniform"}``,
            the last two points as dicts.
    """

    dataset: str
    images: int
    patches: int
    edge: str
    server: str
    budgets: tuple[int, ...]
    importance: dict[str, list[dict]] = field(default_factory=dict)
    gates: list[dict] = field(default_factory=list)
    iaq: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    machine: str = ""


def published_comparisons(split: ImageSplit, edge: str, server: str, rates: tuple[float, ...] = RATES,
                          progress: bool = True) -> Comparisons:
    """Run the four comparisons (module docstring) on ``split`` with the zoo models ``edge`` and ``server``."""
    started = time.time()
    edge_model, server_model = create_model(edge), create_model(server)
    n = edge_model.num_patches
    budgets = tuple(sorted({max(1, round(f * n)) for f in FRACTIONS}))
    out = Comparisons(split.name, len(split), n, edge, server, budgets,
                      machine=f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}")
    for method in METHODS:
        config = SweepConfig(edge=edge, server=server, importance=method, codec="raw8", rules=RULES, budgets=budgets,
                             thresholds=(0.8,), fusion=False, twins=True, codecs=(), full_images=method == "mean")
        out.importance[method] = [asdict(p) for p in Sweep(config, progress=progress).run(split).points]

    edge_logits = predict_logits(edge_model, split.images, bf16=False)
    out.gates = compare_gates(edge_logits, predict_logits(server_model, split.images), split.labels, rates)

    pair = create_codec("pixel-iaq", server=server_model, hint=False)
    for k in budgets[:2]:
        payloads = tuple(k * pair.patch_values * depth for depth in DEPTHS)  # uniform depth M on k patches: exact
        config = SweepConfig(edge=edge, server=server, codec="pixel-iaq", rules=("spread-top-k",), budgets=(),
                             levels=(), policy_budgets=(k,), thresholds=(0.8,), fusion=False, twins=False, codecs=(),
                             full_images=False,
                             policies=tuple(IAQ(b) for b in payloads) + tuple(UniformBudget(b) for b in payloads))
        points = Sweep(config, progress=progress, codec=pair).run(split).points
        out.iaq += _iaq_rows(points, k, payloads)
    out.seconds = time.time() - started
    return out


def _iaq_rows(points: list[OperatingPoint], k: int, payloads: tuple[int, ...]) -> list[dict]:
    """IAQ and uniform side by side per payload budget and gate."""
    rows = []
    for b in payloads:
        for gate in ("none", "min_entropy 0.8"):
            pair = {p.policy: p for p in points if p.gate == gate and p.family == "semantic"
                    and p.policy in ("iaq", "uniform-budget") and p.policy_settings["bits"] == b}
            if {"iaq", "uniform-budget"} <= set(pair):
                rows.append({"patches": k, "payload": b, "gate": gate, "iaq": asdict(pair["iaq"]),
                             "uniform": asdict(pair["uniform-budget"])})
    return rows


def markdown(result: Comparisons) -> str:
    """The four comparisons as markdown tables."""
    return "\n".join([f"# {result.dataset}: {result.images} images, {result.patches} patches each; edge "
                      f"{result.edge}, server {result.server}\n",
                      importance_table(result.importance), operating_point_table(result.importance["mean"],
                                                                                 result.patches),
                      gate_table(result.gates), iaq_table(result.iaq),
                      f"{result.images} images in {result.seconds:.0f} s ({result.machine})"])


def _pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


def _versus(point: dict) -> str:
    vs = point.get("vs_random")
    if not vs:
        return ""
    return f"{vs['only_rule']} / {vs['only_random']} (p={vs['p_value']:.2g})"


def importance_table(by_method: dict[str, list[dict]]) -> str:
    """Rule x gate rows, one column per importance method: top-1, then images only it / only random get right."""
    lines = ["## 1. Importance: mean against mean over layers against rollout (each against equal-bit random)\n",
             "| rule | gate | bits/image (mean's) | " + " | ".join(by_method) + " |",
             "|---|---|---:|" + "---|" * len(by_method)]
    first = by_method["mean"]
    for p in first:
        if p["family"] != "semantic":
            continue
        cells = []
        for points in by_method.values():
            q = next((q for q in points if q["label"] == p["label"] and q["gate"] == p["gate"]), None)
            cells.append("" if q is None else f"{_pct(q['accuracy'])}, {_versus(q)}")
        lines.append(f"| {p['label']} | {p['gate']} | {p['bits_per_image']:,.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def operating_point_table(points: list[dict], n: int) -> str:
    """Every rule behind the min-entropy 0.8 gate (mean importance), against random, in patch fraction and bits."""
    lines = ["## 2. Selection behind the default gate (min-entropy 0.8), as patch fraction and as real bits\n",
             "| sent | top-1 | offload | patches / sent image | patch fraction of all images (paper's cost) | "
             "bits / image | bits / sent image | raw fraction | only it / only random right (p) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for p in points:
        if p["gate"] != "min_entropy 0.8" or p["family"] not in ("semantic", "random", "reference"):
            continue
        patches = 0.0 if math.isnan(p["patches_per_offloaded"]) else p["patches_per_offloaded"]
        lines.append(f"| {p['label']} | {_pct(p['accuracy'])} | {p['offload_rate']:.1%} | {patches:.1f} | "
                     f"{p['offload_rate'] * patches / n:.3f} | {p['bits_per_image']:,.0f} | "
                     f"{p['bits_per_offloaded']:,.0f} | {p['raw_fraction']:.4f} | {_versus(p)} |")
    return "\n".join(lines) + "\n"


def gate_table(rows: list[dict], title: bool = True) -> str:
    """:func:`~semcomm.edge.gating.compare_gates` rows as markdown (``title``: with a heading and the edge and server
    alone)."""
    lines = ["## 3. Gates at equal offload rates (calibrated on one half, evaluated on the other)\n",
             f"edge alone {_pct(rows[0]['top1'])}, server alone {_pct(rows[1]['top1'])}\n"] if title else []
    lines += ["| gate | target offload | threshold | offload reached | top-1 |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['gate']} | {r['target']:.0%} | {r['threshold']:.4f} | {r['offload']:.1%} | {_pct(r['top1'])} |"
              for r in rows if "target" in r]
    return "\n".join(lines) + "\n"


def iaq_table(rows: list[dict]) -> str:
    lines = ["## 4. IAQ against uniform quantization on the same patches at equal payload budgets (pixel IAQ pair)\n",
             "| patches | payload budget (bits) | gate | IAQ top-1 | IAQ bits / sent image | uniform top-1 | "
             "uniform bits / sent image | change |", "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        iaq, uniform = r["iaq"], r["uniform"]
        lines.append(f"| {r['patches']} | {r['payload']:,} | {r['gate']} | {_pct(iaq['accuracy'])} | "
                     f"{iaq['bits_per_offloaded']:,.0f} | {_pct(uniform['accuracy'])} | "
                     f"{uniform['bits_per_offloaded']:,.0f} | {100 * (iaq['accuracy'] - uniform['accuracy']):+.2f} |")
    return "\n".join(lines) + "\n"
