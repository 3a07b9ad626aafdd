"""Building backends: distillation, relation distillation, sub-model fine-tuning, specialists, resumable phases
and the CIFAR-10 recipes."""
from semcomm.train.backends.distillation import DistillConfig, distill, distill_together, distillation_loss
from semcomm.train.backends.relations import layer_pairs, recording_qkv, relation_kl, token_relations
from semcomm.train.backends.specialists import ExpertBuild, ProgressiveSchedule, build_experts, train_specialist
from semcomm.train.backends.submodels import ClassSubModel, finetune_submodel

__all__ = [
    "ClassSubModel", "DistillConfig", "ExpertBuild", "ProgressiveSchedule", "build_experts", "distill",
    "distill_together", "distillation_loss", "finetune_submodel", "layer_pairs", "recording_qkv", "relation_kl",
    "token_relations", "train_specialist",
]
