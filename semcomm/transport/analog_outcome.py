"""The analog path end to end: the level the server is given for each patch, and what a pass cost.

The server reads an analog patch at the level whose measured quantisation error (the codec pair's
``distortion``) is nearest the patch's post-channel error (:func:`server_levels`);
:class:`AnalogCarried` is what :meth:`AnalogTransport.carry <semcomm.transport.analog.AnalogTransport.carry>`
delivers, and :class:`AnalogOutcome` the :func:`~semcomm.transport.over_link.over_link` outcome
of the analog transport.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from semcomm.transport.base import Carried, LinkOutcome


@dataclass(kw_only=True)
class AnalogOutcome(LinkOutcome):
    """A :class:`~semcomm.transport.base.LinkOutcome` of the analog path.

    ``link_bits`` holds the side-information bits per image (0 when answered at
    the edge), ``channel_uses`` the analog and control uses together;
    ``packets_lost`` and ``packets_sent`` are 0 (no packets); ``images_lost``
    counts offloaded images none of whose patches the receiver kept, and
    ``patches_missing`` the sent patches it dropped (``min_level`` of
    :class:`~semcomm.transport.analog.AnalogTransport`).

    Attributes:
        lost: B booleans, True for an offloaded image the edge answered because no patch was kept.
        analog_uses: B int64 complex channel uses of the analog symbols (pilots included).
        control_uses: B int64 channel uses of the side information on the control channel.
        level: B x N int64 level the server was given for each patch (0: not sent or dropped).
        energy: B float32 mean analog symbol energy per data channel use (Es units; 0 when not sent).
        control: how the side information travelled (simulated, or assumed error-free).
    """

    lost: torch.Tensor | None = None
    analog_uses: torch.Tensor
    control_uses: torch.Tensor
    level: torch.Tensor
    energy: torch.Tensor
    control: str


@dataclass(kw_only=True)
class AnalogCarried(Carried):
    """What the analog transport delivered (:class:`~semcomm.transport.base.Carried`), with the analog
    and control channel uses, levels and energies of :class:`AnalogOutcome`."""

    analog_uses: torch.Tensor
    control_uses: torch.Tensor
    level: torch.Tensor
    energy: torch.Tensor
    control: str

    def outcome(self, **fields) -> AnalogOutcome:
        return AnalogOutcome(**fields, analog_uses=self.analog_uses, control_uses=self.control_uses,
                             level=self.level, energy=self.energy, control=self.control)


def server_levels(error: torch.Tensor, distortion: torch.Tensor) -> torch.Tensor:
    """The level (1..L) whose measured quantisation error is nearest each patch's post-channel error.

    ``error`` (any shape) is a patch's summed error variance over its V values;
    ``distortion`` (L + 1) the codec pair's measured squared error of a patch at
    each level (index 0, not sent, is not a level the server takes). Nearest on
    a log scale (the levels are about a factor 3-4 apart).
    """
    log_error = error.double().clamp_min(1e-12).log()
    return (log_error[..., None] - distortion[1:].double().clamp_min(1e-12).log()).abs().argmin(-1) + 1
