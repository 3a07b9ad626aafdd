"""semcomm: semantic communication with Vision Transformers."""
from semcomm.models import ViTAdapter, create_model, list_checkpoints

__version__ = "0.1.0"
__all__ = ["ViTAdapter", "create_model", "list_checkpoints", "__version__"]
