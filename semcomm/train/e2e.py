"""End-to-end training of the hyperlatent codec pair (:mod:`semcomm.rate.hyperprior`): resumable, exact.

The edge ViT stays frozen (its logits gate, its attention selects, its tokens after block ``tap`` feed the
analysis). Trained jointly on the rate-accuracy Lagrangian: the analysis, the hyper-analysis, z's
``EntropyBottleneck``, the prior and the server (warm-started from the shipped ``latent-cifar10`` pair: its
linear transform, embedding and server, so the new non-linear parts start silent; else from the zoo server).

Each batch keeps a random number of patches (8..64: a fraction in ``keep``, every patch with probability
``full_prob``), chosen at random or by the edge's attention, each sent patch at a random level (with
probability ``uniform_prob`` one level for the whole image, as a fixed-level policy sends; else one per patch,
as importance-aware allocation does). Loss: cross-entropy (label smoothing) + ``kd`` x KL to the zoo server's
answer on the full image + ``rate`` x estimated kilobits per image (z and y); the quantiles of z's entropy
model get CompressAI's auxiliary loss with their own optimizer.

The run is resumable and exact (:mod:`semcomm.train.resumable`: the full state every ``save_every`` steps, a
snapshot of fp16 weights after every epoch for the repository). After each epoch the held-out top-1 and real
bits per image (the strings' lengths) at a few budgets go into the history
(:func:`~semcomm.train.e2e_eval.evaluate_pair`).

Run it as ``semcomm train hyperlatent-cifar10 --snapshot snapshots/hyperlatent-cifar10`` (again to resume) and
ship it with ``semcomm export hyperlatent-cifar10`` (:mod:`semcomm.train.e2e_eval`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from semcomm.core.devices import host, resolve_device
from semcomm.data import ImageSplit
from semcomm.inference import autocast
from semcomm.models import ViTAdapter, create_model
from semcomm.rate.hyperprior import HyperConfig, HyperLatentCodec
from semcomm.rate.latent import shipped_weights
from semcomm.rate.zoo import load_codec_tensors
from semcomm.train.e2e_eval import evaluate_pair
from semcomm.train.latent import training_levels
from semcomm.train.pair_recipe import PairTrainConfig, schedule_lr, task_loss, training_batch
from semcomm.train.resumable import Run, load_snapshot, run_epochs, save_snapshot  # noqa: F401 (re-exported)


@dataclass
class E2EConfig(PairTrainConfig):
    """Hyper-parameters of one end-to-end run (see the module docstring and
    :class:`~semcomm.train.pair_recipe.PairTrainConfig`)."""

    codec_type: ClassVar[type] = HyperConfig

    codec: HyperConfig = field(default_factory=HyperConfig)
    init_pair: str | None = "latent-cifar10"
    epochs: int = 24
    density_lr: float = 5e-3
    rate: float = 0.3
    level_weights: tuple[float, ...] = (0.05, 0.15, 0.25, 0.3, 0.25)
    uniform_prob: float = 0.5
    save_every: int = 50
    eval_settings: tuple[str, ...] = ("all@3", "all@4", "all@5", "spread16@3", "spread32@4")

    def __post_init__(self):
        if len(self.level_weights) != self.codec.levels:
            raise ValueError(f"level_weights needs one weight per level ({self.codec.levels}), got {self.level_weights}")


E2E_PRESETS = {"hyperlatent-cifar10": E2EConfig()}

ABLATION_EPOCHS = 4
"""The short schedule of the ablation runs (``benchmarks/e2e_ablation.py``): every variant and its base alike."""

ABLATIONS = {
    "base": E2EConfig(),
    "linear": E2EConfig(HyperConfig(hidden=0)),  # linear analysis and synthesis
    "pixels": E2EConfig(HyperConfig(source="pixels", tap=None)),  # the analysis reads pixels only
    "tokens": E2EConfig(HyperConfig(source="tokens")),  # the edge's tokens only
    "no-context": E2EConfig(HyperConfig(context=False)),  # the hyperprior alone, no checkerboard context
    "frozen-server": E2EConfig(server_lr=0.0),  # the server's ViT not fine-tuned
}
"""One change each to the end-to-end recipe, trained by ``semcomm train hyperlatent-cifar10-ablation-<name>`` for
:data:`ABLATION_EPOCHS` epochs (1,000 held-out images per epoch)."""
for _name, _config in ABLATIONS.items():
    _config.epochs, _config.eval_images = ABLATION_EPOCHS, 1000
    E2E_PRESETS[f"hyperlatent-cifar10-ablation-{_name}"] = _config


def sample_levels(importance: torch.Tensor, config: E2EConfig, grid: tuple[int, int],
                  generator: torch.Generator) -> torch.Tensor:
    """B x N levels of one batch: :func:`~semcomm.train.latent.training_levels` (a random patch count, chosen
    at random or by attention, a level per patch), with probability ``uniform_prob`` one level per image."""
    level = training_levels(importance, config, grid, generator)
    if torch.rand(1, generator=generator).item() < config.uniform_prob:
        weights = torch.tensor(config.level_weights, dtype=torch.float64)
        common = torch.multinomial(weights, len(level), replacement=True, generator=generator) + 1
        level = torch.where(level > 0, common[:, None], 0)
    return level


def build_codec(config: E2EConfig, server: ViTAdapter | None = None) -> HyperLatentCodec:
    """A fresh codec: the blocks of ``server`` (default: the zoo's ``server_init``) in its server; with
    ``init_pair``, that shipped latent pair's linear transform (when it reads the same values), embedding,
    level embedding and server on top."""
    torch.manual_seed(config.seed)
    codec = HyperLatentCodec(config.codec)
    server = create_model(config.server_init) if server is None else server
    state = {f"server.vit.{k}": v for k, v in server.model.state_dict().items() if not k.startswith("patch_embed.")}
    if config.init_pair is not None:
        _, tensors = load_codec_tensors(config.init_pair)
        renamed = {k.replace("bottleneck.", "analysis.", 1): v for k, v in shipped_weights(tensors).items()}
        state.update({k: v for k, v in renamed.items() if k.startswith(("server.", "analysis."))})
    own = codec.state_dict()
    misfit = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if any(k.startswith("server.") for k in misfit):
        raise ValueError(f"{config.server_init} / {config.init_pair} do not fit the codec's server: {misfit[:3]}")
    codec.load_state_dict({k: v.float() for k, v in state.items() if k not in misfit}, strict=False)
    return codec


def _optimizers(codec: HyperLatentCodec, config: E2EConfig):
    """AdamW: the server's ViT at ``server_lr``, z's densities at ``density_lr`` (no decay), the rest at ``lr``;
    Adam on z's quantiles (the auxiliary loss)."""
    aux = [p for n, p in codec.named_parameters() if n.endswith("quantiles")]
    density = [p for n, p in codec.hyper_entropy.named_parameters() if not n.endswith("quantiles")]
    server = list(codec.server.vit.parameters())
    taken = {id(p) for p in aux + density + server}
    rest = [p for p in codec.parameters() if id(p) not in taken]
    main = torch.optim.AdamW([dict(params=rest, lr=config.lr, base_lr=config.lr),
                              dict(params=server, lr=config.server_lr, base_lr=config.server_lr),
                              dict(params=density, lr=config.density_lr, base_lr=config.density_lr, weight_decay=0.0)],
                             weight_decay=config.weight_decay)
    return main, torch.optim.Adam(aux, lr=1e-3)


def train_e2e(config: E2EConfig, train_split: ImageSplit, test_split: ImageSplit, run_dir: str | Path,
              stop_after: int | None = None, stop_after_steps: int | None = None,
              progress: bool = True, snapshot: str | Path | None = None,
              device: str | torch.device | None = None) -> tuple[HyperLatentCodec, list[dict]]:
    """Train (or resume) a hyperlatent codec; returns it (eval mode, on ``device``) and its per-epoch history.

    Args:
        stop_after: at most this many epochs ended in this call.
        stop_after_steps: at most this many steps in this call (the state is saved there: resumable mid-epoch).
        snapshot: a folder the weights and history are written to after every epoch, and warm-started from
            when ``run_dir`` holds no state (:mod:`semcomm.train.resumable`).
        device: where the models train (None: CUDA if available, else the CPU); the data are augmented and
            every random draw made on the CPU, so a run resumes on another device.
    """
    device = resolve_device(device)
    edge = create_model(config.edge).eval()
    server = create_model(config.server_init).eval()
    codec = build_codec(config, server)
    for module in (edge, server, codec):
        module.to(device)
    teacher = server if config.kd > 0 else None
    optimizers = _optimizers(codec, config)
    steps_per_epoch = len(train_split) // config.batch_size if train_split is not None else 1

    def step(index, generator, global_step, sums):
        _step(codec, edge, teacher, train_split, index, generator, config, optimizers, global_step, steps_per_epoch,
              sums)

    def evaluate():
        return evaluate_pair(codec, edge, test_split.subset(config.eval_images), config.eval_settings, config.bf16)

    run = Run(config, codec, optimizers, step, evaluate, ("loss", "ce", "bits", "z_bits", "aux"),
              len(train_split) if train_split is not None else config.batch_size, "e2e")
    history = run_epochs(run, run_dir, stop_after, stop_after_steps, progress, snapshot)
    return codec, history


def _step(codec, edge, teacher, split, index, generator, config, optimizers, step, steps_per_epoch, sums) -> None:
    """One optimizer step on the images ``index`` of ``split``; adds its losses to ``sums``."""
    main_opt, aux_opt = optimizers
    schedule_lr(main_opt, config, step, steps_per_epoch)
    batch = training_batch(split, index, generator, edge, teacher, config.codec, config.bf16)
    level = sample_levels(host(batch.importance), config, edge.grid_size, generator).to(batch.values.device)
    with autocast(config.bf16):
        out = codec(batch.values, level)
    loss, ce = task_loss(out.logits, batch, config)
    loss = loss + config.rate * out.bits.mean() / 1000
    main_opt.zero_grad(set_to_none=True)
    loss.backward()
    main_opt.step()
    aux = codec.hyper_entropy.loss()
    aux_opt.zero_grad(set_to_none=True)
    aux.backward()
    aux_opt.step()
    for key, value in (("loss", loss), ("ce", ce), ("bits", out.bits.mean()), ("z_bits", out.z_bits.mean()),
                       ("aux", aux)):
        sums[key] += float(value.detach())
