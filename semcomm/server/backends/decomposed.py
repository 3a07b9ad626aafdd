"""The decomposed backend (DeViT): N small student ViTs on N devices, a fusion head over their class tokens.

Each student (:class:`StudentStage`) answers for a group of classes; on its
device it runs on what arrived and sends back its class token (its final,
normalised CLS token, B x D_i float32: these are the bytes to the fusion
device, the host). The fusion head (:class:`TokenFusion`) concatenates the
N tokens and maps them to C logits (one Linear, or a one-hidden-layer MLP).
The students run in parallel, so the critical path is the slowest device
plus the fusion. :mod:`semcomm.train.backends.decomposed` distils a backend
from a server ViT.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from semcomm.core.devices import module_device
from semcomm.core.seeding import as_generator
from semcomm.models.timm_vit import TimmViT
from semcomm.server.backends.base import Backend, Stage, check_members
from semcomm.server.backends.devices import DeviceConfig
from semcomm.server.backends.groups import ClassGroups
from semcomm.server.backends.storage import register_backend_kind
from semcomm.server.backends.vitspec import ViTSpec


def class_token(vit: TimmViT, images: torch.Tensor, positions: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B x D final class token, B x C logits) of ``vit``: the token is what its head reads (after the final
    norm and pooling)."""
    captured = {}

    def grab(module, args):
        captured["token"] = args[0]

    handle = vit.model.head.register_forward_pre_hook(grab)
    try:
        logits = vit(images) if positions is None else vit.forward_tokens(images, positions)
    finally:
        handle.remove()
    return captured["token"], logits


class StudentStage(nn.Module):
    """A student on its device: ``(images, positions) -> B x D`` class token.

    Attributes:
        vit: the student ViT; its head (over ``classes``) is used in training only.
        classes: the full-label-space classes of its head, ascending.
    """

    def __init__(self, vit: TimmViT, classes: Sequence[int]):
        super().__init__()
        if not isinstance(vit, TimmViT):
            raise TypeError(f"a student is a TimmViT, got {type(vit).__name__}")
        self.vit, self.classes = vit, tuple(int(c) for c in classes)
        if vit.num_classes != len(self.classes):
            raise ValueError(f"the student has {vit.num_classes} outputs for {len(self.classes)} classes")

    @property
    def width(self) -> int:
        """D, the width of its class token."""
        return self.vit.model.embed_dim

    def forward(self, images: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        return class_token(self.vit, images, positions)[0]


class TokenFusion(nn.Module):
    """The fusion head: N class tokens (B x D_i each, in student order) -> B x C logits.

    ``hidden = 0``: one Linear over the concatenation (DeViT's); else Linear -> GELU -> Linear. Initial
    weights are drawn from ``generator`` (nn.Linear's own scheme).
    """

    def __init__(self, widths: Sequence[int], num_classes: int, hidden: int = 0,
                 generator: torch.Generator | int | None = None):
        super().__init__()
        self.widths, self.num_classes, self.hidden = tuple(int(w) for w in widths), int(num_classes), int(hidden)
        if not self.widths or min(self.widths) < 1 or self.num_classes < 1 or self.hidden < 0:
            raise ValueError(f"fusion needs positive widths and classes and hidden >= 0, got widths "
                             f"{list(self.widths)}, {num_classes} classes, hidden {hidden}")
        gen = as_generator(generator)
        total = sum(self.widths)
        sizes = [(total, self.hidden), (self.hidden, self.num_classes)] if self.hidden else [(total, self.num_classes)]
        layers = []
        for i, (fan_in, fan_out) in enumerate(sizes):
            linear = nn.utils.skip_init(nn.Linear, fan_in, fan_out)
            bound = 1 / math.sqrt(fan_in)
            with torch.no_grad():
                nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5), generator=gen)
                linear.bias.uniform_(-bound, bound, generator=gen)
            layers += [linear] if i == len(sizes) - 1 else [linear, nn.GELU()]
        self.net = nn.Sequential(*layers)

    def forward(self, tokens: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(tokens) != len(self.widths):
            raise ValueError(f"fusion expects {len(self.widths)} class tokens, got {len(tokens)}")
        for i, (token, width) in enumerate(zip(tokens, self.widths)):
            if token.ndim != 2 or token.shape[1] != width or len(token) != len(tokens[0]):
                raise ValueError(f"class token {i} has shape {tuple(token.shape)}, expected B x {width}")
        return self.net(torch.cat([t.float() for t in tokens], dim=1))


@register_backend_kind
class DecomposedBackend(Backend):
    """N students, each on its device, and a fusion head over their class tokens on the host.

    Args:
        students: one per group, the groups covering all classes exactly once.
        fusion: the fusion head (its widths those of the students, in order).
        devices: the devices.
        placement: per student, the name of its device.
        bytes_per_param: bytes per parameter when checking each device's memory.
    """

    kind = "devit"

    def __init__(self, students: Sequence[StudentStage], fusion: TokenFusion, devices: DeviceConfig,
                 placement: Sequence[str], bytes_per_param: int = 4):
        if not isinstance(fusion, TokenFusion):
            raise TypeError(f"fusion must be a TokenFusion, got {type(fusion).__name__}")
        first = check_members(students, StudentStage, "student", placement)
        groups = ClassGroups(tuple(s.classes for s in students), fusion.num_classes)
        if fusion.widths != tuple(s.width for s in students):
            raise ValueError(f"the fusion head reads tokens of widths {list(fusion.widths)} but the students give "
                             f"{[s.width for s in students]}")
        super().__init__(first.image_size, first.patch_size, groups.num_classes, devices)
        self.groups = groups
        self.students = nn.ModuleList(students)
        self.fusion = fusion
        self.assigned = tuple(placement)
        self.check_stages(bytes_per_param)
        self.eval()

    @property
    def stages(self) -> list[Stage]:
        return [Stage(f"student{i}", s, d) for i, (s, d) in enumerate(zip(self.students, self.assigned))]

    def fuse(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        device = module_device(self.fusion)  # the host's fusion, wherever it was moved
        return self.fusion([output.to(device) for output in outputs])

    # ---- saving (see semcomm.server.backends.storage) ----------------------------------------------------
    def describe(self) -> dict:
        """The structure (no weights) that :meth:`skeleton` rebuilds."""
        return {"students": [ViTSpec.of(s.vit).to_dict() for s in self.students],
                "classes": self.groups.to_list(), "fusion_hidden": self.fusion.hidden}

    @classmethod
    def skeleton(cls, description: dict, devices: DeviceConfig, placement: Sequence[str]) -> "DecomposedBackend":
        """A backend of the described structure with placeholder weights (to be loaded)."""
        students = [StudentStage(ViTSpec.from_dict(spec).build(), classes)
                    for spec, classes in zip(description["students"], description["classes"])]
        num_classes = sum(len(c) for c in description["classes"])
        fusion = TokenFusion([s.width for s in students], num_classes, description["fusion_hidden"], generator=0)
        return cls(students, fusion, devices, placement)
