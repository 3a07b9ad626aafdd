"""Server-side backends (monolithic, class-partitioned) and the engines that run them (in-process, Ray)."""
from .assignment import Assignment, assign_greedy
from .base import Backend, Stage, ViTStage, check_labels, parameter_bytes
from .devices import Device, DeviceConfig
from .engine import DeviceReport, Engine, EngineError, Execution, LocalEngine, RequestReport
from .fusion import FusionNetwork, train_fusion
from .grouping import ClassGroups, confusion_matrix, group_by_confusion, group_randomly
from .monolithic import MonolithicBackend
from .partitioned import PartitionedBackend, PartitionedBuild, build_partitioned
from .pruning import KeepPlan, UnitImportance, keep_plan, plan_for_budget, prune_vit, pruned_parameters, unit_importance
from .ray_engine import RayEngine
from .registry import create_backend, list_backends, register_backend
from .request import Request
from .submodels import ClassSubModel, finetune_submodel

__all__ = [
    "Assignment", "Backend", "ClassGroups", "ClassSubModel", "Device", "DeviceConfig", "DeviceReport", "Engine",
    "EngineError", "Execution", "FusionNetwork", "KeepPlan", "LocalEngine", "MonolithicBackend",
    "PartitionedBackend", "PartitionedBuild", "RayEngine", "Request", "RequestReport", "Stage", "UnitImportance",
    "ViTStage", "assign_greedy", "build_partitioned", "check_labels", "confusion_matrix", "create_backend",
    "finetune_submodel", "group_by_confusion", "group_randomly", "keep_plan", "list_backends", "parameter_bytes",
    "plan_for_budget", "prune_vit", "pruned_parameters", "register_backend", "train_fusion", "unit_importance",
]
