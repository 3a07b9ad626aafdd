"""Server-side backends (monolithic, class-partitioned, decomposed, expert-routed), their engines (in-process,
Ray), training and saving."""
from .assignment import Assignment, assign_greedy
from .base import Backend, Stage, ViTStage, check_labels, parameter_bytes
from .collaborate import CollaborativeResult, collaborate
from .decomposed import (
    DecomposedBackend, DecomposedBuild, StudentStage, TokenFusion, build_decomposed, class_token, finetune_jointly,
    make_student, train_token_fusion,
)
from .devices import Device, DeviceConfig
from .distillation import DistillConfig, distill, distill_together, distillation_loss
from .engine import DeviceReport, Engine, EngineError, Execution, LocalEngine, RequestReport
from .experts import ExpertBackend, ExpertClasses, ExpertStage, RoutedRequest, TopKMassRouter
from .fusion import FusionNetwork, train_fusion
from .grouping import ClassGroups, confusion_matrix, group_by_confusion, group_randomly
from .monolithic import MonolithicBackend
from .partitioned import PartitionedBackend, PartitionedBuild, build_partitioned
from .pruning import KeepPlan, UnitImportance, keep_plan, plan_for_budget, prune_vit, pruned_parameters, unit_importance
from .ray_engine import RayEngine
from .registry import create_backend, list_backends, register_backend
from .relations import layer_pairs, recording_qkv, relation_kl, token_relations
from .request import Request
from .specialists import ExpertBuild, ProgressiveSchedule, build_experts, train_specialist
from .storage import BackendCard, list_saved_backends, load_backend, read_backend_card, save_backend
from .submodels import ClassSubModel, finetune_submodel
from .vitspec import ViTSpec, keep_blocks, student_vit

__all__ = [
    "Assignment", "Backend", "BackendCard", "ClassGroups", "ClassSubModel", "CollaborativeResult",
    "DecomposedBackend", "DecomposedBuild", "Device", "DeviceConfig", "DeviceReport", "DistillConfig", "Engine",
    "EngineError", "Execution", "ExpertBackend", "ExpertBuild", "ExpertClasses", "ExpertStage", "FusionNetwork",
    "KeepPlan", "LocalEngine", "MonolithicBackend", "PartitionedBackend", "PartitionedBuild", "ProgressiveSchedule",
    "RayEngine", "Request", "RequestReport", "RoutedRequest", "Stage", "StudentStage", "TokenFusion",
    "TopKMassRouter", "UnitImportance", "ViTSpec", "ViTStage", "assign_greedy", "build_decomposed", "build_experts",
    "build_partitioned", "check_labels", "class_token", "collaborate", "confusion_matrix", "create_backend",
    "distill", "distill_together", "distillation_loss", "finetune_jointly", "finetune_submodel", "group_by_confusion",
    "group_randomly", "keep_blocks", "keep_plan", "layer_pairs", "list_backends", "list_saved_backends", "load_backend",
    "make_student", "parameter_bytes", "plan_for_budget", "prune_vit", "pruned_parameters", "read_backend_card",
    "recording_qkv", "register_backend", "relation_kl", "save_backend", "student_vit", "token_relations",
    "train_fusion", "train_specialist", "train_token_fusion", "unit_importance",
]
