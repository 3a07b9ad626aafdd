"""Token relations of q, k and v, and the KL divergence that matches a student's to a teacher's (DeViT's terms).

For one block, let X be its queries (or keys, or values): B x T x A, the A =
heads x head_dim columns of the block's ``qkv`` projection that belong to q
(k, v), over all T tokens (CLS first, then the patches the model saw). Cut
the A columns into R equal *relation heads* X_1 .. X_R of width d = A / R
each and take

    relation_r(X) = softmax(X_r X_r^T / sqrt(d))        (B x T x T per r, rows sum to 1),

a distribution over tokens for every token. It depends on the token count,
not on the width, so a narrow student can be matched to a wide teacher. The
relation loss of a (student block, teacher block) pair is

    sum over X in {q, k, v} of mean over b, r, i of KL(relation_r(X_teacher)[b, i] || relation_r(X_student)[b, i]),

averaged over the pairs. Heads are not mapped one to one: the R relation
heads are contiguous column chunks of the concatenated heads of each model
(R = 1, the default, relates the full concatenation; R must divide both
models' A). Layers are mapped by :func:`layer_pairs`: by default the last
block of the student with the last block of the teacher.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from semcomm.models.timm_vit import TimmViT

PARTS = ("q", "k", "v")


@contextmanager
def recording_qkv(vit: TimmViT, blocks: Sequence[int]):
    """Within the context, every forward of ``vit`` stores block i's q, k, v (each B x T x A) in
    ``recorded[i] = (q, k, v)`` for the ``blocks`` asked for (hooks on the blocks' ``qkv`` projections)."""
    recorded: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    handles = []
    layers = vit.model.blocks
    for i in sorted(set(blocks)):
        attn = layers[i].attn

        def record(module, inputs, output, i=i, width=attn.num_heads * attn.head_dim):
            recorded[i] = tuple(output[..., j * width:(j + 1) * width] for j in range(3))

        handles.append(attn.qkv.register_forward_hook(record))
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


def token_relations(x: torch.Tensor, relation_heads: int = 1) -> torch.Tensor:
    """Log of the token relations of ``x`` (B x T x A): B x R x T x T, each row a log-distribution over tokens."""
    b, t, a = x.shape
    if a % relation_heads:
        raise ValueError(f"{relation_heads} relation heads do not divide the width {a}")
    d = a // relation_heads
    chunks = x.float().reshape(b, t, relation_heads, d).transpose(1, 2)  # B x R x T x d
    return (chunks @ chunks.transpose(-1, -2) / math.sqrt(d)).log_softmax(-1)


def relation_kl(teacher: dict, student: dict, pairs: Sequence[tuple[int, int]],
                relation_heads: int = 1) -> torch.Tensor:
    """The relation loss (module docstring) from recorded q, k, v (see :func:`recording_qkv`).

    Args:
        teacher, student: block index -> (q, k, v), each B x T x A (same B and T in both).
        pairs: (student block, teacher block) pairs.
    """
    total = 0.0
    for s, t in pairs:
        for part, (xs, xt) in zip(PARTS, zip(student[s], teacher[t])):
            if xs.shape[:2] != xt.shape[:2]:
                raise ValueError(f"{part} of student block {s} is {tuple(xs.shape)} but of teacher block {t} "
                                 f"{tuple(xt.shape)}: relations need the same images and tokens")
            log_s = token_relations(xs, relation_heads)
            log_t = token_relations(xt.detach(), relation_heads)
            total = total + F.kl_div(log_s, log_t, log_target=True, reduction="sum") / (
                log_s.shape[0] * log_s.shape[1] * log_s.shape[2])
    return total / len(pairs)


def layer_pairs(student_depth: int, teacher_depth: int,
                layers: str | Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """(student layer, teacher layer) pairs whose token relations are matched (0-based block indices).

    ``"last"``: the last block of each; ``"uniform"``: student block i with teacher block
    ``round((i + 1) * Lt / Ls) - 1`` for every i; or explicit pairs (negative indices count from the end).
    """
    if layers == "last":
        return [(student_depth - 1, teacher_depth - 1)]
    if layers == "uniform":
        return [(i, round((i + 1) * teacher_depth / student_depth) - 1) for i in range(student_depth)]
    if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
        raise ValueError(f"layers must be 'last', 'uniform' or a non-empty list of (student, teacher) block pairs, "
                         f"got {layers!r}")
    pairs = []
    for pair in layers:
        if len(pair) != 2:
            raise ValueError(f"a layer pair is (student block, teacher block), got {pair!r}")
        s, t = int(pair[0]), int(pair[1])
        if not -student_depth <= s < student_depth or not -teacher_depth <= t < teacher_depth:
            raise ValueError(f"layer pair {pair!r} is outside the student's {student_depth} or the teacher's "
                             f"{teacher_depth} blocks")
        pairs.append((s % student_depth, t % teacher_depth))
    return pairs
