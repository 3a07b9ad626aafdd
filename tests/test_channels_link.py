"""Links (digital and analog), the ideal-code abstraction and the Monte-Carlo runner."""
from __future__ import annotations

import math

import pytest
import torch

import channels as ch
from channels.utils import qfunc


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_channels_package_is_standalone():
    import subprocess
    import sys

    code = "import sys, channels; assert not any(m.startswith('semcomm') for m in sys.modules), 'semcomm imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_digital_link_uncoded_bpsk_matches_qfunction_via_runner():
    link = ch.DigitalLink(ch.Uncoded(1000), 2, ch.AWGN(), crc=None)
    res = ch.run_ber(link, [2.0, 6.0], batch_size=100, target_bit_errors=2000, target_block_errors=None,
                     max_bits=2_000_000, seed=1)
    for p in res.points:
        theory = qfunc(math.sqrt(2 * 10 ** (p.snr_db / 10))).item()
        assert p.ber_ci[0] * 0.9 <= theory <= p.ber_ci[1] * 1.1, (p.snr_db, p.ber, theory)
        assert p.bit_errors >= 2000 or p.bits >= 2_000_000
    text = str(res)
    assert "BER" in text and "BLER" in text and "95% CI" in text and len(text.splitlines()) == 4
    assert res.to_dicts()[0]["bits"] == res.points[0].bits


def test_digital_link_shapes_crc_and_channel_uses():
    code = ch.LDPC80211n(648, "1/2", max_iter=20)
    link = ch.DigitalLink(code, 16, ch.AWGN(), crc="crc16")
    assert link.payload_bits == 324 - 16 and link.symbols_per_packet == 162
    bits = torch.randint(0, 2, (2, 3, 4 * link.payload_bits), generator=gen(2))
    good = link(bits, ebno_db=8.0, generator=gen(3))
    assert good.bits.shape == bits.shape and good.crc_ok.shape == (2, 3, 4)
    assert torch.equal(good.bits, bits.float()) and good.crc_ok.all()
    assert good.channel_uses == 4 * 162
    bad = link(bits, snr_db=-2.0, generator=gen(4))
    pk_err = (bad.bits != bits).reshape(2, 3, 4, -1).any(-1)
    assert pk_err.any() and not (bad.crc_ok & pk_err).any()  # every errored packet flagged
    with pytest.raises(ValueError, match="multiple of 308"):
        link(bits[..., :-1], snr_db=1.0)
    with pytest.raises(ValueError, match="exactly one"):
        link(bits, snr_db=1.0, ebno_db=1.0)
    with pytest.raises(ValueError, match="finite"):
        link(bits, snr_db=float("nan"))
    with pytest.raises(ValueError, match="finite"):
        link(bits, ebno_db=float("nan"))


def test_digital_link_ebno_accounting_and_pilots():
    code = ch.ConvolutionalCode(100)  # n = 212
    fading = ch.FlatFading("rayleigh", coherence=20, csi="estimated", num_pilots=2)
    link = ch.DigitalLink(code, 4, fading, crc="crc8")
    assert link.symbols_per_packet == 106
    assert link.uses_per_packet == 106 + 6 * 2
    assert link.rate == pytest.approx(92 / 118)
    # Eb/N0 charges all energy (parity, CRC, pilots) to the 92 payload bits.
    assert link.noise_variance(ebno_db=3.0).item() == pytest.approx(118 / (92 * 10 ** 0.3), rel=1e-5)
    out = link(torch.randint(0, 2, (5, 92), generator=gen(5)), ebno_db=30.0, generator=gen(6))
    assert out.channel_uses == 118


def test_digital_link_fading_perfect_csi_and_padding():
    code = ch.ConvolutionalCode(50, "3/4")  # n = 75: not a multiple of 4 bits per 16-QAM symbol
    link = ch.DigitalLink(code, 16, ch.FlatFading("rician", 10.0, coherence=None, csi="perfect"), crc=None)
    assert link.symbols_per_packet == 19
    bits = torch.randint(0, 2, (50, 50), generator=gen(7))
    out = link(bits, snr_db=35.0, generator=gen(8))
    assert torch.equal(out.bits, bits.float())


def test_digital_link_over_bsc_and_bec():
    bits = torch.randint(0, 2, (400, 1000), generator=gen(9))
    out = ch.DigitalLink(ch.Uncoded(1000), channel=ch.BSC(0.05), crc=None)(bits, generator=gen(10))
    assert abs((out.bits != bits).float().mean().item() - 0.05) < 0.003
    ldpc = ch.DigitalLink(ch.LDPC80211n(648, "1/2", max_iter=50), channel=ch.BEC(0.25), crc="crc32")
    b2 = torch.randint(0, 2, (50, ldpc.payload_bits), generator=gen(11))
    res = ldpc(b2, generator=gen(12))
    assert torch.equal(res.bits, b2.float()) and res.crc_ok.all()
    with pytest.raises(ValueError, match="no snr_db"):
        ldpc(b2, snr_db=3.0)


def test_analog_link_awgn_mse_zf_and_mmse():
    x = torch.randn(2000, 64, generator=gen(13))
    no = 0.1
    zf = ch.AnalogLink(ch.AWGN(), "zf")(x, no=no, generator=gen(14))
    mmse = ch.AnalogLink(ch.AWGN(), "mmse")(x, no=no, generator=gen(14))
    assert zf.channel_uses == 32 and zf.cbr == 0.5 and zf.x_hat.shape == x.shape
    # Per real value: ZF error = var(x) * no, MMSE error = var(x) * no / (1 + no) for Gaussian x.
    assert ((zf.x_hat - x) ** 2).mean().item() == pytest.approx(no, rel=0.03)
    assert ((mmse.x_hat - x) ** 2).mean().item() == pytest.approx(no / (1 + no), rel=0.03)
    odd = ch.AnalogLink()(torch.randn(3, 5, generator=gen(15)), snr_db=40.0, generator=gen(16))
    assert odd.x_hat.shape == (3, 5) and odd.channel_uses == 3 and odd.cbr == pytest.approx(0.6)


def test_analog_link_fading_and_errors():
    x = torch.randn(500, 40, generator=gen(17))
    link = ch.AnalogLink(ch.FlatFading("rayleigh", coherence=4, csi="estimated", num_pilots=1), "mmse")
    out = link(x, snr_db=20.0, generator=gen(18))
    assert out.channel_uses == 20 + 5
    assert ((out.x_hat - x) ** 2).mean().item() < 0.2
    with pytest.raises(ValueError, match="finite"):
        link(x, snr_db=float("nan"))
    with pytest.raises(ValueError, match="real tensor"):
        link(torch.zeros(3, dtype=torch.complex64), snr_db=1.0)
    with pytest.raises(TypeError, match="AWGN or FlatFading"):
        ch.AnalogLink(ch.BSC(0.1))


def test_ideal_code_awgn_threshold_and_rayleigh_outage():
    code = ch.IdealCode(rate=1.0)  # 1 bit per channel use: needs snr > 2^1 - 1 = 1
    assert not code.block_lost(torch.full((1, 10), 1.01)).any()
    assert code.block_lost(torch.full((1, 10), 0.99)).all()
    assert code.lost_given_capacity(ch.bsc_capacity(0.11)).item() is True  # 1 - h2(0.11) < 1
    # Block Rayleigh fading: P(lost) = P(log2(1 + |h|^2 snr) < R) = 1 - exp(-(2^R - 1) / snr).
    snr = 10 ** (10 / 10)
    h = ch.FlatFading("rayleigh", coherence=None)(torch.ones(200_000, 8, dtype=torch.complex64), no=1e-9,
                                                  generator=gen(19)).h
    lost = code.block_lost(snr * h.abs() ** 2).float().mean().item()
    theory = 1 - math.exp(-(2**1 - 1) / snr)
    assert lost == pytest.approx(theory, rel=0.05)
    with pytest.raises(ValueError, match="positive"):
        ch.IdealCode(0.0)


def test_runner_early_stop_ci_and_errors():
    calls = []

    def sim(snr_db, n, g):
        calls.append(snr_db)
        b = torch.randint(0, 2, (n, 100), generator=g)
        flip = torch.rand(b.shape, generator=g) < (0.01 if snr_db < 5 else 0.0)
        return b, b ^ flip.long()

    res = ch.run_ber(sim, [0.0, 10.0, 20.0], batch_size=10, target_bit_errors=500, target_block_errors=None,
                     max_bits=10**6, seed=3)
    p0 = res.points[0]
    assert 500 <= p0.bit_errors < 500 + 1000 and p0.ber_ci[0] <= 0.01 <= p0.ber_ci[1]
    assert len(res.points) == 2 and res.points[1].bit_errors == 0 and res.points[1].bits == 10**6  # stops sweep
    assert res.bler[0] == pytest.approx(1 - 0.99**100, rel=0.1)
    lo, hi = ch.clopper_pearson(0, 100)
    assert lo == 0 and hi == pytest.approx(1 - 0.025 ** (1 / 100), rel=1e-6)
    with pytest.raises(ValueError, match="finite"):
        ch.run_ber(sim, [float("nan")])
    with pytest.raises(ValueError, match="batch_size"):
        ch.run_ber(sim, [1.0], batch_size=0)
