"""Feed-forward convolutional codes with puncturing and a batch-vectorised soft-decision Viterbi decoder.

Default: the industry-standard K = 7, rate-1/2 code with generators 133 and 171 (octal)
(IEEE 802.11a/g, CCSDS, DVB-S), output order (g0, g1) per input bit.  Generator octal digits
are read with the most significant bit on the current input bit.  Blocks are zero-terminated
(K - 1 tail bits), so the decoder starts and ends in state 0.

Puncturing patterns are those of IEEE 802.11-2012, 18.3.5.6: rate 2/3 sends A1 B1 A2 (drops B2);
rate 3/4 sends A1 B1 A2 B3 (drops B2, A3).  The puncturing period restarts at every block and
also covers the tail.

LLR convention: log P(b=0)/P(b=1) (positive favours 0), as in the rest of the package.
"""
from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple, Union

import numpy as np
import torch

from .._checks import check_bits, check_choice, check_finite

PUNCTURE_PATTERNS: Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...]]] = {
    # rows: output A (g0), output B (g1); columns: consecutive input bits
    "1/2": ((1,), (1,)),
    "2/3": ((1, 1), (1, 0)),
    "3/4": ((1, 1, 0), (1, 0, 1)),
}


class ConvolutionalCode:
    """Zero-terminated rate-1/2 feed-forward convolutional code, optionally punctured.

    Args:
        k: information bits per block.
        rate: ``"1/2"``, ``"2/3"`` or ``"3/4"`` (puncturing of the mother code).
        generators: two generator polynomials in octal notation as ints, e.g. ``(0o133, 0o171)``.
        constraint_length: K (memory K - 1).

    Attributes:
        k, n: information and coded bits per block (n includes the punctured tail).
        coderate: k / n (slightly below the nominal rate because of the tail).

    :meth:`encode` maps bits (..., k) to (..., n); :meth:`decode` maps LLRs (..., n) to bits (..., k).
    """

    def __init__(self, k: int, rate: str = "1/2", generators: Sequence[int] = (0o133, 0o171),
                 constraint_length: int = 7) -> None:
        if int(k) != k or k < 1:
            raise ValueError(f"k must be a positive integer (information bits per block); got {k!r}")
        check_choice("rate", rate, PUNCTURE_PATTERNS)
        K = int(constraint_length)
        if not 2 <= K <= 12:
            raise ValueError(f"constraint_length must be in 2..12; got {constraint_length!r}")
        if len(generators) != 2 or any(g <= 0 or g >= 2**K for g in generators):
            raise ValueError(f"generators must be two polynomials of degree < {K}, e.g. (0o133, 0o171); got {generators!r}")
        self.k, self.K, self.rate_name = int(k), K, rate
        self.generators = tuple(int(g) for g in generators)
        self.num_states = 2 ** (K - 1)
        self.T = self.k + K - 1  # trellis steps including the tail
        pat = torch.tensor(PUNCTURE_PATTERNS[rate], dtype=torch.bool, device="cpu")  # (2, P)
        reps = -(-self.T // pat.shape[1])
        self._keep = pat.repeat(1, reps)[:, : self.T].T.reshape(-1)  # (2T,) in time order A_t, B_t
        self.n = int(self._keep.sum())
        self.coderate = self.k / self.n
        # Encoder taps on a window u[t-K+1..t]: window index i holds u[t-K+1+i]  <-> generator bit i.
        idx = torch.arange(K, device="cpu")
        self._taps = torch.stack([(g >> idx) & 1 for g in self.generators], dim=-1).float()  # (K, 2)
        self._build_trellis()

    def __repr__(self) -> str:
        g = ", ".join(oct(x) for x in self.generators)
        return f"ConvolutionalCode(k={self.k}, rate={self.rate_name!r}, generators=({g}), K={self.K})"

    def _build_trellis(self) -> None:
        K, S = self.K, self.num_states
        sp = torch.arange(S, device="cpu")
        u = sp >> (K - 2)  # input bit that leads into state s'
        prev = torch.stack([((sp << 1) & (S - 1)) | b for b in (0, 1)], dim=-1)  # (S, 2)
        reg = (u[:, None] << (K - 1)) | prev  # K-bit register, bit K-1 = current input
        outs = []
        for g in self.generators:
            x = reg & g
            par = torch.zeros_like(x)
            for i in range(K):
                par ^= (x >> i) & 1
            outs.append(par)
        out = torch.stack(outs, dim=-1)  # (S, 2, 2) coded bits of each branch
        self._prev = prev
        self._branch_sign = (1 - 2 * out).float()  # +1 for coded 0, -1 for coded 1
        self._input_of_state = u

    def encode(self, bits: torch.Tensor) -> torch.Tensor:
        """Coded bits (..., n), float32, from information bits (..., k)."""
        check_bits(bits)
        if bits.shape[-1] != self.k:
            raise ValueError(f"expected blocks of k={self.k} bits on the last dimension; got {bits.shape[-1]}")
        u = bits.float()
        u = torch.nn.functional.pad(u, (self.K - 1, self.K - 1))  # K-1 leading zeros (state 0), K-1 tail zeros
        win = u.unfold(-1, self.K, 1)  # (..., T, K)
        coded = torch.remainder(win @ self._taps.to(u.device), 2)  # (..., T, 2)
        coded = coded.reshape(*bits.shape[:-1], 2 * self.T)
        return coded[..., self._keep.to(u.device)]

    def depuncture(self, llr: torch.Tensor) -> torch.Tensor:
        """(..., n) -> (..., T, 2) with zeros (no information) at punctured positions."""
        full = llr.new_zeros(*llr.shape[:-1], 2 * self.T)
        full[..., self._keep.to(llr.device)] = llr
        return full.reshape(*llr.shape[:-1], self.T, 2)

    def decode(self, llr: torch.Tensor) -> torch.Tensor:
        """Maximum-likelihood (soft Viterbi) information bits (..., k), float32, from LLRs (..., n)."""
        if llr.shape[-1] != self.n:
            raise ValueError(f"expected n={self.n} LLRs per block on the last dimension; got {llr.shape[-1]}")
        check_finite("llr", llr)
        batch = llr.shape[:-1]
        L = self.depuncture(llr.float()).reshape(-1, self.T, 2)
        B, S, dev = L.shape[0], self.num_states, L.device
        prev = self._prev.to(dev)
        # Branch metric sum_j (1 - 2 c_j) L_j / 2 for every (next state, branch), by matmul in chunks.
        # Butterfly: next state s' = u * S/2 + j has predecessors 2j and 2j + 1 for both u, so the
        # candidates are metric viewed as (S/2, 2) plus branch metrics viewed as (2, S/2, 2).
        sign = (self._branch_sign.to(dev) / 2).reshape(S * 2, 2).T  # (2, S*2)
        half = S // 2
        metric = torch.full((B, S), -1e30, device=dev)
        metric[:, 0] = 0.0
        decisions = torch.empty((self.T, B, S), dtype=torch.bool, device=dev)
        chunk = 32
        for t0 in range(0, self.T, chunk):
            bm_chunk = L[:, t0:t0 + chunk] @ sign  # (B, c, S*2)
            for i in range(bm_chunk.shape[1]):
                cand = metric.view(B, 1, half, 2) + bm_chunk[:, i].view(B, 2, half, 2)
                c0, c1 = cand[..., 0], cand[..., 1]
                decisions[t0 + i] = (c1 > c0).view(B, S)
                metric = torch.maximum(c0, c1).view(B, S)
            metric = metric - metric.amax(-1, keepdim=True)
        # Traceback from the all-zero state (terminated trellis): a pointer chase of T small steps,
        # run in numpy, whose per-call overhead is a fraction of torch's.  The state's top bit is
        # the input bit of that step.
        chosen = decisions.cpu().numpy()
        state = np.zeros(B, dtype=np.int64)
        states = np.empty((self.T, B), dtype=np.int64)
        rows = np.arange(B)
        for t in range(self.T - 1, -1, -1):
            states[t] = state
            state = ((state << 1) & (S - 1)) | chosen[t, rows, state]
        out = torch.from_numpy((states >> (self.K - 2)).astype(np.float32)).to(dev)
        return out[: self.k].T.reshape(*batch, self.k)

    def distance_spectrum(self, d_max: int) -> Dict[int, Tuple[int, int]]:
        """{d: (A_d, B_d)} for the unpunctured mother code, free distance up to ``d_max``.

        A_d counts paths that leave and first return to state 0 with output weight d; B_d sums
        their input weights (the bit-error weights of the union bound).
        """
        S = self.num_states
        K = self.K
        nxt = np.zeros((S, 2), dtype=np.int64)
        w = np.zeros((S, 2), dtype=np.int64)
        for s in range(S):
            for u in (0, 1):
                reg = (u << (K - 1)) | s
                nxt[s, u] = (u << (K - 2)) | (s >> 1)
                w[s, u] = sum(bin(reg & g).count("1") % 2 for g in self.generators)
        count = np.zeros((S, d_max + 1), dtype=object)
        iw = np.zeros((S, d_max + 1), dtype=object)
        A = np.zeros(d_max + 1, dtype=object)
        Bw = np.zeros(d_max + 1, dtype=object)
        s1, d1 = nxt[0, 1], w[0, 1]
        if d1 <= d_max:
            count[s1, d1], iw[s1, d1] = 1, 1
        while count.any():
            new_c = np.zeros_like(count)
            new_w = np.zeros_like(iw)
            for s in range(1, S):
                for d in np.nonzero(count[s])[0]:
                    for u in (0, 1):
                        t, dd = nxt[s, u], d + w[s, u]
                        if dd > d_max:
                            continue
                        if t == 0:
                            A[dd] += count[s, d]
                            Bw[dd] += iw[s, d]
                        else:
                            new_c[t, dd] += count[s, d]
                            new_w[t, dd] += iw[s, d] + u * count[s, d]
            count, iw = new_c, new_w
        return {d: (int(A[d]), int(Bw[d])) for d in range(d_max + 1) if A[d]}


def union_bound_ber(ebno_db: Union[float, Sequence[float]], spectrum: Dict[int, Tuple[int, int]],
                    coderate: float) -> np.ndarray:
    """Union bound on the soft-decision Viterbi BER over BPSK/AWGN.

    P_b <= sum_d B_d Q(sqrt(2 d R Eb/N0)) for the bit-error weights ``B_d`` of ``spectrum``
    (as from :meth:`ConvolutionalCode.distance_spectrum`), code rate R = ``coderate`` and Eb/N0
    in dB (scalar or sequence).  Capped at 0.5.
    """
    from scipy.special import erfc

    g = 10 ** (np.asarray(ebno_db, dtype=np.float64) / 10)
    pb = sum(b * 0.5 * erfc(np.sqrt(d * coderate * g)) for d, (_, b) in spectrum.items())
    return np.minimum(pb, 0.5)
