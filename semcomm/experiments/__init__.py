"""Experiments on top of the library: the bitrate-accuracy sweep, the link sweep, the published comparisons,
and their figures."""
from semcomm.experiments.link_results import LinkPoint, LinkSweepResult
from semcomm.experiments.link_sweep import LinkSweep, LinkSweepConfig
from semcomm.experiments.results import Frontier, OperatingPoint, SweepResult
from semcomm.experiments.sweep import Sweep, SweepConfig

__all__ = [
    "Frontier", "LinkPoint", "LinkSweep", "LinkSweepConfig", "LinkSweepResult", "OperatingPoint", "Sweep",
    "SweepConfig", "SweepResult",
]
