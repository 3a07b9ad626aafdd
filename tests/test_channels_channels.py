"""Channels: AWGN noise level, Rayleigh/Rician fading vs closed forms, CSI modes, BSC/BEC, packet erasure."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from channels.awgn import AWGN
from channels.discrete import BEC, BSC, GilbertElliott, PacketErasure
from channels.fading import Equalizer, FlatFading
from channels.modulation import Constellation, Demapper, Mapper, hard_decisions
from channels.utils import ebnodb2no, ebnodb2snrdb, qfunc, snrdb2no


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def within(sim, theory, n_trials, z=5.0, rel=0.05):
    sd = math.sqrt(theory * (1 - theory) / n_trials)
    return abs(sim - theory) <= z * sd + rel * theory


def test_ebno_conversion():
    # 16-QAM, rate 1/2: Es/N0 = Eb/N0 + 10 log10(4 * 0.5) = Eb/N0 + 3.01 dB
    assert abs(ebnodb2snrdb(5.0, 4, 0.5).item() - (5.0 + 10 * math.log10(2))) < 1e-9
    assert abs(ebnodb2no(0.0, 2, 1.0).item() - 0.5) < 1e-12
    assert abs(snrdb2no(10.0).item() - 0.1) < 1e-12
    with pytest.raises(ValueError, match="finite"):
        ebnodb2no(float("nan"), 2)
    with pytest.raises(ValueError, match="coderate"):
        ebnodb2no(1.0, 2, 1.5)


def test_awgn_noise_variance_per_complex_symbol():
    x = torch.zeros(200_000, dtype=torch.complex64)
    for kw, no in (({"snr_db": 3.0}, 10 ** -0.3), ({"no": 0.25}, 0.25)):
        n = AWGN()(x, generator=gen(0), **kw)
        assert abs((n.abs() ** 2).mean().item() - no) < 0.01 * no
        assert abs(n.real.var().item() - no / 2) < 0.01 * no  # no/2 per real dimension
    with pytest.raises(ValueError, match="finite"):
        AWGN()(x, snr_db=float("nan"))
    with pytest.raises(ValueError, match="exactly one"):
        AWGN()(x, snr_db=1.0, no=0.1)
    with pytest.raises(ValueError, match="exactly one"):
        AWGN()(x)
    with pytest.raises(ValueError, match="non-negative"):
        AWGN()(x, no=-1.0)


def test_seeded_generator_reproducible():
    x = Mapper(4)(torch.randint(0, 2, (2, 64), generator=gen(0)))
    a = FlatFading("rician", 2.0, coherence=4)(x, snr_db=5.0, generator=gen(1))
    b = FlatFading("rician", 2.0, coherence=4)(x, snr_db=5.0, generator=gen(1))
    assert torch.equal(a.y, b.y) and torch.equal(a.h, b.h)


def fading_ber(order, ebno_db, n_bits, seed, **kw):
    c = Constellation(order)
    bits = torch.randint(0, 2, (n_bits,), generator=gen(seed))
    snr_db = ebno_db + 10 * math.log10(c.bits_per_symbol)
    out = FlatFading(**kw)(Mapper(c)(bits), snr_db=snr_db, generator=gen(seed + 1))
    x_hat, no_eff = Equalizer("zf")(out.y, out.h_hat, out.no)
    llr = Demapper(c, "exact")(x_hat, no_eff)
    return (hard_decisions(llr) != bits).float().mean().item()


@pytest.mark.parametrize("ebno_db", [0.0, 10.0, 20.0])
@pytest.mark.parametrize("order", [2, 4])
def test_rayleigh_perfect_csi_vs_closed_form(order, ebno_db):
    g = 10 ** (ebno_db / 10)
    theory = 0.5 * (1 - math.sqrt(g / (1 + g)))
    n = 300_000
    sim = fading_ber(order, ebno_db, n, 30, kind="rayleigh", coherence=1, csi="perfect")
    assert within(sim, theory, n), (sim, theory)


def rician_bpsk_ber(k, ebno_db):
    """E_h[Q(sqrt(2 |h|^2 Eb/N0))] by quadrature over the Rice law of |h| (E|h|^2 = 1)."""
    g = 10 ** (ebno_db / 10)
    sigma = math.sqrt(1 / (2 * (k + 1)))
    nu = math.sqrt(k / (k + 1))
    rice = stats.rice(b=nu / sigma, scale=sigma)
    f = lambda r: rice.pdf(r) * 0.5 * math.erfc(math.sqrt(g) * r)
    return integrate.quad(f, 0, np.inf, limit=200)[0]


@pytest.mark.parametrize("k", [1.0, 5.0])
def test_rician_vs_quadrature(k):
    n = 300_000
    sim = fading_ber(2, 8.0, n, 40, kind="rician", k_factor=k, coherence=1, csi="perfect")
    theory = rician_bpsk_ber(k, 8.0)
    assert within(sim, theory, n), (sim, theory)


def test_rician_approaches_awgn_as_k_grows():
    ebno_db, n = 6.0, 400_000
    awgn = qfunc(math.sqrt(2 * 10 ** (ebno_db / 10))).item()
    bers = [fading_ber(2, ebno_db, n, 50 + i, kind="rician", k_factor=k, coherence=1)
            for i, k in enumerate([0.0, 3.0, 30.0, 1000.0])]
    assert all(a > b for a, b in zip(bers, bers[1:])), bers
    assert within(bers[-1], awgn, n, rel=0.1), (bers[-1], awgn)
    assert bers[0] > 5 * awgn


def test_block_fading_is_constant_per_block():
    x = torch.ones(3, 20, dtype=torch.complex64)
    out = FlatFading("rayleigh", coherence=8)(x, snr_db=10.0, generator=gen(3))
    h = out.h
    for start in (0, 8, 16):
        blk = h[:, start:start + 8]
        assert torch.allclose(blk, blk[:, :1].expand_as(blk))
    assert not torch.allclose(h[:, 0], h[:, 8])
    whole = FlatFading("rayleigh", coherence=None)(x, snr_db=10.0, generator=gen(3)).h
    assert torch.allclose(whole, whole[:, :1].expand_as(whole))
    assert FlatFading(coherence=8, csi="estimated", num_pilots=2).pilot_uses(20) == 6
    assert FlatFading(coherence=8, csi="perfect").pilot_uses(20) == 0


def test_fading_power_normalised():
    x = torch.ones(400_000, dtype=torch.complex64)
    for kind, k in (("rayleigh", 0.0), ("rician", 4.0)):
        h = FlatFading(kind, k)(x, no=1e-9, generator=gen(4)).h
        assert abs((h.abs() ** 2).mean().item() - 1) < 0.01


def test_estimated_csi_error_variance_and_penalty():
    x = torch.ones(40_000, 16, dtype=torch.complex64)
    no = 0.2
    out = FlatFading("rayleigh", coherence=16, csi="estimated", num_pilots=4)(x, no=no, generator=gen(5))
    err = (out.h_hat - out.h)[:, 0]
    assert abs((err.abs() ** 2).mean().item() - no / 4) < 0.03 * no / 4
    # BER: estimated CSI is worse than perfect, and better with more pilots.
    n = 300_000
    ber = {p: fading_ber(2, 5.0, n, 60, kind="rayleigh", coherence=10, csi="estimated", num_pilots=p) for p in (1, 16)}
    perfect = fading_ber(2, 5.0, n, 60, kind="rayleigh", coherence=10, csi="perfect")
    assert ber[1] > ber[16] > perfect
    # Rayleigh with no CSI: the phase is unknown, BPSK detection is a coin toss.
    assert abs(fading_ber(2, 20.0, n, 61, kind="rayleigh", csi="none") - 0.5) < 0.01


def test_mmse_equaliser():
    h = torch.tensor([1 + 1j, 0.1j], dtype=torch.complex64)
    y = h * torch.tensor([1 + 0j, -1 + 0j], dtype=torch.complex64)
    x_zf, no_zf = Equalizer("zf")(y, h, 0.5)
    assert torch.allclose(x_zf, torch.tensor([1 + 0j, -1 + 0j]), atol=1e-6)
    assert torch.allclose(no_zf, torch.tensor([0.25, 50.0]))
    x_mm, _ = Equalizer("mmse")(y, h, 0.5)
    assert torch.allclose(x_mm, torch.tensor([2 / 2.5 + 0j, -0.01 / 0.51 + 0j]), atol=1e-6)


def test_fading_bad_inputs():
    with pytest.raises(ValueError, match="csi"):
        FlatFading(csi="partial")
    with pytest.raises(ValueError, match="coherence"):
        FlatFading(coherence=0)
    with pytest.raises(ValueError, match="k_factor"):
        FlatFading("rician", k_factor=-1)
    with pytest.raises(ValueError, match="num_pilots"):
        FlatFading(csi="estimated", num_pilots=0)
    with pytest.raises(ValueError, match="finite"):
        FlatFading()(torch.ones(4, dtype=torch.complex64), snr_db=float("nan"))


@pytest.mark.parametrize("p", [0.0, 0.01, 0.2, 1.0])
def test_bsc_rate(p):
    bits = torch.randint(0, 2, (200_000,), generator=gen(7))
    rate = (BSC(p)(bits, gen(8)) != bits).float().mean().item()
    assert within(rate, p, bits.numel()) if 0 < p < 1 else rate == p


@pytest.mark.parametrize("e", [0.0, 0.05, 0.5])
def test_bec_rate(e):
    bits = torch.randint(0, 2, (200_000,), generator=gen(9))
    r = BEC(e)(bits, gen(10))
    erased = r == -1
    assert within(erased.float().mean().item(), e, bits.numel()) if e > 0 else not erased.any()
    assert torch.equal(r[~erased].long(), bits[~erased])  # never flips
    llr = BEC.llr(r)
    assert (llr[erased] == 0).all() and (hard_decisions(llr[~erased]) == bits[~erased]).all()


def test_discrete_bad_inputs():
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            BSC(bad)
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            BEC(bad)
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            PacketErasure(bad)
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            GilbertElliott(bad, 0.5)
    with pytest.raises(ValueError, match="0 and 1"):
        BSC(0.1)(torch.tensor([0, 1, 3]))


def test_iid_packet_erasure():
    pk = torch.ones(1000, 200, 8)
    out, lost = PacketErasure(0.1)(pk, gen(11))
    assert lost.shape == (1000, 200)
    assert within(lost.float().mean().item(), 0.1, lost.numel())
    assert (out[lost] == 0).all() and (out[~lost] == 1).all()


def burst_lengths(lost: torch.Tensor) -> np.ndarray:
    lengths = []
    for row in lost.numpy():
        padded = np.concatenate([[0], row.astype(int), [0]])
        d = np.diff(padded)
        lengths.extend((np.flatnonzero(d == -1) - np.flatnonzero(d == 1)).tolist())
    return np.array(lengths)


def test_gilbert_elliott_loss_rate_and_bursts():
    ge = GilbertElliott(p_gb=0.02, p_bg=0.25)
    lost = ge.sample((400, 2000), gen(12))
    pi_b = 0.02 / 0.27
    assert abs(lost.float().mean().item() - pi_b) < 0.05 * pi_b
    # Geometric burst lengths with mean 1/p_bg = 4 (bursts touching the edges are few).
    assert abs(burst_lengths(lost).mean() - 4.0) < 0.2
    # Bursty: P(lost | previous lost) = 1 - p_bg, far above the i.i.d. rate.
    prev, cur = lost[:, :-1], lost[:, 1:]
    cond = (prev & cur).sum().item() / prev.sum().item()
    assert abs(cond - 0.75) < 0.03
    iid = PacketErasure(pi_b).sample((400, 2000), gen(13))
    assert burst_lengths(iid).mean() < 1.2


def test_gilbert_elliott_general_and_edge_cases():
    ge = GilbertElliott(0.1, 0.1, loss_good=0.01, loss_bad=0.5)
    lost = ge.sample((200, 1000), gen(14))
    assert abs(lost.float().mean().item() - ge.p) < 0.03 * ge.p
    assert ge.p == pytest.approx(0.5 * 0.01 + 0.5 * 0.5)
    # Never leaves the Good state once there (p_gb = 0): no losses.
    assert not GilbertElliott(0.0, 0.5).sample((10, 100), gen(15)).any()
    assert GilbertElliott(0.3, 0.3).sample((5, 0), gen(16)).shape == (5, 0)
