"""Carrying codec strings over links: packets with their own CRC and a protected header, links by name,
and sweeps of accuracy against channel quality and channel uses."""
from .digital import Delivery, DigitalTransport
from .links import CHANNELS, LinkSpec
from .packets import Arrival, Packetizer
from .run import LinkOutcome, over_link
from .sweep import LinkPoint, LinkSweep, LinkSweepConfig, LinkSweepResult

__all__ = ["Arrival", "CHANNELS", "Delivery", "DigitalTransport", "LinkOutcome", "LinkPoint", "LinkSpec", "LinkSweep",
           "LinkSweepConfig", "LinkSweepResult", "Packetizer", "over_link"]
