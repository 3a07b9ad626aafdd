"""Server-side backends (monolithic, class-partitioned, decomposed, expert-routed), their engines (in-process,
Ray), requests, devices, cost and storage."""
from semcomm.server.backends.assignment import Assignment, assign_greedy
from semcomm.server.backends.base import Backend, Stage, ViTStage, check_labels, parameter_bytes
from semcomm.server.backends.collaborate import CollaborativeResult, collaborate
from semcomm.server.backends.decomposed import (
    DecomposedBackend, DecomposedBuild, StudentStage, TokenFusion, build_decomposed, class_token, finetune_jointly,
    make_student, train_token_fusion,
)
from semcomm.server.backends.devices import Device, DeviceConfig
from semcomm.server.backends.engine import DeviceReport, Engine, EngineError, Execution, LocalEngine, RequestReport
from semcomm.server.backends.experts import ExpertBackend, ExpertClasses, ExpertStage, RoutedRequest, TopKMassRouter
from semcomm.server.backends.fusion import FusionNetwork, train_fusion
from semcomm.server.backends.grouping import ClassGroups, confusion_matrix, group_by_confusion, group_randomly
from semcomm.server.backends.monolithic import MonolithicBackend
from semcomm.server.backends.partitioned import PartitionedBackend, PartitionedBuild, build_partitioned
from semcomm.server.backends.pruning import (
    KeepPlan, UnitImportance, keep_plan, plan_for_budget, prune_vit, pruned_parameters, unit_importance,
)
from semcomm.server.backends.ray_engine import RayEngine
from semcomm.server.backends.registry import create_backend, list_backends, register_backend
from semcomm.server.backends.request import Request
from semcomm.server.backends.storage import (
    BackendCard, list_saved_backends, load_backend, read_backend_card, save_backend,
)
from semcomm.server.backends.vitspec import ViTSpec, keep_blocks, student_vit

__all__ = [
    "Assignment", "Backend", "BackendCard", "ClassGroups", "CollaborativeResult", "DecomposedBackend",
    "DecomposedBuild", "Device", "DeviceConfig", "DeviceReport", "Engine", "EngineError", "Execution",
    "ExpertBackend", "ExpertClasses", "ExpertStage", "FusionNetwork", "KeepPlan", "LocalEngine", "MonolithicBackend",
    "PartitionedBackend", "PartitionedBuild", "RayEngine", "Request", "RequestReport", "RoutedRequest", "Stage",
    "StudentStage", "TokenFusion", "TopKMassRouter", "UnitImportance", "ViTSpec", "ViTStage", "assign_greedy",
    "build_decomposed", "build_partitioned", "check_labels", "class_token", "collaborate", "confusion_matrix",
    "create_backend", "finetune_jointly", "group_by_confusion", "group_randomly", "keep_blocks", "keep_plan",
    "list_backends", "list_saved_backends", "load_backend", "make_student", "parameter_bytes", "plan_for_budget",
    "prune_vit", "pruned_parameters", "read_backend_card", "register_backend", "save_backend", "student_vit",
    "train_fusion", "train_token_fusion", "unit_importance",
]
