"""The edge pass of a sweep, cached on disk: edge logits, patch importance by every method, codec tokens.

A sweep runs the edge ViT once over its split and reuses the result for every setting, with the importance
of every method registered in :data:`~semcomm.edge.importance.IMPORTANCE` (plug-ins included). For zoo
weights (which identify the model) the result is cached under a key of the weights' bytes, the images'
bytes, the precision, the block whose tokens the codec pair reads and the importance methods.

Images left on disk (:class:`~semcomm.data.ShardedImages`, a split larger than memory) are hashed and analysed a
chunk at a time, and their pass keeps what the sweep needs of every image and nothing that grows with the pixels:
the logits and the importance of the encoder's own method (about 300 bytes an image at 32 px), not the codec's
tokens (B x N x D, 16 times the pixels at 32 px), which the sweep's tasks compute for their own shard
(:meth:`~semcomm.experiments.sweep.Sweep.shard_hidden`).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from tqdm.auto import tqdm

from semcomm.data import ImageSplit, ShardedImages, update_digest
from semcomm.edge.encoder import EdgeAnalysis, EdgeEncoder
from semcomm.edge.importance import IMPORTANCE


def edge_analysis(encoder: EdgeEncoder, split: ImageSplit, weights: Path | None, name: str, bf16: bool,
                  cache_dir: Path, progress: bool = True) -> EdgeAnalysis:
    """Edge logits (B x C), importance by every method (B x N each) and, for a codec pair that reads the
    edge's tokens, those tokens (B x N x D) of ``split``; of a split on disk, the importance of the encoder's own
    method only and no tokens (the module docstring).

    Args:
        encoder: the sweep's edge encoder (its model, and its codec pair's ``tap``).
        weights: the zoo weights file of the edge (None: not cached, the model is not identified).
        name: the edge's zoo name (the cache file's prefix).
        bf16: whether the edge ran under bf16 autocast (part of the key).
        cache_dir: where cached passes live.
    """
    on_disk = isinstance(split.images, ShardedImages)
    methods = (encoder.importance,) if on_disk else tuple(IMPORTANCE)
    path = None
    if weights is not None:
        key = hashlib.sha256(weights.read_bytes())
        update_digest(key, split.images)
        key.update(str(bf16).encode())
        tap = None if encoder.codec is None else encoder.codec.tap
        key.update(f"tap {tap}".encode())
        key.update(f"importance {methods}".encode())
        if on_disk:
            key.update(b"no tokens")
        path = cache_dir / f"{name}-{key.hexdigest()[:20]}.pt"
        if path.exists():
            data = torch.load(path)
            return EdgeAnalysis(data["logits"], data["importance"], data.get("hidden"))
    analysis = _analyze(encoder, split.images, methods, progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(dict(logits=analysis.logits, importance=analysis.importance, hidden=analysis.hidden), path)
    return analysis


def _analyze(encoder: EdgeEncoder, images, methods: tuple[str, ...], progress: bool) -> EdgeAnalysis:
    """``encoder.analyze`` of B images: in one call for a tensor; for images on disk, over chunks of 16 of the
    encoder's batches read in turn (the same batches, so the same values), joined without the tokens."""
    if not isinstance(images, ShardedImages) or not len(images):
        images = images if not isinstance(images, ShardedImages) else images[:0]
        return encoder.analyze(images, methods, desc="edge pass" if progress else None)
    chunk = 16 * encoder.batch_size
    parts = [encoder.analyze(batch, methods, tokens=False) for batch in
             tqdm(images.batches(chunk), desc="edge pass", total=-(-len(images) // chunk), disable=not progress)]
    return EdgeAnalysis(torch.cat([p.logits for p in parts]),
                        {m: torch.cat([p.importance[m] for p in parts]) for m in methods})

