"""Hostile input on the wire: what every shipped codec pair's decoder does with bytes that were not sent.

    .venv/bin/python benchmarks/hostile_wire.py [--images 16] [--cases 2000] [--random 20000] [--seed 0]

Strings of every shipped pair (version 2, fixed levels and IAQ, with and without the edge hint, entropy
coding on and off) and of ``raw8`` (version 1), made from CIFAR-10 test images with the shipped models,
then damaged: every single-bit flip, bursts of 2..16 bits, every truncation, appends of 1..16 bytes
(zeros, random, and bytes chosen to keep the CRC-16 valid), splices of two strings, random strings; and
packets (version 3) dropped, duplicated, reordered, damaged and injected from another image.

Each case ends in one verdict: *refused* (:class:`BitstreamError`), *as sent* (decoded to exactly what the
sent string decodes to), *flagged* (packets: what arrived is exactly as sent, and every other sent patch is
reported missing, or the image lost) or *silent*: bytes that were not sent decoded as if they had been, or a
patch neither delivered as sent nor reported missing. Any other exception, or a call over
:data:`TIME_LIMIT` seconds, stops the run. Prints a Markdown table for BENCHMARKS.md ("Hostile input"):
cases tried and verdicts per property, and the slowest case. ``tests/test_hostile_wire.py`` checks the
same properties (these functions) on hypothesis-drawn cases.
"""
from __future__ import annotations

import argparse
import binascii
import signal
import time
from collections import Counter, defaultdict
from contextlib import contextmanager

import numpy as np
import torch

from semcomm.edge.encoder import EdgeEncoder
from semcomm.edge.selection import SpreadTopK
from semcomm.rate import create_codec
from semcomm.rate.packetize import Packetizer
from semcomm.rate.pair import Received
from semcomm.rate.policies import IAQ, FixedLevel
from semcomm.rate.zoo import load_hint
from semcomm.wire import v1
from semcomm.wire.errors import BitstreamError

TIME_LIMIT = 10.0  # seconds for one decode or join: longer is a hang
REFUSED, AS_SENT, FLAGGED, SILENT = "refused", "as sent", "flagged", "silent"
# (label, pair, its factory's arguments, selection budget, level policy, with the hint): every shipped pair
FAMILIES = (
    ("raw8", "raw8", {}, 16, None, False),
    ("pixel-iaq L4 hint", "pixel-iaq", {}, 24, FixedLevel(4), True),
    ("pixel-iaq IAQ 900", "pixel-iaq", {}, 24, IAQ(900), False),
    ("dct-cifar10 L3 hint", "dct-cifar10", {}, 24, FixedLevel(3), True),
    ("dct-cifar10 IAQ 600", "dct-cifar10", {}, 24, IAQ(600), False),
    ("dct-cifar10 fixed-length IAQ 600 hint", "dct-cifar10", {"entropy_coding": False}, 24, IAQ(600), True),
    ("latent-cifar10 L2", "latent-cifar10", {}, 24, FixedLevel(2), False),
    ("latent-cifar10 IAQ 400 hint", "latent-cifar10", {}, 24, IAQ(400), True),
    ("latent-cifar10 fixed-length L3 hint", "latent-cifar10", {"entropy_coding": False}, 24, FixedLevel(3), True),
    ("hyperlatent-cifar10 IAQ 600 hint", "hyperlatent-cifar10", {}, 24, IAQ(600), True),
)
# (family, data packet bytes, header copies): the entropy-coded pairs cut into packets
PACKETS = (("latent-cifar10 IAQ 400 hint", 38, 2), ("latent-cifar10 L2", 48, 1), ("dct-cifar10 L3 hint", 64, 2))


class Hang(Exception):
    """A decode or join ran past :data:`TIME_LIMIT`."""


@contextmanager
def time_limit(seconds: float = TIME_LIMIT):
    """Raise :class:`Hang` in the block if it runs longer than ``seconds`` (main thread, POSIX)."""
    def expire(signum, frame):
        raise Hang(f"ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---- what is sent ------------------------------------------------------------------------------------
def families(images: torch.Tensor, edge) -> dict[str, tuple[object, list[bytes]]]:
    """label -> (pair, one string per image) for every family of :data:`FAMILIES`."""
    hint, pairs, out = load_hint("vit-edge-cifar10"), {}, {}
    for label, name, kwargs, budget, policy, hinted in FAMILIES:
        key = (name, tuple(sorted(kwargs.items())))
        pair = pairs.setdefault(key, create_codec(name, **kwargs).for_edge(edge))  # raw8: on the edge's grid
        encoder = EdgeEncoder(edge, SpreadTopK(budget), gate=None, codec=pair, policy=policy,
                              hint=hint if hinted else None)
        out[label] = (pair, encoder.encode(images, generator=0).strings)
    return out


def same(a: Received, b: Received) -> bool:
    """Whether two decoded strings are exactly equal (positions, levels, values, hint)."""
    if (a.hint is None) != (b.hint is None) or (a.hint is not None and not torch.equal(a.hint, b.hint)):
        return False
    return all(torch.equal(x, y) for x, y in ((a.positions, b.positions), (a.level, b.level), (a.values, b.values)))


# ---- strings -----------------------------------------------------------------------------------------
def flip(string: bytes, bits) -> bytes:
    """``string`` with each of ``bits`` (0 = the first byte's most significant bit) inverted."""
    out = bytearray(string)
    for bit in bits:
        out[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


def burst(string: bytes, start: int, width: int, pattern: int) -> bytes:
    """A burst of ``width`` bits from bit ``start``: its first and last bit inverted, those between as
    ``pattern``'s bits say."""
    inner = [start + 1 + i for i in range(width - 2) if pattern >> i & 1]
    return flip(string, [start, *inner, start + width - 1] if width > 1 else [start])


def crc_append(string: bytes, extra: bytes) -> bytes:
    """``string`` + ``extra`` + 2 bytes that keep a CRC-16 over all but the last two bytes valid: after a
    sealed string the CRC register is 0 (no final XOR), so the CRC of ``extra`` from 0 closes it again."""
    return string + extra + binascii.crc_hqx(extra, 0).to_bytes(2, "big")


def string_verdict(pair, damaged: bytes, sent: list[Received]) -> str:
    """:data:`REFUSED`, :data:`AS_SENT` (decodes to exactly one of ``sent``) or :data:`SILENT`."""
    try:
        with time_limit():
            (got,) = pair.decompress([damaged])
    except BitstreamError:
        return REFUSED
    return AS_SENT if any(same(got, s) for s in sent) else SILENT


# ---- packets -----------------------------------------------------------------------------------------
def arrival_verdict(packetizer: Packetizer, packets: list, sent: Received) -> str:
    """:data:`AS_SENT` (every patch arrived as sent), :data:`FLAGGED` (what arrived is as sent and every
    other sent patch is reported missing, or the image is lost: all its patches counted missing) or
    :data:`SILENT`. (Of an image lost whole the receiver cannot know the positions: a lone header of
    another image looks like an image of which nothing else arrived.)"""
    with time_limit():
        arrival = packetizer.join(packets)
    k, got = len(sent.positions), arrival.received
    if got is None:
        return FLAGGED if arrival.patches_missing(k) == k else SILENT
    rows = torch.searchsorted(sent.positions, got.positions).clamp(max=k - 1)
    exact = (torch.equal(sent.positions[rows], got.positions) and torch.equal(sent.level[rows], got.level)
             and torch.equal(sent.values[rows], got.values)
             and (sent.hint is None) == (got.hint is None) and (got.hint is None or torch.equal(sent.hint, got.hint)))
    accounted = sorted(got.positions.tolist() + arrival.missing.tolist()) == sent.positions.tolist()
    if not (exact and accounted):
        return SILENT
    return AS_SENT if not len(arrival.missing) else FLAGGED


def damage_packet(packet: bytes, rng: np.random.Generator) -> bytes:
    """A packet flipped in 1..16 random bits, truncated, or extended so that its CRC-16 still holds."""
    action = rng.integers(3)
    if action == 0:
        return flip(packet, rng.choice(8 * len(packet), rng.integers(1, 17), replace=False).tolist())
    if action == 1:
        return packet[: rng.integers(len(packet))]
    return crc_append(packet, rng.integers(0, 256, rng.integers(0, 15)).astype(np.uint8).tobytes())


# ---- the run -----------------------------------------------------------------------------------------
class Tally:
    """Cases and verdicts per property, and the slowest case."""

    def __init__(self):
        self.counts: dict[str, Counter] = defaultdict(Counter)
        self.slowest: dict[str, float] = defaultdict(float)

    def add(self, name: str, judge, *args) -> None:
        start = time.perf_counter()
        verdict = judge(*args)
        self.slowest[name] = max(self.slowest[name], time.perf_counter() - start)
        self.counts[name][verdict] += 1

    def table(self) -> str:
        rows = ["| property | cases | refused | as sent | flagged loss | silent | slowest (ms) |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        groups = list(dict.fromkeys(name.split(":")[0] for name in self.counts))  # formats, as first met
        for name in sorted(self.counts, key=lambda name: (groups.index(name.split(":")[0]), name)):
            c = self.counts[name]
            rows.append(f"| {name} | {sum(c.values()):,} | {c[REFUSED]:,} | {c[AS_SENT]:,} | {c[FLAGGED]:,} | "
                        f"{c[SILENT]:,} | {1000 * self.slowest[name]:.1f} |")
        return "\n".join(rows)


def region(pair, string: bytes, bit: int) -> str:
    """Where ``bit`` lies in a version-1 string, which has no CRC: its header and positions are checked
    against its length, its pixels by nothing; "" for the other versions."""
    if pair.version != v1.VERSION:
        return ""
    count = (string[1] << 8) | string[2]
    pixels = 8 * (v1.HEADER_BYTES + v1.position_bytes(count, pair.num_patches)[1])
    return " in the header and positions" if bit < pixels else " in the pixels (no CRC in version 1)"


def run_strings(tally: Tally, fams: dict, rng: np.random.Generator, cases: int, random_strings: int) -> None:
    """Every string property over every family (version 1 and version 2 counted apart)."""
    for k, (label, (pair, strings)) in enumerate(fams.items()):
        fmt = "version 1 (raw8)" if pair.version == v1.VERSION else "version 2"
        sent = pair.decompress(strings)
        for s, d in zip(strings, sent):
            for bit in range(8 * len(s)):
                tally.add(f"{fmt}: every single-bit flip{region(pair, s, bit)}", string_verdict, pair,
                          flip(s, [bit]), [d])
            for cut in range(len(s)):
                tally.add(f"{fmt}: every truncation", string_verdict, pair, s[:cut], [d])
            for n in range(1, 17):
                for extra in (bytes(n), rng.integers(0, 256, n).astype(np.uint8).tobytes()):
                    tally.add(f"{fmt}: appends of 1..16 bytes (zeros, random)", string_verdict, pair, s + extra, [d])
                if n >= 2:
                    extra = rng.integers(0, 256, n - 2).astype(np.uint8).tobytes()
                    tally.add(f"{fmt}: appends of 2..16 bytes keeping the CRC-16 valid", string_verdict, pair,
                              crc_append(s, extra), [d])
        for _ in range(cases):
            i = int(rng.integers(len(strings)))
            s, width = strings[i], int(rng.integers(2, 17))
            start = int(rng.integers(8 * len(s) - width + 1))
            tally.add(f"{fmt}: bursts of 2..16 bits{region(pair, s, start)}", string_verdict, pair,
                      burst(s, start, width, int(rng.integers(1 << 14))), [sent[i]])
            j = int(rng.integers(len(strings)))
            a, b = int(rng.integers(len(s) + 1)), int(rng.integers(len(strings[j]) + 1))
            tally.add(f"{fmt}: splices of two strings", string_verdict, pair, s[:a] + strings[j][b:],
                      [sent[i], sent[j]])
        head = strings[0][:1]
        for _ in range(random_strings // len(fams) + (k < random_strings % len(fams))):
            data = rng.integers(0, 256, rng.integers(0, 2 * max(map(len, strings)))).astype(np.uint8).tobytes()
            data = head + data[1:] if rng.random() < 0.5 else data  # half of them claim the family's version
            tally.add(f"{fmt}: random strings", string_verdict, pair, data, [])


def run_packets(tally: Tally, fams: dict, rng: np.random.Generator, cases: int) -> None:
    """Every packet property: drop, duplicate, reorder, damage, inject another image's packet."""
    for label, size, copies in PACKETS:
        pair, strings = fams[label]
        packetizer = Packetizer(pair, packet_bytes=size, header_copies=copies)
        cut = [packetizer.split(s) for s in strings]
        sent = pair.decompress(strings)
        others = [p for name, *_ in PACKETS if fams[name][0].layout.codec_id != pair.layout.codec_id
                  for s in fams[name][1][:4] for p in Packetizer(fams[name][0], 64).split(s)]
        for _ in range(cases):
            i = int(rng.integers(len(strings)))
            packets, full = cut[i], sent[i]
            kept = [p if rng.random() > 0.3 else None for p in packets]
            tally.add("version 3: packets dropped (each with probability 0.3)", arrival_verdict, packetizer, kept, full)
            extra = [packets[j] for j in rng.integers(len(packets), size=rng.integers(1, 4))]
            tally.add("version 3: packets duplicated", arrival_verdict, packetizer, packets + extra, full)
            order = rng.permutation(len(packets))
            tally.add("version 3: packets reordered", arrival_verdict, packetizer, [packets[j] for j in order], full)
            damaged = [damage_packet(p, rng) if rng.random() < 0.3 else p for p in packets]
            tally.add("version 3: packets damaged (flips, truncations, CRC-valid appends)", arrival_verdict,
                      packetizer, damaged, full)
            j = (i + 1 + int(rng.integers(len(strings) - 1))) % len(strings)
            foreign = cut[j][int(rng.integers(len(cut[j])))]
            spot = int(rng.integers(len(packets)))
            base = kept if rng.random() < 0.5 else list(packets)
            injected = base[:spot] + [foreign] + base[spot:]
            tally.add("version 3: another image's packet injected (with and without drops)", arrival_verdict,
                      packetizer, injected, full)
            replaced = list(packets)
            replaced[spot] = foreign
            tally.add("version 3: another image's packet in place of one of its own", arrival_verdict,
                      packetizer, replaced, full)
            tally.add("version 3: another codec's packet injected", arrival_verdict, packetizer,
                      packets + [others[int(rng.integers(len(others)))]], full)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16, help="CIFAR-10 test images per family")
    parser.add_argument("--cases", type=int, default=2000, help="random cases per family and property")
    parser.add_argument("--random", type=int, default=20_000, help="random strings, over all families")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from semcomm.data import load_split
    from semcomm.models import create_model

    images = load_split("cifar10", "test", limit=args.images).images
    fams = families(images, create_model("vit-edge-cifar10"))
    rng, tally, started = np.random.default_rng(args.seed), Tally(), time.time()
    run_strings(tally, fams, rng, args.cases, args.random)
    run_packets(tally, fams, rng, args.cases)
    print(f"# {args.images} CIFAR-10 test images, {len(FAMILIES)} string families "
          f"({', '.join(label for label, *_ in FAMILIES)}), seed {args.seed}, {time.time() - started:.0f} s\n")
    print(tally.table())
    print("\nVersion 1 (raw8) carries no CRC (FORMAT.md): its length checks its header and positions, but a flipped "
          "bit among its pixels, or a splice of two strings of one length, decodes undetected; carry it under a "
          "link's CRC.")


if __name__ == "__main__":
    main()
