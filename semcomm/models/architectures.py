"""The project's own ViT architectures, registered with timm.

After ``import semcomm``, ``timm.create_model("semcomm_vit_edge_p4_32")``
builds them like any timm model. Two geometries:

* ``*_p4_32``: 32 x 32 images in 4 x 4 patches (an 8 x 8 grid of 64 patches),
  CIFAR's per-channel normalisation;
* ``*_p16_224``: 224 x 224 images in 16 x 16 patches (a 14 x 14 grid of 196
  patches, DeiT's geometry), ImageNet's normalisation. They are built with
  ``dynamic_img_size`` so a recipe may train them at a lower resolution first
  (the position embeddings are resampled on the fly; at 224 x 224 they are
  used as stored).
"""
from __future__ import annotations

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ARCHITECTURES = {
    # about 0.81 M parameters: the edge encoder
    "semcomm_vit_edge_p4_32": dict(embed_dim=128, depth=6, num_heads=4, mlp_ratio=2.0),
    # about 3.4 M parameters: the server
    "semcomm_vit_server_p4_32": dict(embed_dim=192, depth=9, num_heads=6, mlp_ratio=3.0),
    # about 2.9 M parameters: the edge encoder at ImageNet geometry
    "semcomm_vit_edge_p16_224": dict(embed_dim=192, depth=6, num_heads=3, mlp_ratio=4.0),
    # about 5.5 M parameters: the server at ImageNet geometry (DeiT-Tiny's shape)
    "semcomm_vit_server_p16_224": dict(embed_dim=192, depth=12, num_heads=3, mlp_ratio=4.0),
}
GEOMETRIES = {  # architecture name suffix -> image size, patch size, normalisation
    "p4_32": dict(img_size=32, patch_size=4, mean=CIFAR_MEAN, std=CIFAR_STD),
    "p16_224": dict(img_size=224, patch_size=16, mean=IMAGENET_MEAN, std=IMAGENET_STD, dynamic_img_size=True),
}


def _geometry(name: str) -> dict:
    return GEOMETRIES["_".join(name.split("_")[-2:])]


default_cfgs = generate_default_cfgs(
    {
        name: dict(input_size=(3, _geometry(name)["img_size"], _geometry(name)["img_size"]),
                   mean=_geometry(name)["mean"], std=_geometry(name)["std"], num_classes=10, url="")
        for name in ARCHITECTURES
    }
)


def _build(name: str, pretrained: bool = False, **kwargs) -> VisionTransformer:
    if pretrained:
        raise ValueError(f"{name} has no downloadable weights; load a zoo checkpoint with semcomm.create_model")
    geometry = {k: v for k, v in _geometry(name).items() if k not in ("mean", "std")}
    args = dict(num_classes=10, **geometry, **ARCHITECTURES[name])
    return build_model_with_cfg(VisionTransformer, name, pretrained=False, **{**args, **kwargs})


@register_model
def semcomm_vit_edge_p4_32(pretrained: bool = False, **kwargs) -> VisionTransformer:
    return _build("semcomm_vit_edge_p4_32", pretrained, **kwargs)


@register_model
def semcomm_vit_server_p4_32(pretrained: bool = False, **kwargs) -> VisionTransformer:
    return _build("semcomm_vit_server_p4_32", pretrained, **kwargs)


@register_model
def semcomm_vit_edge_p16_224(pretrained: bool = False, **kwargs) -> VisionTransformer:
    return _build("semcomm_vit_edge_p16_224", pretrained, **kwargs)


@register_model
def semcomm_vit_server_p16_224(pretrained: bool = False, **kwargs) -> VisionTransformer:
    return _build("semcomm_vit_server_p16_224", pretrained, **kwargs)
