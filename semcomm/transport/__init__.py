"""Carrying what the edge sent over links of ``channels``: one :class:`Transport` contract for packets over
digital links chosen by name (fixed or adaptive modulation and coding, or a capacity-achieving code as the upper
reference) and analog transport of the codec's values with power allocation, and ``over_link``, the codec end to
end over one link with either; and a JSCC pair trained through the channel (:class:`JSCCLink`)."""
from semcomm.transport.analog import AnalogTransport, source_statistics
from semcomm.transport.analog_outcome import AnalogOutcome
from semcomm.transport.base import Carried, LinkOutcome, Transport
from semcomm.transport.capacity import CapacityTransport
from semcomm.transport.control import ControlChannel
from semcomm.transport.digital import Delivery, DigitalTransport, Framing
from semcomm.transport.jscc import JSCCCodec, JSCCConfig
from semcomm.transport.jscc_link import JSCCLink
from semcomm.transport.links import CHANNELS, MCS_TABLE, LinkAdaptation, LinkSpec
from semcomm.transport.over_link import over_link
from semcomm.transport.power import POWER_ALLOCATIONS, PowerAllocation

__all__ = [
    "AnalogOutcome", "AnalogTransport", "CHANNELS", "CapacityTransport", "Carried", "ControlChannel", "Delivery",
    "DigitalTransport", "Framing", "JSCCCodec", "JSCCConfig", "JSCCLink", "LinkAdaptation", "LinkOutcome", "LinkSpec",
    "MCS_TABLE", "POWER_ALLOCATIONS", "PowerAllocation", "Transport", "over_link", "source_statistics",
]
