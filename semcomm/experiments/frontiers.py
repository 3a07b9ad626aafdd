"""Pareto frontiers of a sweep's schemes (mean bits per image against top-1), and their comparison.

Every scheme's frontier includes the edge alone (0 bits): any scheme can keep every image at the edge.
The semantic scheme is compared with the image codecs at every accuracy from the edge's + 1 point up to
the server's accuracy on full images; :func:`missing_comparison` says why there is nothing to compare.
"""
from __future__ import annotations

import math

from semcomm.experiments.results import Frontier, OperatingPoint, SweepResult
from semcomm.rate.image_codecs import FORMATS

GAIN = 0.01  # the comparison starts this far (top-1, a fraction) above the edge alone


def pareto_frontiers(points: list[OperatingPoint]) -> list[Frontier]:
    """Per (scheme, fusion): the points not beaten by a point with no more bits and higher top-1."""
    edge = {p.fusion: p for p in points if p.scheme == "edge"}
    frontiers = []
    for key in dict.fromkeys((p.scheme, p.fusion) for p in points if p.scheme != "edge"):
        members = [p for p in points if (p.scheme, p.fusion) == key]
        random, codec = members[0].family == "random", members[0].codec
        if key[1] in edge:
            members.append(edge[key[1]])
        members.sort(key=lambda p: (p.bits_per_image, -p.accuracy))
        front, best = [], -1.0
        for p in members:
            if p.accuracy > best:
                front.append(dict(bits_per_image=p.bits_per_image, accuracy=p.accuracy, label=p.label, gate=p.gate))
                best = p.accuracy
        frontiers.append(Frontier(key[0], key[1], front, random=random, codec=codec))
    return frontiers


def mark_frontier_points(points: list[OperatingPoint], frontiers: list[Frontier]) -> None:
    """Set ``frontier`` on every point that lies on its scheme's frontier (the edge alone on any)."""
    for f in frontiers:
        on_it = {(q["label"], q["gate"]) for q in f.points}
        for p in points:
            if p.scheme in (f.scheme, "edge") and p.fusion == f.fusion and (p.label, p.gate) in on_it:
                p.frontier = True


def compare_frontiers(result: SweepResult, step: float = 0.0025) -> list[dict]:
    """Bits each frontier needs (None: never) at each accuracy from the edge's + 1 point to the server's
    full-image accuracy; [] where there is no such accuracy (:func:`missing_comparison`).

    Compares, with and without fusion, the semantic scheme with the image
    codecs (raw 8-bit patches, the full images' reference, only when they are the semantic codec); accuracies
    every ``step``. Each row also names the strongest image codec (fewest bits at that accuracy) without and
    with fusion: keys ``strongest image codec`` and ``strongest image codec + fusion`` (None: none reaches it).
    """
    if missing_comparison(result) is not None:
        return []
    low, top = result.edge_accuracy + GAIN, result.find("full images").accuracy
    names = [f for f in result.frontiers if not f.random and (f.scheme != "raw8" or result.codec == "raw8")]

    codecs = [f for f in names if f.codec in FORMATS]

    def strongest(target, fusion):
        reach = [(f.bits_for(target), f.scheme) for f in codecs if f.fusion == fusion]
        return min((r for r in reach if not math.isinf(r[0])), default=(None, None))[1]

    def row(target):  # None where a frontier never reaches the accuracy (JSON has no infinity)
        return dict(accuracy=target, **{f.name: None if math.isinf(b := f.bits_for(target)) else b for f in names},
                    **{f"strongest image codec{' + fusion' if fused else ''}": strongest(target, fused)
                       for fused in dict.fromkeys(f.fusion for f in codecs)})

    rows = []
    target = low
    while target <= top + 1e-9:
        rows.append(row(round(target, 6)))
        target += step
    if rows and abs(rows[-1]["accuracy"] - round(top, 6)) > 1e-9:
        rows.append(row(top))
    return rows


def missing_comparison(result: SweepResult) -> str | None:
    """Why :func:`compare_frontiers` finds no accuracy to compare the frontiers at, or None when it does."""
    try:
        top = result.find("full images").accuracy
    except KeyError:
        return ("no comparison: the sweep ran without the server on full images (full_images=False), whose "
                "accuracy ends the compared range")
    if top < result.edge_accuracy + GAIN - 1e-9:
        return (f"no comparison: the server on full images ({100 * top:.2f}%) is not {100 * GAIN:g} point above the "
                f"edge alone ({100 * result.edge_accuracy:.2f}%), so no accuracy between them is worth bits")
    return None
