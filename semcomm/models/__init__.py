"""ViT adapters, the project's architectures and the checkpoint zoo."""
from semcomm.models.adapter import ViTAdapter, ViTOutput, check_images
from semcomm.models.timm_vit import TimmViT
from semcomm.models.zoo import (
    CheckpointError, ModelCard, create_model, list_checkpoints, load_weights, model_card, save_weights,
)

__all__ = [
    "CheckpointError", "ModelCard", "TimmViT", "ViTAdapter", "ViTOutput", "check_images",
    "create_model", "list_checkpoints", "load_weights", "model_card", "save_weights",
]
