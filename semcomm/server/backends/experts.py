"""Expert routing: the edge ViT as generalist, expert ViTs on their devices, one expert per offloaded image.

Each expert is a ViT over *all* C classes, specialised on a subset of them
(:mod:`~semcomm.train.backends.specialists` trains it). When the edge's gate
offloads an image, the router looks at the edge's own prediction: the
softmax probabilities p of the edge's top-k classes are summed per expert,

    mass_e = sum of p_c over the top-k classes c in expert e's subset,

and the image goes to the expert of largest mass (ties: the expert holding
the edge's top-1 class, then the lower index). Only that expert runs on it:
its device is sent that image's patches and sends back its B_e x C logits,
and no other device sees the image; a batch of B images is split among the
experts, which work in parallel. The route is decided where the edge's
logits are (the edge device, which knows them anyway) and travels with the
request; when the request comes without them (e.g. from ``ServerDecoder``,
which only has the received patches), the backend's own copy of the
generalist runs on what arrived, on the host, to route.

:class:`ExpertClasses` holds the subsets: together they must cover all
classes; they may overlap only when built with ``allow_overlap=True`` (a
class in several subsets counts toward each of them).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from semcomm.models.timm_vit import TimmViT
from semcomm.server.backends.base import Backend, Stage, ViTStage, check_members
from semcomm.server.backends.devices import DeviceConfig
from semcomm.server.backends.request import Request
from semcomm.server.backends.storage import register_backend_kind
from semcomm.server.backends.vitspec import ViTSpec


@dataclass(frozen=True)
class ExpertClasses:
    """The class subset of each of E experts over C classes.

    Attributes:
        subsets: E non-empty tuples of class indices (each sorted ascending).
        num_classes: C; every class is in at least one subset.
        allow_overlap: whether a class may be in several subsets.

    >>> ExpertClasses([[0, 2], [1, 3]], 4).membership().int()
    tensor([[1, 0, 1, 0],
            [0, 1, 0, 1]], dtype=torch.int32)
    """

    subsets: tuple[tuple[int, ...], ...]
    num_classes: int
    allow_overlap: bool = False

    def __post_init__(self):
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {self.num_classes!r}")
        if isinstance(self.subsets, (str, bytes)) or not isinstance(self.subsets, Sequence) or not self.subsets:
            raise ValueError(f"subsets must be a non-empty list of lists of class indices, got {self.subsets!r}")
        subsets, owner = [], {}
        for i, subset in enumerate(self.subsets):
            if isinstance(subset, (str, bytes)) or not isinstance(subset, Sequence) or len(subset) == 0:
                raise ValueError(f"expert {i}'s class subset must be a non-empty list of class indices, got {subset!r}")
            if any(isinstance(c, bool) or not isinstance(c, int) for c in subset) or len(set(subset)) != len(subset):
                raise ValueError(f"expert {i}'s class subset must hold distinct integer class indices, got "
                                 f"{list(subset)!r}")
            outside = [c for c in subset if not 0 <= c < self.num_classes]
            if outside:
                raise ValueError(f"expert {i}'s class subset holds classes {outside} outside 0..{self.num_classes - 1}")
            for c in subset:
                if c in owner and not self.allow_overlap:
                    raise ValueError(f"class {c} is in the subsets of expert {owner[c]} and expert {i}: expert "
                                     "subsets must not overlap (pass allow_overlap=True to let a class belong to "
                                     "several experts)")
                owner.setdefault(c, i)
            subsets.append(tuple(sorted(subset)))
        missing = sorted(set(range(self.num_classes)) - set(owner))
        if missing:
            raise ValueError(f"the experts' class subsets do not cover all {self.num_classes} classes: {missing} "
                             "belong to no expert, so the router could never send their images anywhere")
        object.__setattr__(self, "subsets", tuple(subsets))

    def __len__(self) -> int:
        return len(self.subsets)

    def membership(self) -> torch.Tensor:
        """E x C booleans: ``[e, c]`` when class c is in expert e's subset."""
        held = torch.zeros(len(self.subsets), self.num_classes, dtype=torch.bool, device="cpu")
        for e, subset in enumerate(self.subsets):
            held[e, list(subset)] = True
        return held

    def to_list(self) -> list[list[int]]:
        return [list(s) for s in self.subsets]


class TopKMassRouter:
    """Pick one expert per image from the edge's logits (rule in the module docstring).

    Args:
        classes: the experts' class subsets.
        k: how many of the edge's most probable classes count (1 <= k <= C).

    >>> router = TopKMassRouter(ExpertClasses([[0, 1], [2, 3]], 4), k=3)
    >>> logits = torch.tensor([[2.0, 0.0, 1.9, 1.8]])   # p = 0.35, 0.05, 0.32, 0.29
    >>> router.mass(logits).round(decimals=2), router(logits)   # the top-1 class is expert 0's, the mass expert 1's
    (tensor([[0.3500, 0.6000]], dtype=torch.float64), tensor([1]))
    """

    def __init__(self, classes: ExpertClasses, k: int = 3):
        if not isinstance(classes, ExpertClasses):
            raise TypeError(f"classes must be an ExpertClasses, got {type(classes).__name__}")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= classes.num_classes:
            raise ValueError(f"k must be an integer in 1..{classes.num_classes} (the classes), got {k!r}")
        self.classes, self.k = classes, k
        self._held = classes.membership().double()  # E x C

    def mass(self, edge_logits: torch.Tensor) -> torch.Tensor:
        """B x E: per expert, the edge's probability on its top-k classes that lie in the expert's subset."""
        c = self.classes.num_classes
        if not isinstance(edge_logits, torch.Tensor) or edge_logits.ndim != 2 or edge_logits.shape[1] != c:
            raise ValueError(f"edge logits must be B x C = B x {c}, got "
                             f"{tuple(getattr(edge_logits, 'shape', ())) or type(edge_logits).__name__}")
        probs = edge_logits.double().softmax(-1)
        top = probs.topk(self.k, dim=-1)
        kept = torch.zeros_like(probs).scatter_(1, top.indices, top.values)
        return kept @ self._held.T

    def __call__(self, edge_logits: torch.Tensor) -> torch.Tensor:
        """B int64 expert indices."""
        mass = self.mass(edge_logits)
        best = mass.max(1, keepdim=True).values
        tied = mass >= best - 1e-12
        holds_top1 = self._held.T[edge_logits.argmax(-1)].bool()  # B x E
        return (tied.long() * 2 + (tied & holds_top1).long()).argmax(1)  # first maximum: the lower index


class ExpertStage(ViTStage):
    """An expert on its device: ``(images, positions) -> B x C`` logits over all classes.

    Attributes:
        vit: the expert ViT (all C classes).
        classes: the subset it is specialised on, ascending.
    """

    def __init__(self, vit: TimmViT, classes: Sequence[int]):
        super().__init__(vit)
        self.classes = tuple(sorted(int(c) for c in classes))


@dataclass(frozen=True)
class RoutedRequest:
    """A request and where each of its images goes.

    Attributes:
        request: the pixel request of all B images.
        route: B int64 expert indices.
    """

    request: Request
    route: torch.Tensor

    @property
    def batch(self) -> int:
        return self.request.batch

    def rows(self, expert: int) -> torch.Tensor:
        """Indices of the images routed to ``expert``."""
        return (self.route == expert).nonzero().flatten()


@register_backend_kind
class ExpertBackend(Backend):
    """The generalist edge plus E experts, one per device; each image runs on the one expert it is routed to.

    Args:
        edge: the generalist (routes requests that come without the edge's logits).
        experts: E experts, each over all the edge's classes, with their class subsets.
        devices: the devices.
        placement: per expert, the name of its device (distinct: one expert per device).
        top_k: k of the router.
        allow_overlap: whether the experts' subsets may overlap.
        bytes_per_param: bytes per parameter when checking each device's memory.
    """

    kind = "experts"
    routed = True  # requests take the edge's logits (``edge_logits=``)

    def __init__(self, edge: TimmViT, experts: Sequence[ExpertStage], devices: DeviceConfig,
                 placement: Sequence[str], top_k: int = 3, allow_overlap: bool = False, bytes_per_param: int = 4):
        if not isinstance(edge, TimmViT):
            raise TypeError(f"the generalist edge is a TimmViT, got {type(edge).__name__}")
        check_members(experts, ExpertStage, "expert", placement, reference=edge, reference_name="the edge")
        for i, expert in enumerate(experts):
            if expert.vit.num_classes != edge.num_classes:
                raise ValueError(f"expert {i} has {expert.vit.num_classes} classes but the edge {edge.num_classes}: "
                                 "mismatched class counts")
        if len(set(placement)) != len(placement):
            raise ValueError(f"expert routing places one expert per device, got placement {list(placement)}")
        super().__init__(edge.image_size, edge.patch_size, edge.num_classes, devices)
        self.edge = edge.eval()
        self.experts = nn.ModuleList(experts)
        self.assigned = tuple(placement)
        self.router = TopKMassRouter(ExpertClasses(tuple(e.classes for e in experts), edge.num_classes,
                                                   allow_overlap), top_k)
        self.check_stages(bytes_per_param)
        self.eval()

    @property
    def classes(self) -> ExpertClasses:
        return self.router.classes

    @property
    def stages(self) -> list[Stage]:
        return [Stage(f"expert{i}", e, d) for i, (e, d) in enumerate(zip(self.experts, self.assigned))]

    def prepare(self, request: Request, edge_logits: torch.Tensor | None = None,
                route: torch.Tensor | None = None) -> RoutedRequest:
        """The request and its route: ``route`` (B expert indices) if given, else the router's choice from
        ``edge_logits`` (B x C, the edge's on the whole images), else from the generalist run here on what
        arrived."""
        if route is None:
            if edge_logits is None:
                images, positions = request.unpack()
                with torch.no_grad():
                    edge_logits = self.edge(images) if positions is None else \
                        self.edge.forward_tokens(images, positions)
            if len(edge_logits) != request.batch:
                raise ValueError(f"edge_logits has {len(edge_logits)} rows for {request.batch} images")
            route = self.router(edge_logits)
        elif route.ndim != 1 or len(route) != request.batch or route.is_floating_point() or \
                (len(route) and (route.min() < 0 or route.max() >= len(self.experts))):
            raise ValueError(f"route must hold B = {request.batch} expert indices in 0..{len(self.experts) - 1}, "
                             f"got {route!r}")
        return RoutedRequest(request, route.long())

    def dispatch(self, routed: RoutedRequest) -> dict[str, tuple[tuple[str, ...], Request]]:
        """Each expert's device gets the images routed to it (devices with none get nothing)."""
        jobs = {}
        for i, stage in enumerate(self.stages):
            rows = routed.rows(i)
            if len(rows):
                jobs[stage.device] = ((stage.name,), routed.request.select(rows))
        return jobs

    def combine(self, outputs: dict[str, torch.Tensor], routed: RoutedRequest) -> torch.Tensor:
        """Each image's logits from the expert it went to."""
        logits = torch.zeros(routed.batch, self.num_classes, device="cpu")  # on the host
        for i, stage in enumerate(self.stages):
            if stage.name in outputs:
                logits[routed.rows(i)] = outputs[stage.name].float()
        return logits

    # ---- saving (see semcomm.server.backends.storage) ----------------------------------------------------
    def describe(self) -> dict:
        """The structure (no weights) that :meth:`skeleton` rebuilds."""
        return {"edge": ViTSpec.of(self.edge).to_dict(), "experts": [ViTSpec.of(e.vit).to_dict() for e in self.experts],
                "subsets": self.classes.to_list(), "allow_overlap": self.classes.allow_overlap, "top_k": self.router.k}

    @classmethod
    def skeleton(cls, description: dict, devices: DeviceConfig, placement: Sequence[str]) -> "ExpertBackend":
        """A backend of the described structure with placeholder weights (to be loaded)."""
        experts = [ExpertStage(ViTSpec.from_dict(spec).build(), subset)
                   for spec, subset in zip(description["experts"], description["subsets"])]
        return cls(ViTSpec.from_dict(description["edge"]).build(), experts, devices, placement,
                   description["top_k"], description["allow_overlap"])
