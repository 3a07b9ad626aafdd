"""Quasi-cyclic LDPC codes of IEEE 802.11n and 802.16e, systematic encoding and belief-propagation decoding.

The parity-check matrix H (m x n) is expanded from a base matrix (see ``_wifi_ldpc_tables``):
entry s >= 0 becomes the Z x Z identity cyclically shifted right by s, -1 the zero block.
Codewords are ``[information bits (k), parity bits (m)]``.

Decoding is flooding belief propagation over all edges of the Tanner graph at once, vectorised
over the batch, with messages in a check-major table (batch last): sum-product (tanh rule) or normalised min-sum.  Each codeword stops as soon as
its hard decision satisfies every parity check (early termination); finished codewords are
removed from the working batch.

LLR convention: log P(b=0)/P(b=1) (positive favours 0).
"""
from __future__ import annotations

from typing import Optional

import torch

from .._checks import check_bits, check_choice, check_finite, check_positive
from ._wifi_ldpc_tables import TABLES, WIMAX_RATE_HALF

RATES = ("1/2", "2/3", "3/4", "5/6")
LENGTHS = (648, 1296, 1944)
WIMAX_LENGTHS = tuple(range(576, 2305, 96))
DECODERS = ("sum-product", "min-sum")


def _parse(table: str) -> torch.Tensor:
    rows = [[-1 if v == "-" else int(v) for v in line.split()] for line in table.strip().splitlines()]
    return torch.tensor(rows, dtype=torch.int64, device="cpu")


def base_matrix(n: int, rate: str) -> torch.Tensor:
    """802.11n base matrix (int64, 24 columns; -1 for a zero block) for block length n and rate."""
    check_choice("n", n, LENGTHS)
    check_choice("rate", rate, RATES)
    return _parse(TABLES[(n, rate)])


def wimax_base_matrix(n: int) -> torch.Tensor:
    """802.16e rate-1/2 base matrix for block length n (576 ... 2304, step 96): shifts scaled to Z = n / 24."""
    check_choice("n", n, WIMAX_LENGTHS)
    base = _parse(WIMAX_RATE_HALF)
    return torch.where(base > 0, base * (n // 24) // 96, base)


def expand(base: torch.Tensor, z: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices of the ones of H expanded from ``base`` with lifting size ``z``."""
    rows, cols = [], []
    r = torch.arange(z, device="cpu")
    for i, j in torch.nonzero(base >= 0).tolist():
        s = int(base[i, j])
        rows.append(i * z + r)
        cols.append(j * z + (r + s) % z)
    return torch.cat(rows), torch.cat(cols)


class BPDecoder:
    """Flooding belief-propagation decoder for a binary code with sparse parity-check matrix H.

    Messages live in a check-major table laid out (checks, max check degree, batch): the batch is
    the contiguous dimension, so gathering variables into the table and summing messages back
    onto variables move whole rows, and each check-node update is elementwise work over the batch.
    Slots beyond a check's degree point at a dummy variable whose LLR is ``_PAD`` (a certain 0):
    they never change a minimum, a sign or a tanh product.

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

    _PAD = 1e30

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
        self.num_edges = rows.numel()
        order = torch.argsort(rows * num_vars + cols)
        rows, cols = rows[order], cols[order]
        degree = torch.bincount(rows, minlength=num_checks)
        self.dmax = int(degree.max())
        slot = torch.arange(self.num_edges, device="cpu") - (torch.cumsum(degree, 0) - degree)[rows]
        table = torch.full((num_checks, self.dmax), num_vars, dtype=torch.int64, device="cpu")  # num_vars: the dummy
        table[rows, slot] = cols
        self.var_of_slot = table.flatten()  # (num_checks * dmax,) variable of each message slot

    def _check_update(self, v2c: torch.Tensor) -> torch.Tensor:
        """Check-to-variable messages (M, D, B) from variable-to-check messages (M, D, B)."""
        slots = range(self.dmax)
        if self.method == "sum-product":
            t = torch.tanh(0.5 * v2c)
            before = [torch.ones_like(t[:, 0])]  # products of the slots before / after each slot
            after = [torch.ones_like(t[:, 0])]
            for d in slots[:-1]:
                before.append(before[-1] * t[:, d])
                after.append(after[-1] * t[:, -1 - d])
            others = torch.stack([b * a for b, a in zip(before, reversed(after))], 1)
            return 2.0 * torch.atanh(others.clamp_(-1 + 1e-7, 1 - 1e-7))
        magnitude = v2c.abs()
        min1 = magnitude[:, 0].clone()
        min2 = torch.full_like(min1, float("inf"))  # second smallest, counting ties
        for d in slots[1:]:
            torch.minimum(min2, torch.maximum(min1, magnitude[:, d]), out=min2)
            torch.minimum(min1, magnitude[:, d], out=min1)
        others = torch.where(magnitude == min1.unsqueeze(1), min2.unsqueeze(1), min1.unsqueeze(1))
        # sign(product of the others) = sign(v2c * product of all): IEEE signs survive over/underflow
        return torch.copysign(others.mul_(self.alpha), v2c * v2c.prod(1, keepdim=True))

    def _syndrome_ok(self, hard: torch.Tensor) -> torch.Tensor:
        """(B,) bool: every parity check holds for hard decisions (num_vars + 1, B), dummy last and 0."""
        checks = hard.index_select(0, self.var_of_slot).view(self.num_checks, self.dmax, -1).sum(1)
        return (checks % 2 == 0).all(0)

    def __call__(self, llr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if llr.shape[-1] != self.num_vars:
            raise ValueError(f"expected {self.num_vars} LLRs on the last dimension; got {llr.shape[-1]}")
        if torch.isnan(llr).any():
            raise ValueError("llr contains NaN")
        batch = llr.shape[:-1]
        ch = llr.reshape(-1, self.num_vars).float().clamp(-1e4, 1e4)
        B, dev = ch.shape[0], ch.device
        ch = torch.cat([ch, ch.new_full((B, 1), self._PAD)], 1).T.contiguous()  # (num_vars + 1, B)
        var = self.var_of_slot = self.var_of_slot.to(dev)
        table = (self.num_checks, self.dmax, -1)
        out_bits = (ch < 0).float()
        iters = torch.zeros(B, dtype=torch.int64, device=dev)
        active = torch.arange(B, device=dev)
        if self.early_stop:
            keep = ~self._syndrome_ok(out_bits)
            active, ch = active[keep], ch[:, keep]
        c2v = ch.new_zeros(var.numel(), ch.shape[1])
        v2c = ch.index_select(0, var)
        for it in range(1, self.max_iter + 1):
            if active.numel() == 0:
                break
            c2v = self._check_update(v2c.view(table)).view(v2c.shape)
            total = ch.index_add(0, var, c2v)
            hard = (total < 0).float()
            out_bits[:, active] = hard
            iters[active] = it
            if self.early_stop:
                keep = ~self._syndrome_ok(hard)
                if not keep.all():
                    active, ch, c2v, total = active[keep], ch[:, keep], c2v[:, keep], total[:, keep]
            v2c = total.index_select(0, var).sub_(c2v)
        return out_bits[: self.num_vars].T.reshape(*batch, self.num_vars), iters.reshape(batch)


class QCLDPC:
    """Quasi-cyclic LDPC code with an 802.11n-style parity part, with encoder and BP decoder.

    The parity part of the base matrix must be a weight-3 column (a, 0, a) followed by a dual
    diagonal, as in IEEE 802.11n and 802.16e; it makes systematic encoding a back-substitution.

    Args:
        base: base matrix (mb x nb, int64; -1 for a zero block).
        z: lifting size (n = nb * z).
        decoder: ``"sum-product"`` or ``"min-sum"`` (normalised).
        max_iter: maximum BP iterations.
        alpha: min-sum normalisation factor.
        early_stop: per-codeword early termination when the syndrome is zero.

    Attributes:
        k, n, coderate: dimensions (k = n - mb * z) and k / n.
        z: lifting size.
        base: base matrix; ``H`` (property): dense parity-check matrix (m x n, uint8).

    :meth:`encode` maps bits (..., k) to codewords (..., n); :meth:`decode` maps LLRs (..., n)
    to information bits (..., k); :meth:`decode_full` also returns codeword bits and iterations.
    """

    def __init__(self, base: torch.Tensor, z: int, decoder: str = "sum-product", max_iter: int = 50,
                 alpha: float = 0.75, early_stop: bool = True) -> None:
        self.base, self.z = base, int(z)
        self.mb, self.nb = self.base.shape
        self.kb = self.nb - self.mb
        self.n = self.nb * self.z
        self.m = self.mb * self.z
        self.k = self.n - self.m
        self.coderate = self.k / self.n
        self.rows, self.cols = expand(self.base, self.z)
        self._check_structure()
        info = self.cols < self.k
        hs = torch.zeros(self.m, self.k, device="cpu")
        hs[self.rows[info], self.cols[info]] = 1.0
        self._hs_t = hs.T.contiguous()  # (k, m)
        self.decoder = BPDecoder(self.rows, self.cols, self.m, self.n, decoder, max_iter, alpha, early_stop)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n}, k={self.k}, decoder={self.decoder.method!r})"

    @property
    def H(self) -> torch.Tensor:
        h = torch.zeros(self.m, self.n, dtype=torch.uint8, device="cpu")
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


class LDPC80211n(QCLDPC):
    """IEEE 802.11n LDPC code: n = 648, 1296, 1944; rate ``"1/2"``, ``"2/3"``, ``"3/4"``, ``"5/6"``.

    Other arguments and attributes as :class:`QCLDPC`; ``z`` is 27, 54 or 81.
    """

    def __init__(self, n: int = 648, rate: str = "1/2", decoder: str = "sum-product", max_iter: int = 50,
                 alpha: float = 0.75, early_stop: bool = True) -> None:
        super().__init__(base_matrix(n, rate), n // 24, decoder, max_iter, alpha, early_stop)
        self.rate_name = rate


class LDPC80216e(QCLDPC):
    """IEEE 802.16e (mobile WiMAX) rate-1/2 LDPC code, n = 576 ... 2304 in steps of 96.

    Other arguments and attributes as :class:`QCLDPC`; ``z = n / 24``.  Only rate 1/2 is shipped.
    """

    def __init__(self, n: int = 576, rate: str = "1/2", decoder: str = "sum-product", max_iter: int = 50,
                 alpha: float = 0.75, early_stop: bool = True) -> None:
        check_choice("rate", rate, ("1/2",))
        super().__init__(wimax_base_matrix(n), n // 24, decoder, max_iter, alpha, early_stop)
        self.rate_name = rate
