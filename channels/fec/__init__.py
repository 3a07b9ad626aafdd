"""Forward error correction: CRC, convolutional codes with Viterbi, 802.11n LDPC, ideal codes."""
from .convolutional import ConvolutionalCode, union_bound_ber
from .crc import CRC
from .ideal import IdealCode, Uncoded
from .ldpc import BPDecoder, LDPC80211n

__all__ = ["CRC", "ConvolutionalCode", "union_bound_ber", "LDPC80211n", "BPDecoder", "IdealCode", "Uncoded"]
