"""The shape of a (possibly pruned or shortened) project ViT, so a saved backend can be rebuilt before its weights load.

A :class:`ViTSpec` records what ``timm.create_model`` needs (the registered
architecture name, e.g. ``semcomm_vit_server_p4_32``, and the width, depth,
head size and classes) plus the per-layer numbers of attention heads and MLP
hidden units that structured pruning left. :meth:`ViTSpec.build` makes a
model of exactly that shape (weights drawn from a fixed seed inside a
forked RNG, so the global generator is never touched; they are meant to be
overwritten by a load). Also here: a student ViT of the project's
architecture at a server's geometry (:func:`student_vit`) and a copy of a ViT
keeping some of its blocks (:func:`keep_blocks`).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import timm
import torch
from torch import nn

from semcomm.models import architectures
from semcomm.models.timm_vit import TimmViT
from semcomm.core.seeding import as_generator
from semcomm.server.backends.pruning import KeepPlan, check_timm_vit, prune_vit


@dataclass(frozen=True)
class ViTSpec:
    """Shape of a timm ViT built from a registered architecture.

    Attributes:
        architecture: the timm name (the project's ``semcomm_vit_<size>_p<patch>_<image>`` or a timm ViT).
        num_classes: outputs of its head.
        embed_dim: token width D.
        head_dim: width of one attention head.
        heads: per layer, the attention heads kept (``depth = len(heads)``).
        units: per layer, the MLP hidden units kept.
    """

    architecture: str
    num_classes: int
    embed_dim: int
    head_dim: int
    heads: tuple[int, ...]
    units: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "heads", tuple(int(h) for h in self.heads))
        object.__setattr__(self, "units", tuple(int(u) for u in self.units))
        if not self.heads or len(self.heads) != len(self.units) or min(self.heads) < 1 or min(self.units) < 1:
            raise ValueError(f"a ViT spec needs one positive head count and unit count per layer, got heads "
                             f"{list(self.heads)}, units {list(self.units)}")
        if self.embed_dim % self.head_dim or max(self.heads) > self.embed_dim // self.head_dim:
            raise ValueError(f"at most embed_dim / head_dim = {self.embed_dim}/{self.head_dim} heads per layer, "
                             f"got {list(self.heads)}")

    @property
    def depth(self) -> int:
        return len(self.heads)

    @classmethod
    def of(cls, vit: TimmViT) -> "ViTSpec":
        """The spec of ``vit`` (a :class:`TimmViT` with plain timm blocks)."""
        check_timm_vit(vit)
        m = vit.model
        name = (getattr(m, "pretrained_cfg", None) or {}).get("architecture")
        if not name:
            raise ValueError("the ViT records no timm architecture name (pretrained_cfg['architecture']); build "
                             "it with timm.create_model")
        return cls(name, vit.num_classes, m.embed_dim, m.blocks[0].attn.head_dim,
                   tuple(b.attn.num_heads for b in m.blocks), tuple(b.mlp.fc1.out_features for b in m.blocks))

    def build(self) -> TimmViT:
        """A model of this shape in eval mode (placeholder weights; the global RNG is left as it was)."""
        architectures.register_architecture(self.architecture)
        full_heads = self.embed_dim // self.head_dim
        widest = max(self.units)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = timm.create_model(self.architecture, num_classes=self.num_classes, embed_dim=self.embed_dim,
                                      depth=self.depth, num_heads=full_heads, mlp_ratio=(widest + 0.5) / self.embed_dim)
        vit = TimmViT(model)
        plan = KeepPlan(tuple(tuple(range(h)) for h in self.heads), tuple(tuple(range(u)) for u in self.units))
        if any(h != full_heads for h in self.heads) or any(u != widest for u in self.units):
            vit = prune_vit(vit, plan)
        return vit.eval()

    def to_dict(self) -> dict:
        data = asdict(self)
        data["heads"], data["units"] = list(self.heads), list(self.units)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ViTSpec":
        try:
            return cls(**data)
        except TypeError as err:
            raise ValueError(f"a ViT spec has the fields architecture, num_classes, embed_dim, head_dim, heads, "
                             f"units; got {sorted(data)}") from err


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
