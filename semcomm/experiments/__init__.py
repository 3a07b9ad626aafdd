"""Experiments on top of the library: the bitrate-accuracy sweep, the link sweep, the published comparisons,
and their figures."""
from semcomm.experiments.link_sweep import LinkPoint, LinkSweep, LinkSweepConfig, LinkSweepResult
from semcomm.experiments.sweep import OperatingPoint, Sweep, SweepConfig, SweepResult

__all__ = [
    "LinkPoint", "LinkSweep", "LinkSweepConfig", "LinkSweepResult", "OperatingPoint", "Sweep", "SweepConfig",
    "SweepResult",
]
