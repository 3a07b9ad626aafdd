"""The edge and a backend together: the edge answers what it is sure of, the backend the rest.

:func:`collaborate` runs the edge ViT on whole images, lets a
:class:`~semcomm.gating.Gate` offload the uncertain ones, and sends those to
the backend (with the edge's logits, which a routed backend uses to pick an
expert). The result holds every image's answer, who gave it, the backend's
request reports (critical-path latency, bytes) and, for a routed backend,
the share of offloaded images each expert served. Comparing backends at the
same gate compares them at the same offload rate.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from semcomm.edge.gating import Gate
from semcomm.inference import predict_logits, top1
from semcomm.models.adapter import ViTAdapter


@dataclass
class CollaborativeResult:
    """Answers of the edge and a backend for B images.

    Attributes:
        logits: B x C, the edge's where it answered, else the backend's.
        edge_logits: B x C, the edge's on every image.
        offloaded: B booleans, True where the backend answered.
        route: B int64, the stage (expert) index each offloaded image went to and -1 where the edge answered;
            None for a backend that is not routed (every stage sees every offloaded image).
        stage_names: the backend's stage names (``route`` indexes them).
        reports: the backend's :class:`~semcomm.server.backends.engine.RequestReport` per request (batch).
    """

    logits: torch.Tensor
    edge_logits: torch.Tensor
    offloaded: torch.Tensor
    route: torch.Tensor | None
    stage_names: list[str]
    reports: list = field(default_factory=list)

    @property
    def offload_rate(self) -> float:
        """Fraction of the images the backend answered."""
        return float(self.offloaded.float().mean()) if len(self.offloaded) else 0.0

    def top1(self, labels: torch.Tensor) -> float:
        """Top-1 accuracy of the answers."""
        return top1(self.logits, labels)

    def share_served(self) -> dict[str, float]:
        """Stage (expert) name -> the fraction of the offloaded images it served (they sum to 1)."""
        if self.route is None:
            raise ValueError("share served per expert is defined for a routed backend (e.g. ExpertBackend); this "
                             "backend runs every stage on every offloaded image")
        served = self.route[self.offloaded]
        total = max(1, len(served))
        return {name: float((served == i).sum()) / total for i, name in enumerate(self.stage_names)}

    @property
    def latency_s(self) -> float:
        """Summed critical-path seconds of the backend's requests."""
        return sum(r.latency_s for r in self.reports)

    @property
    def bytes_exchanged(self) -> int:
        """Bytes between the host and the backend's devices over all requests."""
        return sum(r.bytes_exchanged for r in self.reports)


def collaborate(edge: ViTAdapter, backend, images: torch.Tensor, gate: Gate, positions: torch.Tensor | None = None,
                batch_size: int = 256, engine=None, edge_logits: torch.Tensor | None = None) -> CollaborativeResult:
    """Edge first, backend for what the gate offloads (module docstring).

    Args:
        edge: the edge ViT (run on whole images, float32).
        backend: any :class:`~semcomm.server.backends.base.Backend`.
        images: B x 3 x H x W, uint8 or float in [0, 1].
        gate: decides, from the edge's logits, which images go to the backend.
        positions: B x K patches the backend receives per image (None: whole images).
        batch_size: images per backend request.
        engine: the engine (default: the backend's).
        edge_logits: B x C logits of the edge if already computed.
    """
    if edge_logits is None:
        edge_logits = predict_logits(edge, images, bf16=False)
    if edge_logits.shape != (len(images), backend.num_classes):
        raise ValueError(f"edge logits are {tuple(edge_logits.shape)} but the backend gives B x C = "
                         f"{len(images)} x {backend.num_classes}: mismatched class counts or images")
    offloaded = gate.offload(edge_logits)
    rows = offloaded.nonzero().flatten()
    routed = getattr(backend, "routed", False)
    logits = edge_logits.clone()
    route = torch.full((len(images),), -1, dtype=torch.int64, device="cpu") if routed else None
    reports = []
    for start in range(0, len(rows), batch_size):
        part = rows[start:start + batch_size]
        extra = {"edge_logits": edge_logits[part]} if routed else {}
        out = backend.run(images[part], None if positions is None else positions[part], engine, **extra)
        logits[part] = out.logits
        reports.append(out.report)
        if routed:
            route[part] = out.route
    return CollaborativeResult(logits, edge_logits, offloaded, route, [s.name for s in backend.stages], reports)
