"""What a transport is: it carries what an edge sent over one link at one channel condition.

A :class:`Transport` takes an edge's :class:`~semcomm.edge.encoder.Transmission` (and, for a transport
that sends the codec's values rather than its strings, those values and the patches' importance),
carries every offloaded image over its link, and reports what arrived of each image, as the server's
:class:`~semcomm.rate.pair.Received` patches, and what it cost: bits and channel uses per image
(:class:`Carried`). :func:`~semcomm.transport.over_link.over_link` runs any transport end to end
and classifies what arrived (:class:`LinkOutcome`).

Transports: :class:`~semcomm.transport.digital.DigitalTransport` (the codec's strings as packets over
a coded digital link) and :class:`~semcomm.transport.analog.AnalogTransport` (the codec's values as
analog symbols, the side information on a digital control channel).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from semcomm.edge.encoder import Transmission
from semcomm.rate.pair import CodecPair, Received


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
        patches_missing: sent patches lost with their packets, over all images (every patch of an image
            whose every header copy was lost included).
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


@dataclass
class Carried:
    """What a transport delivered of the M offloaded images of a Transmission, in their order.

    Attributes:
        received: M entries: what the server gets of each image, or None (nothing usable arrived, or
            the image arrived intact and was not decoded: see ``intact``).
        missing: M int64, patches sent but not given to the server, per image.
        intact: M booleans, True where what arrived is exactly what was sent (every packet byte for byte).
        link_bits: B int64 bits sent per image (0 for images not offloaded).
        channel_uses: B int64 channel uses per image (0 for images not offloaded).
        packets_lost: packets lost or damaged, over all images.
        packets_sent: packets sent, over all images.
    """

    received: list[Received | None]
    missing: torch.Tensor
    intact: torch.Tensor
    link_bits: torch.Tensor
    channel_uses: torch.Tensor
    packets_lost: int = 0
    packets_sent: int = 0

    def outcome(self, **fields) -> LinkOutcome:
        """The :class:`LinkOutcome` of this delivery, given its classified ``fields``."""
        return LinkOutcome(**fields)


class Transport(ABC):
    """Carries what an edge sent over one link at one channel condition (module docstring)."""

    @abstractmethod
    def carry(self, sent: Transmission, pair: CodecPair, snr_db: float | None = None,
              generator: torch.Generator | int | None = None, *, source: torch.Tensor | None = None,
              importance: torch.Tensor | None = None, decode_intact: bool = True) -> Carried:
        """Carry every offloaded image of ``sent`` (coded by ``pair``) over the link and report what arrived.

        Args:
            sent: the edge's decisions and strings for B images (and what each string was coded from,
                ``sent.frames``, where the edge kept it: packets are cut from that).
            pair: the codec pair whose server reads what arrives.
            snr_db: Es/N0 in dB of the link (None where the link's condition is not an SNR).
            generator: every random draw of the link (a torch.Generator; some transports take a seed).
            source: B x N x V unquantized values (``pair.source``) of all B images, for transports that
                send values rather than strings; others ignore it.
            importance: B x N patch importance, for transports that share power by it; others ignore it.
            decode_intact: False leaves ``received`` None for images that arrived intact, whose server
                answer the caller already has.
        """
