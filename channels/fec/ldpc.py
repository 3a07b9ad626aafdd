"""Quasi-cyclic LDPC codes of IEEE 802.11n, systematic encoding and belief-propagation decoding.

The parity-check matrix H (m x n) is expanded from a base matrix (see ``_wifi_ldpc_tables``):
entry s >= 0 becomes the Z x Z identity cyclically shifted right by s, -1 the zero block.
Codewords are ``[information bits (k), parity bits (m)]``.

Decoding is flooding belief propagation over all edges of the Tanner graph at once, vectorised
over the batch: sum-product (tanh rule) or normalised min-sum.  Each codeword stops as soon as
its hard decision satisfies every parity check (early termination); finished codewords are
removed from the working batch.

LLR convention: log P(b=0)/P(b=1) (positive favours 0).
"""
from __future__ import annotations

from typing import Optional

import torch

from .._checks import check_bits, check_choice, check_finite, check_positive
from ._wifi_ldpc_tables import TABLES

RATES = ("1/2", "2/3", "3/4", "5/6")
LENGTHS = (648, 1296, 1944)
DECODERS = ("sum-product", "min-sum")


def base_matrix(n: int, rate: str) -> torch.Tensor:
    """802.11n base matrix (int64, 24 columns; -1 for a zero block) for block length n and rate."""
    check_choice("n", n, LENGTHS)
    check_choice("rate", rate, RATES)
    rows = [[-1 if v == "-" else int(v) for v in line.split()] for line in TABLES[(n, rate)].strip().splitlines()]
    return torch.tensor(rows, dtype=torch.int64)


def expand(base: torch.Tensor, z: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices of the ones of H expanded from ``base`` with lifting size ``z``."""
    rows, cols = [], []
    r = torch.arange(z)
    for i, j in torch.nonzero(base >= 0).tolist():
        s = int(base[i, j])
        rows.append(i * z + r)
        cols.append(j * z + (r + s) % z)
    return torch.cat(rows), torch.cat(cols)


class BPDecoder:
    """Flooding belief-propagation decoder for a binary code with sparse parity-check matrix H.

    Args:
        rows, cols: int64 indices of the ones of H (one entry per Tanner-graph edge).
        num_checks, num_vars: H is num_checks x num_vars.
        method: ``"sum-product"`` or ``"min-sum"`` (normalised by ``alpha``).
        max_iter: maximum number of iterations (positive int).
        alpha: min-sum normalisation factor in (0, 1].
        early_stop: stop each codeword as soon as all parity checks hold.

    Call: channel LLRs (..., num_vars) -> ``(bits, iterations)``: hard decisions float32
    (..., num_vars) and the iterations each codeword used, int64 (...).
    """

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, num_checks: int, num_vars: int,
                 method: str = "sum-product", max_iter: int = 50, alpha: float = 0.75,
                 early_stop: bool = True) -> None:
        check_choice("method", method, DECODERS)
        if int(max_iter) != max_iter or max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer; got {max_iter!r}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1]; got {alpha!r}")
        self.method, self.max_iter, self.alpha, self.early_stop = method, int(max_iter), float(alpha), early_stop
        self.num_checks, self.num_vars = int(num_checks), int(num_vars)
        order = torch.argsort(rows * num_vars + cols)
        rows, cols = rows[order], cols[order]
        self.num_edges = rows.numel()
        self.var_of_edge = cols
        deg = torch.bincount(rows, minlength=num_checks)
        self.dmax = int(deg.max())
        start = torch.cumsum(deg, 0) - deg
        slot = torch.arange(self.num_edges) - start[rows]
        # Check-major padded table of edge ids; padding points at a dummy edge (id = num_edges).
        table = torch.full((num_checks, self.dmax), self.num_edges, dtype=torch.int64)
        table[rows, slot] = torch.arange(self.num_edges)
        self.table = table
        self.pos_of_edge = rows * self.dmax + slot  # flat position of each edge in the table

    def _check_update(self, v2c: torch.Tensor) -> torch.Tensor:
        B = v2c.shape[0]
        if self.method == "sum-product":
            t = torch.tanh(0.5 * v2c)
            t = torch.cat([t, t.new_ones(B, 1)], dim=1)[:, self.table]  # (B, M, dmax)
            ones = t.new_ones(B, self.num_checks, 1)
            pre = torch.cumprod(torch.cat([ones, t[..., :-1]], -1), -1)
            suf = torch.cumprod(torch.cat([ones, t.flip(-1)[..., :-1]], -1), -1).flip(-1)
            prod = (pre * suf).clamp(-1 + 1e-7, 1 - 1e-7)
            msg = 2.0 * torch.atanh(prod)
        else:
            mag = torch.cat([v2c.abs(), v2c.new_full((B, 1), float("inf"))], 1)[:, self.table]
            neg = torch.cat([v2c < 0, v2c.new_zeros((B, 1), dtype=torch.bool)], 1)[:, self.table]
            min1, arg = mag.min(-1, keepdim=True)
            min2 = mag.scatter(-1, arg, float("inf")).min(-1, keepdim=True).values
            others = torch.where(torch.arange(self.dmax, device=v2c.device) == arg, min2, min1)
            parity = neg.sum(-1, keepdim=True) % 2 == 1
            sign = 1.0 - 2.0 * (parity ^ neg).float()
            msg = self.alpha * sign * torch.nan_to_num(others, posinf=0.0)
        return msg.reshape(B, -1)[:, self.pos_of_edge]

    def _syndrome_ok(self, hard: torch.Tensor) -> torch.Tensor:
        h = torch.cat([hard, hard.new_zeros(hard.shape[0], 1)], 1)
        par = h[:, self.var_of_edge]
        par = torch.cat([par, par.new_zeros(par.shape[0], 1)], 1)[:, self.table].sum(-1) % 2
        return (par == 0).all(-1)

    def __call__(self, llr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if llr.shape[-1] != self.num_vars:
            raise ValueError(f"expected {self.num_vars} LLRs on the last dimension; got {llr.shape[-1]}")
        if torch.isnan(llr).any():
            raise ValueError("llr contains NaN")
        batch = llr.shape[:-1]
        ch = llr.reshape(-1, self.num_vars).float().clamp(-1e4, 1e4)
        B, dev = ch.shape[0], ch.device
        var = self.var_of_edge.to(dev)
        self.table, self.pos_of_edge = self.table.to(dev), self.pos_of_edge.to(dev)
        out_bits = (ch < 0).float()
        iters = torch.zeros(B, dtype=torch.int64, device=dev)
        active = torch.arange(B, device=dev)
        if self.early_stop:
            keep = ~self._syndrome_ok(out_bits.to(torch.int64))
            active, ch = active[keep], ch[keep]
        c2v = ch.new_zeros(ch.shape[0], self.num_edges)
        v2c = ch[:, var]
        for it in range(1, self.max_iter + 1):
            if active.numel() == 0:
                break
            c2v = self._check_update(v2c)
            total = ch.index_add(1, var, c2v)
            hard = (total < 0)
            out_bits[active] = hard.float()
            iters[active] = it
            if self.early_stop:
                keep = ~self._syndrome_ok(hard.to(torch.int64))
                if not keep.all():
                    active, ch, c2v, total = active[keep], ch[keep], c2v[keep], total[keep]
            v2c = total[:, var] - c2v
        return out_bits.reshape(*batch, self.num_vars), iters.reshape(batch)


class LDPC80211n:
    """IEEE 802.11n LDPC code (n = 648, 1296, 1944; rate 1/2, 2/3, 3/4, 5/6) with encoder and BP decoder.

    Args:
        n: block length in bits.
        rate: ``"1/2"``, ``"2/3"``, ``"3/4"`` or ``"5/6"``.
        decoder: ``"sum-product"`` or ``"min-sum"`` (normalised).
        max_iter: maximum BP iterations.
        alpha: min-sum normalisation factor.
        early_stop: per-codeword early termination when the syndrome is zero.

    Attributes:
        k, n, coderate: dimensions (k = n * rate) and k / n.
        z: lifting size (27, 54, 81).
        base: base matrix; ``H`` (property): dense parity-check matrix (m x n, uint8).

    :meth:`encode` maps bits (..., k) to codewords (..., n); :meth:`decode` maps LLRs (..., n)
    to information bits (..., k); :meth:`decode_full` also returns codeword bits and iterations.
    """

    def __init__(self, n: int = 648, rate: str = "1/2", decoder: str = "sum-product", max_iter: int = 50,
                 alpha: float = 0.75, early_stop: bool = True) -> None:
        self.base = base_matrix(n, rate)
        self.n, self.rate_name = int(n), rate
        self.z = n // 24
        self.mb, self.nb = self.base.shape
        self.kb = self.nb - self.mb
        self.m = self.mb * self.z
        self.k = self.n - self.m
        self.coderate = self.k / self.n
        self.rows, self.cols = expand(self.base, self.z)
        self._check_structure()
        info = self.cols < self.k
        hs = torch.zeros(self.m, self.k)
        hs[self.rows[info], self.cols[info]] = 1.0
        self._hs_t = hs.T.contiguous()  # (k, m)
        self.decoder = BPDecoder(self.rows, self.cols, self.m, self.n, decoder, max_iter, alpha, early_stop)

    def __repr__(self) -> str:
        return f"LDPC80211n(n={self.n}, rate={self.rate_name!r}, decoder={self.decoder.method!r})"

    @property
    def H(self) -> torch.Tensor:
        h = torch.zeros(self.m, self.n, dtype=torch.uint8)
        h[self.rows, self.cols] = 1
        return h

    def _check_structure(self) -> None:
        """The parity part must be the 802.11n form: a weight-3 column (a, 0, a) and a dual diagonal."""
        p = self.base[:, self.kb:]
        col0 = torch.nonzero(p[:, 0] >= 0).flatten().tolist()
        ok = len(col0) == 3 and col0[0] == 0 and col0[2] == self.mb - 1
        ok = ok and int(p[0, 0]) == int(p[-1, 0]) and int(p[col0[1], 0]) == 0
        for j in range(1, self.mb):
            nz = torch.nonzero(p[:, j] >= 0).flatten().tolist()
            ok = ok and nz == [j - 1, j] and bool((p[nz, j] == 0).all())
        if not ok:
            raise ValueError("base matrix parity part is not in the 802.11n dual-diagonal form")
        self._a = int(p[0, 0])
        self._mid = col0[1]

    def encode(self, bits: torch.Tensor) -> torch.Tensor:
        """Systematic codewords [bits, parity] (..., n), float32, from bits (..., k)."""
        check_bits(bits)
        if bits.shape[-1] != self.k:
            raise ValueError(f"expected blocks of k={self.k} bits on the last dimension; got {bits.shape[-1]}")
        u = bits.float().reshape(-1, self.k)
        z = self.z
        lam = torch.remainder(u @ self._hs_t.to(u.device), 2).reshape(-1, self.mb, z)  # lambda_i
        p0 = torch.remainder(lam.sum(1), 2)
        shifted = lambda x, s: torch.roll(x, -s, dims=-1)  # P^s x: (P^s x)[r] = x[(r + s) mod z]
        parity = [p0]
        prev = None
        for i in range(self.mb - 1):
            acc = lam[:, i]
            if i == 0:
                acc = acc + shifted(p0, self._a)
            else:
                acc = acc + prev
                if i == self._mid:
                    acc = acc + p0
            prev = torch.remainder(acc, 2)
            parity.append(prev)
        cw = torch.cat([u] + parity, dim=-1)
        return cw.reshape(*bits.shape[:-1], self.n)

    def syndrome(self, codeword: torch.Tensor) -> torch.Tensor:
        """H c mod 2, (..., m) int64, for codewords (..., n) of 0/1."""
        c = codeword.to(torch.int64).reshape(-1, self.n)
        s = torch.zeros(c.shape[0], self.m, dtype=torch.int64, device=c.device)
        s.index_add_(1, self.rows.to(c.device), c[:, self.cols.to(c.device)])
        return (s % 2).reshape(*codeword.shape[:-1], self.m)

    def decode_full(self, llr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(codeword hard decisions (..., n) float32, iterations used (...) int64) from LLRs (..., n)."""
        return self.decoder(llr)

    def decode(self, llr: torch.Tensor) -> torch.Tensor:
        """Information bits (..., k), float32, from channel LLRs (..., n)."""
        return self.decoder(llr)[0][..., : self.k]
