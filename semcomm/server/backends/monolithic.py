"""The monolithic backend: today's server, one ViT on one device (a pixel server, or a latent pair's server)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import torch

from semcomm.models.adapter import ViTAdapter
from semcomm.rate.latent import LatentConfig, LatentServer
from semcomm.server.backends.base import Backend, Stage, ViTStage
from semcomm.server.backends.devices import Device, DeviceConfig, host_device
from semcomm.server.backends.latent import LatentStage
from semcomm.server.backends.registry import register_backend
from semcomm.server.backends.storage import register_backend_kind
from semcomm.server.backends.vitspec import ViTSpec


@register_backend_kind
class MonolithicBackend(Backend):
    """One server ViT on one device; its logits are the answer (fusion is the identity).

    Args:
        server: the server ViT (any :class:`~semcomm.models.ViTAdapter`), or a latent pair's server as a
            :class:`~semcomm.server.backends.latent.LatentStage` (:meth:`of_latent_pair`): the backend then reads
            latents.
        device: where it runs (default: the server itself, unbounded memory, speed 1).
        bytes_per_param: bytes per parameter when checking the device's memory.

    >>> from semcomm.models import create_model
    >>> backend = MonolithicBackend(create_model("semcomm_vit_edge_p4_32"))
    >>> backend.classify(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape
    torch.Size([2, 10])
    """

    kind = "monolithic"

    def __init__(self, server: ViTAdapter | LatentStage, device: Device | None = None, bytes_per_param: int = 4):
        devices = host_device() if device is None else DeviceConfig((device,))
        if not isinstance(server, (ViTAdapter, LatentStage)):
            raise TypeError(f"the monolithic backend wraps a semcomm ViTAdapter or a LatentStage, got "
                            f"{type(server).__name__}")
        super().__init__(server.image_size, server.patch_size, server.num_classes, devices)
        if isinstance(server, LatentStage):
            self.reads, self.server = "latents", server
        else:
            self.server = ViTStage(server)
        self.check_stages(bytes_per_param)
        self.eval()

    @property
    def stages(self) -> list[Stage]:
        return [Stage("server", self.server, self.devices.devices[0].name)]

    def fuse(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return outputs[0]

    @classmethod
    def of_latent_pair(cls, pair, device: Device | None = None, bytes_per_param: int = 4) -> "MonolithicBackend":
        """The server of a latent codec pair (:class:`~semcomm.rate.latent.LatentPair`) as a backend that reads
        its latents (its weights shared, not copied)."""
        return cls(LatentStage(pair.codec.server, pair.config), device, bytes_per_param)

    # ---- saving (see semcomm.server.backends.storage) ----------------------------------------------------
    def describe(self) -> dict:
        """The structure (no weights) that :meth:`skeleton` rebuilds (the server must be a TimmViT, or a latent
        pair's server)."""
        if self.reads == "latents":
            return {"latent_server": asdict(self.server.config)}
        return {"server": ViTSpec.of(self.server.vit).to_dict()}

    @classmethod
    def skeleton(cls, description: dict, devices: DeviceConfig, placement: Sequence[str]) -> "MonolithicBackend":
        """A backend of the described structure with placeholder weights (to be loaded)."""
        if "latent_server" in description:
            config = LatentConfig.from_dict(description["latent_server"])
            return cls(LatentStage(LatentServer(config), config), devices[placement[0]])
        return cls(ViTSpec.from_dict(description["server"]).build(), devices[placement[0]])


@register_backend
def monolithic(server: str | ViTAdapter = "vit-server-cifar10", device: Device | None = None) -> MonolithicBackend:
    """The server ViT (a zoo name or a model) as one stage."""
    from semcomm.models import create_model

    return MonolithicBackend(create_model(server) if isinstance(server, str) else server, device)
