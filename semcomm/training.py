"""Training recipe for the zoo's ViTs: resumable, deterministic given a seed.

Recipe: random crop (4-pixel reflect padding) and horizontal flip, AdamW,
linear warm-up then cosine decay per step, label smoothing, optional bf16
autocast on CPU, and optional random token dropping (each batch keeps a
random fraction of its patches, each image its own random subset) so that a
server model learns to classify from partial patch sets. With a ``guide``
(an edge model), a share of those batches keeps the patches the edge's
attention would select instead (top-k or spread-top-k on ``mean``
importance), so the server also sees the subsets it will receive.

The full training state (fp32 weights, optimizer, history) is saved to
``run_dir/state.pt`` after every epoch; calling :func:`train` again with the
same ``run_dir`` resumes from it. Every random draw of epoch ``e`` comes from
a generator seeded with ``(seed, e)``, so a resumed run matches an
uninterrupted one.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import ImageSplit
from .inference import autocast, predict_logits, top1
from .importance import attention_layers, patch_importance
from .models import TimmViT, create_model, load_weights
from .models.zoo import CHECKPOINT_DIR, ModelCard, file_sha256, save_weights, write_card
from .selection import SpreadTopK, TopK


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run.

    Attributes:
        architecture: timm architecture name (e.g. ``semcomm_vit_edge_p4_32``).
        epochs: length of the cosine schedule. A resumed run may change it
            (the schedule is re-computed from the next step on; history
            records the length each epoch was trained under).
        token_keep: (low, high) fraction of patches kept per batch for random
            token dropping; None trains on full images only.
        full_image_prob: with token dropping, probability that a batch keeps every patch.
        guide: zoo name of an edge model whose attention picks the kept patches
            in a share ``guided_prob`` of the token-dropping batches.
        codec: a pixel codec pair (e.g. ``dct-cifar10``): every training image
            is replaced by what the server decodes from it, each patch at a
            random level in ``codec_levels`` (quantization-aware training).
        eval_images: test images scored after each epoch (progress only).
    """

    architecture: str
    num_classes: int = 10
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0
    label_smoothing: float = 0.1
    token_keep: tuple[float, float] | None = None
    full_image_prob: float = 0.25
    guide: str | None = None
    guided_prob: float = 0.5
    codec: str | None = None
    codec_levels: tuple[int, int] = (1, 6)
    bf16: bool = True
    seed: int = 0
    eval_images: int = 2000


    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Inverse of ``dataclasses.asdict`` (lists from JSON become tuples)."""
        for key in ("token_keep", "codec_levels"):
            if data.get(key) is not None:
                data = {**data, key: tuple(data[key])}
        return cls(**data)


@dataclass
class TrainHistory:
    """Per-epoch record: mean training loss, test top-1 on ``eval_images`` and minutes taken."""

    epochs: list[dict] = field(default_factory=list)


def augment(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop after reflect padding, and random horizontal flip, of B x 3 x H x W uint8 images."""
    b, _, h, w = images.shape
    padded = F.pad(images.float(), (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator)
    rows = (dy + torch.arange(h)).view(b, 1, h, 1)
    cols = (dx + torch.arange(w)).view(b, 1, 1, w)
    flip = torch.rand(b, generator=generator) < 0.5
    cols = torch.where(flip.view(b, 1, 1, 1), cols.flip(-1), cols)
    batch = torch.arange(b).view(b, 1, 1, 1)
    channel = torch.arange(3).view(1, 3, 1, 1)
    return padded[batch, channel, rows, cols].to(torch.uint8)


def random_positions(batch: int, num_patches: int, keep: int, generator: torch.Generator) -> torch.Tensor:
    """B x keep sorted random patch indices, a different subset per image."""
    order = torch.rand(batch, num_patches, generator=generator).argsort(dim=1)
    return order[:, :keep].sort(dim=1).values


def learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    warmup = config.warmup_epochs * steps_per_epoch
    total = config.epochs * steps_per_epoch
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def build(config: TrainConfig, init_from: str | Path | None = None) -> TimmViT:
    torch.manual_seed(config.seed)
    model = timm.create_model(config.architecture, num_classes=config.num_classes)
    if init_from is not None:
        load_weights(model, init_from)
    return TimmViT(model)


def train(
    config: TrainConfig,
    train_split: ImageSplit,
    test_split: ImageSplit,
    run_dir: str | Path,
    init_from: str | Path | None = None,
    start_epoch: int = 0,
    earlier_history: list[dict] | None = None,
    stop_after: int | None = None,
    progress: bool = True,
) -> tuple[TimmViT, TrainHistory]:
    """Train (or resume training) and return the model and its history.

    Args:
        run_dir: where ``state.pt`` and ``config.json`` live; an existing
            state with the same config is resumed exactly.
        init_from: safetensors weights to start from when there is no state
            to resume (a warm restart: fresh optimizer).
        start_epoch: with ``init_from``, the epoch of the schedule to continue at.
        earlier_history: with ``init_from``, the per-epoch record of the run
            that made those weights (kept, so the card tells the whole story);
            the first new epoch is marked ``warm_restart``.
        stop_after: train at most this many epochs in this call (the
            schedule still spans ``config.epochs``; call again to go on).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    model = build(config, init_from)
    guide = create_model(config.guide) if config.guide else None
    codec = _pixel_codec(config.codec, model) if config.codec else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history = TrainHistory(list(earlier_history or []))
    warm_restart = init_from is not None
    state_path = run_dir / "state.pt"
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        saved = TrainConfig.from_dict(state["config"])  # fields added since the state was saved take defaults
        if replace(saved, epochs=config.epochs) != config:
            raise ValueError(f"{state_path} was made with a different config; use another run directory")
        if saved.epochs != config.epochs and progress:
            print(f"schedule length changed from {saved.epochs} to {config.epochs} epochs at epoch {state['epoch']}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = TrainHistory(state["history"])
        start_epoch = state["epoch"]
        warm_restart = False
    (run_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))

    steps_per_epoch = len(train_split) // config.batch_size
    eval_split = test_split.subset(config.eval_images)
    end_epoch = config.epochs if stop_after is None else min(config.epochs, start_epoch + stop_after)
    for epoch in range(start_epoch, end_epoch):
        started = time.time()
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        order = torch.randperm(len(train_split), generator=generator)
        model.train()
        losses = []
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress)
        for i in bar:
            index = order[i * config.batch_size : (i + 1) * config.batch_size]
            images = augment(train_split.images[index], generator)
            labels = train_split.labels[index]
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, epoch * steps_per_epoch + i, steps_per_epoch)
            with autocast(config.bf16):
                logits = _forward_training(model, images, config, generator, guide, codec)
                loss = F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if i % 20 == 0:
                bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
        accuracy = top1(predict_logits(model, eval_split.images, bf16=config.bf16), eval_split.labels)
        history.epochs.append(dict(epoch=epoch + 1, schedule_epochs=config.epochs, loss=sum(losses) / len(losses), test_top1=accuracy,
                                   test_images=len(eval_split), minutes=(time.time() - started) / 60))
        if warm_restart and epoch == start_epoch:
            history.epochs[-1]["warm_restart"] = True  # fresh optimizer state from here on
        if progress:
            print(json.dumps(history.epochs[-1]), flush=True)
        tmp = state_path.with_suffix(".tmp")
        torch.save(dict(config=asdict(config), model=model.state_dict(), optimizer=optimizer.state_dict(),
                        history=history.epochs, epoch=epoch + 1), tmp)
        tmp.replace(state_path)
    return model.eval(), history


def _pixel_codec(name: str, server: TimmViT):
    from .rate import create_codec

    return create_codec(name, server=server, hint=False)


def _forward_training(model: TimmViT, images: torch.Tensor, config: TrainConfig, generator: torch.Generator,
                      guide: TimmViT | None = None, codec=None):
    seen = images
    if codec is not None:  # what the server will decode: each patch at a random level
        low, high = config.codec_levels
        level = torch.randint(low, high + 1, (len(images), model.num_patches), generator=generator)
        with torch.no_grad():
            seen = codec.roundtrip(images, level)
    if config.token_keep is None or torch.rand(1, generator=generator).item() < config.full_image_prob:
        return model(seen)
    low, high = config.token_keep
    fraction = low + (high - low) * torch.rand(1, generator=generator).item()
    keep = max(1, round(fraction * model.num_patches))
    if guide is not None and torch.rand(1, generator=generator).item() < config.guided_prob:
        positions = guided_positions(guide, images, keep, generator)  # the edge sees the original
    else:
        positions = random_positions(len(images), model.num_patches, keep, generator)
    return model.forward_tokens(seen, positions)


@torch.no_grad()
def guided_positions(guide: TimmViT, images: torch.Tensor, keep: int, generator: torch.Generator) -> torch.Tensor:
    """B x keep sorted positions chosen by the guide's attention (top-k or spread-top-k, at random)."""
    importance = patch_importance(guide.forward_with_attention(images, attention_layers("mean")), "mean")
    rule = TopK(keep) if torch.rand(1, generator=generator).item() < 0.5 else SpreadTopK(keep)
    mask = rule(importance, guide.grid_size, generator)
    return mask.nonzero()[:, 1].view(len(images), keep)


PRESETS = {
    "vit-edge-cifar10": TrainConfig("semcomm_vit_edge_p4_32", epochs=30, warmup_epochs=2.0),
    "vit-server-cifar10": TrainConfig("semcomm_vit_server_p4_32", epochs=45, warmup_epochs=3.0,
                                      token_keep=(0.1, 1.0), guide="vit-edge-cifar10", guided_prob=0.5),
}
# the server fine-tuned on what the DCT pair delivers: warm-start it with --init-from vit-server-cifar10.pt weights
PRESETS["vit-server-dct-cifar10"] = replace(PRESETS["vit-server-cifar10"], epochs=6, lr=3e-4, warmup_epochs=0.5,
                                           codec="dct-cifar10", codec_levels=(1, 6))
PRESET_DATASETS = {"vit-edge-cifar10": "cifar10", "vit-server-cifar10": "cifar10", "vit-server-dct-cifar10": "cifar10"}


def export(name: str, run_dir: str | Path, test_split: ImageSplit) -> ModelCard:
    """Ship a run's weights into the zoo as fp16 safetensors with a model card.

    The card's ``test_top1`` is measured on all of ``test_split``, in fp32, on
    the fp16 weights as shipped; ``history`` is the run's per-epoch record.
    """
    state = torch.load(Path(run_dir) / "state.pt", weights_only=False)
    config = TrainConfig.from_dict(state["config"])
    model = build(config)
    model.load_state_dict(state["model"])
    weights = CHECKPOINT_DIR / f"{name}.safetensors"
    save_weights(model.model, weights)
    shipped = create_model(config.architecture, num_classes=config.num_classes, weights=weights)
    accuracy = top1(predict_logits(shipped, test_split.images, bf16=False, desc=f"testing {name}"), test_split.labels)
    card = ModelCard(
        name=name, architecture=config.architecture, dataset=test_split.name.split("/")[0],
        num_classes=config.num_classes, params=sum(p.numel() for p in shipped.parameters()), epochs=state["epoch"],
        test_top1=accuracy, test_images=len(test_split), recipe=json.loads(json.dumps(asdict(config))),
        history=state["history"],
        sha256=file_sha256(weights),
        notes=f"`semcomm train {name}`; test_top1 in fp32 on the fp16 weights as shipped; "
              "history test_top1 is on a fixed test subset in bf16, during training",
    )
    write_card(card)
    return card
