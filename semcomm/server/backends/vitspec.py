"""The shape of a (possibly pruned or shortened) project ViT, so a saved backend can be rebuilt before its weights load.

A :class:`ViTSpec` records what ``timm.create_model`` needs (the registered
architecture name, e.g. ``semcomm_vit_server_p4_32``, and the width, depth,
head size and classes) plus the per-layer numbers of attention heads and MLP
hidden units that structured pruning left. :meth:`ViTSpec.build` makes a
model of exactly that shape (weights drawn from a fixed seed inside a
forked RNG, so the global generator is never touched; they are meant to be
overwritten by a load).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import timm
import torch

from semcomm.models import architectures
from semcomm.models.timm_vit import TimmViT
from semcomm.server.backends.pruned import KeepPlan, check_timm_vit, prune_vit


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
