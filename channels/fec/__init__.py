"""Forward error correction: CRC, convolutional codes with Viterbi, 802.11n and 802.16e LDPC, ideal codes."""
from .convolutional import ConvolutionalCode, union_bound_ber
from .crc import CRC
from .ideal import IdealCode, Uncoded
from .ldpc import QCLDPC, BPDecoder, LDPC80211n, LDPC80216e

__all__ = ["CRC", "ConvolutionalCode", "union_bound_ber", "QCLDPC", "LDPC80211n", "LDPC80216e", "BPDecoder",
           "IdealCode", "Uncoded"]
