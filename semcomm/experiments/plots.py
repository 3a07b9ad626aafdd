"""Matplotlib figures of sweep results.

Figures are built with :class:`matplotlib.figure.Figure` directly, so
importing this module never changes the process's backend, and notebooks
display the returned figure as usual.
"""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from semcomm.experiments.link_results import LinkSweepResult
from semcomm.experiments.results import SweepResult

COLORS = {"webp": "tab:orange", "jpeg": "tab:brown", "raw8": "tab:gray"}  # image codecs and raw 8-bit patches


def plot_sweep(result: SweepResult, path: str | Path | None = None) -> Figure:
    """Top-1 against mean bits per image (log scale): left, every point and each scheme's Pareto
    frontier (solid with fusion, dashed without); right, the frontiers alone, near the server's accuracy.

    Semantic schemes get the default colour cycle, image codecs their own, a
    random twin its scheme's (both by codec) and a thin line. The edge alone
    (0 bits) is a dotted line, the server on full images a dash-dotted one.
    """
    fig = Figure(figsize=(14, 5.5))
    axes = fig.subplots(1, 2, sharey=False)
    edge = result.edge_accuracy
    try:
        server = result.find("full images").accuracy
    except KeyError:
        server = None
    colors, cycle = dict(COLORS), iter(["tab:blue", "tab:green", "tab:red", "tab:purple", "tab:cyan", "tab:olive"])
    for frontier in result.frontiers:
        if frontier.codec not in colors:
            colors[frontier.codec] = next(cycle, "black")
    for ax in axes:
        for frontier in result.frontiers:
            points = [p for p in frontier.points if p["bits_per_image"] > 0]
            if not points:
                continue
            random = frontier.random
            ax.plot([p["bits_per_image"] for p in points], [100 * p["accuracy"] for p in points],
                    "-" if frontier.fusion else "--", drawstyle="steps-post", marker="o", ms=3,
                    lw=0.8 if random else 1.8, alpha=0.6 if random else 1.0,
                    color=colors[frontier.codec], label=frontier.name)
        ax.axhline(100 * edge, color="grey", lw=0.8, ls=":", label="edge alone (0 bits)")
        if server is not None:
            ax.axhline(100 * server, color="black", lw=0.8, ls="-.", label="server, full images")
        ax.set_xscale("log")
        ax.set_xlabel("mean bits per image (every bit on the uplink, headers and hints included)")
        ax.grid(True, which="both", alpha=0.3)
    left, right = axes
    for p in result.points:
        if p.bits_per_image > 0:
            left.scatter(p.bits_per_image, 100 * p.accuracy, s=6, alpha=0.25, color=colors.get(p.codec, "black"))
    left.set_title("all operating points (dots) and Pareto frontiers")
    left.set_ylabel("top-1 accuracy (%)")
    left.legend(fontsize=7, loc="lower right")
    right.set_ylim(100 * edge - 1, 100 * max(server or edge, max(p.accuracy for p in result.points)) + 0.5)
    right.set_title("frontiers near the top (edge - 1 point and up)")
    fig.suptitle(f"{result.dataset}, {result.images} images: edge {result.edge}, codec {result.codec or 'raw8'}, "
                 f"server {result.server}")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def plot_link(result: LinkSweepResult, path: str | Path | None = None) -> Figure:
    """Left: each scheme's best top-1 (over its settings and gate thresholds) against the channel
    condition, showing the digital cliff. Right: top-1 against mean channel uses per image at the
    best and the worst condition (each scheme's frontier). The edge alone is a dotted line.
    """
    fig = Figure(figsize=(14, 5.5))
    left, right = fig.subplots(1, 2)
    schemes = list(dict.fromkeys(p.scheme for p in result.points if p.scheme != "edge"))
    conditions = sorted({p.condition for p in result.points})
    colors = dict(COLORS)
    cycle = iter(["tab:blue", "tab:green", "tab:red", "tab:purple"])
    for scheme in schemes:
        colors.setdefault(scheme, next(cycle, "black"))
        best = [100 * max(p.accuracy for p in result.points if p.scheme == scheme and p.condition == c)
                for c in conditions]
        left.plot(conditions, best, marker="o", color=colors[scheme], label=scheme)
    for ax in (left, right):
        ax.axhline(100 * result.edge_accuracy, color="grey", lw=0.8, ls=":", label="edge alone")
        ax.grid(True, alpha=0.3)
    left.set_xlabel(result.condition_name)
    left.set_ylabel("top-1 accuracy (%), best setting and gate")
    left.set_title(f"{result.link}: accuracy against the channel")
    left.legend(fontsize=8)
    for condition, style in ((conditions[-1], "-"), (conditions[0], "--")):
        for scheme in schemes:
            points = [p for p in result.frontier(scheme, condition) if p.channel_uses_per_image > 0]
            if points:
                right.plot([p.channel_uses_per_image for p in points], [100 * p.accuracy for p in points], style,
                           drawstyle="steps-post", marker="o", ms=3, color=colors[scheme],
                           label=f"{scheme} at {condition:g}")
    right.set_xscale("log")
    right.set_xlabel("mean channel uses per image (headers, hints, CRC, parity and padding included)")
    right.set_title("frontiers: accuracy against channel uses")
    right.legend(fontsize=8)
    fig.suptitle(f"{result.dataset}, {result.images} images")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
