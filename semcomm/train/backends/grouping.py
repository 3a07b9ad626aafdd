"""Class groups for class-partitioned backends: balanced, from the server's confusion or at random.

Each sub-model of a class-partitioned backend answers for one group of
classes. Grouping by confusion puts classes the server confuses with each
other in the same group, so the sub-model that must tell them apart sees
both (the fusion network then only has to pick the right group). Random
grouping (DeViT's: shuffle the class ids, cut into equal chunks) is the
baseline.

Balanced: with C classes in N groups, the first C mod N groups have
ceil(C / N) classes and the others floor(C / N).
"""
from __future__ import annotations

import torch

from semcomm.core.seeding import as_generator
from semcomm.inference import predict_logits
from semcomm.server.backends.groups import ClassGroups


def balanced_sizes(num_classes: int, num_groups: int) -> list[int]:
    """Group sizes that differ by at most one, larger first."""
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or not 1 <= num_groups <= num_classes:
        raise ValueError(f"the number of groups must be an integer in 1..{num_classes} (the classes), "
                         f"got {num_groups!r}")
    base, extra = divmod(num_classes, num_groups)
    return [base + (i < extra) for i in range(num_groups)]


def confusion_matrix(logits: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """C x C soft confusion: row t is the mean softmax probability the model gives each class on images of
    class t (rows of classes with no image are 0).

    Args:
        logits: B x C logits of the server.
        labels: B int64 true classes.
    """
    if logits.ndim != 2 or labels.ndim != 1 or len(labels) != len(logits):
        raise ValueError(f"need B x C logits and B labels, got {tuple(logits.shape)} and {tuple(labels.shape)}")
    c = logits.shape[1] if num_classes is None else num_classes
    if logits.shape[1] != c:
        raise ValueError(f"logits cover {logits.shape[1]} classes, expected {c}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(f"labels must lie in 0..{c - 1}, got {int(labels.min())}..{int(labels.max())}")
    probs = logits.float().softmax(-1)
    total = torch.zeros(c, c).index_add_(0, labels.long(), probs)
    counts = torch.bincount(labels.long(), minlength=c).clamp_min(1).float()
    return total / counts[:, None]


def group_by_confusion(confusion: torch.Tensor, num_groups: int, max_rounds: int = 100) -> ClassGroups:
    """Balanced groups that maximise the confusion inside groups.

    Affinity of two classes: A = P + P^T with the diagonal zeroed, P the
    confusion with rows renormalised to sum to 1. Start: each group in turn
    is seeded with the free class of largest total affinity to the free
    classes and grown by the free class of largest affinity to its members.
    Then pairwise swaps between groups that raise the total affinity inside
    groups are made, best first, until none does (or ``max_rounds``).
    Deterministic; ties go to the lower class index.

    Args:
        confusion: C x C, row = true class (e.g. :func:`confusion_matrix`).
        num_groups: N.
    """
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be a C x C matrix, got shape {tuple(confusion.shape)}")
    if not torch.isfinite(confusion).all() or (confusion < 0).any():
        raise ValueError("confusion must hold finite non-negative values")
    c = confusion.shape[0]
    sizes = balanced_sizes(c, num_groups)
    p = confusion.double() / confusion.double().sum(1, keepdim=True).clamp_min(1e-12)
    affinity = p + p.T
    affinity.fill_diagonal_(0)
    group = torch.full((c,), -1, dtype=torch.int64)
    for g, size in enumerate(sizes):
        free = (group < 0).nonzero().flatten()
        seed = free[affinity[free][:, free].sum(1).argmax()]
        group[seed] = g
        for _ in range(size - 1):
            free = (group < 0).nonzero().flatten()
            members = (group == g).nonzero().flatten()
            group[free[affinity[free][:, members].sum(1).argmax()]] = g
    for _ in range(max_rounds):
        # s[x, g]: affinity of class x to the members of group g
        s = affinity @ torch.nn.functional.one_hot(group, num_groups).double()
        own = s.gather(1, group[:, None]).squeeze(1)
        # gain of swapping a (in group ga) with b (in gb): a joins gb without b, b joins ga without a
        gain = (s[:, group] - affinity) + (s[:, group] - affinity).T - own[:, None] - own[None, :]
        gain[group[:, None] == group[None, :]] = 0
        best = int(gain.argmax())
        a, b = divmod(best, c)
        if gain[a, b] <= 1e-12:
            break
        group[a], group[b] = group[b].clone(), group[a].clone()
    return ClassGroups(tuple(tuple((group == g).nonzero().flatten().tolist()) for g in range(num_groups)), c)


def group_randomly(num_classes: int, num_groups: int, generator: torch.Generator | int | None = None) -> ClassGroups:
    """Balanced groups of shuffled class ids (DeViT's partition): the baseline."""
    sizes = balanced_sizes(num_classes, num_groups)
    order = torch.randperm(num_classes, generator=as_generator(generator)).tolist()
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)
    return ClassGroups(tuple(tuple(order[bounds[i]:bounds[i + 1]]) for i in range(num_groups)), num_classes)


def groups_by(method: str, model, count: int, images: torch.Tensor, labels: torch.Tensor, generator,
              bf16: bool = False, what: str = "groups", alternative: str = "a ClassGroups") -> ClassGroups:
    """``count`` balanced class groups by ``method``: ``"confusion"`` (``model``'s soft confusion on ``images``,
    so confusable classes share a group) or ``"random"`` (drawn with ``generator``, a seed or a Generator)."""
    if method == "random":
        return group_randomly(model.num_classes, count, generator)
    if method == "confusion":
        logits = predict_logits(model, images, bf16=bf16)
        return group_by_confusion(confusion_matrix(logits, labels, model.num_classes), count)
    raise ValueError(f"{what} must be 'confusion', 'random' or {alternative}, got {method!r}")
