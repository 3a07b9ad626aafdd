"""Carrying what the edge sent over links of ``channels``: packets over digital links chosen by name (fixed or
adaptive modulation and coding), analog transport of the codec's values with power allocation, and
``over_link``, the codec end to end over one link."""
from semcomm.transport.analog import AnalogOutcome, AnalogTransport, ControlChannel, PowerAllocation, analog_over_link
from semcomm.transport.digital import Delivery, DigitalTransport
from semcomm.transport.links import CHANNELS, MCS_TABLE, LinkAdaptation, LinkSpec
from semcomm.transport.over_link import LinkOutcome, over_link

__all__ = [
    "AnalogOutcome", "AnalogTransport", "CHANNELS", "ControlChannel", "Delivery", "DigitalTransport",
    "LinkAdaptation", "LinkOutcome", "LinkSpec", "MCS_TABLE", "PowerAllocation", "analog_over_link", "over_link",
]
