"""channels against CommPy (scikit-commpy 0.8.0): 16-QAM exact soft demapping and K=7 soft Viterbi.

Both libraries get the same data, measured in one run on the same machine: CommPy in its own
venv (``~/.cache/semcomm/bench-venvs/commpy``, created on first use by ``_refenv.py``), called
as a subprocess; ``channels`` in-process.  Targets (from the issue): at least 500x CommPy's
throughput for the exact 16-QAM soft demapper, 1000x for unquantized K=7 Viterbi decoding.

* Demapping: random 16-QAM symbols (our mapper) over AWGN at Es/N0 = ``--demap-snr`` dB.
  CommPy: ``QAMModem(16).demodulate(y, 'soft', noise_var)``.  CommPy's 16-QAM is ours scaled by
  -sqrt(10), label for label (checked at run time), so CommPy gets ``-sqrt(10) y`` and noise
  variance ``10 no``: the same likelihoods.  CommPy's LLR is log P(b=1)/P(b=0), ours
  log P(b=0)/P(b=1), so CommPy's LLRs are compared with minus ours.  Throughput counts LLRs
  (coded bits) out per second; symbols/s = bits/s / 4.
* Viterbi: the (133, 171) K=7 rate-1/2 code, zero-terminated blocks of ``--viterbi-k`` bits,
  BPSK over AWGN at Eb/N0 = ``--viterbi-ebno`` dB.  CommPy:
  ``viterbi_decode(r, Trellis(np.array([6]), np.array([[0o133, 0o171]])), decoding_type='unquantized')``
  per block, with r = 2c - 1 + noise (CommPy's unquantized metric is the distance to 2c - 1);
  ours: ``ConvolutionalCode(k, generators=(0o155, 0o117)).decode(llr)`` on the batch of blocks
  with llr = -2 r / sigma^2 (positive favours 0).  CommPy reads an octal generator with its least
  significant bit on the current input, ``channels`` (like MATLAB and IEEE 802.11) with the most
  significant bit, so CommPy's Trellis(133, 171) is the time-reversed code, (155, 117) in our
  notation: same trellis, same distance spectrum, same decoding cost, and with these generators
  both libraries encode identically (checked at run time).  Throughput counts information bits decoded per second.  CommPy decodes
  with a sliding traceback of 30 steps from the best state; ours is the exact ML path of the
  terminated trellis, so the decoded bits can differ in rare places: the table shows how many.

Ours is timed on exactly CommPy's inputs ("same data") and, because ours is batch-vectorised
while CommPy loops per symbol / per trellis step, also on a larger batch of the same kind
("large batch"): throughput is a rate, so both are reported with their ratio to CommPy.

    .venv/bin/python benchmarks/channels_vs_commpy.py            # full size (CommPy ~10-20 s per test)
    .venv/bin/python benchmarks/channels_vs_commpy.py --quick    # smoke test, seconds
    options: --threads 1,2  --repeats 7  --demap-symbols N  --viterbi-k K  --viterbi-blocks B
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _refenv  # noqa: E402


# ----------------------------------------------------------------------------------- CommPy side

def worker(argv) -> None:
    """Runs in the CommPy venv: time CommPy on the arrays in payload['dir']."""
    payload, write = _refenv.worker_io(argv)
    import commpy
    from commpy.channelcoding import Trellis, conv_encode, viterbi_decode
    from commpy.modulation import QAMModem

    d = Path(payload["dir"])
    arrays = _refenv.load_arrays(d, "y", "r", "msg")
    out = {"versions": {"scikit-commpy": getattr(commpy, "__version__", "0.8.0"), "numpy": np.__version__,
                        "python": sys.version.split()[0]}}

    modem = QAMModem(16)
    out["constellation"] = [[float(p.real), float(p.imag)] for p in modem.constellation]
    y, nv = arrays["y"], float(payload["noise_var"])
    modem.demodulate(y[: max(1, len(y) // 100)], "soft", nv)  # warm-up
    t0 = time.perf_counter()
    llr = modem.demodulate(y, "soft", nv)
    out["demap_seconds"] = time.perf_counter() - t0
    np.save(d / "commpy_llr.npy", llr)

    trellis = Trellis(np.array([6]), np.array([[0o133, 0o171]]))
    msg = arrays["msg"]
    out["encoded_first_block"] = conv_encode(msg[0], trellis, "term").astype(int).tolist()
    r = arrays["r"]  # (blocks, 2 (k + 6))
    k = msg.shape[1]
    # viterbi_decode writes -1 into the last n values of its input (its flushing steps reuse a view
    # of the input as scratch), so every call gets its own copy, made before the clock starts.
    viterbi_decode(r[0][: 2 * 64].copy(), trellis, decoding_type="unquantized")  # warm-up
    rows = [row.copy() for row in r]
    dec = np.empty((r.shape[0], k), dtype=np.int8)
    t0 = time.perf_counter()
    for i in range(r.shape[0]):
        dec[i] = viterbi_decode(rows[i], trellis, decoding_type="unquantized")[:k]
    out["viterbi_seconds"] = time.perf_counter() - t0
    np.save(d / "commpy_dec.npy", dec)
    out["array_keys"] = ["commpy_llr", "commpy_dec"]
    write(out)


# -------------------------------------------------------------------------------------- our side

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _refenv.add_common_options(p, repeats=7, quick_repeats=2, timed="timed runs of ours")
    p.add_argument("--demap-symbols", type=int, default=None, help="16-QAM symbols CommPy demaps (default 200000; quick 2000)")
    p.add_argument("--demap-snr", type=float, default=10.0, help="Es/N0 in dB for the demapping test")
    p.add_argument("--demap-large", type=int, default=None, help="symbols for ours' large batch (default 1048576; quick 100000)")
    p.add_argument("--viterbi-k", type=int, default=None, help="information bits per block (default 1024; quick 128)")
    p.add_argument("--viterbi-blocks", type=int, default=None, help="blocks CommPy decodes (default 24; quick 2)")
    p.add_argument("--viterbi-large", type=int, default=None, help="blocks in ours' large batch (default 1024; quick 64)")
    p.add_argument("--viterbi-ebno", type=float, default=2.0, help="Eb/N0 in dB for the Viterbi test")
    args = p.parse_args()
    q = args.quick
    threads, repeats = _refenv.common_settings(args)
    n_sym = args.demap_symbols or (2000 if q else 200_000)
    n_sym_large = args.demap_large or (100_000 if q else 1_048_576)
    k = args.viterbi_k or (128 if q else 1024)
    blocks = args.viterbi_blocks or (2 if q else 24)
    blocks_large = args.viterbi_large or (64 if q else 1024)

    sys.path.insert(0, str(HERE.parent))
    import torch

    from channels import AWGN, ConvolutionalCode, Constellation, Demapper, Mapper, ebnodb2no

    torch.set_num_threads(threads[0])
    g = torch.Generator().manual_seed(args.seed)

    # Demapping data (ours' frame).
    const = Constellation(16)
    no = 10 ** (-args.demap_snr / 10)
    bits = torch.randint(0, 2, (n_sym * 4,), generator=g)
    y = AWGN()(Mapper(const)(bits), no=no, generator=g)
    # Viterbi data.
    code = ConvolutionalCode(k, generators=(0o155, 0o117))  # = CommPy's Trellis([6], [[0o133, 0o171]])
    msg = torch.randint(0, 2, (blocks, k), generator=g)
    c = code.encode(msg)  # (blocks, 2 (k + 6)), float 0/1
    sigma2 = float(ebnodb2no(args.viterbi_ebno, 1, k / code.n)) / 2  # noise variance per real dimension
    r = (2 * c - 1) + math.sqrt(sigma2) * torch.randn(c.shape, generator=g)
    llr = -2 * r / sigma2

    y_c = -math.sqrt(10.0) * y.numpy().astype(np.complex128)
    print(f"# running CommPy on {n_sym} symbols and {blocks} x {k} bits (its venv: {_refenv.ROOT / 'commpy'})",
          file=sys.stderr)
    t_ref = time.perf_counter()
    ref = _refenv.run_worker("commpy", __file__, {"noise_var": 10.0 * no}, threads=1,
                             arrays={"y": y_c, "r": r.numpy().astype(np.float64), "msg": msg.numpy().astype(np.int64)})
    print(f"# CommPy done in {time.perf_counter() - t_ref:.1f} s", file=sys.stderr)

    # Checks: same constellation (up to -sqrt(10)), same encoder, same LLRs, same decisions.
    cc = np.array([complex(a, b) for a, b in ref["constellation"]])
    const_ok = np.allclose(cc, -math.sqrt(10) * const.points.numpy(), atol=1e-5)
    enc_ok = np.array_equal(np.array(ref["encoded_first_block"]), c[0].numpy().astype(int))
    llr_ours = Demapper(const, "exact")(y, no)
    llr_ref = -ref["arrays"]["commpy_llr"]
    finite = np.isfinite(llr_ref)
    diff = np.abs(llr_ours.numpy().astype(np.float64)[finite] - llr_ref[finite])
    rel = diff / np.maximum(1.0, np.abs(llr_ref[finite]))
    hard_agree = float(np.mean((llr_ours.numpy() < 0) == (llr_ref < 0)))
    dec_ours = code.decode(llr).numpy().astype(np.int8)
    dec_ref = ref["arrays"]["commpy_dec"]
    truth = msg.numpy().astype(np.int8)

    # Throughput of ours at each thread count: on CommPy's data and on a large batch.
    bits_l = torch.randint(0, 2, (n_sym_large * 4,), generator=g)
    y_l = AWGN()(Mapper(const)(bits_l), no=no, generator=g)
    msg_l = torch.randint(0, 2, (blocks_large, k), generator=g)
    c_l = code.encode(msg_l)
    llr_l = -2 * ((2 * c_l - 1) + math.sqrt(sigma2) * torch.randn(c_l.shape, generator=g)) / sigma2
    dem = Demapper(const, "exact")
    t_demap_ref = ref["demap_seconds"]
    t_vit_ref = ref["viterbi_seconds"]
    ref_demap_bps = n_sym * 4 / t_demap_ref
    ref_vit_bps = blocks * k / t_vit_ref
    rows_d, rows_v = [], []
    for t in threads:
        torch.set_num_threads(t)
        for label, yy in (("same data", y), ("large batch", y_l)):
            tm = _refenv.best_time(lambda: dem(yy, no), repeats, warmup=1)
            bps = yy.numel() * 4 / tm["best"]
            rows_d.append([f"channels, {label}", t, f"{yy.numel():,}", _refenv.fmt(bps / 1e6),
                           _refenv.fmt(bps / 4 / 1e3), f"{tm['best'] * 1e3:.2f} / {tm['median'] * 1e3:.2f}",
                           f"{bps / ref_demap_bps:,.0f}x"])
        for label, ll in (("same data", llr), ("large batch", llr_l)):
            tm = _refenv.best_time(lambda: code.decode(ll), repeats, warmup=1)
            bps = ll.shape[0] * k / tm["best"]
            rows_v.append([f"channels, {label}", t, f"{ll.shape[0]} x {k}", _refenv.fmt(bps / 1e6),
                           f"{tm['best'] * 1e3:.1f} / {tm['median'] * 1e3:.1f}", f"{bps / ref_vit_bps:,.0f}x"])
    rows_d.insert(0, ["CommPy `QAMModem(16).demodulate(soft)`", 1, f"{n_sym:,}", _refenv.fmt(ref_demap_bps / 1e6),
                      _refenv.fmt(ref_demap_bps / 4 / 1e3), f"{t_demap_ref * 1e3:.0f} (1 run)", "1x"])
    rows_v.insert(0, ["CommPy `viterbi_decode(unquantized)`", 1, f"{blocks} x {k}", _refenv.fmt(ref_vit_bps / 1e6),
                      f"{t_vit_ref * 1e3:.0f} (1 run)", "1x"])

    mode = "QUICK SMOKE TEST (tiny sizes; not for publication)" if q else "full size"
    print(_refenv.header(
        f"channels vs CommPy ({mode})",
        [f"CommPy: scikit-commpy {ref['versions']['scikit-commpy']}, numpy {ref['versions']['numpy']}, "
         f"python {ref['versions']['python']} (own venv, single-threaded Python loops; one timed run after a "
         f"warm-up on a slice)",
         f"channels: best of {repeats} timed runs after one warm-up (best / median ms shown)"]))
    print()
    print(f"#### 16-QAM exact soft demapping (Es/N0 = {args.demap_snr:g} dB); Mbit/s of LLRs out\n")
    print(_refenv.md_table(["implementation", "threads", "symbols", "Mbit/s", "ksymbols/s", "time ms (best / median)",
                            "vs CommPy"], rows_d))
    print()
    print(f"Agreement on the same {n_sym:,} symbols: constellations equal up to the factor -sqrt(10): "
          f"{'yes' if const_ok else 'NO'}; hard decisions of the LLRs equal for {hard_agree:.4%} of bits; "
          f"max |LLR difference| {diff.max():.2e} (max relative {rel.max():.2e}; ours float32, CommPy float64); "
          f"{int((~finite).sum())} CommPy LLRs non-finite (log of an underflowed sum) and left out.")
    print()
    print(f"#### K=7 (133, 171) rate-1/2 soft Viterbi, unquantized (BPSK, Eb/N0 = {args.viterbi_ebno:g} dB); "
          f"Mbit/s of information bits decoded\n")
    print(_refenv.md_table(["implementation", "threads", "blocks x k", "Mbit/s", "time ms (best / median)",
                            "vs CommPy"], rows_v))
    print()
    n_bits = truth.size
    print(f"Agreement on the same {blocks} blocks ({n_bits:,} information bits): encoders equal: "
          f"{'yes' if enc_ok else 'NO'}; decoded bits that differ between CommPy and ours: "
          f"{int((dec_ours != dec_ref).sum())}; bit errors against the sent bits: ours "
          f"{int((dec_ours != truth).sum())}, CommPy {int((dec_ref != truth).sum())}; "
          f"channel hard-decision errors {int(((llr < 0).numpy() != c.numpy().astype(bool)).sum())} "
          f"of {c.numel():,} coded bits.")
    if not (const_ok and enc_ok):
        sys.exit("CommPy and channels disagree on the constellation or the encoder: see above")


if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker(sys.argv)
    else:
        main()
