"""Training the JSCC pair (:mod:`semcomm.transport.jscc`) end to end through the channel: resumable, exact.

The edge ViT stays frozen (its attention selects, its tokens after block ``tap`` feed the analysis). Trained
jointly: the analysis, the SNR modules, the receiver's gain and the server, warm-started from the shipped
``latent-cifar10`` pair (its linear transform, embedding and server, as :func:`semcomm.train.e2e.build_codec`
starts the hyperlatent pair) with the receiver's gain set so that the server first reads latents of their usual
size.

Each batch keeps a random number of patches (a fraction in ``keep``, every patch with probability ``full_prob``),
chosen at random or by the edge's attention (:func:`~semcomm.train.latent.training_patches`), and sends them
over one channel kind of ``channels`` with one CSI mode of ``csi`` (drawn per batch) at an SNR drawn per image,
uniformly in ``snr_range`` dB (one SNR for a single-SNR reference model). Loss: cross-entropy (label smoothing)
+ ``kd`` x KL to the zoo server's answer on the full image.

After each epoch the held-out top-1 at a few points (``awgn@0``: every patch over AWGN at 0 dB; ``block@5``:
Rayleigh block fading at 5 dB, perfect CSI; ``awgn@inf``: noise-free) goes into the history, with the same
channel draws every epoch. The loop, its state and its snapshots are :mod:`semcomm.train.resumable`'s.

Run it as ``semcomm train jscc-cifar10 --snapshot snapshots/jscc-cifar10`` (again to resume); ship it with
``semcomm export jscc-cifar10`` (from the run's state, or ``--run-dir snapshots/jscc-cifar10``) and use it over a
link with :meth:`JSCCLink.from_zoo <semcomm.transport.jscc_link.JSCCLink.from_zoo>`.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from semcomm.core.devices import host, resolve_device
from semcomm.data import ImageSplit
from semcomm.inference import autocast
from semcomm.models import ViTAdapter, create_model
from semcomm.rate.hyperprior import edge_pass, source_values
from semcomm.rate.zoo import ZOO_FOLDER, CodecCard, save_codec, write_card
from semcomm.train.e2e import E2EConfig, build_codec
from semcomm.train.latent import training_patches
from semcomm.train.pair_recipe import PairTrainConfig, schedule_lr, task_loss, training_batch
from semcomm.train.resumable import Run, run_epochs
from semcomm.transport.jscc import CHANNEL_KINDS, CSI_KINDS, KIND, JSCCCodec, JSCCConfig
from semcomm.zoo import user_zoo_dirs
from semcomm.zoo.tensors import load_state, load_tensors

_POINT = re.compile(rf"({'|'.join(CHANNEL_KINDS)})@(-?\d+(?:\.\d+)?|inf)")


@dataclass
class JSCCTrainConfig(PairTrainConfig):
    """Hyper-parameters of one JSCC run (see the module docstring and
    :class:`~semcomm.train.pair_recipe.PairTrainConfig`)."""

    codec_type: ClassVar[type] = JSCCConfig

    codec: JSCCConfig = field(default_factory=JSCCConfig)
    init_pair: str | None = "latent-cifar10"
    init_jscc: str | None = None
    snr_range: tuple[float, float] = (-5.0, 20.0)
    channels: tuple[str, ...] = CHANNEL_KINDS
    csi: tuple[str, ...] = CSI_KINDS
    save_every: int = 50
    eval_points: tuple[str, ...] = ("awgn@inf", "awgn@-5", "awgn@0", "awgn@5", "awgn@10", "awgn@20", "block@0",
                                    "block@5", "block@20", "fast@5")

    def __post_init__(self):
        low, high = self.snr_range
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise ValueError(f"snr_range must be two finite dB values, low <= high, got {self.snr_range}")
        if self.codec.snr_ceiling < high or (self.init_jscc is None and self.codec.snr_ceiling != high):
            raise ValueError(f"the pair's snr_ceiling ({self.codec.snr_ceiling:g} dB) must be the top of snr_range "
                             f"({high:g} dB): above it the SNR modules read the best SNR trained for (a pair "
                             "fine-tuned from another, init_jscc, keeps that pair's ceiling, at or above the range)")
        for name, values, allowed in (("channels", self.channels, CHANNEL_KINDS), ("csi", self.csi, CSI_KINDS)):
            if not values or any(v not in allowed for v in values):
                raise ValueError(f"{name} must be a non-empty tuple of {allowed}, got {values}")
        for point in self.eval_points:
            parse_point(point)


def parse_point(point: str) -> tuple[str, float]:
    """(channel kind, SNR in dB) of an evaluation point ``KIND@SNR`` (``inf``: noise-free)."""
    match = _POINT.fullmatch(point)
    if match is None:
        raise ValueError(f"an evaluation point is KIND@SNR with KIND in {CHANNEL_KINDS} and SNR a number of dB or "
                         f"inf, got {point!r}")
    return match[1], float(match[2])


# the SNR-adaptive pair, and single-SNR references over AWGN (target (c) of issue 27 compares them): trained
# from the latent pair like the adaptive one (``-awgn<SNR>``), or the adaptive pair fine-tuned at one SNR for two
# epochs (``-awgn<SNR>-tuned``: a specialist that starts where the adaptive pair ends)
JSCC_PRESETS = {"jscc-cifar10": JSCCTrainConfig()}
for _snr in (-5, 0, 5, 10, 20):
    JSCC_PRESETS[f"jscc-cifar10-awgn{_snr}"] = JSCCTrainConfig(JSCCConfig(snr_ceiling=float(_snr)),
                                                               snr_range=(float(_snr), float(_snr)),
                                                               channels=("awgn",), csi=("perfect",))
    JSCC_PRESETS[f"jscc-cifar10-awgn{_snr}-tuned"] = JSCCTrainConfig(
        init_jscc="jscc-cifar10", snr_range=(float(_snr), float(_snr)), channels=("awgn",), csi=("perfect",),
        epochs=2, lr=1e-4, server_lr=2e-5, warmup_epochs=0.1)


def build_jscc(config: JSCCTrainConfig, edge: ViTAdapter, train_split: ImageSplit | None,
               server: ViTAdapter | None = None) -> JSCCCodec:
    """A fresh pair: the analysis and server of :func:`semcomm.train.e2e.build_codec` (from ``init_pair``, else
    the zoo's ``server_init``), the receiver's gain the root-mean-square of the analysis's output on the first
    256 training images over that of a sent real (1 / sqrt 2)."""
    if config.init_jscc is not None:
        return _shipped_jscc(config)
    hyper = build_codec(E2EConfig(config.codec.latent, edge=config.edge, server_init=config.server_init,
                                  init_pair=config.init_pair), server)
    torch.manual_seed(config.seed)
    codec = JSCCCodec(config.codec)
    codec.analysis.load_state_dict(hyper.analysis.state_dict())
    codec.server.load_state_dict(hyper.server.state_dict())
    if train_split is not None:
        images = train_split.images[:256]
        with torch.no_grad():
            _, _, hidden = edge_pass(edge, images, config.codec.latent)
            y = codec.analysis(source_values(images, hidden, config.codec.latent))
        codec.receive_gain.data.fill_(float(y.pow(2).mean().sqrt() * math.sqrt(2)))
    return codec


def _shipped_jscc(config: JSCCTrainConfig) -> JSCCCodec:
    """The shipped JSCC pair ``config.init_jscc`` (a zoo name or a card's path), as loaded for a link
    (:meth:`JSCCLink.from_zoo <semcomm.transport.jscc_link.JSCCLink.from_zoo>`: SHA-256 verified, fp32) to train on;
    a ValueError when its architecture is not ``config.codec``."""
    from semcomm.transport.jscc_link import JSCCLink

    codec = JSCCLink.from_zoo(config.init_jscc, hint=False).codec
    if codec.config != config.codec:
        raise ValueError(f"init_jscc {config.init_jscc!r} is not a JSCC pair of this run's architecture "
                         f"({config.codec})")
    return codec


def train_jscc(config: JSCCTrainConfig, train_split: ImageSplit, test_split: ImageSplit, run_dir: str | Path,
               stop_after: int | None = None, stop_after_steps: int | None = None, progress: bool = True,
               snapshot: str | Path | None = None, device: str | torch.device | None = None
               ) -> tuple[JSCCCodec, list[dict]]:
    """Train (or resume) a JSCC pair; returns it (eval mode, on ``device``) and its per-epoch history (arguments
    as :func:`semcomm.train.e2e.train_e2e`)."""
    device = resolve_device(device)
    edge = create_model(config.edge).eval()
    server = create_model(config.server_init).eval()
    codec = build_jscc(config, edge, train_split, server)
    for module in (edge, server, codec):
        module.to(device)
    teacher = server if config.kd > 0 else None
    optimizer = _optimizer(codec, config)
    size = len(train_split) if train_split is not None else config.batch_size
    steps_per_epoch = size // config.batch_size

    def step(index, generator, global_step, sums):
        _step(codec, edge, teacher, train_split, index, generator, config, optimizer, global_step, steps_per_epoch,
              sums)

    def evaluate():
        return evaluate_jscc(codec, edge, test_split.subset(config.eval_images), config.eval_points, config.bf16)

    run = Run(config, codec, (optimizer,), step, evaluate, ("loss", "ce", "snr_db"), size, "jscc")
    return codec, run_epochs(run, run_dir, stop_after, stop_after_steps, progress, snapshot)


def _optimizer(codec: JSCCCodec, config: JSCCTrainConfig) -> torch.optim.AdamW:
    """AdamW: the server's ViT at ``server_lr``, the rest at ``lr``."""
    server = list(codec.server.vit.parameters())
    taken = {id(p) for p in server}
    rest = [p for p in codec.parameters() if id(p) not in taken]
    return torch.optim.AdamW([dict(params=rest, lr=config.lr, base_lr=config.lr),
                              dict(params=server, lr=config.server_lr, base_lr=config.server_lr)],
                             weight_decay=config.weight_decay)


def _step(codec, edge, teacher, split, index, generator, config, optimizer, step, steps_per_epoch, sums) -> None:
    """One optimizer step on the images ``index`` of ``split`` through a drawn channel; adds its losses to ``sums``."""
    schedule_lr(optimizer, config, step, steps_per_epoch)
    batch = training_batch(split, index, generator, edge, teacher, config.codec.latent, config.bf16)
    sent = training_patches(host(batch.importance), config, edge.grid_size, generator).to(batch.values.device)
    low, high = config.snr_range
    snr = (low + (high - low) * torch.rand(len(batch.images), generator=generator)).to(batch.values.device)
    channel = config.channels[int(torch.randint(len(config.channels), (1,), generator=generator))]
    csi = config.csi[int(torch.randint(len(config.csi), (1,), generator=generator))]
    with autocast(config.bf16):
        out = codec(batch.values, sent, snr, channel, csi, generator)
    loss, ce = task_loss(out.logits, batch, config)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    for key, value in (("loss", loss), ("ce", ce), ("snr_db", snr.mean())):
        sums[key] += float(value.detach())


@torch.no_grad()
def evaluate_jscc(codec: JSCCCodec, edge: ViTAdapter, split: ImageSplit, points: tuple[str, ...], bf16: bool = True,
                  batch_size: int = 250, seed: int = 0) -> dict:
    """Per point ``KIND@SNR``: top-1 of the pair's server with every patch of every image of ``split`` sent over
    that channel (perfect CSI), and its channel uses per image; the draws depend on ``seed`` only."""
    codec.eval()
    parsed = {p: parse_point(p) for p in points}
    correct = dict.fromkeys(points, 0)
    uses = dict.fromkeys(points, 0)
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, len(split), batch_size):
        images, labels = split.images[start : start + batch_size], split.labels[start : start + batch_size]
        with autocast(bf16):
            _, importance, hidden = edge_pass(edge, images, codec.config.latent)
        values = source_values(images, None if hidden is None else hidden.float(), codec.config.latent)
        sent = torch.ones_like(importance, dtype=torch.bool)
        for point, (kind, snr) in parsed.items():
            with autocast(bf16):
                out = codec(values, sent, snr, kind, "perfect", generator)
            correct[point] += int((host(out.logits).argmax(-1) == labels).sum())
            uses[point] = out.channel_uses
    return {p: dict(top1=correct[p] / len(split), channel_uses=uses[p]) for p in points}



def export_jscc(name: str, source: str | Path, test_split: ImageSplit | None = None,
                directory: str | Path | None = None) -> CodecCard:
    """Ship a run as a JSCC pair into ``directory`` (default: the user zoo's ``codecs/``): its fp16 weights and a
    card (the architecture, the training config with its SNR range, the history); with ``test_split``, the card
    records :func:`evaluate_jscc` of the shipped weights on it. ``source`` is the run's directory (its
    ``state.pt``) or its snapshot folder."""
    source = Path(source)
    if (source / "state.pt").is_file():
        state = torch.load(source / "state.pt", weights_only=False, map_location="cpu")
        config, weights, history = _jscc_config(state["config"], source), state["model"], state["history"]
    elif (source / "snapshot.json").is_file():
        record = json.loads((source / "snapshot.json").read_text())
        config, history = _jscc_config(record["config"], source), record["history"]
        weights = load_tensors(source / "weights.safetensors", sha256=record["sha256"])
    else:
        raise ValueError(f"{source} holds no JSCC run: neither a run directory (state.pt) nor a snapshot "
                         "(snapshot.json)")
    codec = JSCCCodec(config.codec)
    shipped = {k: v.detach().half() if v.is_floating_point() else v.detach() for k, v in weights.items()}
    load_state(codec, shipped, f"run {source}")
    card = CodecCard(name=name, kind=KIND, edge=config.edge, server=f"{name} (its own)", dataset="cifar10",
                     config=dict(codec=config.codec.to_dict(), train=asdict(config)), history=history,
                     notes=f"`semcomm export {name}` after {len(history)} epochs of {config.epochs}")
    directory = Path(directory) if directory is not None else user_zoo_dirs()[0] / ZOO_FOLDER
    directory.mkdir(parents=True, exist_ok=True)
    card = save_codec(card, shipped, directory)
    if test_split is not None:
        card.measured = evaluate_jscc(codec.eval(), create_model(config.edge).eval(), test_split, config.eval_points,
                                      bf16=False)
        write_card(card)
    return card


def _jscc_config(saved: dict, source: Path) -> JSCCTrainConfig:
    """The JSCC config of a run's saved config; a ValueError naming ``source`` when it is another kind of run."""
    try:
        return JSCCTrainConfig.from_dict(saved)
    except (KeyError, TypeError) as err:
        raise ValueError(f"{source} is not a JSCC run: its config is not a JSCC pair's ({err})") from None
