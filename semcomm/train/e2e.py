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

The full state (fp32 weights, both optimizers, the step within the epoch, the data generator's and torch's
RNG states, running sums, history) is saved to ``run_dir/state.pt`` every ``save_every`` steps and after every
epoch; calling :func:`train_e2e` again continues exactly where it stopped. After each epoch the held-out
top-1 and real bits per image (the strings' lengths) at a few budgets are appended to ``run_dir/history.json``
(:func:`~semcomm.train.e2e_eval.evaluate_pair`).

A run outlives the machine it started on through a *snapshot* (``snapshot=DIR``): after every epoch the weights
(fp16 safetensors, SHA-256 in ``snapshot.json``) and the history are written there, small enough to commit
(the repository keeps them in ``snapshots/NAME``). A call that finds no ``state.pt`` but a snapshot of the same
config starts from it at the next epoch: the weights rounded to fp16 and fresh optimizer moments (the one
difference from an uninterrupted run, recorded in that epoch's history as ``warm_start``); the data order and
levels of every epoch depend on the seed and the epoch only.

Run it as ``semcomm train hyperlatent-cifar10 --snapshot snapshots/hyperlatent-cifar10`` (again to resume) and
ship it with ``semcomm export hyperlatent-cifar10`` (:mod:`semcomm.train.e2e_eval`).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from semcomm.data import ImageSplit
from semcomm.inference import autocast
from semcomm.models import ViTAdapter, create_model
from semcomm.rate.hyperprior import HyperConfig, HyperLatentCodec, source_values
from semcomm.rate.latent import shipped_weights
from semcomm.rate.zoo import load_codec_tensors
from semcomm.train.augmentation import pad_crop_flip
from semcomm.train.e2e_eval import edge_pass, evaluate_pair
from semcomm.train.latent import training_levels
from semcomm.train.schedule import warmup_cosine
from semcomm.zoo.tensors import load_state, load_tensors, save_tensors


@dataclass
class E2EConfig:
    """Hyper-parameters of one end-to-end run (see the module docstring)."""

    codec: HyperConfig = field(default_factory=HyperConfig)
    edge: str = "vit-edge-cifar10"
    server_init: str = "vit-server-cifar10"
    init_pair: str | None = "latent-cifar10"
    epochs: int = 24
    batch_size: int = 128
    lr: float = 3e-4
    server_lr: float = 5e-5
    density_lr: float = 5e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.1
    kd: float = 1.0
    rate: float = 0.3
    keep: tuple[float, float] = (0.125, 1.0)
    full_prob: float = 0.3
    guided_prob: float = 0.7
    level_weights: tuple[float, ...] = (0.05, 0.15, 0.25, 0.3, 0.25)
    uniform_prob: float = 0.5
    bf16: bool = True
    seed: int = 0
    save_every: int = 50
    eval_images: int = 2000
    eval_settings: tuple[str, ...] = ("all@3", "all@4", "all@5", "spread16@3", "spread32@4")

    def __post_init__(self):
        if len(self.level_weights) != self.codec.levels:
            raise ValueError(f"level_weights needs one weight per level ({self.codec.levels}), got {self.level_weights}")

    @classmethod
    def from_dict(cls, data: dict) -> "E2EConfig":
        data = dict(data)
        data["codec"] = HyperConfig.from_dict(data["codec"])
        for key in ("keep", "level_weights", "eval_settings"):
            data[key] = tuple(data[key])
        return cls(**data)


E2E_PRESETS = {"hyperlatent-cifar10": E2EConfig()}


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


def save_snapshot(directory: str | Path, config: E2EConfig, codec: HyperLatentCodec, history: list[dict]) -> Path:
    """Write ``directory/weights.safetensors`` (floats as fp16) and ``directory/snapshot.json`` (config, epochs
    done, history, the weights' SHA-256) after epoch ``len(history)``; returns the JSON's path."""
    directory = Path(directory)
    weights = {k: v.detach().half() if v.is_floating_point() else v.detach() for k, v in codec.state_dict().items()}
    sha256 = save_tensors(weights, directory / "weights.safetensors")
    path = directory / "snapshot.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(config=asdict(config), epoch=len(history), sha256=sha256, history=history),
                              indent=2) + "\n")
    tmp.replace(path)
    return path


def load_snapshot(directory: str | Path, config: E2EConfig, codec: HyperLatentCodec) -> list[dict] | None:
    """Load the snapshot in ``directory`` into ``codec`` and return its history (epochs done = its length);
    None when there is none. Raises ValueError when it was made with another config (the schedule's length
    aside), CheckpointError when its weights are missing, corrupted or do not fit."""
    path = Path(directory) / "snapshot.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if replace(E2EConfig.from_dict(record["config"]), epochs=config.epochs) != config:
        raise ValueError(f"snapshot {path} was made with a different config; use another snapshot directory")
    tensors = load_tensors(Path(directory) / "weights.safetensors", sha256=record["sha256"])
    load_state(codec, tensors, f"snapshot {path}")
    return record["history"]


def train_e2e(config: E2EConfig, train_split: ImageSplit, test_split: ImageSplit, run_dir: str | Path,
              stop_after: int | None = None, stop_after_steps: int | None = None,
              progress: bool = True, snapshot: str | Path | None = None) -> tuple[HyperLatentCodec, list[dict]]:
    """Train (or resume) a hyperlatent codec; returns it (eval mode) and its per-epoch history.

    Args:
        stop_after: at most this many epochs ended in this call.
        stop_after_steps: at most this many steps in this call (the state is saved there: resumable mid-epoch).
        snapshot: a folder the weights and history are written to after every epoch, and warm-started from
            when ``run_dir`` holds no state (see the module docstring).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    edge = create_model(config.edge).eval()
    server = create_model(config.server_init).eval()
    codec = build_codec(config, server)
    teacher = server if config.kd > 0 else None
    main_opt, aux_opt = _optimizers(codec, config)
    state_path = run_dir / "state.pt"
    resume = dict(epoch=0, step=0, history=[], sums=None, generator=None)
    warm_start = None  # the epoch a snapshot was loaded after
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        if replace(E2EConfig.from_dict(state["config"]), epochs=config.epochs) != config:
            raise ValueError(f"{state_path} was made with a different config; use another run directory")
        codec.load_state_dict(state["model"])
        main_opt.load_state_dict(state["optimizer"])
        aux_opt.load_state_dict(state["aux_optimizer"])
        torch.set_rng_state(state["rng"])
        resume.update({k: state[k] for k in resume})
    elif snapshot is not None and (warm := load_snapshot(snapshot, config, codec)) is not None:
        torch.manual_seed(config.seed * 100_003 + len(warm) + 90_000)
        resume.update(epoch=len(warm), history=warm)
        warm_start = len(warm)
    (run_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))
    history = resume["history"]
    steps_per_epoch = len(train_split) // config.batch_size
    end_epoch = config.epochs if stop_after is None else min(config.epochs, resume["epoch"] + stop_after)
    budget = stop_after_steps
    for epoch in range(resume["epoch"], end_epoch):
        started = time.time()
        order = torch.randperm(len(train_split), generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch))
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch + 50_000)
        first, sums = 0, dict(loss=0.0, ce=0.0, bits=0.0, z_bits=0.0, aux=0.0)
        if epoch == resume["epoch"] and resume["step"]:
            first, sums = resume["step"], resume["sums"]
            generator.set_state(resume["generator"])
        codec.train()
        position = dict(epoch=epoch, sums=sums, generator=generator)
        bar = tqdm(range(first, steps_per_epoch), desc=f"e2e epoch {epoch + 1}/{config.epochs}", disable=not progress,
                   initial=first, total=steps_per_epoch)
        for i in bar:
            if budget is not None and budget <= 0:
                _save(state_path, config, codec, (main_opt, aux_opt), history, position, i)
                return codec.eval(), history
            _step(codec, edge, teacher, train_split, order[i * config.batch_size : (i + 1) * config.batch_size],
                  generator, config, (main_opt, aux_opt), epoch * steps_per_epoch + i, steps_per_epoch, sums)
            budget = None if budget is None else budget - 1
            if i % 10 == 0:
                n = i + 1
                bar.set_postfix(ce=f"{sums['ce'] / n:.3f}", bits=f"{sums['bits'] / n:.0f}", z=f"{sums['z_bits'] / n:.1f}")
            if (i + 1) % config.save_every == 0 and i + 1 < steps_per_epoch:
                _save(state_path, config, codec, (main_opt, aux_opt), history, position, i + 1)
        record = dict(epoch=epoch + 1, schedule_epochs=config.epochs, steps=steps_per_epoch,
                      **{k: v / steps_per_epoch for k, v in sums.items()}, minutes=(time.time() - started) / 60)
        if warm_start == epoch:
            record["warm_start"] = dict(snapshot_epoch=epoch, weights="fp16", optimizer="fresh moments")
        record["eval"] = evaluate_pair(codec, edge, test_split.subset(config.eval_images), config.eval_settings,
                                       config.bf16)
        history.append(record)
        _save(state_path, config, codec, (main_opt, aux_opt), history, dict(position, epoch=epoch + 1), 0)
        (run_dir / "history.json").write_text(json.dumps(history, indent=2))
        if snapshot is not None:
            save_snapshot(snapshot, config, codec, history)
        if progress:
            print(json.dumps(record), flush=True)
    return codec.eval(), history


def _save(path: Path, config: E2EConfig, codec: HyperLatentCodec, optimizers, history: list[dict], position: dict,
          step: int) -> None:
    """Write the full state atomically: after ``step`` steps of epoch ``position["epoch"]`` (0-based; step 0:
    at its start), with that epoch's running ``sums`` and data ``generator``, and torch's RNG state."""
    main_opt, aux_opt = optimizers
    tmp = path.with_suffix(".tmp")
    torch.save(dict(config=asdict(config), model=codec.state_dict(), optimizer=main_opt.state_dict(),
                    aux_optimizer=aux_opt.state_dict(), history=history, epoch=position["epoch"], step=step,
                    sums=position["sums"], generator=position["generator"].get_state(), rng=torch.get_rng_state()), tmp)
    tmp.replace(path)


def _step(codec, edge, teacher, split, index, generator, config, optimizers, step, steps_per_epoch, sums) -> None:
    """One optimizer step on the images ``index`` of ``split``; adds its losses to ``sums``."""
    main_opt, aux_opt = optimizers
    images = pad_crop_flip(split.images[index], generator)
    labels = split.labels[index]
    scale = warmup_cosine(step, steps_per_epoch, config.epochs, config.warmup_epochs, 1.0, config.min_lr / config.lr)
    for group in main_opt.param_groups:
        group["lr"] = group["base_lr"] * scale
    with torch.no_grad(), autocast(config.bf16):
        _, importance, hidden = edge_pass(edge, images, config.codec)
        values = source_values(images, hidden, config.codec)
        target = teacher(images).float() if teacher is not None else None
    level = sample_levels(importance.float(), config, edge.grid_size, generator)
    with autocast(config.bf16):
        out = codec(values.float(), level)
    logits = out.logits.float()
    ce = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
    loss = ce + config.rate * out.bits.mean() / 1000
    if target is not None:
        loss = loss + config.kd * F.kl_div(logits.log_softmax(-1), target.log_softmax(-1), log_target=True,
                                           reduction="batchmean")
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
