"""channels: a wireless link simulator in PyTorch, usable without semcomm.

Blocks are configured at construction and called on batch-first tensors with any leading shape;
every random draw takes a ``torch.Generator``.

Conventions:

* ``snr_db`` is Es/N0 per complex symbol in dB; constellations have unit average energy.
* ``no`` is the noise variance per complex symbol, E|n|^2 = no (no/2 per real dimension).
* ``ebno_db`` is Eb/N0 per information bit in dB (see :func:`ebnodb2no`).
* LLR = log P(b=0|y) / P(b=1|y): positive favours 0, hard decision ``b = llr < 0``.

Modules: ``modulation`` (Gray BPSK/QPSK/QAM, demappers), ``awgn``, ``fading`` (Rayleigh/Rician,
CSI, equaliser), ``discrete`` (BSC, BEC, packet erasure, Gilbert-Elliott), ``fec`` (CRC,
convolutional + Viterbi, 802.11n / 802.16e LDPC, ideal code), ``link`` (digital and analog links),
``montecarlo`` (BER/BLER runner), ``utils`` (unit conversions, Q-function, capacities).
"""
from .awgn import AWGN
from .discrete import BEC, BSC, GilbertElliott, PacketErasure
from .fading import Equalizer, FadingOutput, FlatFading
from .fec import (CRC, QCLDPC, BPDecoder, ConvolutionalCode, IdealCode, LDPC80211n, LDPC80216e, Uncoded,
                  union_bound_ber)
from .link import AnalogLink, AnalogResult, DigitalLink, DigitalResult
from .modulation import Constellation, Demapper, Mapper, hard_decisions
from .montecarlo import BERResult, RayRunner, SNRPoint, batch_generator, clopper_pearson, run_ber
from .utils import (awgn_capacity, bec_capacity, binary_entropy, bsc_capacity, db2lin, ebnodb2no,
                    ebnodb2snrdb, lin2db, qfunc, snrdb2no)

__all__ = [
    "AWGN", "BEC", "BSC", "GilbertElliott", "PacketErasure", "Equalizer", "FadingOutput", "FlatFading",
    "CRC", "BPDecoder", "ConvolutionalCode", "IdealCode", "LDPC80211n", "LDPC80216e", "QCLDPC", "Uncoded",
    "union_bound_ber",
    "AnalogLink", "AnalogResult", "DigitalLink", "DigitalResult", "Constellation", "Demapper", "Mapper",
    "hard_decisions", "BERResult", "RayRunner", "SNRPoint", "batch_generator", "clopper_pearson", "run_ber",
    "awgn_capacity", "bec_capacity", "binary_entropy", "bsc_capacity", "db2lin", "ebnodb2no", "ebnodb2snrdb",
    "lin2db", "qfunc", "snrdb2no",
]
