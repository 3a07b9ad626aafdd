"""Building backends: class grouping, device assignment, class-wise pruning, sub-model fine-tuning, students,
distillation (soft labels and token relations), fusion heads, progressive specialists, resumable phases, and the
build of every trained kind (registered with the backend registry: ``create_backend("partitioned" | "devit" |
"experts", ...)`` once this package is imported). The CIFAR-10 recipes: :mod:`semcomm.train.backends.recipes`."""
from semcomm.train.backends.assignment import Assignment, assign_greedy
from semcomm.train.backends.decomposed import DecomposedBuild, build_decomposed, finetune_jointly
from semcomm.train.backends.distillation import DistillConfig, distill, distill_together, distillation_loss
from semcomm.train.backends.experts import ExpertBuild, build_experts
from semcomm.train.backends.grouping import confusion_matrix, group_by_confusion, group_randomly
from semcomm.train.backends.heads import train_fusion, train_token_fusion
from semcomm.train.backends.partitioned import PartitionedBuild, build_partitioned
from semcomm.train.backends.phases import Phases
from semcomm.train.backends.pruning import (
    UnitImportance, keep_plan, plan_for_budget, pruned_parameters, unit_importance,
)
from semcomm.train.backends.relations import layer_pairs, recording_qkv, relation_kl, token_relations
from semcomm.train.backends.specialists import ProgressiveSchedule, train_specialist
from semcomm.train.backends.students import keep_blocks, make_student, student_vit
from semcomm.train.backends.submodels import finetune_submodel

__all__ = [
    "Assignment", "DecomposedBuild", "DistillConfig", "ExpertBuild", "PartitionedBuild", "Phases",
    "ProgressiveSchedule", "UnitImportance", "assign_greedy", "build_decomposed", "build_experts", "build_partitioned",
    "confusion_matrix", "distill", "distill_together", "distillation_loss", "finetune_jointly", "finetune_submodel",
    "group_by_confusion", "group_randomly", "keep_blocks", "keep_plan", "layer_pairs", "make_student",
    "plan_for_budget", "pruned_parameters", "recording_qkv", "relation_kl", "student_vit", "token_relations",
    "train_fusion", "train_specialist", "train_token_fusion", "unit_importance",
]
