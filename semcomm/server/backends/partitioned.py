"""The class-partitioned backend (ED-ViT): N pruned sub-models on N devices, a fusion network on the host.

Each sub-model (:class:`~semcomm.server.backends.submodels.ClassSubModel`,
the server restricted to a group of classes and pruned to its device) runs
on what arrived and sends back its group's logits; the fusion network
(:class:`~semcomm.server.backends.fusion.FusionNetwork`) turns them into
logits over all classes. :mod:`semcomm.train.backends.partitioned` builds
one from a server ViT.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from semcomm.core.devices import module_device
from semcomm.server.backends.base import Backend, Stage, check_members
from semcomm.server.backends.devices import DeviceConfig
from semcomm.server.backends.fusion import FusionNetwork
from semcomm.server.backends.groups import ClassGroups
from semcomm.server.backends.storage import register_backend_kind
from semcomm.server.backends.submodels import ClassSubModel
from semcomm.server.backends.vitspec import ViTSpec


@register_backend_kind
class PartitionedBackend(Backend):
    """N class sub-models, each on its device, and a fusion network over their logits on the host.

    Args:
        submodels: one per group, the groups covering all classes exactly once.
        fusion: the fusion network over those groups.
        devices: the devices.
        placement: per sub-model, the name of its device.
        bytes_per_param: bytes per parameter when checking each device's memory.
    """

    kind = "partitioned"

    def __init__(self, submodels: Sequence[ClassSubModel], fusion: FusionNetwork, devices: DeviceConfig,
                 placement: Sequence[str], bytes_per_param: int = 4):
        if not isinstance(fusion, FusionNetwork):
            raise TypeError(f"fusion must be a FusionNetwork, got {type(fusion).__name__}")
        first = check_members(submodels, ClassSubModel, "sub-model", placement)
        groups = ClassGroups(tuple(s.classes for s in submodels), fusion.groups.num_classes)
        if groups != fusion.groups:
            raise ValueError(f"the sub-models answer for groups {groups.to_list()} but the fusion network was "
                             f"built for {fusion.groups.to_list()}")
        super().__init__(first.image_size, first.patch_size, groups.num_classes, devices)
        self.submodels = nn.ModuleList(submodels)
        self.fusion = fusion
        self.assigned = tuple(placement)
        self.check_stages(bytes_per_param)
        self.eval()

    @property
    def groups(self) -> ClassGroups:
        return self.fusion.groups

    @property
    def stages(self) -> list[Stage]:
        return [Stage(f"group{i}", sub, device) for i, (sub, device) in enumerate(zip(self.submodels, self.assigned))]

    def fuse(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        device = module_device(self.fusion)  # the host's fusion, wherever it was moved
        return self.fusion([output.to(device) for output in outputs])

    # ---- saving (see semcomm.server.backends.storage) ----------------------------------------------------
    def describe(self) -> dict:
        """The structure (no weights) that :meth:`skeleton` rebuilds: each sub-model's pruned per-layer shape."""
        return {"submodels": [ViTSpec.of(s.vit).to_dict() for s in self.submodels], "classes": self.groups.to_list(),
                "fusion_hidden": self.fusion.mlp[1].out_features}

    @classmethod
    def skeleton(cls, description: dict, devices: DeviceConfig, placement: Sequence[str]) -> "PartitionedBackend":
        """A backend of the described structure with placeholder weights (to be loaded)."""
        subs = [ClassSubModel(ViTSpec.from_dict(spec).build(), classes)
                for spec, classes in zip(description["submodels"], description["classes"])]
        groups = ClassGroups(tuple(description["classes"]), sum(len(c) for c in description["classes"]))
        return cls(subs, FusionNetwork(groups, description["fusion_hidden"], generator=0), devices, placement)
