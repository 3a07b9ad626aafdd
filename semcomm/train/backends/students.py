"""Students of a decomposed backend: small ViTs of the project's architecture at a server's geometry.

A student either starts fresh (:func:`student_vit`: the project's edge
architecture, resized) or as a copy of a given ViT with its head restricted
to its group, optionally shortened (:func:`keep_blocks`: blocks kept evenly
spaced) and pruned (heads and MLP units by the class-wise Taylor criterion of
:mod:`~semcomm.train.backends.pruning`). :func:`make_student` does all of it
for one group of classes.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import timm
import torch
from torch import nn

from semcomm.core.seeding import as_generator
from semcomm.models import architectures
from semcomm.models.timm_vit import TimmViT
from semcomm.server.backends.decomposed import StudentStage
from semcomm.server.backends.pruned import check_timm_vit, prune_vit
from semcomm.server.backends.submodels import ClassSubModel
from semcomm.train.backends.pruning import keep_plan, unit_importance


def student_vit(server: TimmViT, num_classes: int, embed_dim: int, depth: int, num_heads: int,
                mlp_ratio: float = 2.0, generator: torch.Generator | int | None = None) -> TimmViT:
    """A freshly initialised student: the project's edge architecture at the server's geometry, resized.

    Args:
        server: the ViT whose image and patch sizes the student takes (so their tokens correspond).
        num_classes: the student's outputs.
        embed_dim, depth, num_heads, mlp_ratio: its shape (``embed_dim`` divisible by ``num_heads``).
        generator: the initial weights are drawn from it (the global RNG is left as it was).
    """
    if not isinstance(server, TimmViT):
        raise TypeError(f"students are sized from a TimmViT server, got {type(server).__name__}")
    if min(embed_dim, depth, num_heads, num_classes) < 1 or embed_dim % num_heads:
        raise ValueError(f"a student needs positive sizes with embed_dim divisible by num_heads, got embed_dim "
                         f"{embed_dim}, depth {depth}, num_heads {num_heads}, num_classes {num_classes}")
    side, patch = server.image_size, server.patch_size
    if side[0] != side[1]:
        raise ValueError(f"students are built for square images, the server reads {side}")
    name = architectures.vit_architecture("edge", side[0], patch)
    seed = int(torch.randint(2 ** 62, (1,), generator=as_generator(generator)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(name, num_classes=num_classes, embed_dim=embed_dim, depth=depth,
                                  num_heads=num_heads, mlp_ratio=mlp_ratio)
    return TimmViT(model).eval()


def keep_blocks(vit: TimmViT, depth: int) -> TimmViT:
    """A copy of ``vit`` keeping ``depth`` of its blocks, evenly spaced (first and last kept; weights copied)."""
    check_timm_vit(vit)
    total = len(vit.model.blocks)
    if not 1 <= depth <= total:
        raise ValueError(f"depth must lie in 1..{total} (the model's blocks), got {depth}")
    chosen = evenly_spaced(total, depth)
    out = copy.deepcopy(vit)
    out.model.blocks = nn.Sequential(*[out.model.blocks[i] for i in chosen])
    return out


def evenly_spaced(total: int, count: int) -> list[int]:
    """``count`` indices in 0..total-1, evenly spaced, including both ends when ``count`` > 1."""
    if count == 1:
        return [total - 1]
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)})


def make_student(init: TimmViT | dict, server: TimmViT, classes: Sequence[int], images: torch.Tensor,
                 labels: torch.Tensor, depth: int | None = None, keep: float = 1.0, importance_images: int = 256,
                 generator: torch.Generator | int | None = None) -> StudentStage:
    """A student for ``classes`` (the module docstring; step 3 of :mod:`~semcomm.train.backends.decomposed`).

    Args:
        init: a TimmViT over the server's classes to copy (its head restricted to ``classes``), or the shape of a
            fresh one: ``{"embed_dim", "depth", "num_heads", "mlp_ratio"}`` (see :func:`student_vit`).
        server: gives the geometry (and must share it with a copied ``init``).
        images, labels: training images and full-label-space classes (for the pruning criterion).
        depth: keep this many of the blocks, evenly spaced (None: all).
        keep: fraction of heads and MLP units kept per layer (1: no pruning).
        importance_images: images of the group the pruning criterion averages over.
    """
    gen = as_generator(generator)
    classes = sorted(int(c) for c in classes)
    if isinstance(init, dict):
        shape = {"mlp_ratio": 2.0, **init}
        unknown = sorted(set(shape) - {"embed_dim", "depth", "num_heads", "mlp_ratio"})
        if unknown or not {"embed_dim", "depth", "num_heads"} <= set(shape):
            raise ValueError(f"a fresh student's shape is {{'embed_dim', 'depth', 'num_heads'[, 'mlp_ratio']}}, got "
                             f"{sorted(init)}")
        vit = student_vit(server, len(classes), generator=gen, **shape)
    elif isinstance(init, TimmViT):
        if (init.image_size, init.patch_size) != (server.image_size, server.patch_size):
            raise ValueError(f"the student's initial ViT reads {init.image_size} images in {init.patch_size}-pixel "
                             f"patches, the server {server.image_size} in {server.patch_size}; they must agree")
        if init.num_classes != server.num_classes:
            raise ValueError(f"the student's initial ViT has {init.num_classes} classes, the server "
                             f"{server.num_classes}: mismatched class counts")
        vit = ClassSubModel.from_server(init, classes).vit
    else:
        raise TypeError(f"init is a TimmViT or a dict of a fresh student's shape, got {type(init).__name__}")
    if depth is not None:
        vit = keep_blocks(vit, depth)
    if not 0 < keep <= 1:
        raise ValueError(f"keep is the fraction of heads and MLP units kept, in (0, 1], got {keep!r}")
    if keep < 1:
        targets = ClassSubModel(vit, classes).targets(labels)
        chosen = (targets >= 0).nonzero().flatten()
        if len(chosen) == 0:
            raise ValueError(f"no training image belongs to the student's classes {classes}")
        chosen = chosen[torch.randperm(len(chosen), generator=gen)[:importance_images]]
        vit = prune_vit(vit, keep_plan(unit_importance(vit, images[chosen], targets[chosen]), keep))
    return StudentStage(vit.eval(), classes)
