"""Carrying codec strings over links: packets with their own CRC and a protected header."""
from .digital import Delivery, DigitalTransport
from .packets import Arrival, Packetizer
from .run import LinkOutcome, over_link

__all__ = ["Arrival", "Delivery", "DigitalTransport", "LinkOutcome", "Packetizer", "over_link"]
