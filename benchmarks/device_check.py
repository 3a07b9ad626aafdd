"""The main paths on another device (or precision) against the CPU in float32: same predictions, same bits.

For each codec (``raw8``, ``dct-cifar10``, ``latent-cifar10``, and the end-to-end and JSCC pairs where the zoo
has them), N CIFAR-10 test images are encoded by the edge and classified by the server twice: once with every model
on the CPU in float32 (the reference), once on ``--device`` (with its own mixed precision when ``--bf16``). Reported
per codec:

* predictions: share of images whose collaborative prediction (server where offloaded, else edge) is the same;
* strings: share of offloaded images whose string is byte-identical to the reference's (the entropy coder's inputs
  are integers; a float differing across devices can still round a latent the other way);
* decoded on the CPU: share of the device's strings that a CPU server decodes to exactly the values the device's
  server decoded (the entropy side runs in float64 on the CPU at both ends, so this must be 100%);
* max |logit difference| of the server between the two runs, on images both offloaded with identical strings;
* bits per image of each run; seconds per 1,000 images of each run (wall time, after one warm-up batch).

    .venv/bin/python benchmarks/device_check.py --device cuda [--images 1000] [--bf16] [--json PATH]
    .venv/bin/python benchmarks/device_check.py --device cpu --bf16     # CPU bf16 against CPU fp32 (any machine)

Prints a markdown table and, with --json, writes the numbers.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from semcomm.core.devices import autocast, resolve_device
from semcomm.data import load_split
from semcomm.edge import EdgeEncoder, Gate, SpreadTopK, collaborative_predictions
from semcomm.models import create_model
from semcomm.rate import create_codec
from semcomm.rate.policies import IAQ
from semcomm.rate.zoo import load_hint
from semcomm.server import ServerDecoder

CODECS = ("raw8", "dct-cifar10", "latent-cifar10", "hyperlatent-cifar10")


def build(name: str, device: torch.device, bf16: bool):
    """(encoder, decoder, pair) of one codec with every model on ``device``."""
    edge, server = create_model("vit-edge-cifar10").to(device), create_model("vit-server-cifar10").to(device)
    hint = load_hint("vit-edge-cifar10")
    if name == "raw8":
        encoder = EdgeEncoder(edge, SpreadTopK(16), Gate("min_entropy", 0.5), bf16=bf16)
        return encoder, ServerDecoder(server, bf16=bf16), None
    pair = create_codec(name, server=server) if name == "dct-cifar10" else create_codec(name, bf16=bf16)
    pair.to(device)
    encoder = EdgeEncoder(edge, SpreadTopK(16), Gate("min_entropy", 0.5), codec=pair, policy=IAQ(600), hint=hint,
                          bf16=bf16)
    return encoder, ServerDecoder(codec=pair, bf16=bf16), pair


def run(name: str, images: torch.Tensor, device: torch.device, bf16: bool, batch: int = 250) -> dict:
    """Strings, predictions, server logits and wall time of one configuration over ``images``."""
    encoder, decoder, pair = build(name, device, bf16)
    strings, predictions, logits = [], [], []
    with torch.no_grad(), autocast(bf16):
        encoder.encode(images[:batch])  # warm-up
        started = time.perf_counter()
        for start in range(0, len(images), batch):
            sent = encoder.encode(images[start : start + batch], generator=0)
            server = decoder.classify([s for s in sent.strings if s is not None])
            strings += sent.strings
            predictions.append(collaborative_predictions(sent, server))
            full = torch.full((len(sent.strings), server.shape[1]), float("nan"))
            full[sent.offloaded] = server
            logits.append(full)
        seconds = time.perf_counter() - started
    return dict(strings=strings, predictions=torch.cat(predictions), logits=torch.cat(logits), seconds=seconds,
                pair=pair)


def compare(name: str, images: torch.Tensor, labels: torch.Tensor, device: torch.device, bf16: bool) -> dict:
    reference = run(name, images, torch.device("cpu"), False)
    other = run(name, images, device, bf16)
    both = [i for i, (a, b) in enumerate(zip(reference["strings"], other["strings"])) if a is not None and b is not None]
    same = [i for i in both if reference["strings"][i] == other["strings"][i]]
    row = dict(codec=name, images=len(images),
               predictions_same=float((reference["predictions"] == other["predictions"]).float().mean()),
               top1_cpu=float((reference["predictions"] == labels).float().mean()),
               top1_device=float((other["predictions"] == labels).float().mean()),
               strings_same=len(same) / max(1, len(both)),
               bits_cpu=sum(8 * len(s) for s in reference["strings"] if s is not None) / len(images),
               bits_device=sum(8 * len(s) for s in other["strings"] if s is not None) / len(images),
               max_logit_difference=float((reference["logits"][same] - other["logits"][same]).abs().max())
               if same else float("nan"),
               seconds_per_1000_cpu=1000 * reference["seconds"] / len(images),
               seconds_per_1000_device=1000 * other["seconds"] / len(images))
    pair = other["pair"]
    if pair is not None:  # the device's strings read by a CPU copy of the pair
        cpu_pair = build(name, torch.device("cpu"), False)[2]
        strings = [s for s in other["strings"] if s is not None]
        on_device, on_cpu = pair.decompress(strings), cpu_pair.decompress(strings)
        row["decoded_same_on_cpu"] = sum(torch.equal(a.values, b.values) and torch.equal(a.positions, b.positions)
                                         for a, b in zip(on_device, on_cpu)) / max(1, len(strings))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="the device to check against the CPU (cuda, cuda:N, mps, cpu)")
    parser.add_argument("--bf16", action="store_true", help="the device run in its own mixed precision")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--codecs", default=",".join(CODECS))
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    split = load_split("cifar10", "test", limit=args.images)
    rows = []
    for name in args.codecs.split(","):
        try:
            rows.append(compare(name, split.images, split.labels, device, args.bf16))
        except KeyError as err:  # a registered pair not exported yet
            print(f"{name}: skipped ({err.args[0] if err.args else err})")
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    if device.type == "cuda":
        machine += f", {torch.cuda.get_device_name(device)}"
    print(f"{device}{' bf16/fp16 autocast' if args.bf16 else ' float32'} against the CPU in float32; "
          f"{len(split)} CIFAR-10 test images; {machine}\n")
    print("| codec | predictions same | top-1 CPU / device | strings same | decoded same on CPU | max logit diff | "
          "bits/image CPU / device | s per 1,000 CPU / device |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        decoded = f"{100 * r['decoded_same_on_cpu']:.2f}%" if "decoded_same_on_cpu" in r else "n/a (no entropy side)"
        print(f"| {r['codec']} | {100 * r['predictions_same']:.2f}% | {100 * r['top1_cpu']:.2f}% / "
              f"{100 * r['top1_device']:.2f}% | {100 * r['strings_same']:.2f}% | {decoded} | "
              f"{r['max_logit_difference']:.2e} | {r['bits_cpu']:.1f} / {r['bits_device']:.1f} | "
              f"{r['seconds_per_1000_cpu']:.1f} / {r['seconds_per_1000_device']:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=str(device), bf16=args.bf16, machine=machine, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
