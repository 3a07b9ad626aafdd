"""Matplotlib figures of sweep results.

Figures are built with :class:`matplotlib.figure.Figure` directly, so
importing this module never changes the process's backend, and notebooks
display the returned figure as usual.

Nothing drawn hides data: the legend stands outside the axes, below them; the
two reference lines (the edge alone, the server on full images) are dashed
with the same period at opposite phases, so at equal accuracy their dashes
alternate instead of one covering the other; a frontier's points are marked
differently with fusion (filled circles) and without (hollow squares).
"""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from semcomm.experiments.link_results import LinkSweepResult
from semcomm.experiments.results import SweepResult

COLORS = {"webp": "tab:orange", "jpeg": "tab:brown", "raw8": "tab:gray"}  # image codecs and raw 8-bit patches
EDGE_LINE = dict(color="tab:gray", lw=1.2, ls=(0, (4, 4)))  # dashes of one period at opposite phases: at equal
SERVER_LINE = dict(color="black", lw=1.2, ls=(4, (4, 4)))  # accuracy they alternate, neither hides the other


def _legend_below(fig: Figure, axes) -> None:
    """One legend for the figure, outside and below its axes (each label once, in order of appearance)."""
    entries = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    fig.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=min(4, len(entries)) or 1,
               fontsize=8)


def plot_sweep(result: SweepResult, path: str | Path | None = None) -> Figure:
    """Top-1 against mean bits per image (log scale): left, every point and each scheme's Pareto
    frontier (solid, filled circles with fusion; dashed, hollow squares without); right, the frontiers alone,
    near the server's accuracy; the legend below both.

    Semantic schemes get the default colour cycle, image codecs their own, a
    random twin its scheme's (both by codec), a thin line and crosses. The edge alone
    (0 bits) and the server on full images are horizontal lines dashed at opposite phases (module docstring).
    """
    fig = Figure(figsize=(14, 6.5), layout="constrained")
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
            random, color = frontier.random, colors[frontier.codec]
            marker = dict(marker="x", ms=4) if random else (
                dict(marker="o", ms=3.5) if frontier.fusion else dict(marker="s", ms=4.5, mfc="none"))
            ax.plot([p["bits_per_image"] for p in points], [100 * p["accuracy"] for p in points],
                    "-" if frontier.fusion else "--", drawstyle="steps-post", lw=0.8 if random else 1.8,
                    alpha=0.6 if random else 1.0, color=color, label=frontier.name, **marker)
        ax.axhline(100 * edge, label="edge alone (0 bits)", **EDGE_LINE)
        if server is not None:
            ax.axhline(100 * server, label="server, full images", **SERVER_LINE)
        ax.set_xscale("log")
        ax.set_xlabel("mean bits per image (every bit on the uplink, headers and hints included)")
        ax.grid(True, which="both", alpha=0.3)
    left, right = axes
    for p in result.points:
        if p.bits_per_image > 0:
            left.scatter(p.bits_per_image, 100 * p.accuracy, s=6, alpha=0.25, color=colors.get(p.codec, "black"))
    left.set_title("all operating points (dots) and Pareto frontiers")
    left.set_ylabel("top-1 accuracy (%)")
    _legend_below(fig, axes)
    right.set_ylim(100 * edge - 1, 100 * max(server or edge, max(p.accuracy for p in result.points)) + 0.5)
    right.set_title("frontiers near the top (edge - 1 point and up)")
    fig.suptitle(f"{result.dataset}, {result.images} images: edge {result.edge}, codec {result.codec or 'raw8'}, "
                 f"server {result.server}")
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def plot_link(result: LinkSweepResult, path: str | Path | None = None) -> Figure:
    """Left: each scheme's best top-1 (over its settings and gate thresholds) against the channel
    condition, showing the digital cliff. Right: top-1 against mean channel uses per image at the
    best and the worst condition (each scheme's frontier). The edge alone is a dashed line; the legend
    stands below both axes.
    """
    fig = Figure(figsize=(14, 6.5), layout="constrained")
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
        ax.axhline(100 * result.edge_accuracy, label="edge alone", **EDGE_LINE)
        ax.grid(True, alpha=0.3)
    left.set_xlabel(result.condition_name)
    left.set_ylabel("top-1 accuracy (%), best setting and gate")
    left.set_title(f"{result.link}: accuracy against the channel")
    for condition, style in ((conditions[-1], "-"), (conditions[0], "--"))[: len(conditions)]:  # best, worst
        for scheme in schemes:
            points = [p for p in result.frontier(scheme, condition) if p.channel_uses_per_image > 0]
            if points:
                marker = dict(marker="o", ms=3.5) if style == "-" else dict(marker="s", ms=4.5, mfc="none")
                right.plot([p.channel_uses_per_image for p in points], [100 * p.accuracy for p in points], style,
                           drawstyle="steps-post", color=colors[scheme], label=f"{scheme} at {condition:g}", **marker)
    right.set_xscale("log")
    right.set_xlabel("mean channel uses per image (headers, hints, CRC, parity and padding included)")
    right.set_title("frontiers: accuracy against channel uses")
    _legend_below(fig, (left, right))
    fig.suptitle(f"{result.dataset}, {result.images} images")
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def plot_degradation(result: LinkSweepResult, budgets: tuple[float, ...], path: str | Path | None = None) -> Figure:
    """Graceful degradation: each scheme's top-1 against the channel condition at fixed channel uses, one panel
    per budget of ``budgets`` (mean channel uses per image). At each condition a scheme shows its most accurate
    point within the budget (:meth:`LinkSweepResult.operating_point`: a setting and gate chosen per condition, as
    rate control would; the edge's answer where nothing fits or helps). The digital cliff and an analog pair's
    slope stand side by side; the edge alone is dashed."""
    if not budgets or any(b <= 0 for b in budgets):
        raise ValueError(f"budgets must be positive mean channel uses per image, got {budgets!r}")
    fig = Figure(figsize=(6.5 * len(budgets), 6), layout="constrained")
    axes = fig.subplots(1, len(budgets), squeeze=False)[0]
    schemes = list(dict.fromkeys(p.scheme for p in result.points if p.scheme != "edge"))
    conditions = sorted({p.condition for p in result.points})
    colors = dict(COLORS)
    cycle = iter(["tab:blue", "tab:green", "tab:red", "tab:purple", "tab:olive", "tab:cyan"])
    for ax, budget in zip(axes, budgets):
        for scheme in schemes:
            colors.setdefault(scheme, next(cycle, "black"))
            top1 = [100 * result.operating_point(c, budget, schemes=(scheme,)).accuracy for c in conditions]
            ax.plot(conditions, top1, marker="o", color=colors[scheme], label=scheme)
        ax.axhline(100 * result.edge_accuracy, label="edge alone", **EDGE_LINE)
        ax.grid(True, alpha=0.3)
        ax.set_xlabel(result.condition_name)
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(f"at most {budget:,.0f} channel uses per image")
    _legend_below(fig, axes)
    fig.suptitle(f"{result.link}: {result.dataset}, {result.images} images")
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
