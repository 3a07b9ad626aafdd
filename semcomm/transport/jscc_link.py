"""A JSCC pair (:mod:`semcomm.transport.jscc`) over one link, end to end, every channel use counted.

The edge decides as for any codec (a :class:`~semcomm.edge.encoder.Transmission`: which images are offloaded,
which patches each one sends, its logits); for each offloaded image :meth:`JSCCLink.run`

1. sends the pair's symbols of its K patches over the channel at Es/N0 ``snr_db`` (K S data symbols plus the
   fading channel's pilots) and lets the pair's server classify what arrived;
2. sends its side information (positions and, with a hint coder, the edge's hint:
   :class:`~semcomm.wire.side_info.SideInfo` without an amplitude code, the pair sending at the budget) over
   the :class:`~semcomm.transport.control.ControlChannel`, simulated on the same channel at the same SNR;
3. answers with the server's log-probabilities fused with the hint that arrived (the latent pairs' fusion),
   or with the edge's answer where the side information failed its CRC (the server cannot place the patches).

The result is an :class:`~semcomm.transport.analog_outcome.AnalogOutcome` (analog and control channel uses).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from semcomm.core.devices import host, resolve_device
from semcomm.core.seeding import as_generator
from semcomm.edge.encoder import Transmission, collaborative_predictions
from semcomm.inference import autocast
from semcomm.models import ViTAdapter
from semcomm.rate.hint import HintCoder
from semcomm.rate.hint import fuse as fuse_log_probs
from semcomm.rate.hyperprior import edge_pass, source_values
from semcomm.rate.zoo import codec_card, load_hint
from semcomm.transport.analog_outcome import AnalogOutcome
from semcomm.transport.control import ControlChannel
from semcomm.transport.jscc import KIND, JSCCCodec, JSCCConfig, check_snr, make_channel
from semcomm.wire.side_info import SideInfo, pack_side_info, read_side_info
from semcomm.zoo.tensors import load_state, load_tensors


@dataclass
class JSCCLink:
    """A JSCC pair over one channel kind with one receiver CSI.

    Attributes:
        codec: the trained pair.
        channel: ``awgn``, ``block`` or ``fast`` (:data:`~semcomm.transport.jscc.CHANNEL_KINDS`).
        csi: the receiver's channel knowledge, ``perfect`` or ``estimated`` (from the pair's pilots).
        control: the channel of the side information.
        hint_coder: the edge's hint (sent with the side information and fused), or None.
        trained_snr: the SNR range (dB) the pair was trained on; an SNR outside it gets a warning.
        max_uses: the most channel uses the link gives one image (None: no limit); an image that needs more
            is refused before anything is sent.
        bf16: run the pair's networks in bf16 autocast.
        name: the pair's name (its card's), for results.
        power: the transmitter's mean symbol energy in units of the budget Es that ``snr_db`` refers to (both the
            pair's symbols and the control channel's; 0.5 sends 3 dB weaker): the link runs at Es/N0
            ``snr_db + 10 log10(power)``.
    """

    codec: JSCCCodec
    channel: str = "awgn"
    csi: str = "perfect"
    control: ControlChannel = ControlChannel()
    hint_coder: HintCoder | None = None
    trained_snr: tuple[float, float] | None = None
    max_uses: int | None = None
    bf16: bool = False
    name: str = "jscc"
    power: float = 1.0

    def __post_init__(self):
        if not isinstance(self.codec, JSCCCodec):
            raise TypeError(f"codec must be a JSCCCodec, got {type(self.codec).__name__}")
        self.model = make_channel(self.channel, self.csi, self.codec.config.pilots)
        if not isinstance(self.control, ControlChannel):
            raise TypeError(f"control must be a ControlChannel, got {type(self.control).__name__}")
        if isinstance(self.power, bool) or not isinstance(self.power, (int, float)) or not 0 < self.power < math.inf:
            raise ValueError(f"power must be a positive, finite share of the power budget, got {self.power!r}")
        if self.max_uses is not None and (isinstance(self.max_uses, bool) or not isinstance(self.max_uses, int)
                                          or self.max_uses < 1):
            raise ValueError(f"max_uses must be a positive number of channel uses per image or None, got "
                             f"{self.max_uses!r}")

    @classmethod
    def from_zoo(cls, name: str | Path, channel: str = "awgn", csi: str = "perfect", *, hint: bool = True,
                 **options) -> "JSCCLink":
        """The JSCC pair ``name`` (a shipped pair's name, or the path of a card ``semcomm export`` wrote) over
        ``channel``: its trained SNR range from its card, the edge's hint coder when ``hint``; ``options`` as the
        attributes (control, max_uses, bf16)."""
        card = codec_card(name)
        tensors = load_tensors(card.tensors_path, card.sha256)
        if card.kind != KIND:
            raise ValueError(f"{name} is a {card.kind} codec pair, not a JSCC pair")
        codec = JSCCCodec(JSCCConfig.from_dict(card.config["codec"]))
        load_state(codec, {k: v.float() for k, v in tensors.items()}, f"JSCC pair {name}")
        trained = tuple(card.config["train"]["snr_range"])
        return cls(codec.eval(), channel, csi, hint_coder=load_hint(card.edge) if hint else None,
                   trained_snr=trained, name=card.name, **options)

    def to(self, device: str | torch.device | None) -> "JSCCLink":
        """This link with its pair's networks on ``device`` (None: CUDA if available); the channel's draws and the
        control channel stay on the CPU. Returns ``self``."""
        self.codec.to(resolve_device(device))
        return self

    def source(self, edge: ViTAdapter, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """B x N x in_dim values (on the CPU) the pair's analysis reads of uint8 ``images``, through the (frozen)
        ``edge`` (on its own device)."""
        latent, values = self.codec.config.latent, []
        for start in range(0, len(images), batch_size):
            part = images[start : start + batch_size]
            with torch.no_grad(), autocast(self.bf16):
                _, _, hidden = edge_pass(edge, part, latent)
            values.append(host(source_values(part, None if hidden is None else hidden.float(), latent)))
        return torch.cat(values)

    def run(self, sent: Transmission, values: torch.Tensor, snr_db: float,
            generator: torch.Generator | int | None = None, batch_size: int = 256) -> AnalogOutcome:
        """Every offloaded image of ``sent`` over the link at Es/N0 ``snr_db`` (dB; ``math.inf``: noise-free).

        Args:
            sent: the edge's decisions for B images (``offloaded``, ``mask``, ``edge_logits``).
            values: B x N x in_dim values the pair's analysis reads (:func:`~semcomm.rate.hyperprior.source_values`).
            generator: every draw of the channel and the control channel (a seed or None: seed 0).
        """
        snr = float(check_snr(snr_db, 1)[0]) + 10 * math.log10(self.power)
        self._warn_outside_training(snr)
        b, n = sent.mask.shape
        if not isinstance(values, torch.Tensor) or tuple(values.shape[:2]) != (b, n) or values.dim() != 3:
            raise ValueError(f"values must be B x N x in_dim = {b} x {n} x {self.codec.config.latent.in_dim}, got "
                             f"{tuple(getattr(values, 'shape', ()))}")
        generator = as_generator(generator)
        offloaded = sent.offloaded.nonzero().flatten()
        counts = sent.mask.sum(1)
        messages = self._side_information(sent, offloaded)
        analog_uses, control_uses, link_bits = (torch.zeros(b, dtype=torch.int64, device="cpu") for _ in range(3))
        if len(offloaded):
            control_uses[offloaded] = torch.tensor(self.control.message_uses([messages[i] for i in offloaded.tolist()],
                                                                             self.model), device="cpu")
            link_bits[offloaded] = torch.tensor([messages[i][1] for i in offloaded.tolist()], device="cpu")
            analog_uses[offloaded] = torch.tensor([self.codec.channel_uses(int(counts[i]), self.model)
                                                   for i in offloaded.tolist()], device="cpu")
        self._check_bandwidth(analog_uses + control_uses)
        logits = torch.full((len(offloaded), self.codec.config.latent.num_classes), float("nan"), device="cpu")
        slot = {i: s for s, i in enumerate(offloaded.tolist())}
        lost = torch.zeros(b, dtype=torch.bool, device="cpu")
        level = torch.zeros(b, n, dtype=torch.int64, device="cpu")
        for k in sorted(set(counts[offloaded].tolist())):
            rows = offloaded[counts[offloaded] == k]
            for start in range(0, len(rows), batch_size):
                part = rows[start : start + batch_size]
                with torch.no_grad(), autocast(self.bf16):
                    out = self.codec(values[part], sent.mask[part], snr, self.model, self.csi, generator)
                server = host(out.logits.float()).log_softmax(-1)
                arrived, _ = self.control.carry([messages[i] for i in part.tolist()], self.model, snr, generator)
                for j, i in enumerate(part.tolist()):
                    got = read_side_info(arrived[j], messages[i][1], k, n, self.hint_coder,
                                         self.codec.config.latent.num_classes, scale=False)
                    if got is None:
                        lost[i] = True
                        continue
                    row = server[j : j + 1]
                    if got.hint is not None:
                        row = fuse_log_probs(row, self.hint_coder.log_probs(got.hint[None]), self.hint_coder.weight)
                    logits[slot[i]] = row[0]
                    level[i, got.positions] = 1
        energy = sent.offloaded.float()  # the pair sends at the budget exactly
        return AnalogOutcome(predictions=collaborative_predictions(sent, logits), link_bits=link_bits,
                             channel_uses=analog_uses + control_uses, packets_lost=0, packets_sent=0,
                             images_lost=int(lost.sum()), patches_missing=int(counts[lost].sum()), lost=lost,
                             analog_uses=analog_uses, control_uses=control_uses, level=level, energy=energy,
                             control=self.control.label)

    def _side_information(self, sent: Transmission, offloaded: torch.Tensor) -> dict[int, tuple[bytes, int]]:
        """(bytes, bits) of each offloaded image's positions and hint."""
        n = sent.mask.shape[1]
        hints = self.hint_coder.symbols(sent.edge_logits) if self.hint_coder is not None else None
        return {i: pack_side_info(SideInfo(sent.mask[i].nonzero().flatten(), None if hints is None else hints[i],
                                           None, None), n, self.hint_coder)
                for i in offloaded.tolist()}

    def _warn_outside_training(self, snr: float) -> None:
        if self.trained_snr is None:
            return
        low, high = self.trained_snr
        if not low <= snr <= high:
            warnings.warn(f"SNR {snr:g} dB is outside the range the JSCC pair was trained on ({low:g} to {high:g} "
                          "dB); the run goes on", stacklevel=3)

    def _check_bandwidth(self, uses: torch.Tensor) -> None:
        if self.max_uses is not None and bool((uses > self.max_uses).any()):
            worst = int(uses.max())
            raise ValueError(f"an image needs {worst} channel uses (its symbols, pilots and side information) but "
                             f"the link gives at most max_uses={self.max_uses}; send fewer patches or raise "
                             "max_uses")
