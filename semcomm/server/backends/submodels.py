"""Sub-models of a class-partitioned backend: the server restricted to a group of classes.

A sub-model starts as a copy of the server ViT whose classifier keeps only
the rows of its group's classes (:meth:`ClassSubModel.from_server`: at first
its logits are exactly the server's for those classes); a build fine-tunes
and prunes it (:mod:`semcomm.train.backends.submodels`,
:mod:`semcomm.train.backends.pruning`). On its device it maps what arrived to
its group's logits.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from semcomm.models.timm_vit import TimmViT
from semcomm.server.backends.base import ViTStage


class ClassSubModel(ViTStage):
    """A ViT answering for a group of classes: ``(images, positions) -> B x len(classes)`` logits.

    Attributes:
        vit: the sub-model (its ``num_classes`` = len(classes)).
        classes: the full-label-space class of each output, ascending.
    """

    def __init__(self, vit: TimmViT, classes: Sequence[int]):
        super().__init__(vit)
        self.classes = tuple(int(c) for c in classes)
        if vit.num_classes != len(self.classes):
            raise ValueError(f"the sub-model has {vit.num_classes} outputs for {len(self.classes)} classes")

    @classmethod
    def from_server(cls, server: TimmViT, classes: Sequence[int]) -> "ClassSubModel":
        """A copy of ``server`` whose head keeps the rows of ``classes`` only (weights copied, not shared)."""
        if not isinstance(server, TimmViT):
            raise TypeError(f"sub-models are built from a TimmViT server (a timm VisionTransformer), "
                            f"got {type(server).__name__}")
        classes = sorted(int(c) for c in classes)
        if not classes or len(set(classes)) != len(classes) or classes[0] < 0 or classes[-1] >= server.num_classes:
            raise ValueError(f"classes must be distinct indices in 0..{server.num_classes - 1}, got {classes}")
        head = server.model.head
        if not isinstance(head, nn.Linear):
            raise TypeError(f"the server's head is {type(head).__name__}; restricting it needs an nn.Linear")
        vit = copy.deepcopy(server)
        index = torch.tensor(classes, device=head.weight.device)
        restricted = nn.utils.skip_init(nn.Linear, head.in_features, len(classes), bias=head.bias is not None)
        with torch.no_grad():
            restricted.weight.copy_(head.weight[index])
            if head.bias is not None:
                restricted.bias.copy_(head.bias[index])
        vit.model.head = restricted
        vit.model.num_classes = len(classes)
        vit.num_classes = len(classes)
        return cls(vit, classes)

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """B int64: each label's index among this sub-model's outputs, -1 for a label outside its group."""
        size = max(max(self.classes), int(labels.max()) if labels.numel() else 0) + 1
        lookup = torch.full((size,), -1, dtype=torch.int64, device=labels.device)
        lookup[torch.tensor(self.classes, device=labels.device)] = torch.arange(len(self.classes), device=labels.device)
        return lookup[labels.long()]
