"""The hyperlatent codec pair: the end-to-end trained codec of :mod:`semcomm.rate.hyperprior` as version-2
strings (codec id 4, FORMAT.md), written and read with CompressAI's rANS.

A string is the usual version-2 frame (level map, hint, CRC); its payload is *one* rANS string of, in order,

1. the Cz symbols of the side latent z, symbol j with table j (the ``EntropyBottleneck``'s, one per channel);
2. the anchor patches' symbols (without ``context``: every patch), in position order, C per patch, each with
   the table of its scale: Cz + the index of the first scale of the scale table at or above sigma g_m, where
   mean and sigma come from the prior's pass 1 on z (one table per scale: CompressAI's ``GaussianConditional``
   tables in training, refitted to the training split's symbols in an exported pair, :class:`TableCounts`);
3. the other patches' symbols, likewise, their mean and sigma from pass 2 (z and the decoded anchors);
4. the four padding symbols of :mod:`semcomm.rate.entropy`.

The decoder reads the three parts in turn from the one stream (:class:`RansStages`): it must know z before
it can choose part 2's tables, and the anchors before part 3's. The prior runs in float64 at both ends on
the same (shipped fp16) weights, so both choose the same tables; a decoder whose float64 arithmetic differed
could pick another table only for a scale within about 1e-15 of a table boundary.

Shapes: source B x N x C latents (float64); level B x N int64 (0 = not sent); symbols per image flat.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from compressai import ans
from compressai.entropy_models import GaussianConditional
from compressai.models.google import get_scale_table

from semcomm.core.devices import full_precision, host
from semcomm.edge.codec import CODECS
from semcomm.rate.entropy import PAD_SYMBOLS, SymbolTables, check_exact, decoder_stream, used_tables
from semcomm.rate.framed import FramedPair
from semcomm.rate.hyperprior import HyperConfig, HyperLatentCodec, anchors, source_values
from semcomm.rate.pair import Received
from semcomm.rate.zoo import ZOO_FOLDER, CodecCard, load_hint
from semcomm.wire import v2 as fmt
from semcomm.wire.errors import BitstreamError
from semcomm.zoo import CheckpointError, find_in_zoo, load_tensors, zoo_dirs

CODEC_ID = 4
WEIGHTS_PREFIX = "weights."


class RansStages:
    """One rANS string of :func:`~semcomm.rate.entropy.rans_encode` read in stages, each stage's table
    indexes chosen from what the earlier stages decoded; :class:`BitstreamError` where the string is malformed.

    Args:
        tables: the tables every stage's indexes refer to.
        state_code, data: the string's state length code and bytes (as :func:`rans_encode` returned them).
        total: the number of symbols all stages read together (before the padding symbols).
    """

    def __init__(self, tables: SymbolTables, state_code: int, data: bytes, total: int):
        stream = decoder_stream(state_code, data, total)
        self.tables, self.left = tables, total
        self._coded, self._read = (state_code, bytes(data)), []
        self._decoder = ans.RansDecoder()  # one per string: several strings are read in turn
        self._decoder.set_stream(stream)

    def read(self, indexes: np.ndarray) -> np.ndarray:
        """The next len(indexes) symbols (int64), symbol i with table ``indexes[i]``."""
        indexes = np.asarray(indexes, dtype=np.int64).ravel()
        if len(indexes) > self.left:
            raise ValueError(f"{len(indexes)} symbols asked of a stream with {self.left} left")
        if len(indexes) and (indexes.min() < 0 or indexes.max() >= len(self.tables)):
            raise BitstreamError("corrupted: a symbol refers to a table that does not exist")
        self.left -= len(indexes)
        values = np.asarray(self._decode(indexes), dtype=np.int64)
        self._read.append((values, indexes))
        return values

    def finish(self) -> None:
        """Check that every symbol was read and the string ends in its padding symbols."""
        if self.left:
            raise ValueError(f"{self.left} symbols left unread")
        if self._decode(np.full(PAD_SYMBOLS, len(self.tables))) != [0] * PAD_SYMBOLS:
            raise BitstreamError("corrupted: the rANS payload does not end in its padding symbols")
        values = np.concatenate([v for v, _ in self._read] or [np.zeros(0, np.int64)])
        indexes = np.concatenate([i for _, i in self._read] or [np.zeros(0, np.int64)])
        check_exact(self.tables, values, indexes, *self._coded)  # no bytes after the last word it needs

    def _decode(self, indexes: np.ndarray) -> list[int]:
        """Decode with only the tables ``indexes`` use (the padding table is index T)."""
        return self._decoder.decode_stream(*used_tables(self.tables, indexes))


def gaussian_tables(scale_table: torch.Tensor) -> SymbolTables:
    """CompressAI's ``GaussianConditional`` tables, one per scale of ``scale_table`` (increasing)."""
    model = GaussianConditional(scale_table.float().tolist())
    model.update()
    return SymbolTables.from_cdfs([model._quantized_cdf[i, : int(n)] for i, n in enumerate(model._cdf_length)],
                                  model._offset.tolist())


class TableCounts:
    """Counts of payload symbols per scale table, over each Gaussian table's support, to refit the tables
    to what a trained codec produces (as the latent pair's tables are fitted to counts)."""

    def __init__(self, scale_table: torch.Tensor):
        self.gaussian = gaussian_tables(scale_table)
        self.low = self.gaussian.offsets.long()
        self.span = self.gaussian.lengths.long() - 2
        self.counts = torch.zeros(len(self.gaussian), int(self.span.max()), dtype=torch.float64, device="cpu")

    def add(self, symbols: np.ndarray, scale_index: np.ndarray) -> None:
        """Count symbols, each coded with the table of scale ``scale_index`` (values outside it are not counted)."""
        index = torch.from_numpy(np.asarray(scale_index, dtype=np.int64).ravel())
        values = torch.from_numpy(np.asarray(symbols, dtype=np.int64).ravel()) - self.low[index]
        inside = (values >= 0) & (values < self.span[index])
        flat = index[inside] * self.counts.shape[1] + values[inside]
        self.counts += torch.bincount(flat, minlength=self.counts.numel()).view_as(self.counts).double()

    def tables(self, strength: float = 16.0) -> SymbolTables:
        """Table s: its counts plus ``strength`` pseudo-counts spread as its Gaussian over its support; values
        outside the support keep going through the escape."""
        pmfs = []
        for s, span in enumerate(self.span.tolist()):
            prior = (self.gaussian.cdfs[s, 1 : span + 1] - self.gaussian.cdfs[s, :span]).double()
            pmfs.append(self.counts[s, :span] + strength * prior / prior.sum())
        return SymbolTables.from_pmfs(pmfs, self.low.tolist())


class HyperLatentPair(FramedPair):
    """The hyperlatent codec as a codec pair: edge tokens (and pixels) in, server logits out.

    Args:
        codec: the trained codec (its analysis, hyper-analysis, prior and server are used).
        tables: Cz tables of z's channels, then one per scale of ``scale_table``.
        z_medians: Cz medians of z's symbols.
        scale_table: S increasing scales of the Gaussian tables.
        distortion: (L + 1) mean squared latent error per level (0: not sent), for importance-aware allocation.
    """

    name = "hyperlatent"

    def __init__(self, codec: HyperLatentCodec, tables: SymbolTables, z_medians: torch.Tensor,
                 scale_table: torch.Tensor, hint_coder=None, bf16: bool = True,
                 distortion: torch.Tensor | None = None):
        config = codec.config
        if len(tables) != config.hyper_channels + len(scale_table) or len(z_medians) != config.hyper_channels:
            raise ValueError(f"a hyperlatent pair needs {config.hyper_channels} z tables and medians plus one table "
                             f"per scale ({len(scale_table)}), got {len(tables)} tables, {len(z_medians)} medians")
        self.codec, self.config, self.tables = codec.eval(), config, tables
        self.tap, self.num_classes, self.bf16, self.hint_coder = config.tap, config.num_classes, bf16, hint_coder
        self.distortion = distortion
        self.layout = fmt.Layout(CODEC_ID, config.num_patches, config.levels)
        # the entropy side in float64 at both ends (see the module docstring)
        self._hyper = copy.deepcopy(codec.hyper_analysis).double().eval()
        self._prior = copy.deepcopy(codec.prior).double().eval()
        self._z_medians = z_medians.detach().double()
        self._scale_table = scale_table.detach().double()
        self._gains = config.gain(torch.arange(config.levels + 1, device="cpu"))

    @classmethod
    def from_codec(cls, codec: HyperLatentCodec, scale_table: torch.Tensor | None = None,
                   payload_tables: SymbolTables | None = None, **kwargs) -> HyperLatentPair:
        """A pair from a codec in training: its z tables from its ``EntropyBottleneck`` (as trained), then one
        table per scale of ``scale_table`` (default CompressAI's 64 scales from 0.11 to 256): ``payload_tables``
        (e.g. refitted, :class:`TableCounts`), else the Gaussian ones."""
        scale_table = get_scale_table() if scale_table is None else scale_table
        hyper = copy.deepcopy(codec.hyper_entropy)  # update() fills its buffers: leave the codec's as they are
        tables = SymbolTables.concat(SymbolTables.from_entropy_bottlenecks([hyper]),
                                     gaussian_tables(scale_table) if payload_tables is None else payload_tables)
        return cls(codec, tables, codec.z_medians().detach(), scale_table, **kwargs)

    @classmethod
    def from_zoo(cls, name: str, hint: bool = True, bf16: bool = True) -> HyperLatentPair:
        """An exported pair (user zoo first, then the shipped pairs; SHA-256 verified), with its edge's hint
        coder unless ``hint`` is False."""
        path = find_in_zoo(f"{name}.json", ZOO_FOLDER)
        if path is None:
            raise KeyError(f"no hyperlatent pair named {name!r} in {', '.join(map(str, zoo_dirs(ZOO_FOLDER)))}; "
                           f"export a run with `semcomm export {name}`")
        return cls.from_card(path, hint=hint, bf16=bf16)

    @classmethod
    def from_card(cls, path: str | Path, hint: bool = True, bf16: bool = True) -> HyperLatentPair:
        """The pair whose card is the JSON file ``path`` (its tensors beside it, SHA-256 verified)."""
        card = CodecCard.read(Path(path))
        tensors = load_tensors(card.tensors_path, card.sha256)
        codec = HyperLatentCodec(HyperConfig.from_dict(card.config["codec"]))
        weights = {k[len(WEIGHTS_PREFIX):]: v.float() for k, v in tensors.items() if k.startswith(WEIGHTS_PREFIX)}
        missing, unexpected = codec.load_state_dict(weights, strict=False)
        if unexpected or any(not k.startswith(("hyper_entropy.", "gaussian.")) for k in missing):
            raise CheckpointError(f"codec {card.name} does not fit its architecture: missing {missing[:3]}, "
                                  f"unexpected {unexpected[:3]}")
        return cls(codec, SymbolTables.from_state_dict(tensors, "tables."), tensors["z_medians"],
                   tensors["scale_table"], hint_coder=load_hint(card.edge) if hint else None, bf16=bf16,
                   distortion=tensors.get("distortion"))

    @property
    def scale_table(self) -> torch.Tensor:
        """The S scales (float64) whose tables code the patches' symbols."""
        return self._scale_table

    def shipped_tensors(self) -> dict[str, torch.Tensor]:
        """What an export stores besides the weights: tables, z medians, scale table, distortion."""
        tensors = {**self.tables.state_dict("tables."), "z_medians": self._z_medians.float(),
                   "scale_table": self._scale_table.float()}
        return tensors if self.distortion is None else {**tensors, "distortion": self.distortion.float()}

    # ---- the edge half ----------------------------------------------------------------------------
    def source(self, images, hidden=None):
        device = self.device
        values = source_values(images.to(device), None if hidden is None else hidden.to(device), self.config)
        with torch.no_grad():
            return host(self.codec.analysis(values).float()).double()

    def _pass(self, z_hat, positions, level, context, known):
        """(mean, table index, gain) of B x K patches in quantizer units, float64, from one prior pass."""
        with torch.no_grad(), full_precision():
            mean, scale = self._prior(z_hat, positions, level, context, known)
        gain = self._gains[level][..., None]
        mean, scale = mean * gain, scale * gain
        if not (torch.isfinite(mean).all() and torch.isfinite(scale).all()):
            raise BitstreamError("corrupted: the prior's means or scales are not finite")
        index = torch.searchsorted(self._scale_table[:-1].contiguous(), scale.contiguous())
        return mean, index, gain

    def _side(self, y: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z symbols, z^) of B x K latents at their positions."""
        with torch.no_grad(), full_precision():
            symbols = torch.round(self._hyper(y, positions) - self._z_medians)
        return symbols, symbols + self._z_medians

    def _gather(self, source, level, rows, k):
        positions = (level[rows] > 0).nonzero()[:, 1].view(-1, k)
        y = source[rows].gather(1, positions[..., None].expand(-1, -1, source.shape[-1])).double()
        return positions, level[rows].gather(1, positions), y

    def symbols(self, source, level):
        if not torch.isfinite(source).all():
            raise ValueError("the hyperlatent pair's source holds non-finite values")
        level = level.clamp(0, self.levels)
        counts = (level > 0).sum(1)
        out: list = [(np.zeros(0, np.int64), np.zeros(0, np.int64), ())] * len(source)  # k = 0: the format refuses
        cz = self.config.hyper_channels
        for k, rows in _groups(counts):
            positions, lv, y = self._gather(source, level, rows, k)
            z_symbols, z_hat = self._side(y, positions)
            anchor = anchors(positions, self.config)
            mean, index, gain = self._pass(z_hat, positions, lv, torch.zeros_like(y), torch.zeros_like(anchor))
            if not anchor.all():
                y_hat = (torch.round(y * gain - mean) + mean) / gain
                context_mean, context_index, _ = self._pass(z_hat, positions, lv, y_hat, anchor)
                mean = torch.where(anchor[..., None], mean, context_mean)
                index = torch.where(anchor[..., None], index, context_index)
            symbols = torch.round(y * gain - mean).long()
            for j, i in enumerate(rows.tolist()):
                order = torch.cat([anchor[j].nonzero().flatten(), (~anchor[j]).nonzero().flatten()])
                z_tables = torch.arange(cz, device=index.device)
                out[i] = (torch.cat([z_symbols[j].long(), symbols[j][order].flatten()]).numpy(),
                          torch.cat([z_tables, cz + index[j][order].flatten()]).numpy(), ())
        return out

    def level_costs(self, source: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """B x N x (L + 1) estimated payload bits of each patch of ``mask`` (default all) at each level: the
        prior's pass 1 (no context) given z of the masked patches, under the tables' scales; z's bits are
        the image's, not a patch's, and are left out."""
        b, n, _ = source.shape
        mask = torch.ones(b, n, dtype=torch.bool, device=source.device) if mask is None else mask
        out = torch.zeros(b, n, self.levels + 1, dtype=torch.float64, device=source.device)
        counts = mask.sum(1)
        for k, rows in _groups(counts):
            positions, _, y = self._gather(source, mask.long(), rows, k)
            _, z_hat = self._side(y, positions)
            for m in range(1, self.levels + 1):
                lv = torch.full_like(positions, m)
                mean, index, gain = self._pass(z_hat, positions, lv, torch.zeros_like(y), torch.zeros_like(lv, dtype=torch.bool))
                offset = torch.round(y * gain - mean)
                bits = gaussian_bits(offset, self._scale_table[index]).sum(-1)
                out[rows[:, None], positions, m] = bits
        return out

    def measure_distortion(self, source: torch.Tensor) -> torch.Tensor:
        """(L + 1) mean squared error of a patch's latent at each level, every patch of B x N x C ``source``
        sent (level 0: its spread about the mean latent of ``source``); float64."""
        b, n, _ = source.shape
        y = source.double()
        positions = torch.arange(n, device=source.device).expand(b, -1)
        _, z_hat = self._side(y, positions)
        error = [(y - y.mean((0, 1))).pow(2).sum(-1).mean()]
        for m in range(1, self.levels + 1):
            lv = torch.full_like(positions, m)
            mean, _, gain = self._pass(z_hat, positions, lv, torch.zeros_like(y), torch.zeros_like(lv, dtype=torch.bool))
            error.append(((torch.round(y * gain - mean) + mean) / gain - y).pow(2).sum(-1).mean())
        return torch.stack(error)

    def rates(self, source, mask=None):
        return self.level_costs(source, mask).cummax(-1).values

    def table_indexes(self, level, params):
        raise NotImplementedError("a hyperlatent string chooses its tables from its decoded side latent; "
                                  "read it with decompress")

    def dequantize(self, symbols, level, params):
        raise NotImplementedError("a hyperlatent string's values depend on its decoded side latent; "
                                  "read it with decompress")

    # ---- the server half --------------------------------------------------------------------------
    def decompress(self, strings: Sequence[bytes]) -> list[Received]:
        """Parse and decode each string; :class:`BitstreamError` if one is malformed or corrupted. Strings that
        send the same number of patches run the prior's passes together (the rANS reads stay per string)."""
        frames = [self._frame(string) for string in strings]
        levels = [torch.tensor(frame.level, dtype=torch.int64, device="cpu") for frame in frames]
        out: list[Received | None] = [None] * len(frames)
        counts = torch.stack(levels).gt(0).sum(1) if levels else torch.zeros(0, dtype=torch.int64, device="cpu")
        for k, rows in _groups(counts):
            rows = rows.tolist()
            for i, received in zip(rows, self._decode_group([frames[i] for i in rows], [levels[i] for i in rows], k)):
                out[i] = received
        return out

    def _decode_group(self, frames: list[fmt.Frame], levels: list[torch.Tensor], k: int) -> list[Received]:
        """Decode B frames that each send ``k`` patches (``levels``: their N levels)."""
        c, cz = self.config.channels, self.config.hyper_channels
        level = torch.stack(levels)
        positions = level.gt(0).nonzero()[:, 1].view(len(frames), k)
        lv = level.gather(1, positions)
        stages = [RansStages(self.tables, frame.state_code, frame.payload, cz + k * c) for frame in frames]
        z_hat = torch.from_numpy(np.stack([stage.read(np.arange(cz)) for stage in stages])).double() + self._z_medians
        anchor = anchors(positions, self.config)
        y_hat = torch.zeros(len(frames), k, c, dtype=torch.float64, device="cpu")
        known = torch.zeros_like(anchor)
        for part in (anchor, ~anchor):
            if part.any():
                mean, index, gain = self._pass(z_hat, positions, lv, y_hat, known)
                for j, stage in enumerate(stages):
                    if part[j].any():
                        symbols = stage.read(cz + index[j][part[j]].flatten().numpy())
                        y_hat[j][part[j]] = (torch.from_numpy(symbols).double().view(-1, c) + mean[j][part[j]]) \
                            / gain[j][part[j]]
                known = anchor
        for stage in stages:
            stage.finish()
        return [Received(positions[j], lv[j], y_hat[j].float(), frame.hint) for j, frame in enumerate(frames)]

    def server_logits(self, values, positions, level):
        device = self.device
        return self.codec.server(values.to(device), positions.to(device), level.to(device))


def _groups(counts: torch.Tensor, size: int = 256):
    """(K, rows) of the images sending K > 0 patches, at most ``size`` rows at a time (the prior's passes
    hold B x (K + 1)^2 attention weights per head)."""
    for k in counts.unique().tolist():
        if k > 0:
            for rows in (counts == k).nonzero().flatten().split(size):
                yield k, rows


def gaussian_bits(offset: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """-log2 of the Gaussian probability of integer offsets from the mean at ``scale`` (same shapes; float64),
    as CompressAI's ``GaussianConditional`` computes it (scale bounded below by 0.11, likelihood by 1e-9)."""
    values, scale = offset.abs().double(), scale.double().clamp_min(0.11)
    p = torch.special.ndtr((0.5 - values) / scale) - torch.special.ndtr((-0.5 - values) / scale)
    return -torch.log2(p.clamp_min(1e-9))


@CODECS.register("hyperlatent-cifar10")
def hyperlatent_cifar10(hint: bool = True, bf16: bool = True) -> HyperLatentPair:
    """The end-to-end trained hyperlatent pair for CIFAR-10 (edge ``vit-edge-cifar10`` tokens and pixels, its own
    server), once exported into the zoo (``semcomm export hyperlatent-cifar10``)."""
    return HyperLatentPair.from_zoo("hyperlatent-cifar10", hint=hint, bf16=bf16)
