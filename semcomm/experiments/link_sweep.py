"""Accuracy against link quality and channel uses: the semantic codec and image codecs over one link.

For every scheme setting, every image is encoded once (as if offloaded) and
carried over the link at each channel condition (:class:`LinkSpec`); what
arrives is classified (edge hint fused, lost images answered by the edge).
A gate threshold then only decides which images use that outcome and cost
their channel uses, and which keep the edge's answer (0 uses): one link pass
per (setting, condition) serves every threshold, exactly as in the
link-less :class:`~semcomm.experiments.sweep.Sweep` (over the ``ideal`` link the
accuracies equal the link-less sweep's with fusion; tested).

Schemes:

* the semantic codec (a codec pair) at each selection setting and framing:
  ``packets``, independently decodable packets with a protected header
  (:class:`~semcomm.wire.packets.Packetizer`), or ``whole``, the string as one
  packet like an image codec's file (:class:`~semcomm.wire.packets.WholeString`);
  both are points of the codec's frontier, labelled by framing;
* image codecs (WebP, JPEG) of whole images: the edge hint and the file as
  one packet spanning as many link blocks as it needs; it arrives whole or
  is lost (then the edge answers);
* a JSCC pair trained through the channel (``jscc``: :class:`~semcomm.transport.jscc_link.JSCCLink`), its
  spread-top-k patches as analog symbols at each of ``jscc_budgets``, its side information on the simulated
  control channel (``awgn`` -> AWGN, ``rayleigh`` -> Rayleigh block fading, ``rayleigh-fast`` -> fast fading,
  the spec's CSI; ``ideal``: noise-free);
* the edge alone (0 channel uses).

The results, their frontiers and the comparison are :mod:`semcomm.experiments.link_results`.

The server classifies each setting's strings once as sent; at every condition only
the images that arrived damaged or in part are classified again (exact: an intact
arrival is the sent string).

The work is cut into tasks, one per (scheme setting, condition) and shard of images, with one task function
whatever the engine: in this process one after the other, or as Ray tasks (:mod:`semcomm.experiments.engines`),
with the same result. By default (``shard_images=None``) a task covers every image of the split, which must then
be in memory; with ``shard_images`` a task covers images [start, stop) of consecutive shards of that many images:
it reads only its shard's images (from disk for a :class:`~semcomm.data.ShardedImages` split) and, where the edge
pass holds no tokens, computes its shard's (:meth:`Sweep.shard_hidden
<semcomm.experiments.sweep.Sweep.shard_hidden>`), and the shards' outcomes are joined in image order before the
points are computed. A task draws the channel from the run's ``seed`` alone when unsharded, else from the seed
and its shard's images (:func:`~semcomm.experiments.engines.task_seed`): every setting meets the same draws at a
condition (paired comparisons), whatever the engine or order; over the ``ideal`` link a sharded run equals the
unsharded one (tested), elsewhere its draws differ from it. A run can resume: every finished task is saved in
``state_path`` (JSON lines) under a key of the configuration and the images.
"""
from __future__ import annotations

import hashlib
import math
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import torch

from channels import clopper_pearson
from semcomm.core.devices import module_device
from semcomm.data import ImageSplit, ShardedImages, update_digest
from semcomm.edge.gating import GATES, Gate
from semcomm.edge.encoder import Transmission
from semcomm.edge.selection import SELECTION_RULES, SelectionRule, SpreadTopK, takes_budget
from semcomm.experiments.codecs import image_codec_pass, with_hint
from semcomm.experiments.engines import LocalTasks, RayTasks, TaskStore, plain_key, run_tasks, task_seed
from semcomm.experiments.gates import check_gate_grid, sweep_gates
from semcomm.experiments.link_results import LinkPoint, LinkSweepResult, compare_at, mark_link_frontiers
from semcomm.experiments.settings import gate_fields
from semcomm.experiments.sweep import Sweep, SweepConfig
from semcomm.rate.hint import fuse
from semcomm.rate.image_codecs import ImageCodec, standard_codecs
from semcomm.rate.packetize import Packetizer, WholeString
from semcomm.rate.policies import FixedLevel, LevelPolicy
from semcomm.transport.jscc_link import JSCCLink
from semcomm.transport.links import LinkSpec
from semcomm.transport.over_link import over_link

FRAMINGS = ("packets", "whole")
JSCC_CHANNELS = {"ideal": "awgn", "awgn": "awgn", "rayleigh": "block", "rayleigh-fast": "fast"}  # link -> JSCC kind


@dataclass
class LinkSweepConfig:
    """The grid: link x conditions x (selection settings, image codecs) x gate thresholds.

    Attributes:
        link: the link (channel, modulation, code).
        conditions: channel conditions (Es/N0 in dB on SNR channels, a probability on
            ``bsc`` / ``bec`` / ``gilbert-elliott``; one value for ``ideal``).
        settings: (rule, patches, level) of the semantic codec; rule: a selection rule that takes a budget
            (``spread-top-k``, ``top-k``, ...).
        policies: level policies (e.g. :class:`~semcomm.rate.policies.IAQ` at a few payload budgets: the
            settings of the error-free frontier), each with spread-top-k at every budget of ``policy_budgets``.
        policy_budgets: patches the policies choose among (default 64: every patch).
        jscc: a JSCC pair (zoo name or card path, :meth:`JSCCLink.from_zoo
            <semcomm.transport.jscc_link.JSCCLink.from_zoo>`) to sweep as well, or None.
        jscc_budgets: its patches per image (spread-top-k).
        gate_kind: the gate's uncertainty measure (a name of :data:`~semcomm.edge.gating.GATES`).
        thresholds: gate thresholds; the edge alone is always a point. None (the default): as in the link-less
            sweep, thresholds scaled to the number of classes (:mod:`semcomm.experiments.gates`).
        offload_rates: instead of thresholds, target shares of the images offloaded, calibrated on the edge's
            logits.
        codecs: whole-image codecs (default WebP 10/40/75 and JPEG 50).
        framings: how the semantic codec's strings are framed: ``packets`` and/or ``whole``.
        packet_bytes: data packet size (``packets`` framing); default one link block's payload.
        header_copies: copies of each image's header packet.
        min_arrived: share of an image's sent patches that must arrive for the server to answer
            (else the edge does; see :func:`~semcomm.transport.over_link.over_link`). Half is the default:
            measured at the cliff, it gains 0.4 to 1.1 points over 0 and costs nothing above it.
        seed: seeds the channel's random draws (module docstring).
        shard_images: images per task: each (setting, condition) runs as tasks over consecutive shards of this
            many images, each holding one shard's strings (module docstring); needed for a split whose images
            stay on disk (:class:`~semcomm.data.ShardedImages`). None (the default): one task over every image
            of a split in memory, with the draws of earlier versions. Part of the configuration, not of the engine.
    """

    link: LinkSpec = field(default_factory=LinkSpec)
    conditions: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 10.0)
    edge: str = "vit-edge-cifar10"
    server: str = "vit-server-cifar10"
    codec: str = "latent-cifar10"
    settings: tuple[tuple[str, int, int], ...] = (("spread-top-k", 16, 3), ("spread-top-k", 32, 3),
                                                  ("spread-top-k", 64, 3), ("spread-top-k", 64, 4))
    policies: tuple[LevelPolicy, ...] = ()
    policy_budgets: tuple[int, ...] = (64,)
    jscc: str | None = None
    jscc_budgets: tuple[int, ...] = (16, 32, 64)
    gate_kind: str = "min_entropy"
    thresholds: tuple[float, ...] | None = None
    offload_rates: tuple[float, ...] | None = None
    codecs: tuple[ImageCodec, ...] = field(default_factory=lambda: tuple(standard_codecs()))
    framings: tuple[str, ...] = FRAMINGS
    packet_bytes: int | None = None
    header_copies: int = 2
    min_arrived: float = 0.5
    seed: int = 0
    shard_images: int | None = None

    def __post_init__(self):
        if not self.conditions:
            raise ValueError("give at least one channel condition")
        for rule, k, level in self.settings:
            if not takes_budget(rule):  # an unknown name is refused here, listing the valid ones
                budgeted = [name for name in SELECTION_RULES if takes_budget(name)]
                raise ValueError(f"selection rule {rule!r} in settings keeps no fixed number of patches; choose "
                                 f"from {', '.join(budgeted)}")
        for policy in self.policies:
            if not isinstance(policy, LevelPolicy):
                raise TypeError(f"policies must be level policies (e.g. IAQ(600)), got {type(policy).__name__}")
        for name in ("policy_budgets", "jscc_budgets"):
            if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in getattr(self, name)):
                raise ValueError(f"{name} must be positive numbers of patches, got {getattr(self, name)!r}")
        if self.jscc is not None and self.link.channel not in JSCC_CHANNELS:
            raise ValueError(f"a JSCC pair crosses {', '.join(JSCC_CHANNELS)}, not {self.link.channel!r}")
        GATES.resolve(self.gate_kind)  # an unknown name is refused here, listing the valid ones
        check_gate_grid(self.thresholds, self.offload_rates)
        if not self.framings or set(self.framings) - set(FRAMINGS):
            raise ValueError(f"framings must be some of {', '.join(FRAMINGS)}, got {self.framings!r}")
        for name in ("header_copies",) + tuple(n for n in ("packet_bytes", "shard_images")
                                               if getattr(self, n) is not None):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= self.min_arrived <= 1:
            raise ValueError(f"min_arrived must be a share in [0, 1], got {self.min_arrived!r}")
        for condition in self.conditions:
            self.link.transport(condition)  # names a bad SNR or probability before anything runs

    def key(self, split: ImageSplit) -> str:
        """Identifies the configuration and the images (for resuming)."""
        digest = hashlib.sha256()
        update_digest(digest, split.images)
        digest.update(split.labels.numpy().tobytes())
        fields = asdict(self)
        if self.shard_images is None:  # unsharded: the key of earlier versions, whose task files still resume
            del fields["shard_images"]
        return plain_key(fields, [type(p).__name__ for p in self.policies], digest.hexdigest())


class LinkSweep:
    """Runs a :class:`LinkSweepConfig` on one data split (``sweep``: a link-less sweep whose models, codec pair
    and hint coder to use; default one built from the config)."""

    def __init__(self, config: LinkSweepConfig, progress: bool = True, sweep: Sweep | None = None,
                 device: str | torch.device | None = None):
        self.config = config
        self.progress = progress
        self.sweep = sweep or Sweep(SweepConfig(edge=config.edge, server=config.server, codec=config.codec,
                                                codecs=(), fusion=True), progress=progress, device=device)
        self.codec = self.sweep.codec
        self._jscc_cache = (None, None, None, None)  # (pair, channel, CSI), its link, (split, shard), source values
        self._encoded = None  # (split, edge pass, config, unit, shard, the unit's strings there): see _once
        if self.sweep.hint is None:
            raise ValueError("the link sweep needs the edge's hint coder (a sweep with fusion)")
        self.codec.hint_coder = self.sweep.hint
        for _, _, level in self.semantic_settings():  # a pair whose strings carry no levels or no hint refuses here
            self.codec.edge_policy(_policy(level), self.sweep.hint)

    def semantic_settings(self) -> list[tuple]:
        """(rule, patches, level or level policy) of every semantic setting: the fixed-level ones, then each
        policy with spread-top-k at every policy budget."""
        cfg = self.config
        return [*cfg.settings, *(("spread-top-k", k, policy) for k in cfg.policy_budgets for policy in cfg.policies)]

    def units(self) -> list[tuple[str, Any]]:
        """(kind, setting) of every unit, in the order of the points: each framing with each semantic setting,
        each image codec (``codec``), each JSCC budget (``jscc``)."""
        cfg = self.config
        return ([(framing, s) for framing in cfg.framings for s in self.semantic_settings()]
                + [("codec", c) for c in cfg.codecs]
                + [("jscc", k) for k in (cfg.jscc_budgets if cfg.jscc is not None else ())])

    def tasks(self, images: int | None = None) -> list[LinkTask]:
        """The sweep's tasks over ``images`` images: each unit (:meth:`units`) at each condition, for each shard
        of ``shard_images`` images in turn (a shard's strings serve all its tasks before the next shard's are
        made). Unsharded (``shard_images`` None, or ``images`` not given): one task per unit and condition."""
        cfg = self.config
        if cfg.shard_images is None or images is None:
            shards = [None]
        else:
            shards = [(start, min(start + cfg.shard_images, images)) for start in range(0, images, cfg.shard_images)]
        return [LinkTask(kind, setting, condition, shard) for shard in shards for kind, setting in self.units()
                for condition in cfg.conditions]

    def run(self, split: ImageSplit, state_path: str | Path | None = None,
            engine: str | LocalTasks | RayTasks | None = None) -> LinkSweepResult:
        """The link sweep of ``split``: its tasks (:meth:`tasks`) on ``engine`` (``local``, the default: in this
        process; ``ray`` or a :class:`~semcomm.experiments.engines.RayTasks`: as Ray tasks; the same result),
        resumed from and saved to the JSON-lines file ``state_path`` (None: not saved).

        Every task draws the channel from the run's ``seed`` (and its shard's images when sharded): each setting
        meets the same channel draws at a condition (paired comparisons), whatever the engine or order. A setting
        with a task that failed on every try on Ray is left out at that condition: ``notes`` and
        ``engine["missing"]`` name it, and a warning says so. A split whose images stay on disk
        (:class:`~semcomm.data.ShardedImages`) needs ``shard_images``."""
        started = time.time()
        cfg, labels = self.config, split.labels
        if cfg.shard_images is None and isinstance(split.images, ShardedImages):
            raise ValueError(f"the {len(split):,} images of {split.name} stay on disk, and an unsharded link sweep "
                             "reads them all at once: run it in shards, e.g. LinkSweepConfig(shard_images=1024) "
                             "(--shard-images 1024 on the command line)")
        analysis = self.sweep.edge_analysis(split)
        edge_correct = analysis.logits.argmax(-1) == labels
        if cfg.jscc is not None:
            self.jscc_link  # built here, so the tasks' context carries it
        tasks = self.tasks(len(split))
        store = None if state_path is None else TaskStore(state_path, cfg.key(split))
        self._encoded = None
        try:
            run = run_tasks(_link_task, (self, split, analysis), tasks, engine, store, self.progress, "link sweep",
                            module_device(self.sweep.edge))
        finally:
            self._encoded = None  # the last unit's strings
            self._jscc_cache = self._jscc_cache[:2] + (None, None)  # the last shard's source values
        outcomes = _joined(tasks, run.results)
        result = LinkSweepResult(split.name, len(split), cfg.link.label, cfg.link.condition_name,
                                 float(edge_correct.float().mean()),
                                 machine=f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
                                 device=str(module_device(self.sweep.edge)))
        every = torch.ones(len(labels), dtype=torch.bool)
        gates, result.notes = sweep_gates(cfg.gate_kind, analysis.logits, cfg.thresholds, cfg.offload_rates)
        gated = [(None, every)] + [(gate, gate.offload(analysis.logits)) for gate in gates]
        units = self.units()
        tags = [self._tags(kind, setting) for kind, setting in units]
        for condition in cfg.conditions:
            result.points.append(LinkPoint(scheme="edge", label="edge alone", condition=condition,
                                           accuracy=float(edge_correct.float().mean()), offload_rate=0.0,
                                           interval=list(clopper_pearson(int(edge_correct.sum()), len(labels), 0.95)),
                                           channel_uses_per_image=0.0, bits_per_image=0.0, packet_loss=0.0,
                                           images_lost=0.0, family="reference",
                                           **gate_fields(Gate(cfg.gate_kind, math.inf))))
            for (kind, setting), unit_tags in zip(units, tags):
                outcome = outcomes.get(_unit_key(kind, setting, condition))
                if outcome is None:  # a task of it failed (Ray)
                    continue
                for gate, offload in gated:
                    result.points.append(_point(unit_tags, outcome, offload, edge_correct, condition, gate))
        mark_link_frontiers(result.points)
        ours = (self.codec.name,) + ((self.jscc_link.name,) if cfg.jscc is not None else ())
        result.comparison = [compare_at(result, ours, c) for c in cfg.conditions]
        result.engine = run.metadata()
        if run.missing:
            left_out = dict.fromkeys(t.unit_id for t in tasks if t.id in run.failures)
            note = run.missing_note(", ".join(left_out), store)
            result.notes.append(note)
            warnings.warn(note, stacklevel=2)
        result.seconds = time.time() - started
        return result

    def _once(self, split: ImageSplit, analysis, unit: str, shard: tuple[int, int], compute):
        """``compute()`` (a unit's strings of the images ``shard`` = (start, stop), which serve every condition),
        remembered for the last unit and shard only: a unit's conditions are separate tasks, run one after the
        other here and often on the same Ray worker."""
        held = self._encoded
        if (held is not None and held[0] is split and held[1] is analysis and held[2] is self.config
                and held[3:5] == (unit, shard)):
            return held[5]
        self._encoded = None  # the last unit's strings are let go before this one's are made
        value = compute()
        self._encoded = (split, analysis, self.config, unit, shard, value)
        return value

    def _shard(self, split: ImageSplit, shard: tuple[int, int] | None) -> tuple[tuple[int, int], slice, int]:
        """A task's images: (start, stop), the slice of them, and the seed of its channel draws (``shard`` None:
        every image, drawn from the run's seed alone, as unsharded runs always were)."""
        start, stop = shard if shard is not None else (0, len(split))
        seed = self.config.seed if shard is None else task_seed(self.config.seed, f"shard {start}:{stop}")
        return (start, stop), slice(start, stop), seed

    def _tags(self, kind: str, setting: tuple[str, int, int] | ImageCodec) -> dict:
        """The fields of a unit's points that describe its setting (scheme, label, rule, budget, level, ...);
        ``kind``: the semantic codec's framing, or ``codec`` for an image codec."""
        if kind == "codec":
            return dict(scheme=setting.format, label=setting.name, family="codec", codec=setting.format,
                        quality=setting.quality)
        if kind == "jscc":
            name = self.jscc_link.name
            return dict(scheme=name, label=f"{name} spread-top-k {setting}", family="analog", rule="spread-top-k",
                        budget=setting, codec=name)
        rule_name, k, level = setting
        policy = _policy(level)
        label = f"{_rule(rule_name, k).label} {policy.label}" + (" whole" if kind == "whole" else "")
        fixed = isinstance(level, int)
        return dict(scheme=self.codec.name, label=label, family="semantic", rule=rule_name, budget=k,
                    level=level if fixed else None, policy=None if fixed else policy.label, framing=kind,
                    codec=self.config.codec)

    def _semantic(self, split, analysis, setting, conditions, whole: bool,
                  shard: tuple[int, int] | None = None) -> list[dict]:
        """Per condition, the outcome of carrying one setting's strings of the images of ``shard`` (start, stop;
        None: every image) over the link (``whole``: as one packet)."""
        cfg = self.config
        rule_name, k, level = setting
        encoder = self.sweep.encoder
        encoder.policy, encoder.hint = self.codec.edge_policy(_policy(level), self.sweep.hint), self.sweep.hint
        importance = analysis.importance[self.sweep.config.importance]
        (start, stop), part, seed = self._shard(split, shard)
        labels = split.labels[part]

        def encoded():
            # the masks of every image, cut to the shard's: the same whatever the shards
            mask = _rule(rule_name, k)(importance, self.sweep.edge.grid_size, torch.Generator().manual_seed(cfg.seed))
            images = split.images[part]
            sent = encoder.transmit(images, analysis.logits[part], mask[part], importance[part],
                                    self.sweep.shard_hidden(analysis, images, start, stop))
            offloaded = sent.offloaded.nonzero().flatten().tolist()
            intact_logits = torch.full((len(sent.strings), self.codec.num_classes), float("nan"))
            intact_logits[offloaded] = self.codec.classify(self.codec.decompress([sent.strings[i] for i in offloaded]))
            return sent, intact_logits

        sent, intact_logits = self._once(split, analysis, f"semantic|{' '.join(map(str, setting))}", (start, stop),
                                         encoded)
        outcomes = []
        for condition in conditions:
            transport, snr = cfg.link.transport(condition)
            packet_bytes = cfg.packet_bytes or transport.link.payload_bits // 8
            framing = (WholeString(self.codec) if whole
                       else Packetizer(self.codec, packet_bytes=packet_bytes, header_copies=cfg.header_copies))
            out = over_link(sent, self.codec, transport.with_framing(framing), snr_db=snr,
                            generator=torch.Generator().manual_seed(seed), min_arrived=cfg.min_arrived,
                            intact_logits=intact_logits)
            outcomes.append(dict(correct=(out.predictions == labels).tolist(), uses=out.channel_uses.tolist(),
                                 bits=out.link_bits.tolist(), packets_lost=out.packets_lost,
                                 packets_sent=out.packets_sent, lost=out.lost.tolist()))
        return outcomes

    @property
    def jscc_link(self) -> JSCCLink:
        """The configured JSCC pair over the sweep's channel (built once per pair, channel and CSI)."""
        csi = "estimated" if self.config.link.csi == "estimated" else "perfect"
        key = (self.config.jscc, JSCC_CHANNELS[self.config.link.channel], csi)
        if self._jscc_cache[0] != key:
            self._jscc_cache = (key, JSCCLink.from_zoo(*key).to(self.sweep.device), None, None)
        return self._jscc_cache[1]

    def _jscc(self, split, analysis, k: int, conditions, shard: tuple[int, int] | None = None) -> list[dict]:
        """Per condition, the outcome of the JSCC pair sending the ``k`` spread-top-k patches of every image of
        ``shard`` (start, stop; None: every image)."""
        link = self.jscc_link
        span, part, seed = self._shard(split, shard)
        key, _, held, values = self._jscc_cache
        if held is None or held[0] is not split or held[1] != span:  # the shard's source values, computed once
            self._jscc_cache = (key, link, None, None)  # the last shard's are let go first
            values = link.source(self.sweep.edge, split.images[part])
            self._jscc_cache = (key, link, (split, span), values)
        importance = analysis.importance[self.sweep.config.importance]
        mask = SpreadTopK(k)(importance, self.sweep.edge.grid_size)[part]
        labels = split.labels[part]
        every = torch.ones(len(labels), dtype=torch.bool)
        sent = Transmission(analysis.logits[part], every, mask, [None] * len(labels), mask.long())
        outcomes = []
        for condition in conditions:
            noise_free = self.config.link.channel == "ideal"
            with warnings.catch_warnings():
                if noise_free:  # the noise-free reference lies outside any trained range by design
                    warnings.simplefilter("ignore")
                out = link.run(sent, values, math.inf if noise_free else condition, generator=seed)
            outcomes.append(dict(correct=(out.predictions == labels).tolist(), uses=out.channel_uses.tolist(),
                                 bits=out.link_bits.tolist(), packets_lost=0, packets_sent=0, lost=out.lost.tolist()))
        return outcomes

    def _image_codec(self, split, analysis, codec: ImageCodec, conditions,
                     shard: tuple[int, int] | None = None) -> list[dict]:
        """Per condition, the outcome of sending the hint and file of each image of ``shard`` (start, stop; None:
        every image) as one packet over the link."""
        cfg, hint = self.config, self.sweep.hint
        span, part, seed = self._shard(split, shard)
        labels, edge_logits = split.labels[part], analysis.logits[part]
        symbols = hint.symbols(edge_logits)
        files, logits = self._once(split, analysis, f"codec|{codec.name}", span, lambda: image_codec_pass(
            codec, split.images[part], self.sweep.server, self.sweep.config.server_bf16))
        server_correct = fuse(logits, hint.log_probs(symbols)).argmax(-1) == labels
        edge_correct = edge_logits.argmax(-1) == labels
        packets = [[with_hint(codec, f, hint, symbols[i])] for i, f in enumerate(files)]
        outcomes = []
        for condition in conditions:
            transport, snr = cfg.link.transport(condition)
            delivery = transport.send(packets, snr_db=snr, generator=torch.Generator().manual_seed(seed))
            arrived = torch.tensor([got[0] == sent[0] for got, sent in zip(delivery.packets, packets)])
            # a packet that passed the link's CRCs with wrong bytes (an undetected error) is dropped here too
            correct = torch.where(arrived, server_correct, edge_correct)
            outcomes.append(dict(correct=correct.tolist(), uses=delivery.channel_uses.tolist(),
                                 bits=[8 * len(p[0]) for p in packets], packets_lost=int((~arrived).sum()),
                                 packets_sent=len(packets), lost=(~arrived).tolist()))
        return outcomes


def _policy(level: int | LevelPolicy) -> LevelPolicy:
    """A setting's level policy: every selected patch at a fixed level, or the policy itself."""
    return FixedLevel(level) if isinstance(level, int) else level


def _rule(name: str, k: int) -> SelectionRule:
    """The selection rule registered as ``name`` at a budget of ``k`` patches per image."""
    return SELECTION_RULES.create(name, k)


@dataclass(frozen=True)
class LinkTask:
    """One task of a link sweep: one unit (``kind``: a framing of the semantic codec with its ``setting``, ``codec``
    with an image codec, ``jscc`` with a budget) at one channel condition, over the images ``shard`` = (start,
    stop) (None: every image, unsharded)."""

    kind: str
    setting: Any
    condition: float
    shard: tuple[int, int] | None = None

    @property
    def unit_id(self) -> str:
        """The unit at the condition (what the shards' outcomes are joined under)."""
        return _unit_key(self.kind, self.setting, self.condition)

    @property
    def id(self) -> str:
        return self.unit_id + ("" if self.shard is None else f"|[{self.shard[0]}:{self.shard[1]}]")


def _link_task(context: tuple, task: LinkTask) -> dict:
    """The task function of every engine: ``context`` is (link sweep, split, edge pass)."""
    sweep, split, analysis = context
    if task.kind == "codec":
        return sweep._image_codec(split, analysis, task.setting, [task.condition], task.shard)[0]
    if task.kind == "jscc":
        return sweep._jscc(split, analysis, task.setting, [task.condition], task.shard)[0]
    return sweep._semantic(split, analysis, task.setting, [task.condition], task.kind == "whole", task.shard)[0]


_SUMMED = ("packets_lost", "packets_sent")  # an outcome's counts; its other fields are lists of one entry per image


def _joined(tasks: list[LinkTask], results: dict[str, dict]) -> dict[str, dict]:
    """Unit id (:attr:`LinkTask.unit_id`) -> the outcome over every image (its shards' lists joined in image order,
    their packet counts summed), of each unit and condition whose tasks all finished."""
    groups: dict[str, list[LinkTask]] = {}
    for task in tasks:
        groups.setdefault(task.unit_id, []).append(task)
    joined = {}
    for unit, members in groups.items():
        if all(t.id in results for t in members):
            parts = [results[t.id] for t in sorted(members, key=lambda t: t.shard or (0, 0))]
            joined[unit] = {key: sum(p[key] for p in parts) if key in _SUMMED
                            else list(chain.from_iterable(p[key] for p in parts)) for key in parts[0]}
    return joined


def _unit_key(kind: str, setting, condition: float) -> str:
    if isinstance(setting, ImageCodec):
        name = setting.name
    else:
        name = str(setting) if isinstance(setting, int) else " ".join(map(str, setting))
    return f"{kind}|{name}|{condition!r}"


def _point(tags: dict, outcome: dict, offload: torch.Tensor, edge_correct: torch.Tensor, condition: float,
           gate: Gate | None) -> LinkPoint:
    """One setting (``tags``) at one condition behind one gate (None: every image sent): B ``offload`` images
    take ``outcome``'s answers and cost its channel uses, the rest the edge's (0 uses)."""
    correct = torch.where(offload, torch.tensor(outcome["correct"]), edge_correct)
    uses = torch.where(offload, torch.tensor(outcome["uses"], dtype=torch.float64), 0.0)
    bits = torch.where(offload, torch.tensor(outcome["bits"], dtype=torch.float64), 0.0)
    lost = torch.tensor(outcome["lost"]) & offload
    sent = int(offload.sum())
    loss = outcome["packets_lost"] / outcome["packets_sent"] if outcome["packets_sent"] else 0.0
    low, high = clopper_pearson(int(correct.sum()), len(correct), 0.95)
    return LinkPoint(condition=condition, accuracy=float(correct.float().mean()), offload_rate=sent / len(offload),
                     channel_uses_per_image=float(uses.mean()), bits_per_image=float(bits.mean()), packet_loss=loss,
                     images_lost=float(lost.sum()) / sent if sent else 0.0, interval=[low, high],
                     **gate_fields(gate), **tags)
