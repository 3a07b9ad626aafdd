"""Carrying codec strings over links: packets with their own CRC and a protected header."""
from .packets import Arrival, Packetizer

__all__ = ["Arrival", "Packetizer"]
