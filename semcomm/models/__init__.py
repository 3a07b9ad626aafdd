"""ViT adapters, the project's architectures and the model checkpoints of the zoo."""
from semcomm.models.adapter import ViTAdapter, ViTOutput, check_images
from semcomm.models.timm_vit import TimmViT
from semcomm.models.zoo import ModelCard, create_model, list_checkpoints, load_weights, model_card, save_weights

__all__ = [
    "ModelCard", "TimmViT", "ViTAdapter", "ViTOutput", "check_images", "create_model", "list_checkpoints",
    "load_weights", "model_card", "save_weights",
]
