"""The project's own ViT architectures, registered with timm.

After ``import semcomm``, ``timm.create_model("semcomm_vit_edge_p4_32")``
builds them like any timm model. All take 32 x 32 images in 4 x 4 patches
(an 8 x 8 grid of 64 patches) and CIFAR's per-channel normalisation.
"""
from __future__ import annotations

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

ARCHITECTURES = {
    # about 0.81 M parameters: the edge encoder
    "semcomm_vit_edge_p4_32": dict(embed_dim=128, depth=6, num_heads=4, mlp_ratio=2.0),
    # about 3.4 M parameters: the server
    "semcomm_vit_server_p4_32": dict(embed_dim=192, depth=9, num_heads=6, mlp_ratio=3.0),
}


default_cfgs = generate_default_cfgs(
    {
        name: dict(input_size=(3, 32, 32), mean=CIFAR_MEAN, std=CIFAR_STD, num_classes=10, url="")
        for name in ARCHITECTURES
    }
)


def _build(name: str, pretrained: bool = False, **kwargs) -> VisionTransformer:
    if pretrained:
        raise ValueError(f"{name} has no downloadable weights; load a zoo checkpoint with semcomm.create_model")
    args = dict(img_size=32, patch_size=4, num_classes=10, **ARCHITECTURES[name])
    return build_model_with_cfg(VisionTransformer, name, pretrained=False, **{**args, **kwargs})


@register_model
def semcomm_vit_edge_p4_32(pretrained: bool = False, **kwargs) -> VisionTransformer:
    return _build("semcomm_vit_edge_p4_32", pretrained, **kwargs)


@register_model
def semcomm_vit_server_p4_32(pretrained: bool = False, **kwargs) -> VisionTransformer:
    return _build("semcomm_vit_server_p4_32", pretrained, **kwargs)
