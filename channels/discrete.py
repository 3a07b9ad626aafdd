"""Binary-input discrete channels (BSC, BEC) and packet erasure channels (i.i.d. and Gilbert-Elliott)."""
from __future__ import annotations

import math
from typing import Optional

import torch

from ._checks import check_bits, check_probability


class BSC:
    """Binary symmetric channel: each bit is flipped independently with probability ``p``.

    Args:
        p: crossover probability in [0, 1].

    Call: ``bits`` (...) of 0/1, optional ``generator`` -> bits of the same shape and dtype.
    """

    def __init__(self, p: float) -> None:
        check_probability("p", p)
        self.p = float(p)

    def __call__(self, bits: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        check_bits(bits)
        flip = torch.rand(bits.shape, generator=generator, device=bits.device) < self.p
        return torch.where(flip, 1 - bits, bits)

    def llr(self, bits: torch.Tensor) -> torch.Tensor:
        """Channel LLRs log P(b=0|r)/P(b=1|r) of received bits, float32 (+-inf for p = 0)."""
        mag = math.inf if self.p in (0.0, 1.0) else math.log((1 - self.p) / self.p)
        if self.p == 1.0:
            mag = -math.inf
        return (1 - 2 * bits.float()) * mag


class BEC:
    """Binary erasure channel: each bit is erased independently with probability ``e``.

    Erased positions are returned as -1 (int8 output otherwise 0/1).

    Args:
        e: erasure probability in [0, 1].

    Call: ``bits`` (...) of 0/1, optional ``generator`` -> int8 tensor of 0, 1, -1.
    """

    def __init__(self, e: float) -> None:
        check_probability("e", e)
        self.e = float(e)

    def __call__(self, bits: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        check_bits(bits)
        erased = torch.rand(bits.shape, generator=generator, device=bits.device) < self.e
        return torch.where(erased, torch.tensor(-1, dtype=torch.int8, device=bits.device), bits.to(torch.int8))

    @staticmethod
    def llr(received: torch.Tensor, magnitude: float = math.inf) -> torch.Tensor:
        """LLRs of BEC output: +magnitude for 0, -magnitude for 1, 0 for an erasure (-1)."""
        r = received.float()
        return torch.where(r < 0, torch.zeros_like(r), (1 - 2 * r) * magnitude)


class PacketErasure:
    """I.i.d. packet erasure: each packet is lost independently with probability ``p``.

    Args:
        p: packet loss probability in [0, 1].

    :meth:`sample` draws a loss mask; calling the block on ``packets`` (..., num_packets, L)
    returns ``(packets with lost ones zeroed, lost)`` where ``lost`` is bool (..., num_packets).
    """

    def __init__(self, p: float) -> None:
        check_probability("p", p)
        self.p = float(p)

    def sample(self, shape, generator: Optional[torch.Generator] = None,
               device: Optional[torch.device] = None) -> torch.Tensor:
        """Bool loss mask of ``shape`` (last dimension: packets in time order)."""
        return torch.rand(shape, generator=generator, device=device) < self.p

    def __call__(self, packets: torch.Tensor, generator: Optional[torch.Generator] = None):
        if packets.dim() < 2:
            raise ValueError(f"packets must have shape (..., num_packets, packet_len); got {tuple(packets.shape)}")
        lost = self.sample(packets.shape[:-1], generator, packets.device)
        return packets.masked_fill(lost.unsqueeze(-1), 0), lost


class GilbertElliott(PacketErasure):
    """Bursty packet loss from a two-state Markov chain (Gilbert-Elliott).

    States Good/Bad; per packet the chain moves G->B with probability ``p_gb`` and B->G with
    ``p_bg``; a packet is lost with probability ``loss_good`` in G and ``loss_bad`` in B.  The
    first state is drawn from the stationary law, pi_B = p_gb / (p_gb + p_bg).  With the defaults
    (loss_good = 0, loss_bad = 1, the Gilbert channel) the mean loss rate is pi_B and the mean
    burst length is 1 / p_bg.

    Sampling is vectorised: sojourn times are geometric, so runs are drawn at once and located
    with a cumulative sum (no Python loop over packets).
    """

    def __init__(self, p_gb: float, p_bg: float, loss_good: float = 0.0, loss_bad: float = 1.0) -> None:
        for name, v in (("p_gb", p_gb), ("p_bg", p_bg), ("loss_good", loss_good), ("loss_bad", loss_bad)):
            check_probability(name, v)
        if p_gb + p_bg == 0:
            raise ValueError("p_gb and p_bg cannot both be 0 (the chain would have no stationary law)")
        self.p_gb, self.p_bg = float(p_gb), float(p_bg)
        self.loss_good, self.loss_bad = float(loss_good), float(loss_bad)
        self.p = self.stationary_bad * self.loss_bad + (1 - self.stationary_bad) * self.loss_good

    @property
    def stationary_bad(self) -> float:
        """Stationary probability of the Bad state, p_gb / (p_gb + p_bg)."""
        return self.p_gb / (self.p_gb + self.p_bg)

    def states(self, shape, generator: Optional[torch.Generator] = None,
               device: Optional[torch.device] = None) -> torch.Tensor:
        """Bool tensor of ``shape``: True where the chain is in the Bad state (time on the last dim)."""
        *batch, n = shape
        start_bad = torch.rand(batch, generator=generator, device=device) < self.stationary_bad
        run = torch.arange(n, device=device)
        bad_run = start_bad.unsqueeze(-1) ^ (run % 2 == 1)  # run j is Bad iff start_bad xor j odd
        leave = torch.where(bad_run, torch.tensor(self.p_bg, device=device), torch.tensor(self.p_gb, device=device))
        u = torch.rand((*batch, n), generator=generator, device=device).clamp_min(1e-300)
        # Geometric(leave) on {1, 2, ...}: 1 + floor(log u / log(1 - leave)); leave = 0 -> never leaves.
        with torch.no_grad():
            denom = torch.log1p(-leave.double())
            length = torch.where(leave >= 1, torch.ones_like(denom),
                                 1 + torch.floor(torch.log(u.double()) / denom))
            length = torch.nan_to_num(length, nan=float(n), posinf=float(n)).clamp(max=n)
        ends = torch.cumsum(length, dim=-1)  # run j covers times [ends[j-1], ends[j])
        t = torch.arange(n, device=device, dtype=ends.dtype).expand(*batch, n).contiguous()
        run_of_t = torch.searchsorted(ends.contiguous(), t, right=True).clamp(max=n - 1)
        return torch.gather(bad_run, -1, run_of_t)

    def sample(self, shape, generator: Optional[torch.Generator] = None,
               device: Optional[torch.device] = None) -> torch.Tensor:
        shape = tuple(shape)
        if len(shape) == 0 or shape[-1] == 0:
            return torch.zeros(shape, dtype=torch.bool, device=device)
        bad = self.states(shape, generator, device)
        u = torch.rand(shape, generator=generator, device=device)
        return torch.where(bad, u < self.loss_bad, u < self.loss_good)
