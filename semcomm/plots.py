"""Matplotlib figures of sweep results."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .sweep import SweepResult  # noqa: E402


def plot_sweep(result: SweepResult, path: str | Path | None = None, gate: str = "none"):
    """Top-1 accuracy versus mean bits per image (log scale).

    Lines: each selection rule and its equal-bit random twin, with every image
    sent (``gate="none"``) or behind one gate (its label, e.g.
    ``"min_entropy 0.8"``). Markers: the references and the image codecs.
    """
    fig, ax = plt.subplots(figsize=(8, 5.5))
    curves: dict[str, list] = {}
    for p in result.points:
        if p.family in ("semantic", "random") and p.gate == gate and p.label.split()[-1].isdigit():
            name = p.label.rsplit(" ", 1)[0]
            curves.setdefault(name, []).append(p)
    for name, points in curves.items():
        points.sort(key=lambda p: p.bits_per_image)
        style = "--" if name.startswith("random") else "-"
        ax.plot([p.bits_per_image for p in points], [100 * p.accuracy for p in points], style, marker="o",
                label=f"{name} ({gate})")
    markers = {"reference": "*", "codec": "s", "semantic": "D", "random": "x"}
    for p in result.points:
        single = p.family in ("semantic", "random") and not p.label.split()[-1].isdigit()
        if (single or p.family in ("reference", "codec")) and p.bits_per_image > 0:
            ax.scatter(p.bits_per_image, 100 * p.accuracy, marker=markers[p.family], s=60, zorder=3)
            ax.annotate(f"{p.label} ({p.gate})" if p.gate != "none" else p.label, (p.bits_per_image, 100 * p.accuracy),
                        fontsize=7, xytext=(4, 2), textcoords="offset points")
    edge = next(p for p in result.points if p.label == "edge alone")
    ax.axhline(100 * edge.accuracy, color="grey", lw=0.8, ls=":", label="edge alone (0 bits)")
    ax.set_xscale("log")
    ax.set_xlabel("mean bits per image (on the wire, headers included)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"{result.dataset}, {result.images} images: edge {result.edge}, server {result.server}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
