"""Bitrate-accuracy sweep: the semantic codec against its references, on real data, with frontiers.

One edge pass (cached on disk, :mod:`semcomm.experiments.edge_pass`) gives every image's edge logits,
patch importance and, for a latent codec, the edge tokens it codes. For each
setting (selection rule x budget x level policy) every image is packed into
its real byte string and classified by the server from the decoded string;
a gate threshold then only decides which images use the server's answer (and
cost their bits) and which the edge's (0 bits). So one server pass per
setting serves every gate threshold, with and without fusion: fusion adds
the edge's prediction to every string (its bits counted) and the server
fuses it with its own.

The gates are :mod:`semcomm.experiments.gates`: thresholds given, offload-rate targets given (calibrated on the
edge's logits), or by default thresholds scaled to the number of classes, with a fallback to offload-rate targets
for an edge unsure of every image; the result's ``notes`` say when that happened and which gates offload every image.

Schemes (each traced over every gate threshold, with and without fusion):

* the semantic codec: a codec pair (``raw8``: raw 8-bit patches, format version 1; the others
  format version 2), for each selection setting, and its equal-budget random twin (same images,
  same patch count and policy, patches drawn at random);
* image codecs (WebP, JPEG) of whole images, the server on the decoded image;
* references: the edge alone, the server on every patch of every image.

Each scheme's Pareto frontier (mean bits per image against top-1) is
computed over all its points, the edge alone (0 bits) included, and the
semantic frontier is compared with the best image-codec frontier at every
accuracy from the edge's + 1 point up to the server's full-image accuracy
(:mod:`semcomm.experiments.frontiers`; where there is nothing to compare, the result's ``comparison_note`` says
why). The results are :mod:`semcomm.experiments.results`.

The work is cut into tasks, one per (reference, semantic setting or image codec) x shard of
``shard_images`` images, each measuring every image of its shard once (one task function,
:meth:`Sweep._task`); the gates, points and frontiers are then computed from the joined outcomes.
The tasks run in this process one after the other or as Ray tasks (:mod:`semcomm.experiments.engines`)
with the same result, and a run given a state file resumes from the tasks it finished.
"""
from __future__ import annotations

import base64
import hashlib
import math
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from semcomm.core.devices import module_device, resolve_device
from semcomm.core.paths import default_cache_dir
from semcomm.data import ImageSplit, update_digest
from semcomm.edge.codec import CODECS
from semcomm.edge.encoder import EdgeAnalysis, EdgeEncoder
from semcomm.edge.gating import GATES, Gate
from semcomm.edge.selection import SelectionRule, TopK, random_like, selection_rules, takes_budget
from semcomm.experiments.codecs import codec_pair, image_codec_pass, with_hint
from semcomm.experiments.edge_pass import edge_analysis
from semcomm.experiments.engines import LocalTasks, RayTasks, TaskStore, plain_key, run_tasks, task_seed
from semcomm.experiments.frontiers import (compare_frontiers, mark_frontier_points, missing_comparison,
                                           pareto_frontiers)
from semcomm.experiments.gates import check_gate_grid, sweep_gates
from semcomm.experiments.results import OperatingPoint, SweepResult
from semcomm.experiments.settings import gate_fields, policy_fields, rule_fields
from semcomm.experiments.statistics import paired_comparison
from semcomm.models import ViTAdapter, create_model, list_checkpoints
from semcomm.models.adapter import model_name
from semcomm.rate.codec import Codec
from semcomm.rate.hint import HintCoder, fuse
from semcomm.rate.image_codecs import ImageCodec, standard_codecs
from semcomm.rate.pair import CodecPair
from semcomm.rate.policies import FixedLevel, LevelPolicy
from semcomm.rate.zoo import load_hint

FULL_IMAGES_CODEC = "raw8"  # the codec of the "full images" reference: every patch as 8-bit pixels
OUTCOME_FORMAT = "packed outcomes 2"  # how a task's result is written (_outcome_data): part of a task store's key


class Setting(NamedTuple):
    """One semantic setting of a sweep: a selection rule (its registered name, its budget in patches per image
    or None, the rule) and a level policy (None: the codec pair's own, for a pair with a single level)."""

    rule_name: str
    budget: int | None
    rule: SelectionRule
    policy: LevelPolicy | None


@dataclass
class SweepConfig:
    """The grid: selection settings x level policies x gate thresholds, plus the references.

    The edge runs in fp32 (its numbers match its model card); servers, which
    run once per setting and codec, in bf16 autocast by default
    (``server_bf16=False`` for fp32).

    Attributes:
        edge, server: the models by their zoo names (``semcomm zoo``), unless :class:`Sweep` is given model objects.
        codec: the semantic codec pair by its registered name (``semcomm.rate.list_codecs()``; ``raw8``:
            raw 8-bit patches, format version 1).
        rules, budgets: selection rules by their names in :data:`~semcomm.edge.selection.SELECTION_RULES`:
            each rule that takes a budget at every budget (patches per image), the others
            (``threshold``, ``attention-sum``) once each (at ``importance_threshold`` and 0.97).
        levels: a :class:`~semcomm.rate.policies.FixedLevel` per entry, with every rule and budget
            (pairs with more than one level).
        policies: further level policies (e.g. :class:`~semcomm.rate.policies.IAQ`), each with the
            first fixed-budget rule at every budget of ``policy_budgets`` (default 64: IAQ chooses
            among all patches).
        gate_kind: the gate's uncertainty measure, a name of :data:`~semcomm.edge.gating.GATES`.
        thresholds: gate thresholds (``gate_kind``'s units); the edge alone (inf) is always added. None (the
            default): :data:`~semcomm.experiments.gates.DEFAULT_THRESHOLDS` scaled to the number of classes, or
            offload-rate targets where none of them keeps an image at the edge (:mod:`semcomm.experiments.gates`).
        offload_rates: instead of thresholds, target shares of the images offloaded (each in [0, 1]), each gate's
            threshold calibrated on the edge's logits of the swept images (no labels read).
        fusion: also report every point with the edge's prediction sent and fused.
        twins: an equal-budget random twin for every attention setting.
        codecs: whole-image reference codecs.
        full_images: the server on every patch of every image (raw 8-bit) as a reference.
        seed: seeds each setting's random draws (random selection rules, random twins) together with the
            setting's name (:func:`~semcomm.experiments.engines.task_seed`).
        shard_images: images per task: the sweep runs as tasks of one setting (or reference, or image codec) on
            this many images each (:meth:`Sweep.tasks`). Part of the configuration, not of the engine: every
            engine runs the same tasks, so the same numbers; a multiple of the server's batch (256) keeps its
            batches those of one pass over the split.
    """

    edge: str = "vit-edge-cifar10"
    server: str = "vit-server-cifar10"
    importance: str = "mean"
    codec: str = "latent-cifar10"
    rules: tuple[str, ...] = ("spread-top-k",)
    budgets: tuple[int, ...] = (16, 32, 64)
    levels: tuple[int, ...] = (3,)
    policies: tuple[LevelPolicy, ...] = (FixedLevel(4),)
    policy_budgets: tuple[int, ...] = (64,)
    gate_kind: str = "min_entropy"
    thresholds: tuple[float, ...] | None = None
    offload_rates: tuple[float, ...] | None = None
    importance_threshold: float = 1 / 64
    fusion: bool = True
    twins: bool = True
    codecs: tuple[ImageCodec, ...] = field(default_factory=lambda: tuple(standard_codecs()))  # WebP 10/40/75, JPEG 50
    full_images: bool = True
    seed: int = 0
    edge_bf16: bool = False
    server_bf16: bool = True
    shard_images: int = 1024

    def __post_init__(self):
        if isinstance(self.shard_images, bool) or not isinstance(self.shard_images, int) or self.shard_images < 1:
            raise ValueError(f"shard_images must be a positive number of images, got {self.shard_images!r}")
        CODECS.get(self.codec)  # an unknown name is refused here, listing the valid ones,
        GATES.resolve(self.gate_kind)  # as is an unknown gate, thresholds with offload rates or a rate outside [0, 1],
        check_gate_grid(self.thresholds, self.offload_rates)
        self.selections()  # an unknown selection rule or a budget below 1 patch

    def selections(self, rules: tuple[str, ...] | None = None,
                   budgets: tuple[int, ...] | None = None) -> list[tuple[str, int | None, SelectionRule]]:
        """(name, budget, rule) of every selection the sweep runs (of ``rules`` at ``budgets``, by default the
        config's), in the order of :func:`~semcomm.edge.selection.selection_rules`: each rule that takes a
        budget at every budget, then each other rule once."""
        rules, budgets = rules if rules is not None else self.rules, budgets if budgets is not None else self.budgets
        overrides = {"threshold": {"delta": round(self.importance_threshold, 4)}}
        chosen = []
        for name in sorted(rules, key=lambda name: not takes_budget(name)):  # stable: the order within each kind
            built = selection_rules([name], budgets, overrides)
            chosen += zip([name] * len(built), budgets if takes_budget(name) else [None], built)
        return chosen

    def settings(self, pair_levels: int) -> list[Setting]:
        """Every semantic setting the sweep runs with a codec pair of ``pair_levels`` levels: each selection at
        every fixed level of ``levels``, then the first rule with a budget at every budget of
        ``policy_budgets`` with every policy of ``policies``; a pair with one level (``raw8``) has no level
        to choose, and runs each selection once at its own."""
        if pair_levels == 1:
            return [Setting(*selection, None) for selection in self.selections()]
        fixed = [Setting(*selection, FixedLevel(m)) for selection in self.selections() for m in self.levels]
        first = tuple(name for name in self.rules if takes_budget(name))[:1]
        chosen = self.selections(first, self.policy_budgets) if self.policies else []
        return fixed + [Setting(*selection, policy) for selection in chosen for policy in self.policies]


class Sweep:
    """Runs a :class:`SweepConfig` on one data split.

    Args:
        edge, server: your own models (a :class:`~semcomm.models.ViTAdapter`, or for the server a backend) in
            place of the config's zoo names; the result names each by its ``name`` attribute, else its class name
            (:func:`~semcomm.models.adapter.model_name`), and the edge pass is not cached. The server classifies
            the references, the image codecs and what a pixel codec pair sends.
        cache_dir: where edge passes are cached (default: the user cache's ``edge/``).
        codec: a codec pair in place of the config's (e.g. a pair with another server).
        hint: the hint coder of the edge's prediction (fusion); default the zoo's for the config's edge. With
            fusion and your own ``edge`` it must be given (the zoo's codes another model's predictions): e.g.
            ``HintCoder.fit(predict_logits(edge, train.images, bf16=False))`` on training images
            (:class:`~semcomm.rate.hint.HintCoder`), or run with ``SweepConfig(fusion=False)``.
        device: the torch device the models and the codec's networks run on; None: zoo models on CUDA if available,
            else the CPU, models given as objects where they are (see :mod:`semcomm.core.devices`).
    """

    def __init__(self, config: SweepConfig, edge: ViTAdapter | None = None, server: ViTAdapter | None = None,
                 cache_dir: Path | None = None, progress: bool = True, codec: CodecPair | None = None,
                 hint: HintCoder | None = None, device: str | torch.device | None = None):
        self.config = config
        # the edge pass is cached only for zoo weights, which identify the model
        zoo = {card.name: card for card in list_checkpoints()}
        self._edge_weights = zoo[config.edge].weights_path if edge is None and config.edge in zoo else None
        self.edge_name = config.edge if edge is None else model_name(edge)
        self.server_name = config.server if server is None else model_name(server)
        if edge is not None and config.fusion and hint is None:
            raise ValueError(f"Sweep was given your own edge model ({self.edge_name}) with fusion on, but no hint "
                             f"coder (the zoo's, of {config.edge}, codes another model's predictions): pass "
                             "hint=HintCoder.fit(predict_logits(edge, train.images, bf16=False)) fitted on training "
                             "images (semcomm.rate.hint.HintCoder), or SweepConfig(fusion=False)")
        self.device = resolve_device(device)  # None: CUDA if available, else the CPU
        self.edge = _placed(edge, config.edge, self.device, device is not None)
        self.server = _placed(server, config.server, self.device, device is not None)
        if self.edge.image_size != self.server.image_size or self.edge.patch_size != self.server.patch_size:
            raise ValueError(f"edge ({self.edge.image_size}, patch {self.edge.patch_size}) and server "
                             f"({self.server.image_size}, patch {self.server.patch_size}) must share the patch grid")
        self.hint = hint or (load_hint(config.edge) if config.fusion else None)
        self.codec = codec or codec_pair(config.codec, self.server)
        if codec is None or device is not None:
            self.codec.to(self.device)
        self.full = codec_pair(FULL_IMAGES_CODEC, self.server)  # the reference: every patch as 8-bit pixels
        for pair in (self.codec, self.full):
            pair.bf16, pair.hint_coder = config.server_bf16, self.hint
        self.encoder = self._encoder(self.codec)
        self.full_encoder = self._encoder(self.full)
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir() / "edge"
        self.progress = progress
        self._held_masks = None  # (edge pass, setting index, (mask, twin)): see _masks

    def _encoder(self, codec: CodecPair) -> EdgeEncoder:
        """An edge encoder of ``codec`` that sends every image (the sweep gates afterwards)."""
        cfg = self.config
        return EdgeEncoder(self.edge, selection=TopK(1), gate=None, importance=cfg.importance, bf16=cfg.edge_bf16,
                           codec=codec)

    def edge_analysis(self, split: ImageSplit) -> EdgeAnalysis:
        """Edge logits, importance (all methods) and the codec's edge tokens for ``split``, cached by weights and data."""
        return edge_analysis(self.encoder, split, self._edge_weights, self.config.edge, self.config.edge_bf16,
                             self.cache_dir, self.progress)

    def key(self, split: ImageSplit) -> str:
        """Identifies the sweep's configuration, models (the codec pair's networks included) and images: the store
        key of its semantic tasks (:meth:`task_keys`)."""
        return plain_key(OUTCOME_FORMAT, asdict(self.config), [type(p).__name__ for p in self.config.policies],
                         self.edge_name, self.server_name, self.codec.name, self._digest(split, self.codec))

    def task_keys(self, split: ImageSplit, tasks: list[SweepTask]) -> dict[str, str]:
        """Each task's key in a task store: a semantic task's is the whole sweep's (:meth:`key`); the full-images
        reference's and an image codec's name only what they read (the images, edge and server, the hint, their
        own codec), so that a sweep of another codec pair or grid over the same images reuses them."""
        semantic = self.key(split)
        cfg = self.config
        reference = plain_key(OUTCOME_FORMAT, "reference", self.edge_name, self.server_name, cfg.edge_bf16,
                              cfg.server_bf16, cfg.shard_images, _hint_identity(self.hint),
                              self._digest(split, None))
        return {t.id: semantic if t.kind == "semantic" else plain_key(reference, t.kind, t.name) for t in tasks}

    def _digest(self, split: ImageSplit, codec: CodecPair | None) -> str:
        """SHA-256 of the images, labels, the edge's and server's weights and (given) ``codec``'s networks."""
        digest = hashlib.sha256()
        update_digest(digest, split.images)
        digest.update(split.labels.numpy().tobytes())
        modules = [self.edge, self.server] + ([v for v in vars(codec).values() if isinstance(v, torch.nn.Module)]
                                              if codec is not None else [])
        for model in modules:
            for name, tensor in (model.state_dict().items() if hasattr(model, "state_dict") else ()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def tasks(self, images: int, settings: list[Setting] | None = None) -> list[SweepTask]:
        """The sweep's tasks over ``images`` images, in the order of its points: the full images, each semantic
        setting (``settings``, default the config's), each image codec, each over every shard of
        ``shard_images`` images."""
        cfg = self.config
        settings = cfg.settings(self.codec.levels) if settings is None else settings
        shards = [(start, min(start + cfg.shard_images, images)) for start in range(0, images, cfg.shard_images)]
        groups = ([("full", 0, "full images")] if cfg.full_images else []) \
            + [("semantic", i, _setting_name(s)) for i, s in enumerate(settings)] \
            + [("codec", i, codec.name) for i, codec in enumerate(cfg.codecs)]
        return [SweepTask(kind, index, name, start, stop) for kind, index, name in groups for start, stop in shards]

    def run(self, split: ImageSplit, engine: str | LocalTasks | RayTasks | None = None,
            state_path: str | Path | None = None) -> SweepResult:
        """The sweep of ``split``: its tasks (:meth:`tasks`) on ``engine`` (``local``, the default: in this
        process; ``ray`` or a :class:`~semcomm.experiments.engines.RayTasks`: as Ray tasks; the same result),
        resumed from and saved to the JSON-lines file ``state_path`` (None: not saved).

        Tasks that failed on every try on Ray are left out: their settings have no points, ``notes`` and
        ``engine["missing"]`` name them, and a warning says so."""
        started = time.time()
        cfg = self.config
        labels = split.labels
        analysis = self.edge_analysis(split)
        edge_correct = analysis.logits.argmax(-1) == labels
        h, w = self.edge.image_size
        result = SweepResult(split.name, len(split), self.edge_name, self.server_name, cfg.importance,
                             raw_bits_per_image=3 * h * w * 8,
                             machine=f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
                             codec=cfg.codec, device=str(module_device(self.edge)))
        every = torch.ones(len(labels), dtype=torch.bool)
        gates, result.notes = sweep_gates(cfg.gate_kind, analysis.logits, cfg.thresholds, cfg.offload_rates)
        gated = [(None, every)] + [(gate, gate.offload(analysis.logits)) for gate in gates]

        settings = cfg.settings(self.codec.levels)
        tasks = self.tasks(len(split), settings)
        store = None if state_path is None else TaskStore(state_path, self.task_keys(split, tasks))
        self._held_masks = None
        try:
            run = run_tasks(_sweep_task, (self, split, analysis), tasks, engine, store, self.progress, "sweep tasks",
                            module_device(self.edge))
        finally:
            self._held_masks = None  # the last setting's masks
        outcomes = _joined(tasks, run.results)

        def add(tags: dict, outcome: dict, random_outcome: dict | None = None) -> None:
            """Points of one setting at every gate, without and (if measured) with fusion."""
            for fused in (False, True) if outcome.get("fused_correct") is not None else (False,):
                correct = outcome["fused_correct" if fused else "correct"]
                bits = outcome["fused_bits" if fused else "bits"]
                for gate, offload in gated:
                    point = _point(dict(tags, fusion=fused), gate, offload, edge_correct, correct, bits,
                                   outcome["patches"], result.raw_bits_per_image)
                    if random_outcome is not None:  # images kept at the edge are answered alike by both
                        twin = random_outcome["fused_correct" if fused else "correct"]
                        point.vs_random = paired_comparison(correct[offload], twin[offload])
                    result.points.append(point)

        nothing, no_bits = torch.zeros(len(labels), dtype=torch.bool), torch.zeros(len(labels))
        result.points.extend(
            _point(dict(family="reference", label="edge alone", scheme="edge", fusion=fused),
                   Gate(cfg.gate_kind, math.inf), nothing, edge_correct, edge_correct, no_bits, no_bits,
                   result.raw_bits_per_image)
            for fused in ((False, True) if self.hint is not None else (False,)))
        if ("full", 0) in outcomes:
            add(dict(family="reference", scheme=self.full.name, label="full images", curve="full images",
                     codec=FULL_IMAGES_CODEC), outcomes["full", 0])
        for i, (name, budget, rule, policy) in enumerate(settings):
            if ("semantic", i) not in outcomes:
                continue
            outcome = outcomes["semantic", i]
            twin_outcome = outcome.pop("twin", None)
            suffix = f" {policy.label}" if policy is not None else ""
            tags = dict(codec=cfg.codec, **rule_fields(name, budget, rule), **policy_fields(policy))
            add(dict(tags, family="semantic", scheme=self.codec.name, label=rule.label + suffix, curve=name + suffix),
                outcome, twin_outcome)
            if twin_outcome is not None:
                add(dict(tags, family="random", scheme=f"random {self.codec.name}",
                         label=f"random (as {rule.label}{suffix})", curve=f"random as {name}{suffix}"), twin_outcome)
        for i, codec in enumerate(cfg.codecs):
            if ("codec", i) in outcomes:
                add(dict(family="codec", scheme=codec.format, label=codec.name, curve=codec.format, codec=codec.format,
                         quality=codec.quality), outcomes["codec", i])
        result.frontiers = pareto_frontiers(result.points)
        mark_frontier_points(result.points, result.frontiers)
        result.comparison = compare_frontiers(result)
        result.comparison_note = missing_comparison(result)
        result.engine = run.metadata()
        if run.missing:
            left_out = list(dict.fromkeys(t.name for t in tasks if t.id in run.failures))
            note = run.missing_note(", ".join(left_out), store)
            result.notes.append(note)
            warnings.warn(note, stacklevel=2)
        result.seconds = time.time() - started
        return result

    def _task(self, split: ImageSplit, analysis: EdgeAnalysis, task: SweepTask) -> dict:
        """What one task measures (:func:`_outcome_data`): its images' outcome at its setting, reference or
        image codec; a semantic setting's random twin under ``twin``. A setting's masks are drawn over every image
        of the split with a generator of its own (:func:`~semcomm.experiments.engines.task_seed`), then cut to
        the task's images: the same whatever the shards, the engine or the order. Only the task's own images are
        read (for a split on disk, from its shards) and, for a pass without tokens, their tokens computed."""
        cfg = self.config
        part = slice(task.start, task.stop)
        images = split.images[part]
        hidden = self.shard_hidden(analysis, images, task.start, task.stop) if task.kind == "semantic" else None
        shard = _Shard(images, split.labels[part], analysis.logits[part],
                       {k: v[part] for k, v in analysis.importance.items()}, hidden,
                       None if self.hint is None else self.hint.symbols(analysis.logits[part]))
        if task.kind == "full":
            full = torch.ones(len(shard.labels), self.edge.num_patches, dtype=torch.bool)
            return _outcome_data(self._outcome(self.full_encoder, shard, full, None))
        if task.kind == "codec":
            codec = cfg.codecs[task.index]
            files, logits = image_codec_pass(codec, shard.images, self.server, cfg.server_bf16)
            return _outcome_data(self._measured(codec, files, logits, shard.labels,
                                                torch.full((len(shard.labels),), math.nan), shard.symbols))
        setting = cfg.settings(self.codec.levels)[task.index]
        mask, twin = self._masks(analysis, task.index, setting)
        policy = setting.policy
        data = _outcome_data(self._outcome(self.encoder, shard, mask[part], policy))
        if twin is not None:
            data["twin"] = _outcome_data(self._outcome(self.encoder, shard, twin[part], policy))
        return data

    def _masks(self, analysis: EdgeAnalysis, index: int,
               setting: Setting) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Semantic setting ``index`` (``setting``)'s masks over every image of the pass (B x N bool) and its random twin's (None
        without twins or where the setting sends every patch, whose twin would send the same strings), drawn from
        the setting's own seed; remembered for the last setting asked (its shards' tasks run one after the other,
        here and often on the same Ray worker)."""
        held = self._held_masks
        if held is not None and held[0] is analysis and held[1] == index:
            return held[2]
        cfg = self.config
        generator = torch.Generator().manual_seed(task_seed(cfg.seed, _setting_name(setting)))
        mask = setting.rule(analysis.importance[cfg.importance], self.edge.grid_size, generator)
        twin = random_like(mask, generator) if cfg.twins and not mask.all() else None
        self._held_masks = (analysis, index, (mask, twin))
        return mask, twin

    def shard_hidden(self, analysis: EdgeAnalysis, images: torch.Tensor, start: int, stop: int) -> torch.Tensor | None:
        """The edge tokens the codec pair reads (B x N x D) of images ``start``..``stop``-1, whose pixels are
        ``images`` (B x 3 x H x W uint8): cut from the edge pass where it holds them, else (a split on disk) computed
        by the edge from these images alone, in its batches from ``start`` (the batches of one pass over the split
        where ``start`` is a multiple of the edge's batch); None for a pair that reads no tokens."""
        if analysis.hidden is not None:
            return analysis.hidden[start:stop]
        if self.codec.tap is None:
            return None
        return self.encoder.analyze(images).hidden

    def _outcome(self, encoder: EdgeEncoder, shard: "_Shard", mask: torch.Tensor, policy: LevelPolicy | None) -> dict:
        """Correctness, bits and patch counts of every image of ``shard`` sent by ``encoder`` with ``mask``
        (B x N) at the levels of ``policy`` (None: its codec's own)."""
        codec = encoder.codec
        encoder.policy, encoder.hint = codec.edge_policy(policy), None
        sent = encoder.transmit(shard.images, shard.logits, mask, shard.importance[self.config.importance],
                                shard.hidden)
        logits = codec.classify(codec.decompress(sent.strings))
        return self._measured(codec, sent.strings, logits, shard.labels, (sent.level > 0).sum(1).float(),
                              shard.symbols)

    def _measured(self, codec: Codec, strings: list[bytes], logits: torch.Tensor, labels: torch.Tensor,
                  patches: torch.Tensor, symbols: torch.Tensor | None) -> dict:
        """Which of B images the server's B x C ``logits`` get right, and each string's bits; with the edge's
        hint ``symbols`` (B x C), also fused with the edge's prediction and the bits of the strings with it."""
        outcome = dict(correct=logits.argmax(-1) == labels, bits=_bits(strings), patches=patches, fused_correct=None)
        if symbols is not None:
            outcome["fused_correct"] = fuse(logits, self.hint.log_probs(symbols)).argmax(-1) == labels
            outcome["fused_bits"] = _bits([with_hint(codec, s, self.hint, symbols[i]) for i, s in enumerate(strings)])
        return outcome


def _hint_identity(hint: HintCoder | None) -> list | None:
    """What a hint coder's symbols, bits and fusion depend on, as plain data (None without fusion)."""
    return None if hint is None else [hint.counts.tolist(), hint.step, hint.weight]


@dataclass(frozen=True)
class SweepTask:
    """One task of a sweep: the full-images reference (``full``), semantic setting ``index`` (``semantic``) or
    image codec ``index`` (``codec``) on images ``start``..``stop``-1; ``name`` names the setting."""

    kind: str
    index: int
    name: str
    start: int
    stop: int

    @property
    def id(self) -> str:
        return f"{self.kind} {self.index} {self.name} [{self.start}:{self.stop}]"


class _Shard(NamedTuple):
    """A task's share of the split and of its edge pass: B images and labels, B x C edge logits, importance by
    method (B x N each), tokens (B x N x D or None) and hint symbols (B x C or None)."""

    images: torch.Tensor
    labels: torch.Tensor
    logits: torch.Tensor
    importance: dict
    hidden: torch.Tensor | None
    symbols: torch.Tensor | None


def _sweep_task(context: tuple, task: SweepTask) -> dict:
    """The task function of every engine: ``context`` is (sweep, split, edge pass)."""
    sweep, split, analysis = context
    return sweep._task(split, analysis, task)


def _setting_name(setting: Setting) -> str:
    """A semantic setting's name, e.g. ``spread-top-k 16 L3`` (its random draws are seeded from it)."""
    name, budget, _, policy = setting
    return " ".join(str(part) for part in (name, budget, None if policy is None else policy.label) if part is not None)


_FIELDS = {"correct": torch.bool, "bits": torch.float32, "patches": torch.float32, "fused_correct": torch.bool,
           "fused_bits": torch.float32}


def _outcome_data(outcome: dict) -> dict:
    """An outcome of B images (tensors, :meth:`Sweep._measured`) as plain JSON data: each field packed
    (:func:`_packed`; None where not measured), so that a sweep holds a few bytes per image and setting."""
    return {key: None if outcome.get(key) is None else _packed(outcome[key].to(dtype))
            for key, dtype in _FIELDS.items()}


def _packed(values: torch.Tensor) -> str:
    """B values (bool: a bit each; float32: 4 bytes each, little-endian) as base64 text."""
    array = values.numpy()
    raw = np.packbits(array) if array.dtype == bool else array.astype("<f4")
    return base64.b64encode(raw.tobytes()).decode("ascii")


def _unpacked(text: str, dtype: torch.dtype, count: int) -> torch.Tensor:
    """The ``count`` values :func:`_packed` wrote as ``text``, as a tensor of ``dtype``."""
    raw = np.frombuffer(base64.b64decode(text), dtype=np.uint8)
    if dtype == torch.bool:
        return torch.from_numpy(np.unpackbits(raw, count=count).astype(bool))
    return torch.from_numpy(raw.view("<f4").astype(np.float32))


def _joined(tasks: list[SweepTask], results: dict[str, dict]) -> dict[tuple[str, int], dict]:
    """(kind, index) -> the outcome over all images (tensors, shards joined in order) of every setting whose
    shards all finished; a semantic setting's twin under ``twin``."""
    groups: dict[tuple[str, int], list[SweepTask]] = {}
    for task in tasks:
        groups.setdefault((task.kind, task.index), []).append(task)

    def join(members: list[SweepTask], parts: list[dict]) -> dict:
        return {key: None if parts[0][key] is None else
                torch.cat([_unpacked(p[key], dtype, t.stop - t.start) for t, p in zip(members, parts)])
                for key, dtype in _FIELDS.items()}

    joined = {}
    for group, members in groups.items():
        if all(t.id in results for t in members):
            parts = [results[t.id] for t in members]
            joined[group] = join(members, parts)
            if parts[0].get("twin") is not None:
                joined[group]["twin"] = join(members, [p["twin"] for p in parts])
    return joined


def _bits(strings: list[bytes]) -> torch.Tensor:
    """B float32: the bits of each string."""
    return torch.tensor([8 * len(s) for s in strings], dtype=torch.float32)


def _point(tags: dict, gate: Gate | None, offload, edge_correct, server_correct, bits, patches,
           raw_bits: int) -> OperatingPoint:
    """One operating point: ``tags`` describe the setting; the gate (None: every image sent) picks the B images
    (``offload``) that take the server's answer (``server_correct``) and cost ``bits``, the rest the edge's."""
    correct = torch.where(offload, server_correct, edge_correct)
    sent_bits = torch.where(offload, bits, torch.zeros_like(bits))
    n_sent = int(offload.sum())
    return OperatingPoint(
        accuracy=float(correct.float().mean()),
        offload_rate=n_sent / len(offload),
        bits_per_image=float(sent_bits.mean()),
        bits_per_offloaded=float(bits[offload].mean()) if n_sent else math.nan,
        raw_fraction=float(sent_bits.mean()) / raw_bits,
        patches_per_offloaded=float(patches[offload].float().mean()) if n_sent else math.nan,
        **gate_fields(gate),
        **tags,
    )


def _placed(model: ViTAdapter | None, name: str, device: torch.device, move: bool) -> ViTAdapter:
    """``model``, moved to ``device`` when ``move``; or the zoo model ``name`` on ``device``."""
    if model is None:
        return create_model(name).to(device)
    return model.to(device) if move else model
