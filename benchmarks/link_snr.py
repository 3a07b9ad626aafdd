"""The semantic codec over a coded link: top-1 against SNR, with bits and channel uses per image.

    .venv/bin/python benchmarks/link_snr.py [--images 2000] [--snrs 0,1,2,3,4,6] [--channel awgn|rayleigh]

One frontier operating point of the shipped latent pair (every patch at level 3, min-entropy gate 0.6,
the edge's hint fused), its strings as packets (semcomm.rate.packetize.Packetizer, 2 header copies, each
packet one LDPC block), over an 802.11n LDPC (n = 648, rate 1/2) + QPSK link with a CRC-16 per block
(channels.DigitalLink), AWGN or Rayleigh block fading (one gain per LDPC block) with perfect CSI. Every SNR uses the same images
and seed. Lost images are answered by the edge.
"""
from __future__ import annotations

import argparse
import time

import torch

from channels import AWGN, DigitalLink, FlatFading, LDPC80211n
from semcomm import create_model
from semcomm.data import load_split
from semcomm.edge.encoder import EdgeEncoder
from semcomm.edge.gating import Gate
from semcomm.edge.selection import SpreadTopK
from semcomm.rate import create_codec
from semcomm.rate.packetize import Packetizer
from semcomm.rate.policies import FixedLevel
from semcomm.rate.zoo import load_hint
from semcomm.transport.digital import DigitalTransport
from semcomm.transport.over_link import over_link


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--snrs", default="0,1,2,3,4,6")
    parser.add_argument("--channel", choices=("awgn", "rayleigh"), default="awgn")
    args = parser.parse_args()
    split = load_split("cifar10", "test", limit=args.images)
    edge, pair = create_model("vit-edge-cifar10"), create_codec("latent-cifar10")
    encoder = EdgeEncoder(edge, SpreadTopK(64), gate=Gate("min_entropy", 0.6), codec=pair, policy=FixedLevel(3),
                          hint=load_hint("vit-edge-cifar10"))
    sent = encoder.encode(split.images)
    # Rayleigh: one fading gain per LDPC block (block fading over the last dimension), perfect CSI
    channel = AWGN() if args.channel == "awgn" else FlatFading("rayleigh", coherence=None, csi="perfect")
    link = DigitalLink(LDPC80211n(n=648, rate="1/2"), modulation=4, channel=channel, crc="crc16")
    packetizer = Packetizer(pair, packet_bytes=link.payload_bits // 8, header_copies=2)
    edge_top1 = float((sent.edge_logits.argmax(-1) == split.labels).float().mean())
    print(f"# latent-cifar10, every patch at L3, gate min_entropy 0.6 ({100 * float(sent.offloaded.float().mean()):.1f}% "
          f"offloaded), {len(split)} test images; {link!r}, {link.payload_bits}-bit blocks, "
          f"{link.uses_per_packet} channel uses each; edge alone {100 * edge_top1:.2f}%\n")
    print("| SNR (dB) | top-1 | string bits/image | link bits/image | channel uses/image | packets lost | images lost | seconds |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for snr in (float(s) for s in args.snrs.split(",")):
        started = time.time()
        out = over_link(sent, pair, DigitalTransport(link, framing=packetizer), snr_db=snr,
                        generator=torch.Generator().manual_seed(0))
        top1 = float((out.predictions == split.labels).float().mean())
        print(f"| {snr:g} | {100 * top1:.2f}% | {float(sent.bits.float().mean()):,.0f} | "
              f"{float(out.link_bits.float().mean()):,.0f} | {float(out.channel_uses.float().mean()):,.0f} | "
              f"{out.packets_lost} of {out.packets_sent} | {out.images_lost} | {time.time() - started:.0f} |")


if __name__ == "__main__":
    main()
