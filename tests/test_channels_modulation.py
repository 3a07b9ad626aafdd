"""Modulation and demapping: energy, Gray labelling, LLR correctness, uncoded BER/SER vs closed forms."""
from __future__ import annotations

import math

import pytest
import torch

from channels.awgn import AWGN
from channels.modulation import Constellation, Demapper, Mapper, hard_decisions
from channels.utils import qfunc

ORDERS = [2, 4, 16, 64, 256]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("order", ORDERS)
def test_unit_energy_and_gray(order):
    c = Constellation(order)
    pts = c.points.to(torch.complex128)
    assert pts.numel() == order
    assert abs((pts.abs() ** 2).mean().item() - 1.0) < 1e-6
    assert len({(round(z.real, 5), round(z.imag, 5)) for z in pts.tolist()}) == order  # distinct points
    # Gray: every pair of nearest neighbours differs in exactly one bit.
    d = (pts[:, None] - pts[None, :]).abs()
    dmin = d[d > 1e-9].min()
    pairs = torch.nonzero((d - dmin).abs() < 1e-6)
    assert len(pairs) > 0
    hamming = (c.labels_bits[pairs[:, 0]] != c.labels_bits[pairs[:, 1]]).sum(-1)
    assert (hamming == 1).all()


def test_bpsk_qpsk_mapping_convention():
    assert torch.allclose(Mapper(2)(torch.tensor([0, 1])), torch.tensor([1 + 0j, -1 + 0j], dtype=torch.complex64))
    x = Mapper(4)(torch.tensor([0, 0, 0, 1, 1, 0, 1, 1]))
    s = 1 / math.sqrt(2)
    assert torch.allclose(x, torch.tensor([s + s * 1j, s - s * 1j, -s + s * 1j, -s - s * 1j], dtype=torch.complex64))


@pytest.mark.parametrize("order", ORDERS)
def test_roundtrip_noiseless(order):
    m = Constellation(order).bits_per_symbol
    bits = torch.randint(0, 2, (3, 5, 40 * m), generator=gen(1))
    x = Mapper(order)(bits)
    assert x.shape == (3, 5, 40)
    for method in ("hard", "exact", "maxlog"):
        out = Demapper(order, method)(x, 0.01)
        hard = out if method == "hard" else hard_decisions(out)
        assert torch.equal(hard, bits.float()), method


@pytest.mark.parametrize("order", [4, 16, 64])
def test_exact_llr_matches_brute_force(order):
    """Per-dimension LLRs equal the full-constellation log-sum-exp over all M points."""
    c = Constellation(order)
    y = Mapper(c)(torch.randint(0, 2, (500 * c.bits_per_symbol,), generator=gen(2)))
    no = 0.3
    y = AWGN()(y, no=no, generator=gen(3))
    llr = Demapper(c, "exact")(y, no).reshape(-1, c.bits_per_symbol).double()
    metric = -(y.to(torch.complex128)[:, None] - c.points.to(torch.complex128)[None, :]).abs() ** 2 / no
    ref = []
    for i in range(c.bits_per_symbol):
        b = c.labels_bits[:, i]
        ref.append(torch.logsumexp(metric[:, b == 0], -1) - torch.logsumexp(metric[:, b == 1], -1))
    ref = torch.stack(ref, -1)
    assert torch.allclose(llr, ref, atol=1e-3, rtol=1e-4)


def test_bpsk_llr_closed_form():
    y = torch.tensor([0.3 + 0.2j, -1.1 - 0.5j], dtype=torch.complex64)
    no = 0.5
    llr = Demapper(2, "exact")(y, no)
    assert torch.allclose(llr, 4 * y.real / no, atol=1e-5)  # LLR = 4 Re(y) / no for +-1 BPSK


@pytest.mark.parametrize("order", [16, 64, 256])
def test_maxlog_close_to_exact_at_high_snr(order):
    c = Constellation(order)
    bits = torch.randint(0, 2, (2000 * c.bits_per_symbol,), generator=gen(4))
    x = Mapper(c)(bits)
    snr_db = {16: 20.0, 64: 26.0, 256: 32.0}[order]
    no = 10 ** (-snr_db / 10)
    y = AWGN()(x, no=no, generator=gen(5))
    exact = Demapper(c, "exact")(y, no)
    maxlog = Demapper(c, "maxlog")(y, no)
    rel = ((exact - maxlog).abs() / exact.abs().clamp_min(1.0)).median()
    assert rel < 1e-3
    # and far apart at low SNR (the approximation is not a no-op)
    no_low = 1.0
    y_low = AWGN()(x, no=no_low, generator=gen(6))
    assert (Demapper(c, "exact")(y_low, no_low) - Demapper(c, "maxlog")(y_low, no_low)).abs().max() > 0.1


@pytest.mark.parametrize("order", ORDERS)
def test_llr_sign_gives_hard_decision(order):
    c = Constellation(order)
    bits = torch.randint(0, 2, (4000 * c.bits_per_symbol,), generator=gen(7))
    snr_db = {2: 3.0, 4: 6.0, 16: 14.0, 64: 20.0, 256: 26.0}[order]  # symbol error rate ~1e-2
    y = AWGN()(Mapper(c)(bits), snr_db=snr_db, generator=gen(8))
    no = 10 ** (-snr_db / 10)
    hard = Demapper(c, "hard")(y)
    # Max-log sign is exactly the nearest-point decision; the exact LLR sign agrees at this SNR.
    assert torch.equal(hard_decisions(Demapper(c, "maxlog")(y, no)), hard)
    agree = (hard_decisions(Demapper(c, "exact")(y, no)) == hard).float().mean()
    assert agree > 0.999
    if order <= 4:
        assert agree == 1.0


@pytest.mark.parametrize("order", [16, 256])
def test_exact_llr_with_per_symbol_noise_and_high_snr(order):
    """A tensor ``no`` (one variance per symbol, as after equalisation) down to Es/N0 = 40 dB:
    finite LLRs equal to the brute-force log-sum-exp."""
    c = Constellation(order)
    y = AWGN()(Mapper(c)(torch.randint(0, 2, (400 * c.bits_per_symbol,), generator=gen(9))), no=1e-3,
               generator=gen(10))
    no = torch.logspace(-4, 0, 400)
    llr = Demapper(c, "exact")(y, no).reshape(-1, c.bits_per_symbol).double()
    metric = -(y.to(torch.complex128)[:, None] - c.points.to(torch.complex128)[None, :]).abs() ** 2 / no[:, None]
    ref = torch.stack([torch.logsumexp(metric[:, c.labels_bits[:, i] == 0], -1)
                       - torch.logsumexp(metric[:, c.labels_bits[:, i] == 1], -1)
                       for i in range(c.bits_per_symbol)], -1)
    assert torch.isfinite(llr).all()
    assert torch.allclose(llr, ref, atol=1e-2, rtol=1e-4)


def ber_awgn(order, snr_db, n_bits, seed):
    c = Constellation(order)
    bits = torch.randint(0, 2, (n_bits,), generator=gen(seed))
    y = AWGN()(Mapper(c)(bits), snr_db=snr_db, generator=gen(seed + 1))
    return (Demapper(c, "hard")(y) != bits).float().mean().item()


def within(sim, theory, n_trials, z=5.0, rel=0.05):
    """Sim within z binomial standard deviations (plus a small relative slack) of theory."""
    sd = math.sqrt(theory * (1 - theory) / n_trials)
    return abs(sim - theory) <= z * sd + rel * theory


@pytest.mark.parametrize("ebno_db", [0.0, 4.0, 7.0])
def test_bpsk_qpsk_ber_awgn_vs_qfunction(ebno_db):
    g = 10 ** (ebno_db / 10)
    theory = qfunc(math.sqrt(2 * g)).item()
    n = 400_000
    sim_bpsk = ber_awgn(2, ebno_db, n, 11)  # Es/N0 = Eb/N0
    sim_qpsk = ber_awgn(4, ebno_db + 10 * math.log10(2), n, 13)  # Es/N0 = 2 Eb/N0
    assert within(sim_bpsk, theory, n), (sim_bpsk, theory)
    assert within(sim_qpsk, theory, n), (sim_qpsk, theory)


@pytest.mark.parametrize("order,snr_db", [(16, 10.0), (16, 14.0), (64, 16.0), (64, 20.0)])
def test_qam_ser_awgn_exact(order, snr_db):
    c = Constellation(order)
    n_sym = 200_000
    labels = torch.randint(0, order, (n_sym,), generator=gen(20))
    bits = c.labels_bits[labels].reshape(-1)
    y = AWGN()(Mapper(c)(bits), snr_db=snr_db, generator=gen(21))
    hard = Demapper(c, "hard")(y).reshape(n_sym, -1)
    ser = (hard != c.labels_bits[labels]).any(-1).float().mean().item()
    es_n0 = 10 ** (snr_db / 10)
    p = 2 * (1 - 1 / math.sqrt(order)) * qfunc(math.sqrt(3 * es_n0 / (order - 1))).item()
    theory = 1 - (1 - p) ** 2
    assert within(ser, theory, n_sym), (ser, theory)


def test_bad_inputs():
    with pytest.raises(ValueError, match="one of"):
        Constellation(8)
    with pytest.raises(ValueError, match="0 and 1"):
        Mapper(4)(torch.tensor([0, 2, 1, 0]))
    with pytest.raises(ValueError, match="multiple of 4"):
        Mapper(16)(torch.tensor([0, 1, 1, 0, 1]))
    with pytest.raises(ValueError, match="method"):
        Demapper(4, "approx")
    with pytest.raises(ValueError, match="noise variance"):
        Demapper(4, "exact")(torch.zeros(2, dtype=torch.complex64))
    with pytest.raises(ValueError, match="positive"):
        Demapper(4, "exact")(torch.zeros(2, dtype=torch.complex64), -1.0)


@pytest.mark.parametrize("method", ["hard", "maxlog", "exact"])
def test_nan_symbols_are_named_not_an_index_error(method):
    y = torch.tensor([1 + 1j, complex(float("nan"), 0.0)], dtype=torch.complex64)
    with pytest.raises(ValueError, match="received symbols y must be finite"):
        Demapper(16, method)(y, 0.1)


def test_bad_noise_tensor_is_summarised_not_printed():
    no = torch.full((1000,), 0.1)
    no[17] = 0.0
    with pytest.raises(ValueError, match=r"shape \(1000,\) with 1 such values \(smallest 0\)") as error:
        Demapper(4, "exact")(torch.zeros(1000, dtype=torch.complex64), no)
    assert len(str(error.value)) < 200
    with pytest.raises(ValueError, match="non-negative; got -0.5"):
        AWGN()(torch.zeros(4, dtype=torch.complex64), no=-0.5)
