"""The sweep's and the link sweep's figures hide no data: legends outside the axes, the two reference lines visible
where they coincide, fused and plain frontiers marked apart."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb

from semcomm.experiments.frontiers import mark_frontier_points, pareto_frontiers
from semcomm.experiments.link_results import LinkPoint, LinkSweepResult, mark_link_frontiers
from semcomm.experiments.plots import EDGE_LINE, SERVER_LINE, plot_degradation, plot_link, plot_sweep
from semcomm.experiments.results import OperatingPoint, SweepResult


def point(scheme: str, label: str, accuracy: float, bits: float, fusion: bool = False, family: str = "semantic",
          codec: str | None = None) -> OperatingPoint:
    return OperatingPoint(family, label, "none", accuracy, 1.0 if bits else 0.0, bits, bits, bits / 24576,
                          scheme=scheme, fusion=fusion, codec=codec or scheme)


def sweep_result(server_accuracy: float) -> SweepResult:
    """The edge alone at 60%, the server on full images at ``server_accuracy``, and a codec's frontier reaching
    80% in the lower-right corner (where a legend inside the axes used to sit)."""
    points = [point("edge", "edge alone", 0.6, 0.0, family="reference", codec=None),
              point("edge", "edge alone", 0.6, 0.0, fusion=True, family="reference", codec=None),
              point("raw8", "full images", server_accuracy, 24664.0, family="reference")]
    for fusion in (False, True):
        points += [point("latent", f"k{k}", 0.6 + k / 200, 100.0 * k, fusion, codec="latent-cifar10")
                   for k in (8, 16, 32, 40)]
        points += [point("webp", f"q{q}", 0.55 + q / 400, 50.0 * q, fusion, family="codec") for q in (10, 40, 75)]
    result = SweepResult("toy/test", 100, "my-edge", "my-server", "mean", 24576, points=points, codec="latent-cifar10")
    result.frontiers = pareto_frontiers(result.points)
    mark_frontier_points(result.points, result.frontiers)
    return result


def drawn(fig):
    FigureCanvasAgg(fig).draw()
    return fig


def test_the_legend_stands_outside_every_axes():
    fig = drawn(plot_sweep(sweep_result(0.8)))
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1
    box = legends[0].get_window_extent()
    assert all(not box.overlaps(ax.get_window_extent()) for ax in fig.axes)
    labels = [text.get_text() for text in legends[0].get_texts()]
    assert len(labels) == len(set(labels)) and {"edge alone (0 bits)", "server, full images", "latent + fusion"} <= set(
        labels)


def test_the_edge_line_and_the_server_line_both_show_where_they_coincide():
    """The server on full images exactly as accurate as the edge alone: along that accuracy both colours are drawn
    (dashes of one period at opposite phases), neither covering the other."""
    fig = drawn(plot_sweep(sweep_result(0.6)))
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float) / 255
    right = fig.axes[1]  # the frontiers alone: nothing but the two references lies at 60%
    x0, x1 = right.get_window_extent().intervalx
    y = right.transData.transform((1000.0, 60.0))[1]
    row = pixels[round(pixels.shape[0] - y), int(x0) + 2 : int(x1) - 2]
    for style in (EDGE_LINE, SERVER_LINE):
        near = np.abs(row - np.array(to_rgb(style["color"]))).max(axis=1) < 0.15
        assert near.mean() > 0.2, style["color"]  # a good share of the row, in dashes


def test_fused_and_plain_frontiers_are_marked_apart():
    fig = plot_sweep(sweep_result(0.8))
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    fused, plain = lines["latent + fusion"], lines["latent"]
    assert (fused.get_marker(), plain.get_marker()) == ("o", "s") and plain.get_markerfacecolor() == "none"


def test_the_link_figure_keeps_its_legend_outside_too():
    points = []
    for condition in (0.0, 10.0):
        points.append(LinkPoint("edge", "edge alone", "min_entropy inf", condition, 0.6, 0.0, 0.0, 0.0, 0.0, 0.0))
        for uses, accuracy in ((100.0, 0.65), (300.0, 0.7 + condition / 100)):
            points.append(LinkPoint("latent", f"u{uses:g}", "none", condition, accuracy, 1.0, uses, 8 * uses, 0.0,
                                    0.0, family="semantic"))
            points.append(LinkPoint("webp", f"w{uses:g}", "none", condition, accuracy - 0.05, 1.0, uses * 2,
                                    16 * uses, 0.0, 0.0, family="codec"))
    mark_link_frontiers(points)
    fig = drawn(plot_link(LinkSweepResult("toy/test", 100, "awgn", "Es/N0 (dB)", 0.6, points=points)))
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    box = fig.legends[0].get_window_extent()
    assert all(not box.overlaps(ax.get_window_extent()) for ax in fig.axes)



def test_the_degradation_figure_draws_each_scheme_within_each_budget():
    points = []
    for condition in (0.0, 5.0, 10.0):
        points.append(LinkPoint("edge", "edge alone", "min_entropy inf", condition, 0.6, 0.0, 0.0, 0.0, 0.0, 0.0))
        points.append(LinkPoint("latent", "digital", "none", condition, 0.55 if condition < 5 else 0.8, 1.0, 300.0,
                                600.0, 0.0, 0.0, family="semantic"))
        points.append(LinkPoint("jscc", "analog", "none", condition, 0.7 + condition / 100, 1.0, 200.0, 40.0, 0.0,
                                0.0, family="analog"))
    mark_link_frontiers(points)
    result = LinkSweepResult("toy/test", 100, "awgn", "Es/N0 (dB)", 0.6, points=points)
    fig = drawn(plot_degradation(result, (250.0, 400.0)))
    tight, loose = ({line.get_label(): line for line in ax.get_lines()} for ax in fig.axes[:2])
    assert list(tight["jscc"].get_ydata()) == pytest.approx([70.0, 75.0, 80.0])
    assert list(tight["latent"].get_ydata()) == pytest.approx([60.0, 60.0, 60.0])  # over budget: the edge answers
    assert list(loose["latent"].get_ydata()) == pytest.approx([60.0, 80.0, 80.0])  # below the cliff: the edge
    assert len(fig.legends) == 1
    with pytest.raises(ValueError, match="budgets must be positive"):
        plot_degradation(result, ())
