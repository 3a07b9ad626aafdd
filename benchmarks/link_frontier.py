"""The semantic codec against gated image codecs at equal channel uses, point by point, from a link sweep.

    .venv/bin/semcomm link --channel awgn --snrs 0,1,2,3,6 ... --json RESULT.json
    .venv/bin/python benchmarks/link_frontier.py RESULT.json

For every channel condition of a :class:`~semcomm.experiments.link_results.LinkSweepResult` and every point
on the image codecs' joint frontier (WebP and JPEG, all gate thresholds), the best semantic point (either
framing, any setting and gate) that spends no more channel uses per image, and the margin in points. This is
the table behind ``LinkSweepResult.comparison`` (whose worst margin the CLI prints), spelled out.

The last column adds time sharing: a sender may serve a share of its images at one operating point and the
rest at another, which reaches every point on the line between them (mean channel uses and top-1 both
average). It is the semantic codec's upper concave envelope (its points and the edge alone) at the image
codec point's channel uses, minus that point's top-1: an achievable operating point, not a measured one,
and labelled so.

The second table turns it around (issue 27's target (b)): for every point of the image codecs' frontier above
the edge alone, the fewest channel uses per image of a measured semantic point (analog or digital, any setting
and gate) that reaches its top-1, and their ratio (the target: at most 0.5 at every point).
"""
from __future__ import annotations

import argparse
import math

from semcomm.experiments.link_results import LinkSweepResult


def envelope(points, uses: float) -> float:
    """Top-1 of the upper concave envelope of (channel uses, top-1) ``points`` at ``uses`` (time sharing)."""
    best = max((p.accuracy for p in points if p.channel_uses_per_image <= uses + 1e-9), default=float("nan"))
    for a in points:
        for b in points:
            ua, ub = a.channel_uses_per_image, b.channel_uses_per_image
            if ua < uses < ub:
                best = max(best, a.accuracy + (b.accuracy - a.accuracy) * (uses - ua) / (ub - ua))
    return best


def rows(result: LinkSweepResult, condition: float) -> list[str]:
    points = [p for p in result.points if p.condition == condition]
    semantic = [p for p in points if p.family == "semantic"]
    edge = next(p for p in points if p.family == "reference")
    codec_front = sorted((p for p in points if p.frontier and p.family == "codec"),
                         key=lambda p: p.channel_uses_per_image)
    out = []
    for p in codec_front:
        fits = [q for q in semantic if q.channel_uses_per_image <= p.channel_uses_per_image + 1e-9]
        best = max(fits, key=lambda q: (q.accuracy, -q.channel_uses_per_image), default=edge)
        if best.accuracy < edge.accuracy:
            best = edge
        shared = envelope(semantic + [edge], p.channel_uses_per_image)
        out.append(f"| {condition:g} | {p.label}, {p.gate} | {p.channel_uses_per_image:,.0f} | {100 * p.accuracy:.2f} "
                   f"| {best.label}, {best.gate} | {best.channel_uses_per_image:,.0f} | {100 * best.accuracy:.2f} "
                   f"| {100 * (best.accuracy - p.accuracy):+.2f} | {100 * (shared - p.accuracy):+.2f} |")
    return out


def ratio_rows(result: LinkSweepResult, condition: float) -> tuple[list[str], float]:
    """Rows of the uses-ratio table at ``condition`` and its worst ratio (inf where the semantic frontier never
    reaches an image codec's top-1; nan where no image-codec point beats the edge)."""
    points = [p for p in result.points if p.condition == condition]
    semantic = [p for p in points if p.family == "semantic"]
    edge = next(p for p in points if p.family == "reference")
    codec_front = sorted((p for p in points if p.frontier and p.family == "codec" and p.accuracy > edge.accuracy),
                         key=lambda p: p.channel_uses_per_image)
    out, worst = [], float("nan")
    for p in codec_front:
        reach = [q for q in semantic if q.accuracy >= p.accuracy]
        best = min(reach, key=lambda q: (q.channel_uses_per_image, -q.accuracy), default=None)
        ratio = math.inf if best is None else best.channel_uses_per_image / p.channel_uses_per_image
        worst = ratio if math.isnan(worst) else max(worst, ratio)
        ours = "unreached | | |" if best is None else (f"{best.label}, {best.gate} | {best.channel_uses_per_image:,.0f} "
                                                      f"| {100 * best.accuracy:.2f} |")
        out.append(f"| {condition:g} | {p.label}, {p.gate} | {p.channel_uses_per_image:,.0f} | {100 * p.accuracy:.2f} "
                   f"| {ours} {ratio:.2f} |")
    return out, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("result", help="the JSON written by `semcomm link --json`")
    args = parser.parse_args()
    result = LinkSweepResult.from_json(args.result)
    print(f"{result.link}, {result.dataset}, {result.images} images; edge alone {100 * result.edge_accuracy:.2f}%; "
          f"sweep took {result.seconds:.0f} s on {result.machine}\n")
    print(f"| {result.condition_name} | image codec (frontier point) | uses/image | top-1 | best semantic point with no "
          "more uses | uses/image | top-1 | margin (points) | margin with time sharing |")
    print("|---:|---|---:|---:|---|---:|---:|---:|---:|")
    for condition in sorted({p.condition for p in result.points}):
        for row in rows(result, condition):
            print(row)
    print()
    print(f"| {result.condition_name} | image codec (frontier point) | uses/image | top-1 | fewest-uses semantic point "
          "reaching it | uses/image | top-1 | uses ratio (target <= 0.5) |")
    print("|---:|---|---:|---:|---|---:|---:|---:|")
    worst = {}
    for condition in sorted({p.condition for p in result.points}):
        lines, worst[condition] = ratio_rows(result, condition)
        for line in lines:
            print(line)
    print("\nworst uses ratio per condition: " + ", ".join(f"{c:g}: {w:.2f}" for c, w in worst.items()) + "\n")
    print(result.table())


if __name__ == "__main__":
    main()
