"""channels: wireless link simulation in PyTorch, usable without semcomm.

Modulation, AWGN and fading channels, erasures, FEC and a Monte-Carlo
BER/BLER runner arrive with their own issue; this package imports nothing
from semcomm.
"""
