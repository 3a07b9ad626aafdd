"""Matplotlib figures of sweep results."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .sweep import SweepResult  # noqa: E402

REFERENCE_GATE = "min_entropy 0.8"


def plot_sweep(result: SweepResult, path: str | Path | None = None,
               gates: tuple[str, ...] = ("none", REFERENCE_GATE)):
    """Top-1 accuracy versus mean bits per image (log scale), one panel per gate.

    Each panel: fixed-budget rules as solid curves and their equal-bit random
    twins dashed in the same colour; other rules as single markers; JPEG and
    WebP as square-marked curves; the references as stars; edge alone as a
    dotted line (it sends nothing).
    """
    fig, axes = plt.subplots(1, len(gates), figsize=(7 * len(gates), 5.5), squeeze=False, sharey=True)
    edge = next(p for p in result.points if p.label == "edge alone")
    for ax, gate in zip(axes[0], gates):
        points = [p for p in result.points if p.gate == gate]
        colors: dict[str, str] = {}
        for curve in dict.fromkeys(p.curve for p in points if p.budget is not None and p.family == "semantic"):
            for family, style in (("semantic", "-"), ("random", "--")):
                name = curve if family == "semantic" else f"random as {curve}"
                line = sorted((p for p in points if p.curve == name), key=lambda p: p.budget)
                drawn = ax.plot([p.bits_per_image for p in line], [100 * p.accuracy for p in line], style,
                                marker="o", ms=4, color=colors.get(curve), label=name)
                colors[curve] = drawn[0].get_color()
        for p in points:
            if p.family in ("semantic", "random") and p.budget is None:
                ax.scatter(p.bits_per_image, 100 * p.accuracy, marker="D" if p.family == "semantic" else "x",
                           s=40, zorder=3, label=p.label)
        for fmt in dict.fromkeys(p.curve for p in points if p.family == "codec"):
            line = sorted((p for p in points if p.curve == fmt), key=lambda p: p.bits_per_image)
            ax.plot([p.bits_per_image for p in line], [100 * p.accuracy for p in line], ":", marker="s", label=fmt)
            for p in line:
                ax.annotate(p.label.split("-")[-1], (p.bits_per_image, 100 * p.accuracy), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        for p in points:
            if p.family == "reference" and p.bits_per_image > 0:
                ax.scatter(p.bits_per_image, 100 * p.accuracy, marker="*", s=120, color="black", zorder=4)
                ax.annotate(p.label, (p.bits_per_image, 100 * p.accuracy), fontsize=8, xytext=(-10, 6),
                            textcoords="offset points")
        ax.axhline(100 * edge.accuracy, color="grey", lw=0.8, ls=":", label="edge alone (0 bits)")
        ax.set_xscale("log")
        ax.set_xlabel("mean bits per image (on the wire, headers included)")
        ax.set_title("every image sent" if gate == "none" else f"offload when {gate.replace('_', '-')} bits or more")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("top-1 accuracy (%)")
    fig.suptitle(f"{result.dataset}, {result.images} images: edge {result.edge}, server {result.server}, "
                 f"importance {result.importance}")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
