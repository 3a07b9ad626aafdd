"""The semantic codec's analog (JSCC-style) path: top-1 against SNR over AWGN and Rayleigh fading.

    .venv/bin/python benchmarks/link_analog.py [--images 2000 | --images 10000] [--snrs -5,0,2,5,10,15,20,30]
                                              [--budgets 64,32,16] [--stats-images 2000] [--ideal-control]

The shipped latent pair (latent-cifar10): each offloaded image's spread-top-k patches (min-entropy gate
0.6) send their unquantized latent values as analog symbols (semcomm.transport.analog.AnalogTransport:
whitened with statistics of the first --stats-images training images, one complex symbol per two values,
LMMSE receiver with perfect CSI), the server gets each patch at the level whose measured quantisation
error is nearest its post-channel error, fused with the edge's hint. Positions, hint, power levels and
the amplitude code go over a control channel counted in channel uses: by default CRC-16, a rate-1/2
convolutional code and BPSK simulated on the same channel at the same SNR (an image whose side information
fails its CRC is answered by the edge); with --ideal-control, BPSK rate 1/2 assumed error-free (the setting of
the measurements published before issue 27).

Rows: power uniform or by importance (alpha 0.5, 2-bit levels 3 dB apart); receiver gate off
(min_level 1: every patch to the server) or at the codec's middle level (min_level 3: patches whose
error is above level 3's are dropped, an image left with none is answered by the edge). Channels: AWGN,
Rayleigh block fading (one gain per image), Rayleigh fast fading (one gain per symbol). Every SNR uses
the same images and seed.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _refenv  # noqa: E402

from channels import AWGN, FlatFading  # noqa: E402
from semcomm import create_model  # noqa: E402
from semcomm.edge.encoder import EdgeEncoder  # noqa: E402
from semcomm.data import load_split  # noqa: E402
from semcomm.edge.gating import Gate  # noqa: E402
from semcomm.rate import create_codec  # noqa: E402
from semcomm.edge.selection import SpreadTopK  # noqa: E402
from semcomm.transport.analog import AnalogTransport, source_statistics  # noqa: E402
from semcomm.transport.control import ControlChannel  # noqa: E402
from semcomm.transport.over_link import over_link  # noqa: E402
from semcomm.transport.power import PowerAllocation  # noqa: E402

CHANNELS = {
    "AWGN": AWGN,
    "Rayleigh block (one gain per image), perfect CSI": lambda: FlatFading("rayleigh", coherence=None, csi="perfect"),
    "Rayleigh fast (one gain per symbol), perfect CSI": lambda: FlatFading("rayleigh", coherence=1, csi="perfect"),
}
ALLOCATIONS = {"uniform": PowerAllocation("uniform"),
               "importance a=0.5": PowerAllocation("importance", alpha=0.5, bits=2, step_db=3.0)}
GATES = (1, 3)  # min_level of the receiver


def top1(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return 100 * float((predictions == labels).float().mean())


def lowest_snr_within(curve: dict[float, float], reference: float, points: float = 1.0) -> str:
    """The lowest SNR from which every higher SNR of ``curve`` stays within ``points`` of ``reference``."""
    lowest = None
    for snr in sorted(curve, reverse=True):
        if curve[snr] < reference - points:
            break
        lowest = snr
    return "none" if lowest is None else f"{lowest:g} dB"


def preamble(args, split, offloaded: float, edge_top1: float) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"- command: `{' '.join([os.path.relpath(sys.executable)] + sys.argv)}`")
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"- machine: {_refenv.cpu_name()} ({platform.machine()}), {os.cpu_count()} cores, load average at start "
          f"{load}; torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(f"- data: {split.name}, {len(split)} images; gate min_entropy 0.6 offloads {100 * offloaded:.1f}%; "
          f"edge alone {edge_top1:.2f}%; one top-1 has a binomial standard error of about "
          f"{100 * math.sqrt(edge_top1 / 100 * (1 - edge_top1 / 100) / len(split)):.2f} points (paired rows, same "
          f"images and seed, differ by less)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000, help="CIFAR-10 test images (10000: all)")
    parser.add_argument("--snrs", default="-5,0,2,5,10,15,20,30", help="Es/N0 values, dB")
    parser.add_argument("--budgets", default="64,32,16", help="patches sent per offloaded image")
    parser.add_argument("--stats-images", type=int, default=2000, help="training images for the source statistics")
    parser.add_argument("--ideal-control", action="store_true", help="assume the control channel error-free "
                        "(the setting before issue 27) instead of simulating it")
    args = parser.parse_args()
    snrs = [float(s) for s in args.snrs.split(",")]
    started = time.time()
    split = load_split("cifar10", "test", limit=args.images)
    edge, pair = create_model("vit-edge-cifar10"), create_codec("latent-cifar10")
    train = load_split("cifar10", "train", limit=args.stats_images)
    mean, variance = source_statistics(pair.source(train.images, None))
    source = pair.source(split.images, None)
    encoder = EdgeEncoder(edge, SpreadTopK(64), gate=Gate("min_entropy", 0.6), codec=pair, hint=pair.hint_coder)
    analysis = encoder.analyze(split.images)
    importance = analysis.importance[encoder.importance]
    edge_top1 = top1(analysis.logits.argmax(-1), split.labels)
    control = ControlChannel(0.5, coded=not args.ideal_control)
    limit = control.shannon_limit_db()

    def outcome(sent, channel, allocation, snr, min_level=1):
        transport = AnalogTransport(channel, allocation, mean, variance, control=control, min_level=min_level)
        return over_link(sent, pair, transport, snr, torch.Generator().manual_seed(0), source=source,
                         importance=importance)

    sents, error_free, uses, energy = {}, {}, {}, []
    for k in (int(b) for b in args.budgets.split(",")):
        encoder.selection = SpreadTopK(k)
        sents[k] = sent = encoder.encode(split.images, analysis=analysis)
        error_free[k] = top1(outcome(sent, AWGN(), ALLOCATIONS["uniform"], math.inf).predictions, split.labels)
        for name, allocation in ALLOCATIONS.items():
            out = outcome(sent, AWGN(), allocation, math.inf)
            off = sent.offloaded
            uses[k, name] = (float(out.analog_uses[off].float().mean()), float(out.control_uses[off].float().mean()),
                             float(out.link_bits[off].float().mean()), float(out.channel_uses.float().mean()))
    preamble(args, split, float(sents[k].offloaded.float().mean()), edge_top1)
    caveat = ("the error-free assumption is optimistic there" if args.ideal_control else
              "no code of that rate is error-free there")
    print(f"- control channel: {control.label}; its rate-1/2 BPSK Shannon limit on AWGN is {limit:.2f} dB Es/N0, "
          f"so SNRs marked * are below it ({caveat})\n")
    print("Channel uses per offloaded image (analog symbols + side information on the control channel), and the "
          "noise-free top-1 (the server on the unquantized values at level 5, fused with the hint):\n")
    print("| k | power | analog uses | side-info bits | control uses | total uses | uses/image (all images) | "
          "noise-free top-1 |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for (k, name), (analog, ctrl, bits, every) in uses.items():
        print(f"| {k} | {name} | {analog:,.0f} | {bits:,.1f} | {ctrl:,.1f} | {analog + ctrl:,.1f} | {every:,.1f} | "
              f"{error_free[k]:.2f}% |")
    marks = ["*" if snr < limit else "" for snr in snrs]
    for channel_name, make in CHANNELS.items():
        print(f"\n{channel_name}: top-1 (%) at Es/N0 (dB)\n")
        print("| k | power | receiver gate | " + " | ".join(f"{s:g}{m}" for s, m in zip(snrs, marks))
              + " | noise-free | lowest SNR within 1 point |")
        print("|---:|---|---|" + "---:|" * len(snrs) + "---:|---:|")
        for k, sent in sents.items():
            for name, allocation in ALLOCATIONS.items():
                for gate in GATES:
                    curve = {}
                    for snr in snrs:
                        out = outcome(sent, make(), allocation, snr, gate)
                        curve[snr] = top1(out.predictions, split.labels)
                        energy.append(float(out.energy[sent.offloaded].max()))
                    label = "off" if gate == 1 else f"below L{gate}: edge"
                    print(f"| {k} | {name} | {label} | " + " | ".join(f"{curve[s]:.2f}" for s in snrs)
                          + f" | {error_free[k]:.2f} | {lowest_snr_within(curve, error_free[k])} |", flush=True)
    print(f"\nLargest analog symbol energy per data channel use of any image in any run: {max(energy):.4f} Es "
          f"(budget 1). Total time {time.time() - started:.0f} s.")


if __name__ == "__main__":
    main()
