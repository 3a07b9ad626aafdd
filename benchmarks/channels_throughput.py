"""Throughput (Mbit/s) of every stage of the ``channels`` link simulator, with 1 and 2 torch threads.

Stages: Gray mapping and exact / max-log demapping for QPSK, 16-, 64- and 256-QAM; AWGN; flat
Rayleigh fading with perfect CSI plus zero-forcing equalisation; CRC-32 encode and check;
K=7 (133, 171) convolutional encoding and soft Viterbi decoding at rate 1/2 and 3/4; 802.11n
LDPC (n = 1944, rate 1/2) encoding and decoding, sum-product and normalised min-sum, a fixed
number of iterations (``early_stop=False``).

What is counted: mapping counts the bits in, demapping the LLRs out (coded bits); AWGN and
fading count complex symbols and, for the Mbit/s column, 4 bits per symbol (as at 16-QAM); CRC
counts message bits; the encoders and decoders count INFORMATION bits.  Each row is the best
(and median) of ``--repeats`` calls after one warm-up call, inputs generated outside the timing.

    .venv/bin/python benchmarks/channels_throughput.py            # full size, about 2-4 min on 2 idle cores
    .venv/bin/python benchmarks/channels_throughput.py --quick    # smoke test, seconds
    options: --threads 1,2  --repeats 5  --ldpc-iters 20
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import _refenv  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _refenv.add_common_options(p, repeats=5, quick_repeats=2)
    p.add_argument("--ldpc-iters", type=int, default=20, help="fixed LDPC decoder iterations")
    args = p.parse_args()
    q = args.quick
    threads, repeats = _refenv.common_settings(args)
    s = 64 if q else 1  # size divisor for --quick

    import torch

    from channels import (AWGN, CRC, ConvolutionalCode, Demapper, Equalizer, FlatFading, LDPC80211n, Mapper,
                          ebnodb2no)

    g = torch.Generator().manual_seed(args.seed)

    def rbits(*shape):
        return torch.randint(0, 2, shape, generator=g).float()

    cases = []  # (stage, configuration, size text, bits counted per call, what is counted, fn)

    # Modulation.
    n_map, n_dem = 2**20 // s, 2**18 // s
    for order, m in ((4, 2), (16, 4), (64, 6), (256, 8)):
        name = "QPSK" if order == 4 else f"{order}-QAM"
        b = rbits(n_map * m)
        mapper = Mapper(order)
        cases.append(("mapping", name, f"{n_map:,} symbols", n_map * m, "bits in", lambda mp=mapper, b=b: mp(b)))
        snr = {4: 6.0, 16: 12.0, 64: 18.0, 256: 24.0}[order]
        no = 10 ** (-snr / 10)
        y = AWGN()(Mapper(order)(rbits(n_dem * m)), no=no, generator=g)
        for method in ("exact", "maxlog"):
            dem = Demapper(order, method)
            cases.append((f"demapping, {method}", name, f"{n_dem:,} symbols", n_dem * m, "LLRs out",
                          lambda d=dem, y=y, no=no: d(y, no)))
    # Channels.
    n_ch = 2**20 // s
    x = Mapper(16)(rbits(n_ch * 4))
    awgn = AWGN()
    cases.append(("AWGN", "complex64", f"{n_ch:,} symbols", n_ch * 4, "symbols x 4 bits",
                  lambda: awgn(x, snr_db=10.0, generator=g)))
    fading, eq = FlatFading("rayleigh", coherence=1, csi="perfect"), Equalizer("zf")

    def fade():
        out = fading(x, snr_db=10.0, generator=g)
        return eq(out.y, out.h_hat, out.no)

    cases.append(("fading + ZF equaliser", "Rayleigh, fast, perfect CSI", f"{n_ch:,} symbols", n_ch * 4,
                  "symbols x 4 bits", fade))
    # CRC.
    crc = CRC("crc32")
    msg = rbits(1024 // s, 1024)
    coded = crc.encode(msg)
    cases.append(("CRC encode", "CRC-32", f"{msg.shape[0]} x 1024 bits", msg.numel(), "message bits",
                  lambda: crc.encode(msg)))
    cases.append(("CRC check", "CRC-32", f"{msg.shape[0]} x 1024 bits", msg.numel(), "message bits",
                  lambda: crc.check(coded)))
    # Convolutional code.
    kc, bc = (1024, 256) if not q else (128, 16)
    for rate in ("1/2", "3/4"):
        code = ConvolutionalCode(kc, rate=rate)
        u = rbits(bc, kc)
        sym = 1 - 2 * code.encode(u)
        sigma2 = float(ebnodb2no(4.0, 1, code.coderate)) / 2
        llr = 2 * (sym + sigma2**0.5 * torch.randn(sym.shape, generator=g)) / sigma2
        cases.append(("conv encode", f"K=7 (133,171), rate {rate}", f"{bc} x {kc} bits", bc * kc, "info bits",
                      lambda c=code, u=u: c.encode(u)))
        cases.append(("Viterbi decode", f"K=7 (133,171), rate {rate}, soft", f"{bc} x {kc} bits", bc * kc,
                      "info bits", lambda c=code, llr=llr: c.decode(llr)))
    # LDPC.
    bl = 256 // s if not q else 8
    for dec in ("sum-product", "min-sum"):
        code = LDPC80211n(1944, "1/2", decoder=dec, max_iter=args.ldpc_iters, early_stop=False)
        u = rbits(bl, code.k)
        no = float(ebnodb2no(2.0, 2, code.coderate))
        llr = Demapper(4)(AWGN()(Mapper(4)(code.encode(u)), no=no, generator=g), no)
        if dec == "sum-product":
            cases.append(("LDPC encode", "802.11n n=1944 r=1/2", f"{bl} codewords", bl * code.k, "info bits",
                          lambda c=code, u=u: c.encode(u)))
        cases.append(("LDPC decode", f"802.11n n=1944 r=1/2, {dec}, {args.ldpc_iters} it.", f"{bl} codewords",
                      bl * code.k, "info bits", lambda c=code, llr=llr: c.decode(llr)))

    results = {}
    with torch.no_grad():
        for t in threads:
            torch.set_num_threads(t)
            for i, case in enumerate(cases):
                results[(i, t)] = _refenv.best_time(case[5], repeats, warmup=1)
                print(f"# {t} thread(s): {case[0]}, {case[1]}: {case[3] / results[(i, t)]['best'] / 1e6:.3g} Mbit/s",
                      file=sys.stderr, flush=True)

    mode = "QUICK SMOKE TEST (tiny sizes; not for publication)" if q else "full size"
    print(_refenv.header(f"channels: throughput per stage ({mode})",
                         [f"best (median) of {repeats} calls after one warm-up; Mbit/s = bits counted per call / time"]))
    print()
    head = ["stage", "configuration", "size per call", "bits counted"] + \
           [f"Mbit/s, {t} thread{'s' if t > 1 else ''}" for t in threads]
    if len(threads) > 1:
        head.append(f"speed-up {threads[-1]} vs {threads[0]}")
    rows = []
    for i, (stage, conf, size, nbits, what, _) in enumerate(cases):
        row = [stage, conf, size, what]
        for t in threads:
            r = results[(i, t)]
            row.append(f"{_refenv.fmt(nbits / r['best'] / 1e6)} ({_refenv.fmt(nbits / r['median'] / 1e6)})")
        if len(threads) > 1:
            row.append(f"{results[(i, threads[0])]['best'] / results[(i, threads[-1])]['best']:.2f}x")
        rows.append(row)
    print(_refenv.md_table(head, rows))


if __name__ == "__main__":
    main()
