"""Print FORMAT.md's worked examples: one version-2 string of the shipped DCT pair, byte by byte, the
same image as version-3 packets (one header copy, data packets of at most 20 bytes), and the same image as
WebP and AVIF files at quality 40 with what their transports carry.

    .venv/bin/python benchmarks/format_example.py

The input is synthetic (no data set, no model), so the bytes are the same on
every machine; ``tests/test_rate_format.py`` checks FORMAT.md against them.
"""
from __future__ import annotations

import torch

from semcomm.models import ViTAdapter
from semcomm.rate import create_codec
from semcomm.rate.image_codecs import ImageCodec
from semcomm.rate.packetize import Packetizer
from semcomm.wire.carried import FRAMING_BYTES, anatomy
from semcomm.wire import packets
from semcomm.wire.v2 import dissect


def example_image() -> torch.Tensor:
    """1 x 3 x 32 x 32 uint8: a smooth colour ramp with a bright square (deterministic)."""
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    image = torch.stack([4 * x + 60, 4 * y + 40, 200 - 3 * (x + y)])
    image[:, 8:16, 8:16] = torch.tensor([230.0, 220.0, 60.0])[:, None, None]
    return image.clamp(0, 255).round().to(torch.uint8)[None]


def example_level() -> torch.Tensor:
    """1 x 64 levels: four patches sent, at levels 3, 2, 2 and 1."""
    level = torch.zeros(1, 64, dtype=torch.int64)
    level[0, [18, 19, 27, 45]] = torch.tensor([3, 2, 2, 1])
    return level


EXAMPLE_LOGITS = torch.tensor([[2.0, 0.1, -1.0, 3.5, 0.0, 1.2, -2.0, 0.3, -0.5, 0.8]])


def example_string(pair) -> bytes:
    source = pair.source(example_image(), None)
    return pair.compress(source, example_level(), pair.hint_coder.symbols(EXAMPLE_LOGITS))[0]


def example_packets(pair) -> list[bytes]:
    """The example string as packets: one header copy, then data packets of at most 20 bytes."""
    return Packetizer(pair, packet_bytes=20, header_copies=1).split(example_string(pair))


class _NoServer(ViTAdapter):
    """The example needs the pair's coding half only."""

    def __init__(self):
        super().__init__((32, 32), 4, 10, (0.5,) * 3, (0.5,) * 3)

    def _forward_with_attention(self, x, layers=None):
        raise NotImplementedError

    def _forward_tokens(self, x, positions):
        raise NotImplementedError


def show(data: bytes, rows: list[dict]) -> None:
    """``data`` in hex, 16 bytes a line, then its fields as a Markdown table (fields of 0 bits left out)."""
    print(f"{len(data)} bytes = {8 * len(data)} bits\n")
    print("```")
    for start in range(0, len(data), 16):
        print(f"{start:04x}  " + " ".join(f"{b:02x}" for b in data[start : start + 16]))
    print("```\n")
    print("| field | first bit | bits | value |")
    print("|---|---:|---:|---|")
    for row in rows:
        if row["bits"]:
            print(f"| {row['field']} | {row['start']} | {row['bits']} | {row['value']} |")
    print()


def anchor_table(file_format: str, carried: str, quality: int = 40) -> str:
    """The example image as a ``file_format`` file: its parts, which of them ``carried`` strings hold, and the
    totals (a Markdown table)."""
    file = ImageCodec(file_format, quality).compress(example_image())[0]
    string = ImageCodec(carried, quality).compress(example_image())[0]
    rows = [f"| {file_format} file part | bytes | carried |", "|---|---:|---|"]
    rows += [f"| {name} | {size} | {'yes' if kept else 'no'} |" for name, size, kept in anatomy(file) if size]
    rows.append(f"| codec id and CRC-16 (the carried string's framing) | {FRAMING_BYTES} | yes |")
    rows.append(f"| **{file_format}-q{quality} file / {carried}-q{quality} string** | **{len(file)} / {len(string)}** | |")
    return "\n".join(rows)


def main() -> None:
    pair = create_codec("dct-cifar10", server=_NoServer())
    string = example_string(pair)
    show(string, dissect(string, pair.layout, pair.hint_coder, pair.num_classes))
    for packet in example_packets(pair):
        show(packet, packets.dissect(packet, pair.layout, pair.hint_coder, pair.num_classes))
    for file_format, carried in (("webp", "vp8"), ("avif", "av1")):
        print(anchor_table(file_format, carried) + "\n")


if __name__ == "__main__":
    main()
