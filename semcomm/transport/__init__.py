"""Carrying the codec over links: packets with their own CRC and a protected header over digital links
chosen by name (fixed or adaptive modulation and coding), analog transport of the codec's values with power
allocation, and sweeps of accuracy against channel quality and channel uses."""
from .analog import AnalogOutcome, AnalogTransport, ControlChannel, PowerAllocation, analog_over_link
from .digital import Delivery, DigitalTransport
from .links import CHANNELS, MCS_TABLE, LinkAdaptation, LinkSpec
from .packets import Arrival, Packetizer, WholeString
from .run import LinkOutcome, over_link
from .sweep import LinkPoint, LinkSweep, LinkSweepConfig, LinkSweepResult

__all__ = ["AnalogOutcome", "AnalogTransport", "ControlChannel", "PowerAllocation", "analog_over_link",
           "LinkAdaptation", "MCS_TABLE", "Arrival", "CHANNELS", "Delivery", "DigitalTransport", "LinkOutcome", "LinkPoint", "LinkSpec", "LinkSweep",
           "LinkSweepConfig", "LinkSweepResult", "Packetizer", "WholeString", "over_link"]
