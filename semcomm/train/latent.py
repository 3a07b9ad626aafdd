"""Training recipe for a latent codec pair: resumable, deterministic given a seed.

The edge ViT stays frozen (it is the zoo edge: its logits gate and its
attention selects). Trained jointly: the edge-side bottleneck, the
per-level entropy models and the server (initialised from the zoo server,
its patch embedding replaced by the latent embedding).

Each batch keeps a random number of patches (a fraction in ``keep``, every
patch with probability ``full_prob``), chosen at random or by the edge's
attention (top-k or spread-top-k, the codec's own rules), each sent patch at
a random level (drawn with ``level_weights``: the fine levels, where the server must
keep its accuracy, most often). Loss: cross-entropy (label smoothing) + ``kd`` x KL to the
zoo server's answer on the full image (temperature 1) + ``rate`` x
estimated kilobits per image; the entropy models' quantiles get CompressAI's
auxiliary loss with their own optimizer.

State (fp32 weights, optimizers, history) is saved to ``run_dir/state.pt``
after every epoch; calling :func:`train_latent` again resumes exactly.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from semcomm.core.devices import host, resolve_device
from semcomm.data import ImageSplit
from semcomm.edge.importance import patch_importance
from semcomm.edge.selection import SpreadTopK, TopK
from semcomm.inference import autocast
from semcomm.models import ViTAdapter, create_model
from semcomm.rate.latent import LatentCodec, LatentConfig, patch_values, shipped_weights
from semcomm.train.augmentation import pad_crop_flip
from semcomm.train.pair_recipe import PairTrainConfig
from semcomm.train.schedule import warmup_cosine
from semcomm.zoo import load_tensors


@dataclass
class LatentTrainConfig(PairTrainConfig):
    """Hyper-parameters of one latent-codec training run (see the module docstring and
    :class:`~semcomm.train.pair_recipe.PairTrainConfig`)."""

    codec_type: ClassVar[type] = LatentConfig

    codec: LatentConfig = field(default_factory=LatentConfig)
    epochs: int = 6
    warmup_epochs: float = 1.0
    keep: tuple[float, float] = (0.25, 1.0)
    density_lr: float = 5e-3
    rate: float = 0.3
    level_weights: tuple[float, ...] | None = (0.05, 0.15, 0.3, 0.3, 0.2)


def edge_view(edge: ViTAdapter, images: torch.Tensor, config: LatentConfig) -> tuple[torch.Tensor, ...]:
    """(B x C edge logits, B x N mean importance, B x N x in_dim source values) from one edge pass: the
    edge's tokens after block ``tap``, or the images' normalised patch pixels."""
    tokens = config.source == "tokens"
    out = edge.forward_with_attention(images, (-1,), hidden=(config.tap,) if tokens else ())
    values = next(iter(out.hidden.values())) if tokens else patch_values(images.to(out.logits.device), config)
    return out.logits, patch_importance(out, "mean"), values


@torch.no_grad()
def pca_init(codec: LatentCodec, server_vit, images: torch.Tensor) -> None:
    """Start a pixel latent as the top-C principal components of the server's own patch embeddings.

    With e = W x the server's embedding of a patch x (W: D x 3P^2) and P the
    C leading eigenvectors of the covariance of e over ``images``, the edge
    sends y = P^T (W x - mean e) and the server embeds P y + mean e + b: the
    server's usual tokens up to the discarded components (on CIFAR-10, 16 of
    192 keep the server's top-1).
    """
    config = codec.config
    w = server_vit.patch_embed.proj.weight.reshape(server_vit.embed_dim, -1).double()  # D x 3P^2, (c p1 p2)
    b = server_vit.patch_embed.proj.bias.double()
    x = patch_values(images, config).reshape(-1, config.in_dim).double()
    e = x @ w.T
    mean = e.mean(0)
    values, vectors = torch.linalg.eigh((e - mean).T @ (e - mean) / len(e))
    p = vectors[:, values.argsort(descending=True)[: config.channels]]  # D x C
    codec.bottleneck.proj.weight.copy_((p.T @ w).float())
    codec.bottleneck.proj.bias.copy_((-p.T @ mean).float())
    codec.server.embed.weight.copy_(p.float())
    codec.server.embed.bias.copy_((mean + b).float())


def training_patches(importance: torch.Tensor, config, grid: tuple[int, int],
                     generator: torch.Generator) -> torch.Tensor:
    """B x N bool: the patches one batch sends, the same number per image: all of them with probability
    ``config.full_prob``, else a fraction drawn from ``config.keep``; chosen by attention (top-k or spread-top-k)
    with probability ``config.guided_prob``, else at random."""
    b, n = importance.shape
    if torch.rand(1, generator=generator).item() < config.full_prob:
        keep = n
    else:
        low, high = config.keep
        keep = max(1, round((low + (high - low) * torch.rand(1, generator=generator).item()) * n))
    u = torch.rand(1, generator=generator).item()
    if u < config.guided_prob / 2:
        return TopK(keep)(importance, grid, generator)
    if u < config.guided_prob:
        return SpreadTopK(keep)(importance, grid, generator)
    return torch.rand(b, n, generator=generator).argsort(1).argsort(1) < keep


def training_levels(importance: torch.Tensor, config: LatentTrainConfig, grid: tuple[int, int],
                    generator: torch.Generator) -> torch.Tensor:
    """B x N levels for one batch: a random number of sent patches, chosen at random or by attention."""
    b, n = importance.shape
    mask = training_patches(importance, config, grid, generator)
    if config.level_weights is None:
        level = torch.randint(1, config.codec.levels + 1, (b, n), generator=generator)
    else:
        weights = torch.tensor(config.level_weights, dtype=torch.float64)
        level = torch.multinomial(weights, b * n, replacement=True, generator=generator).view(b, n) + 1
    return torch.where(mask, level, torch.zeros_like(level))


def build_codec(config: LatentTrainConfig, train_split: ImageSplit | None = None) -> LatentCodec:
    """A fresh codec whose server starts from the zoo server's weights (its patch embedding unused); a
    pixel latent starts from the principal components of that embedding on ``train_split`` (2,000 images)."""
    torch.manual_seed(config.seed)
    codec = LatentCodec(config.codec)
    teacher = create_model(config.server_init)
    state = {k: v for k, v in teacher.model.state_dict().items() if not k.startswith("patch_embed.")}
    missing, unexpected = codec.server.vit.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("patch_embed.") for k in missing):
        raise ValueError(f"server {config.server_init} does not fit {config.codec.server_architecture}: "
                         f"missing {missing}, unexpected {unexpected}")
    if config.codec.source == "pixels" and train_split is not None:
        pca_init(codec, teacher.model, train_split.subset(2000).images[:])  # [:]: a tensor, even from disk
    return codec


def load_codec_weights(codec: LatentCodec, path: str | Path) -> None:
    """Warm-start ``codec`` from a safetensors file: a training run's weights, or a shipped pair's
    (``weights.``-prefixed, without entropy models, which then start afresh)."""
    state = load_tensors(path)
    state = shipped_weights(state) or state
    own = codec.state_dict()
    misfit = [k for k, v in state.items() if k in own and v.shape != own[k].shape]
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state and not k.startswith("entropy.")]
    if misfit or unexpected or missing:
        raise ValueError(f"{path} does not fit this codec: shapes differ for {misfit[:3]}, unexpected "
                         f"{unexpected[:3]}, missing {missing[:3]}")
    codec.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=False)


def _optimizers(codec: LatentCodec, config: LatentTrainConfig):
    """AdamW on the bottleneck and server (the new layers at ``lr``, the pretrained server at ``server_lr``),
    the entropy models' densities at ``density_lr`` without weight decay, their quantiles on the auxiliary loss."""
    aux = [p for n, p in codec.named_parameters() if n.endswith("quantiles")]
    density = [p for n, p in codec.entropy.named_parameters() if not n.endswith("quantiles")]
    server = [p for n, p in codec.server.vit.named_parameters() if not n.startswith("patch_embed.")]
    taken = {id(p) for p in server} | {id(p) for p in aux} | {id(p) for p in density}
    new = [p for p in codec.parameters() if id(p) not in taken]
    main = torch.optim.AdamW([dict(params=new, lr=config.lr, base_lr=config.lr),
                              dict(params=server, lr=config.server_lr, base_lr=config.server_lr),
                              dict(params=density, lr=config.density_lr, base_lr=config.density_lr, weight_decay=0.0)],
                             weight_decay=config.weight_decay)
    return main, torch.optim.Adam(aux, lr=1e-3)


def _lr_scale(config: LatentTrainConfig, step: int, steps_per_epoch: int) -> float:
    """The zoo's warm-up + cosine schedule as a fraction of each parameter group's base rate."""
    return warmup_cosine(step, steps_per_epoch, config.epochs, config.warmup_epochs, 1.0, config.min_lr / config.lr)


def train_latent(config: LatentTrainConfig, train_split: ImageSplit, test_split: ImageSplit, run_dir: str | Path,
                 stop_after: int | None = None, max_steps: int | None = None, init_from: str | Path | None = None,
                 progress: bool = True, device: str | torch.device | None = None) -> tuple[LatentCodec, list[dict]]:
    """Train (or resume) a latent codec; returns it (eval mode, on ``device``: None for CUDA if available, else
    the CPU) and its per-epoch history. Batches are drawn and augmented on the CPU.

    Args:
        stop_after: at most this many epochs in this call.
        max_steps: stop an epoch early after this many steps (quick experiments; not resumable mid-epoch).
        init_from: codec weights (safetensors) to warm-restart from when there is no state.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    edge = create_model(config.edge).eval()
    teacher = create_model(config.server_init).eval() if config.kd > 0 else None
    codec = build_codec(config, train_split)
    if init_from is not None:
        load_codec_weights(codec, init_from)
    device = resolve_device(device)
    for module in (edge, teacher, codec):
        if module is not None:
            module.to(device)
    main_opt, aux_opt = _optimizers(codec, config)
    history: list[dict] = []
    start_epoch = 0
    state_path = run_dir / "state.pt"
    if state_path.exists():
        state = torch.load(state_path, weights_only=False, map_location="cpu")
        saved = LatentTrainConfig.from_dict(state["config"])
        if replace(saved, epochs=config.epochs) != config:
            raise ValueError(f"{state_path} was made with a different config; use another run directory")
        codec.load_state_dict(state["model"])
        main_opt.load_state_dict(state["optimizer"])
        aux_opt.load_state_dict(state["aux_optimizer"])
        history, start_epoch = state["history"], state["epoch"]
    (run_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))

    grid = edge.grid_size
    steps_per_epoch = len(train_split) // config.batch_size
    end_epoch = config.epochs if stop_after is None else min(config.epochs, start_epoch + stop_after)
    for epoch in range(start_epoch, end_epoch):
        started = time.time()
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        order = torch.randperm(len(train_split), generator=generator)
        codec.train()
        sums = dict(loss=0.0, ce=0.0, bits=0.0, aux=0.0)
        steps = steps_per_epoch if max_steps is None else min(max_steps, steps_per_epoch)
        bar = tqdm(range(steps), desc=f"latent epoch {epoch + 1}/{config.epochs}", disable=not progress)
        for i in bar:
            index = order[i * config.batch_size : (i + 1) * config.batch_size]
            images = pad_crop_flip(train_split.images[index], generator)
            labels = train_split.labels[index].to(device)
            scale = _lr_scale(config, epoch * steps_per_epoch + i, steps_per_epoch)
            for group in main_opt.param_groups:
                group["lr"] = group["base_lr"] * scale
            with torch.no_grad(), autocast(config.bf16):
                _, importance, source = edge_view(edge, images, config.codec)
                target = teacher(images).float() if teacher is not None else None
            level = training_levels(host(importance.float()), config, grid, generator).to(device)
            with autocast(config.bf16):
                out = codec(source.float(), level)
            logits = out.logits.float()
            ce = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
            loss = ce + config.rate * out.bits.mean() / 1000
            if target is not None:
                loss = loss + config.kd * F.kl_div(logits.log_softmax(-1), target.log_softmax(-1),
                                                   log_target=True, reduction="batchmean")
            main_opt.zero_grad(set_to_none=True)
            loss.backward()
            main_opt.step()
            aux = codec.entropy.aux_loss()
            aux_opt.zero_grad(set_to_none=True)
            aux.backward()
            aux_opt.step()
            for key, value in (("loss", loss), ("ce", ce), ("bits", out.bits.mean()), ("aux", aux)):
                sums[key] += float(value.detach())
            if i % 20 == 0:
                bar.set_postfix(ce=f"{sums['ce'] / (i + 1):.3f}", bits=f"{sums['bits'] / (i + 1):.0f}")
        record = dict(epoch=epoch + 1, schedule_epochs=config.epochs, steps=steps,
                      **{k: v / steps for k, v in sums.items()}, minutes=(time.time() - started) / 60)
        record["eval"] = evaluate_latent(codec, edge, test_split.subset(config.eval_images), config.bf16)
        history.append(record)
        if progress:
            print(json.dumps(record), flush=True)
        tmp = state_path.with_suffix(".tmp")
        torch.save(dict(config=asdict(config), model=codec.state_dict(), optimizer=main_opt.state_dict(),
                        aux_optimizer=aux_opt.state_dict(), history=history, epoch=epoch + 1), tmp)
        tmp.replace(state_path)
    return codec.eval(), history


@torch.no_grad()
def evaluate_latent(codec: LatentCodec, edge: ViTAdapter, split: ImageSplit, bf16: bool = True,
                    batch_size: int = 250) -> dict:
    """Top-1 and estimated payload bits per image (rounded latents) on ``split``: all patches at each
    level, and spread-top-k 16 at the middle level."""
    codec.eval()
    grid, levels = edge.grid_size, codec.config.levels
    settings = {f"all@{m}": (None, m) for m in range(1, levels + 1)}
    settings[f"spread16@{(levels + 1) // 2}"] = (16, (levels + 1) // 2)
    correct = {k: 0 for k in settings}
    bits = {k: 0.0 for k in settings}
    for start in range(0, len(split), batch_size):
        images, labels = split.images[start : start + batch_size], split.labels[start : start + batch_size]
        with autocast(bf16):
            _, importance, source = edge_view(edge, images, codec.config)
        importance = host(importance.float())
        for key, (k, m) in settings.items():
            if k is None:
                mask = torch.ones_like(importance, dtype=torch.bool)
            else:
                mask = SpreadTopK(k)(importance.float(), grid)
            level = torch.where(mask, m, 0).to(source.device)
            with autocast(bf16):
                out = codec(source.float(), level, training=False)
            correct[key] += int((host(out.logits).argmax(-1) == labels).sum())
            bits[key] += float(out.bits.sum())
    return {k: dict(top1=correct[k] / len(split), estimated_bits=bits[k] / len(split)) for k in settings}


LATENT_PRESETS = {"latent-cifar10": LatentTrainConfig()}
