"""How low can the SNR go? Fixed-rate against adaptive digital transport of one codec operating point.

    .venv/bin/python benchmarks/link_robustness.py [--images 2000] [--channel awgn] [--snrs -3,-2.5,...]

One operating point of the shipped latent pair (spread-top-k 64 patches at level 3, min-entropy gate 0.6, the
edge's hint fused, the server answers when at least half the patches arrive), carried as packets over the
802.11n LDPC (648) link of ``semcomm.transport.LinkSpec`` at each SNR, by

* fixed-rate links: QPSK 1/2 (the default), 16-QAM 1/2, BPSK 1/2;
* the adaptive link: at each SNR the fastest modulation and code whose measured block error rate there is
  at most 1% (``LinkSpec(adaptive=True)``).

For each: top-1 and channel uses per image at every SNR, and the lowest SNR of the grid from which on the
accuracy stays within 1 point of its error-free (ideal link) accuracy. The analog transport's figure is in
benchmarks/link_analog.py.
"""
from __future__ import annotations

import argparse
import time

from tqdm import tqdm

from semcomm.data import load_split
from semcomm.experiments.link_sweep import LinkSweep, LinkSweepConfig
from semcomm.transport.links import LinkSpec

SETTING = ("spread-top-k", 64, 3)
LABEL, GATE = "spread-top-k 64 L3", "min_entropy 0.6"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--channel", default="awgn")
    parser.add_argument("--snrs", default="-3,-2.5,-2,-1.5,-1,-0.5,0,0.5,1,1.5,2,3,4,6,10")
    args = parser.parse_args()
    snrs = tuple(float(s) for s in args.snrs.split(","))
    split = load_split("cifar10", "test", limit=args.images)
    links = {"QPSK 1/2": LinkSpec(args.channel), "16-QAM 1/2": LinkSpec(args.channel, modulation=16),
             "BPSK 1/2": LinkSpec(args.channel, modulation=2), "adaptive (BLER <= 1%)": LinkSpec(args.channel, adaptive=True)}

    def config(link, conditions):
        return LinkSweepConfig(link=link, conditions=conditions, settings=(SETTING,), codecs=(), thresholds=(0.6,),
                               framings=("packets",))

    sweep = LinkSweep(config(LinkSpec("ideal"), (0.0,)), progress=False)
    ideal = sweep.run(split)  # every packet arrives: the same for every link
    error_free = ideal.find(LABEL, 0.0, GATE).accuracy
    rows = {}
    for name, link in tqdm(links.items(), desc="links", unit="link"):
        started = time.time()
        sweep.config = config(link, snrs)
        result = sweep.run(split)
        points = [result.find(LABEL, snr, GATE) for snr in snrs]
        within = [p.accuracy >= error_free - 0.01 for p in points]
        lowest = next((snr for i, snr in enumerate(snrs) if all(within[i:])), None)
        rows[name] = (points, lowest, time.time() - started)
    print(f"# {LABEL}, gate {GATE}, hint fused, {args.images} CIFAR-10 test images, {args.channel}, LDPC(648); "
          f"edge alone {100 * ideal.edge_accuracy:.2f}%\n")
    print("top-1 (%) / channel uses per image, at SNR (dB):\n")
    print("| link | " + " | ".join(f"{s:g}" for s in snrs) + " | error-free | lowest SNR within 1 point | seconds |")
    print("|---|" + "---:|" * (len(snrs) + 3))
    for name, (points, lowest, seconds) in rows.items():
        cells = " | ".join(f"{100 * p.accuracy:.2f} / {p.channel_uses_per_image:,.0f}" for p in points)
        print(f"| {name} | {cells} | {100 * error_free:.2f} | "
              f"{'none' if lowest is None else f'{lowest:g} dB'} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
