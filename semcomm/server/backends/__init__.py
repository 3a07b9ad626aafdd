"""Server-side backends, inference only: the contract (what arrived -> B x C logits), the monolithic,
class-partitioned (ED-ViT), decomposed (DeViT) and expert-routed backends with the structure needed to rebuild a
saved one, their engines (in-process, Ray), requests, devices, cost and storage. Building (training) a backend is
:mod:`semcomm.train.backends`'s work."""
from semcomm.server.backends.base import Backend, Stage, ViTStage, check_labels, parameter_bytes
from semcomm.server.backends.collaborate import CollaborativeResult, collaborate
from semcomm.server.backends.decomposed import DecomposedBackend, StudentStage, TokenFusion, class_token
from semcomm.server.backends.devices import Device, DeviceConfig
from semcomm.server.backends.engine import DeviceReport, Engine, EngineError, Execution, LocalEngine, RequestReport
from semcomm.server.backends.experts import ExpertBackend, ExpertClasses, ExpertStage, RoutedRequest, TopKMassRouter
from semcomm.server.backends.fusion import FusionNetwork
from semcomm.server.backends.groups import ClassGroups
from semcomm.server.backends.monolithic import MonolithicBackend
from semcomm.server.backends.partitioned import PartitionedBackend
from semcomm.server.backends.pruned import KeepPlan, prune_vit
from semcomm.server.backends.ray_engine import RayEngine
from semcomm.server.backends.registry import create_backend, list_backends, register_backend
from semcomm.server.backends.request import Request
from semcomm.server.backends.storage import (
    BackendCard, list_saved_backends, load_backend, read_backend_card, save_backend,
)
from semcomm.server.backends.submodels import ClassSubModel
from semcomm.server.backends.vitspec import ViTSpec

__all__ = [
    "Backend", "BackendCard", "ClassGroups", "ClassSubModel", "CollaborativeResult", "DecomposedBackend", "Device",
    "DeviceConfig", "DeviceReport", "Engine", "EngineError", "Execution", "ExpertBackend", "ExpertClasses",
    "ExpertStage", "FusionNetwork", "KeepPlan", "LocalEngine", "MonolithicBackend", "PartitionedBackend", "RayEngine",
    "Request", "RequestReport", "RoutedRequest", "Stage", "StudentStage", "TokenFusion", "TopKMassRouter", "ViTSpec",
    "ViTStage", "check_labels", "class_token", "collaborate", "create_backend", "list_backends", "list_saved_backends",
    "load_backend", "parameter_bytes", "prune_vit", "read_backend_card", "register_backend", "save_backend",
]
