"""The codec end to end over a link: encode, packetise, transmit, join, classify, fall back to the edge.

:func:`over_link` takes what the edge sent (a :class:`~semcomm.codec.Transmission`
of version-2 strings), carries every offloaded image's packets through a
:class:`~semcomm.transport.DigitalTransport` at one SNR, and classifies what
arrived with the codec pair's server (fused with the edge's hint where its
header arrived); an image with no header or no data packet left is answered
by the edge, and counted in :attr:`LinkOutcome.images_lost`.

An image whose packets all arrived byte for byte is what the edge sent: given
``intact_logits`` (the server's logits of the sent strings, e.g. from the
error-free pass of a sweep), such images reuse them instead of being decoded
and classified again, which is exact and makes a sweep over many SNRs cost
one server pass plus the damaged images.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from semcomm.edge.encoder import Transmission, collaborative_predictions
from semcomm.rate.pair import CodecPair
from semcomm.transport.digital import DigitalTransport
from semcomm.wire.packets import Packetizer


@dataclass
class LinkOutcome:
    """One pass of B images over a link.

    Attributes:
        predictions: B class predictions (the edge's where nothing usable arrived).
        link_bits: B int64, bits of all packets sent per image (0 when answered at the edge).
        channel_uses: B int64, channel uses per image.
        packets_lost: packets lost or damaged, over all images.
        packets_sent: packets sent, over all images.
        images_lost: offloaded images of which no header or no data packet arrived.
        patches_missing: sent patches lost with their packets, over all images.
        lost: B booleans, True for an offloaded image answered by the edge because nothing usable arrived.
    """

    predictions: torch.Tensor
    link_bits: torch.Tensor
    channel_uses: torch.Tensor
    packets_lost: int
    packets_sent: int
    images_lost: int
    patches_missing: int
    lost: torch.Tensor | None = None


def over_link(sent: Transmission, pair: CodecPair, packetizer: Packetizer, transport: DigitalTransport,
              snr_db: float | None = None, generator: torch.Generator | None = None,
              batch_size: int = 256, min_arrived: float = 0.0,
              intact_logits: torch.Tensor | None = None) -> LinkOutcome:
    """Carry ``sent`` (version-2 strings of ``pair``) over ``transport`` at ``snr_db`` and classify.

    Args:
        min_arrived: the share of an image's sent patches that must arrive for the server to
            answer; below it the image counts as lost and the edge answers (a server that sees a
            few patches can do worse than the edge; measured in BENCHMARKS.md).
        intact_logits: B x C server logits (hint fused) of the strings as sent, or None; rows of
            images that were not offloaded are not read (see the module docstring).
    """
    if not 0.0 <= min_arrived <= 1.0:
        raise ValueError(f"min_arrived must be a share in [0, 1], got {min_arrived!r}")
    if intact_logits is not None and tuple(intact_logits.shape) != (len(sent.strings), pair.num_classes):
        raise ValueError(f"intact_logits must be B x C = {len(sent.strings)} x {pair.num_classes}, "
                         f"got {tuple(intact_logits.shape)}")
    offloaded = sent.offloaded.nonzero().flatten().tolist()
    packets = [packetizer.split(sent.strings[i]) for i in offloaded]
    delivery = transport.send(packets, snr_db=snr_db, generator=generator)
    intact = [intact_logits is not None and got == image for got, image in zip(delivery.packets, packets)]
    arrivals = [None if whole else packetizer.join(arrived) for whole, arrived in zip(intact, delivery.packets)]
    for a in arrivals:
        if a is not None and a.received is not None and \
                len(a.received.positions) < min_arrived * (len(a.received.positions) + len(a.missing)):
            a.received = None
    server_logits = pair.classify([None if a is None else a.received for a in arrivals], batch_size)
    for j, whole in enumerate(intact):
        if whole:
            server_logits[j] = intact_logits[offloaded[j]]
    lost = torch.zeros(len(sent.strings), dtype=torch.bool)
    lost[offloaded] = torch.tensor([a is not None and a.received is None for a in arrivals], dtype=torch.bool)
    link_bits = torch.zeros(len(sent.strings), dtype=torch.int64)
    channel_uses = torch.zeros(len(sent.strings), dtype=torch.int64)
    if offloaded:
        link_bits[offloaded] = torch.tensor([sum(8 * len(p) for p in image) for image in packets])
        channel_uses[offloaded] = delivery.channel_uses
    return LinkOutcome(collaborative_predictions(sent, server_logits), link_bits, channel_uses,
                       packets_lost=sum(a.packets_lost for a in arrivals if a is not None),
                       packets_sent=sum(map(len, packets)), images_lost=int(lost.sum()),
                       patches_missing=sum(len(a.missing) for a in arrivals if a is not None), lost=lost)
