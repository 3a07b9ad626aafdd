"""Training recipe for the zoo's ViTs: resumable, deterministic given a seed.

Recipe: augmentation (CIFAR's padded random crop and flip, or for ViTs
trained from scratch at ImageNet geometry DeiT's recipe from timm:
random-resized crop, flip, RandAugment, Mixup / CutMix; see
:mod:`semcomm.train.augmentation`), AdamW, linear warm-up then cosine decay per
step, label smoothing, optional bf16 autocast on CPU, an optional
low-resolution phase (the first epochs train on smaller crops, with the
position embeddings resampled: fewer tokens, several times faster per
epoch, as in progressive resizing / FixRes), and optional random token dropping (each batch keeps a
random fraction of its patches, each image its own random subset) so that a
server model learns to classify from partial patch sets. With a ``guide``
(an edge model), a share of those batches keeps the patches the edge's
attention would select instead (top-k or spread-top-k on ``mean``
importance), so the server also sees the subsets it will receive
(:mod:`semcomm.train.token_dropping`).

The full training state (fp32 weights, optimizer, history) is saved to
``run_dir/state.pt`` after every epoch; calling :func:`train` again with the
same ``run_dir`` resumes from it. Every random draw of epoch ``e`` comes from
a generator seeded with ``(seed, e)``, so a resumed run matches an
uninterrupted one.

:mod:`semcomm.train.presets` holds the tuned recipes behind the zoo and
extends them to any size x geometry x data set.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from semcomm.core.devices import resolve_device
from semcomm.data import ImageSplit
from semcomm.inference import autocast, predict_logits, top1
from semcomm.models import ModelCard, TimmViT, ViTAdapter, create_model, list_checkpoints, load_weights, save_weights
from semcomm.models.zoo import write_card
from semcomm.rate import create_codec
from semcomm.train.augmentation import AUGMENTATIONS, ImageNetAugment
from semcomm.train.growth import grow_by_stacking
from semcomm.train.schedule import warmup_cosine
from semcomm.train.token_dropping import guided_positions, random_positions, tokens_to_keep
from semcomm.zoo import user_zoo_dirs


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run.

    Attributes:
        architecture: timm architecture name (e.g. ``semcomm_vit_edge_p4_32``); with your own model
            object (``train(..., model=...)``) only the run's label.
        epochs: length of the cosine schedule. A resumed run may change it
            (the schedule is re-computed from the next step on; history
            records the length each epoch was trained under).
        warmup_epochs: the linear warm-up, cut to a quarter of ``epochs`` in a short run (every preset's is
            within it; :func:`~semcomm.train.schedule.warmup_cosine`).
        token_keep: (low, high) fraction of patches kept per batch for random
            token dropping; None trains on full images only.
        full_image_prob: with token dropping, probability that a batch keeps every patch.
        guide: zoo name of an edge model whose attention picks the kept patches
            in a share ``guided_prob`` of the token-dropping batches.
        codec: a pixel codec pair (e.g. ``dct-cifar10``): every training image
            is replaced by what the server decodes from it, each patch at a
            random level in ``codec_levels`` (quantization-aware training).
        eval_images: test images scored after each epoch (progress only).
        augment: ``"pad-crop-flip"`` (CIFAR) or ``"deit"`` (random-resized crop
            with area in ``crop_scale``, flip, RandAugment ``rand_augment``,
            Mixup ``mixup`` / CutMix ``cutmix`` alphas, soft-target loss).
        low_res: (side, epochs): the first ``epochs`` epochs train on
            side x side crops (architectures built with ``dynamic_img_size``).
        drop_path: stochastic-depth rate (timm's ``drop_path_rate``).
        grown_from: zoo name of a trained shallower ViT of the same width whose
            blocks, stacked, start this one (:mod:`semcomm.train.growth`);
            None: a random start.
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
    augment: str = "pad-crop-flip"
    crop_scale: tuple[float, float] = (0.35, 1.0)
    rand_augment: str | None = "rand-m9-mstd0.5-inc1-mmax9"
    mixup: float = 0.8
    cutmix: float = 1.0
    low_res: tuple[int, int] | None = None
    drop_path: float = 0.0
    grown_from: str | None = None


    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Inverse of ``dataclasses.asdict`` (lists from JSON become tuples)."""
        for key in ("token_keep", "codec_levels", "crop_scale", "low_res"):
            if data.get(key) is not None:
                data = {**data, key: tuple(data[key])}
        return cls(**data)


@dataclass
class TrainHistory:
    """Per-epoch record: mean training loss, test top-1 on ``eval_images`` and minutes taken."""

    epochs: list[dict] = field(default_factory=list)


def training_batch(config: TrainConfig, split: ImageSplit, index: torch.Tensor, epoch: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented images (B x 3 x S x S, uint8 or float in [0, 1]) and targets of one batch.

    Targets are class indices (B, int64) for an image augmentation of
    :data:`~semcomm.train.augmentation.AUGMENTATIONS` (``pad-crop-flip``, ...) and soft
    targets (B x C) for ``deit``; S is the low-resolution side during the
    ``low_res`` phase, else the data's.
    """
    images, labels = split.images[index], split.labels[index]
    if config.augment == "deit":  # DeiT's recipe changes the targets too (Mixup / CutMix): not an image augmentation
        size = config.low_res[0] if config.low_res and epoch < config.low_res[1] else images.shape[-1]
        recipe = ImageNetAugment(config.num_classes, config.crop_scale, config.rand_augment, config.mixup,
                                 config.cutmix, config.label_smoothing)
        return recipe(images, labels, size, generator)
    return AUGMENTATIONS.get(config.augment)(images, generator), labels


def training_loss(logits: torch.Tensor, targets: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """Cross-entropy against class indices (label-smoothed) or soft targets (Mixup / CutMix)."""
    if targets.ndim == 2:
        return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
    return F.cross_entropy(logits.float(), targets, label_smoothing=config.label_smoothing)


def learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate at optimizer step ``step``: ``config``'s warm-up then cosine decay
    (:func:`~semcomm.train.schedule.warmup_cosine`)."""
    return warmup_cosine(step, steps_per_epoch, config.epochs, config.warmup_epochs, config.lr, config.min_lr)


def build(config: TrainConfig, init_from: str | Path | None = None, grow: bool = True) -> TimmViT:
    """``config.architecture`` started from ``init_from``'s weights (a warm restart), else (``grow``) from
    ``config.grown_from``'s blocks stacked, else at random; ``grow=False`` skips the stacking (a resumed run
    loads its state over it anyway)."""
    torch.manual_seed(config.seed)
    model = timm.create_model(config.architecture, num_classes=config.num_classes, drop_path_rate=config.drop_path)
    if init_from is not None:  # a warm restart: these weights are the whole start, grown or not
        load_weights(model, init_from)
    elif config.grown_from and grow:
        if config.grown_from not in {c.name for c in list_checkpoints()}:
            raise ValueError(f"grown_from names a trained zoo model to stack; {config.grown_from!r} is not in the "
                             "zoo (semcomm zoo lists it)")
        grow_by_stacking(model, create_model(config.grown_from))
    return TimmViT(model)


def _check_own_model(model, config: TrainConfig, init_from) -> None:
    """Refuse a user model ``train`` cannot train as configured, naming why."""
    if not isinstance(model, ViTAdapter):
        raise TypeError(f"model must be a semcomm ViTAdapter (see the README's adapter section), got "
                        f"{type(model).__name__}")
    if init_from is not None:
        raise ValueError("init_from loads weights into the built architecture; load your model's weights yourself")
    if config.grown_from:
        raise ValueError("config.grown_from stacks blocks into the built architecture; start your model yourself "
                         "(semcomm.train.growth.grow_by_stacking)")
    if model.num_classes != config.num_classes:
        raise ValueError(f"the model has {model.num_classes} outputs but config.num_classes is {config.num_classes}")
    if config.low_res and not isinstance(model, TimmViT):
        raise ValueError("the low-resolution phase (config.low_res) resizes the position embeddings of the "
                         "project's timm ViTs; set low_res=None for your own model")


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
    model: ViTAdapter | None = None,
    device: str | torch.device | None = None,
) -> tuple[ViTAdapter, TrainHistory]:
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
        model: your own ViT, a model object: any :class:`~semcomm.models.ViTAdapter` with
            ``config.num_classes`` outputs, trained instead of building ``config.architecture``
            (which then only names the run in ``config.json``). It is trained in place from its
            current weights and returned; a resumed run loads the saved state into it. Not with
            ``init_from`` or ``config.grown_from`` (start it yourself), nor with ``config.low_res``
            unless it is a :class:`~semcomm.models.TimmViT`; :func:`export` rebuilds
            ``config.architecture``, so save your model's weights yourself. None (the default):
            build ``config.architecture`` (:func:`build`).
        device: where the model (and guide, codec) train (None: CUDA if available, else the CPU); batches are
            drawn and augmented on the CPU and cross at the model's boundary.

    Returns:
        the trained model (``model`` itself when given) in eval mode, and the run's history.
    """
    if len(train_split) < config.batch_size:
        raise ValueError(f"the training split has {len(train_split)} images, fewer than one batch of "
                         f"{config.batch_size}; use a smaller batch size")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / "state.pt"
    if model is None:
        model = build(config, init_from, grow=not state_path.exists())
    else:
        _check_own_model(model, config, init_from)
    device = resolve_device(device)
    model.to(device)
    guide = create_model(config.guide).to(device) if config.guide else None
    codec = create_codec(config.codec, server=model, hint=False) if config.codec else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history = TrainHistory(list(earlier_history or []))
    warm_restart = init_from is not None
    if state_path.exists():
        state = torch.load(state_path, weights_only=False, map_location="cpu")
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
        torch.manual_seed(config.seed * 100_003 + epoch)  # timm's stochastic depth draws from the global generator
        order = torch.randperm(len(train_split), generator=generator)
        model.train()
        losses = []
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress)
        for i in bar:
            index = order[i * config.batch_size : (i + 1) * config.batch_size]
            images, targets = training_batch(config, train_split, index, epoch, generator)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, epoch * steps_per_epoch + i, steps_per_epoch)
            with autocast(config.bf16):
                logits = _forward_training(model, images, config, generator, guide, codec)
                loss = training_loss(logits, targets.to(logits.device), config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if i % 20 == 0:
                bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
        accuracy = top1(predict_logits(model, eval_split.images, bf16=config.bf16), eval_split.labels)
        history.epochs.append(dict(epoch=epoch + 1, schedule_epochs=config.epochs, loss=sum(losses) / len(losses),
                                   test_top1=accuracy, test_images=len(eval_split),
                                   minutes=(time.time() - started) / 60))
        if warm_restart and epoch == start_epoch:
            history.epochs[-1]["warm_restart"] = True  # fresh optimizer state from here on
        if progress:
            print(json.dumps(history.epochs[-1]), flush=True)
        tmp = state_path.with_suffix(".tmp")
        torch.save(dict(config=asdict(config), model=model.state_dict(), optimizer=optimizer.state_dict(),
                        history=history.epochs, epoch=epoch + 1), tmp)
        tmp.replace(state_path)
    return model.eval(), history


def _forward_training(model: TimmViT, images: torch.Tensor, config: TrainConfig, generator: torch.Generator,
                      guide: TimmViT | None = None, codec=None):
    """B x C logits of one training batch as the model sees it: through the codec at random levels, with the
    patches token dropping keeps (random or guided), or at low resolution."""
    seen = images
    if tuple(images.shape[-2:]) != model.image_size:  # the low-resolution phase: the model's own checks do not apply
        return _forward_low_res(model, images, config, generator)
    if codec is not None:  # what the server will decode: each patch at a random level
        low, high = config.codec_levels
        level = torch.randint(low, high + 1, (len(images), model.num_patches), generator=generator)
        with torch.no_grad():
            seen = codec.reconstruct(images, level)
    keep = tokens_to_keep(config.token_keep, config.full_image_prob, model.num_patches, generator)
    if keep is None:
        return model(seen)
    if guide is not None and torch.rand(1, generator=generator).item() < config.guided_prob:
        positions = guided_positions(guide, images, keep, generator)  # the edge sees the original
    else:
        positions = random_positions(len(images), model.num_patches, keep, generator)
    return model.forward_tokens(seen, positions)


def _forward_low_res(model: TimmViT, images: torch.Tensor, config: TrainConfig, generator: torch.Generator):
    if config.codec is not None or config.guide is not None:
        raise ValueError("the low-resolution phase trains on pixels only (no codec, no guide)")
    images = images.to(model.mean.device)
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    patches = (images.shape[-2] // model.patch_size) * (images.shape[-1] // model.patch_size)
    keep = tokens_to_keep(config.token_keep, config.full_image_prob, patches, generator)
    positions = None if keep is None else random_positions(len(images), patches, keep, generator).to(x.device)
    return model._forward_tokens((x - model.mean) / model.std, positions)


def export(name: str, run_dir: str | Path, test_split: ImageSplit, directory: str | Path | None = None) -> ModelCard:
    """Write a run's weights into a zoo directory as fp16 safetensors with a model card.

    ``directory`` defaults to the first user zoo directory (:data:`semcomm.zoo.USER_ZOO`: ``$SEMCOMM_ZOO``,
    else ``$SEMCOMM_CACHE/zoo``, else ``~/.cache/semcomm/zoo``), never the installed package; the project ships
    its own checkpoints by passing ``semcomm/zoo/checkpoints``.

    The card's ``test_top1`` is measured on all of ``test_split``, in fp32, on
    the fp16 weights as shipped; ``history`` is the run's per-epoch record.
    """
    state = torch.load(Path(run_dir) / "state.pt", weights_only=False, map_location="cpu")
    config = TrainConfig.from_dict(state["config"])
    model = build(config, grow=False)
    model.load_state_dict(state["model"])
    directory = Path(directory) if directory else user_zoo_dirs()[0]
    weights = directory / f"{name}.safetensors"
    sha256 = save_weights(model.model, weights)
    shipped = create_model(config.architecture, num_classes=config.num_classes, weights=weights)
    accuracy = top1(predict_logits(shipped, test_split.images, bf16=False, desc=f"testing {name}"), test_split.labels)
    card = ModelCard(
        name=name, architecture=config.architecture, dataset=test_split.name.split("/")[0],
        num_classes=config.num_classes, params=sum(p.numel() for p in shipped.parameters()), epochs=state["epoch"],
        test_top1=accuracy, test_images=len(test_split), recipe=json.loads(json.dumps(asdict(config))),
        history=state["history"], classes=list(test_split.classes),
        sha256=sha256,
        notes=f"`semcomm train {name}`; test_top1 in fp32 on the fp16 weights as shipped; "
              "history test_top1 is on a fixed test subset in bf16, during training",
    )
    write_card(card, directory)
    return card
