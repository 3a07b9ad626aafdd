"""A JSCC pair trained through the channel (issue 27), over AWGN and Rayleigh block fading: top-1 against SNR.

    .venv/bin/python benchmarks/jscc_link.py [--model jscc-cifar10 | --model snapshots/jscc-cifar10 | CARD.json,...]
        [--images 10000] [--snrs -5,0,2,5,10,20] [--channels awgn,block] [--budgets 64,32,16] [--gate 0.6]
        [--json results/jscc-link.json] [--plot results/jscc-link.png]

Several models (comma-separated: the SNR-adaptive pair and single-SNR references) run on the same images and
channel draws; ``--plot`` draws each model's top-1 against the SNR on each channel at the largest budget on one
figure, hollow markers where a model runs outside the SNR range it was trained on (mismatch).

Every image goes through the shipped edge (vit-edge-cifar10); the min-entropy gate (``--gate``, bits; ``none``
offloads every image) decides which are offloaded, each offloaded image sends its K spread-top-k patches
(``--budgets``) as the pair's symbols (K S data symbols, plus pilots on fading channels with estimated CSI) and its
positions and hint over the simulated control channel (CRC-16, rate-1/2 convolutional code, BPSK, the same
channel and SNR; an image whose side information fails its CRC is answered by the edge); the server's answer is
fused with the hint (:class:`semcomm.transport.jscc_link.JSCCLink`). Receivers have perfect CSI. Every SNR uses
the same images and seed (paired); each top-1 has its exact (Clopper-Pearson) 95% interval, and each SNR's
difference from the edge alone McNemar's exact p-value.

Reports, per channel and budget: top-1 at each SNR and noise-free, images lost on the control channel, channel
uses per offloaded image (analog + control) and per image (all images), the lowest SNR from which top-1 stays
within 1 point of the pair's best top-1 (noise-free or at any SNR of the list: above its training range a pair
extrapolates, and may do worse noise-free than at its highest trained SNR), and whether any SNR falls significantly (p < 0.05) below the edge alone.
The sweep's time is printed (target (d) of issue 27: 8 SNRs of 10,000 images within 5 minutes).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _refenv  # noqa: E402

from channels import clopper_pearson  # noqa: E402
from semcomm import create_model  # noqa: E402
from semcomm.data import load_split  # noqa: E402
from semcomm.edge.encoder import Transmission  # noqa: E402
from semcomm.edge.gating import Gate  # noqa: E402
from semcomm.edge.selection import SpreadTopK  # noqa: E402
from semcomm.experiments.statistics import paired_comparison  # noqa: E402
from semcomm.inference import autocast, native_bf16  # noqa: E402
from semcomm.rate.hyperprior import edge_pass, source_values  # noqa: E402
from semcomm.train.jscc import export_jscc  # noqa: E402
from semcomm.transport.jscc_link import JSCCLink  # noqa: E402

CHANNEL_NAMES = {"awgn": "AWGN", "block": "Rayleigh block fading (one gain per image), perfect CSI",
                 "fast": "Rayleigh fast fading (one gain per symbol), perfect CSI"}


def model_card(model: str, scratch: Path) -> str | Path:
    """A zoo name or card path as given; a snapshot or run folder exported into ``scratch`` first."""
    path = Path(model)
    if path.is_dir():
        card = export_jscc(path.name, path, directory=scratch)
        return scratch / f"{card.name}.json"
    return model


def interval(correct: torch.Tensor) -> tuple[float, float, float]:
    """(top-1, low, high) in % with the exact 95% interval."""
    k, n = int(correct.sum()), len(correct)
    low, high = clopper_pearson(k, n, 0.95)
    return 100 * k / n, 100 * float(low), 100 * float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="jscc-cifar10", help="zoo name, card path, or a run / snapshot folder")
    parser.add_argument("--images", type=int, default=10_000, help="CIFAR-10 test images (10000: all)")
    parser.add_argument("--snrs", default="-5,0,2,5,10,20", help="Es/N0 values, dB")
    parser.add_argument("--channels", default="awgn,block", help=f"of {', '.join(CHANNEL_NAMES)}")
    parser.add_argument("--budgets", default="64,32,16", help="patches sent per offloaded image")
    parser.add_argument("--gate", default="0.6", help="min-entropy gate threshold in bits, or none")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    parser.add_argument("--plot", type=Path, help="draw top-1 against SNR per model and channel here")
    args = parser.parse_args()
    snrs = [float(s) for s in args.snrs.split(",")]
    started = time.time()
    split = load_split("cifar10", "test", limit=args.images)
    edge = create_model("vit-edge-cifar10")
    models = {}
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.model.split(","):
            card = model_card(model, Path(scratch))
            models[model] = {kind: JSCCLink.from_zoo(card, kind, bf16=native_bf16())
                             for kind in args.channels.split(",")}
    latent = next(iter(next(iter(models.values())).values())).codec.config.latent
    if any(link.codec.config.latent != latent for links in models.values() for link in links.values()):
        raise ValueError("the models read different source values; compare models of one geometry")
    logits, importance, values = [], [], []
    for start in range(0, len(split), 500):
        images = split.images[start : start + 500]
        with torch.no_grad(), autocast(native_bf16()):
            out = edge_pass(edge, images, latent)
        logits.append(out[0].float())
        importance.append(out[1].float())
        values.append(source_values(images, None if out[2] is None else out[2].float(), latent))
    logits, importance, values = torch.cat(logits), torch.cat(importance), torch.cat(values)
    offloaded = (torch.ones(len(split), dtype=torch.bool) if args.gate == "none"
                 else Gate("min_entropy", float(args.gate)).offload(logits))
    edge_correct = logits.argmax(-1) == split.labels
    edge_top1 = interval(edge_correct)
    prepared = time.time() - started
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"- command: `{' '.join([os.path.relpath(sys.executable)] + sys.argv)}`")
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"- machine: {_refenv.cpu_name()} ({platform.machine()}), {os.cpu_count()} cores, load average at start "
          f"{load}; torch {torch.__version__}, {torch.get_num_threads()} thread(s), bf16 {native_bf16()}")
    for model, links in models.items():
        print(f"- model {model}: trained on {next(iter(links.values())).trained_snr} dB")
    print(f"- control channel: {next(iter(next(iter(models.values())).values())).control.label}")
    print(f"- data: {split.name}, {len(split)} images; gate {args.gate} offloads {100 * offloaded.float().mean():.1f}%; "
          f"edge alone {edge_top1[0]:.2f}% [{edge_top1[1]:.2f}, {edge_top1[2]:.2f}]; edge pass {prepared:.0f} s\n")
    results = dict(models=list(models), images=len(split), gate=args.gate, edge_top1=edge_top1[0], rows=[])
    for (model, links), kind in ((m, k) for m in models.items() for k in args.channels.split(",")):
        link = links[kind]
        print(f"{model}, {CHANNEL_NAMES[kind]}: top-1 (%) [95% interval] at Es/N0 (dB); * below the edge alone "
              "(McNemar p < 0.05)\n")
        print("| k | " + " | ".join(f"{s:g}" for s in snrs) + " | noise-free | uses / offloaded image | uses / image "
              "| images lost at the lowest SNR | lowest SNR within 1 point of the best | sweep time |")
        print("|---:|" + "---:|" * len(snrs) + "---:|---:|---:|---:|---:|---:|")
        for k in (int(b) for b in args.budgets.split(",")):
            mask = SpreadTopK(k)(importance, edge.grid_size)
            sent = Transmission(logits, offloaded, mask, [None] * len(split), mask.long())
            clock = time.time()
            outcomes = {snr: link.run(sent, values, snr, generator=0) for snr in snrs}
            sweep = time.time() - clock
            clean = link.run(sent, values, math.inf, generator=0)
            cells, curve, row = [], {}, dict(model=model, trained_snr=list(link.trained_snr), channel=kind, k=k,
                                             points={})
            for snr, out in outcomes.items():
                correct = out.predictions == split.labels
                top1, low, high = interval(correct)
                test = paired_comparison(correct, edge_correct)
                below = test["only_random"] > test["only_rule"] and test["p_value"] < 0.05
                curve[snr] = top1
                cells.append(f"{top1:.2f} [{low:.2f}, {high:.2f}]{'*' if below else ''}")
                row["points"][f"{snr:g}"] = dict(top1=top1, interval=[low, high], below_edge=below,
                                                 p_value_vs_edge=test["p_value"], images_lost=out.images_lost,
                                                 uses_per_image=float(out.channel_uses.float().mean()))
            clean_top1 = interval(clean.predictions == split.labels)[0]
            best = max(clean_top1, *curve.values())  # a pair may do better inside its training range than at inf
            within = [s for s in sorted(snrs) if all(curve[t] >= best - 1 for t in snrs if t >= s)]
            first = outcomes[snrs[0]]
            off_uses = float(first.channel_uses[offloaded].float().mean()) if offloaded.any() else 0.0
            row.update(noise_free=clean_top1, best=best, uses_per_offloaded=off_uses, sweep_seconds=sweep,
                       lowest_within_1=within[0] if within else None)
            results["rows"].append(row)
            print(f"| {k} | " + " | ".join(cells) + f" | {clean_top1:.2f} | {off_uses:,.0f} | "
                  f"{float(first.channel_uses.float().mean()):,.0f} | {first.images_lost} | "
                  f"{'none' if not within else f'{within[0]:g} dB'} | {sweep:.0f} s ({len(snrs)} SNRs) |", flush=True)
        print()
    print(f"Total time {time.time() - started:.0f} s.")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    if args.plot:
        plot_curves(results, max(int(b) for b in args.budgets.split(",")), args.plot)


def plot_curves(results: dict, k: int, path: Path) -> None:
    """Top-1 against SNR of every model on every channel at ``k`` patches; hollow markers outside a model's
    trained range; the edge alone dashed."""
    from matplotlib.figure import Figure

    from semcomm.experiments.plots import EDGE_LINE

    channels = list(dict.fromkeys(row["channel"] for row in results["rows"]))
    fig = Figure(figsize=(6.5 * len(channels), 5.5), layout="constrained")
    axes = fig.subplots(1, len(channels), squeeze=False)[0]
    for ax, channel in zip(axes, channels):
        for row in (r for r in results["rows"] if r["channel"] == channel and r["k"] == k):
            snrs = [float(s) for s in row["points"]]
            top1 = [row["points"][s]["top1"] for s in row["points"]]
            line, = ax.plot(snrs, top1, label=row["model"])
            low, high = row["trained_snr"]
            for snr, value in zip(snrs, top1):
                inside = low <= snr <= high
                ax.plot(snr, value, "o", color=line.get_color(), mfc=line.get_color() if inside else "none")
        ax.axhline(results["edge_top1"], label="edge alone", **EDGE_LINE)
        ax.set_xlabel("Es/N0 (dB)")
        ax.set_ylabel(f"top-1 (%), {k} patches per offloaded image, gate {results['gate']}")
        ax.set_title(CHANNEL_NAMES[channel])
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), fontsize=8)  # hides no data
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
