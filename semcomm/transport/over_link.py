"""The codec end to end over a link: carry, classify what arrived, fall back to the edge.

:func:`over_link` takes what the edge sent (a :class:`~semcomm.edge.encoder.Transmission`), carries
every offloaded image over any :class:`~semcomm.transport.base.Transport` at one channel condition
(packets over a digital link, or analog symbols), and classifies what arrived with the codec pair's
server (fused with the edge's hint where it arrived); an image of which nothing usable arrived is
answered by the edge, and counted in :attr:`LinkOutcome.images_lost`.

An image that arrived exactly as sent (every packet byte for byte) is what the edge sent: given
``intact_logits`` (the server's logits of the sent strings, e.g. from the error-free pass of a sweep),
such images reuse them instead of being decoded and classified again, which is exact and makes a
sweep over many SNRs cost one server pass plus the damaged images.

>>> from semcomm.rate.packetize import Packetizer
>>> transport, snr = LinkSpec("awgn").transport(3.0)                             # doctest: +SKIP
>>> out = over_link(sent, pair, transport.with_framing(Packetizer(pair)), snr)   # doctest: +SKIP
>>> out = over_link(sent, pair, AnalogTransport(AWGN(), "importance"), 3.0,      # doctest: +SKIP
...                 source=pair.source(images, None), importance=analysis.importance["mean"])
"""
from __future__ import annotations

import torch

from semcomm.edge.encoder import Transmission, collaborative_predictions
from semcomm.rate.pair import CodecPair
from semcomm.transport.base import LinkOutcome, Transport


def over_link(sent: Transmission, pair: CodecPair, transport: Transport, snr_db: float | None = None,
              generator: torch.Generator | int | None = None, *, source: torch.Tensor | None = None,
              importance: torch.Tensor | None = None, batch_size: int = 256, min_arrived: float = 0.0,
              intact_logits: torch.Tensor | None = None) -> LinkOutcome:
    """Carry ``sent`` (B images coded by ``pair``) over ``transport`` at ``snr_db`` and classify.

    Args:
        snr_db: Es/N0 in dB of the link (None where the link's condition is not an SNR, e.g.
            :meth:`LinkSpec.transport <semcomm.transport.links.LinkSpec.transport>` on BSC).
        generator: every random draw of the link.
        source, importance: B x N x V codec values and B x N patch importance, for transports that
            send values (see :meth:`Transport.carry <semcomm.transport.base.Transport.carry>`).
        min_arrived: the share of an image's sent patches that must arrive for the server to
            answer; below it the image counts as lost and the edge answers (a server that sees a
            few patches can do worse than the edge; measured in BENCHMARKS.md).
        intact_logits: B x C server logits (hint fused) of the strings as sent, or None; rows of
            images that were not offloaded are not read (see the module docstring).

    Returns:
        a :class:`LinkOutcome` (an :class:`~semcomm.transport.analog_outcome.AnalogOutcome` from the
        analog transport).
    """
    if not 0.0 <= min_arrived <= 1.0:
        raise ValueError(f"min_arrived must be a share in [0, 1], got {min_arrived!r}")
    if intact_logits is not None and tuple(intact_logits.shape) != (len(sent.strings), pair.num_classes):
        raise ValueError(f"intact_logits must be B x C = {len(sent.strings)} x {pair.num_classes}, "
                         f"got {tuple(intact_logits.shape)}")
    offloaded = sent.offloaded.nonzero().flatten()
    carried = transport.carry(sent, pair, snr_db, generator, source=source, importance=importance,
                              decode_intact=intact_logits is None)
    reused = carried.intact & (intact_logits is not None)
    received = list(carried.received)
    for j, item in enumerate(received):
        if item is not None and len(item.positions) < min_arrived * (len(item.positions) + int(carried.missing[j])):
            received[j] = None
    server_logits = pair.classify([None if reused[j] else item for j, item in enumerate(received)], batch_size)
    if reused.any():
        server_logits[reused] = intact_logits[offloaded[reused]]
    lost = torch.zeros(len(sent.strings), dtype=torch.bool, device="cpu")
    lost[offloaded] = torch.tensor([item is None for item in received], dtype=torch.bool, device="cpu") & ~reused
    return carried.outcome(predictions=collaborative_predictions(sent, server_logits), link_bits=carried.link_bits,
                           channel_uses=carried.channel_uses, packets_lost=carried.packets_lost,
                           packets_sent=carried.packets_sent, images_lost=int(lost.sum()),
                           patches_missing=int(carried.missing.sum()), lost=lost)
