"""The project's own ViT architectures, registered with timm.

After ``import semcomm``, ``timm.create_model("semcomm_vit_edge_p4_32")``
builds them like any timm model. Two geometries are registered at import:

* ``*_p4_32``: 32 x 32 images in 4 x 4 patches (an 8 x 8 grid of 64 patches),
  CIFAR's per-channel normalisation;
* ``*_p16_224``: 224 x 224 images in 16 x 16 patches (a 14 x 14 grid of 196
  patches, DeiT's geometry), ImageNet's normalisation. They are built with
  ``dynamic_img_size`` so a recipe may train them at a lower resolution first
  (the position embeddings are resampled on the fly; at 224 x 224 they are
  used as stored).

Any other geometry is registered on demand: :func:`vit_architecture`
(``"edge"`` or ``"server"``, image side, patch side) returns the name
``semcomm_vit_<size>_p<patch>_<image>`` after registering it, with the
shape (width, depth, heads) of the registered geometry whose patch grid is
closest in number of patches and ImageNet's normalisation. Loading a
checkpoint of such an architecture (``semcomm.create_model``) registers its
name again from the name alone (:func:`register_architecture`).
"""
from __future__ import annotations

import re
import sys

from timm.models import build_model_with_cfg, generate_default_cfgs, is_model, register_model
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
GEOMETRIES = {  # architecture name suffix -> image size, patch size, normalisation (others are added on demand)
    "p4_32": dict(img_size=32, patch_size=4, mean=CIFAR_MEAN, std=CIFAR_STD),
    "p16_224": dict(img_size=224, patch_size=16, mean=IMAGENET_MEAN, std=IMAGENET_STD, dynamic_img_size=True),
}


SIZES = ("edge", "server")
_SHAPE_GEOMETRIES = tuple(GEOMETRIES)  # the geometries whose shapes others borrow
_NAME = re.compile(r"semcomm_vit_(edge|server)_p(\d+)_(\d+)")


def _geometry(name: str) -> dict:
    return GEOMETRIES["_".join(name.split("_")[-2:])]


def _default_cfg(name: str) -> dict:
    geometry = _geometry(name)
    side = geometry["img_size"]
    return dict(input_size=(3, side, side), mean=geometry["mean"], std=geometry["std"], num_classes=10, url="")


default_cfgs = generate_default_cfgs({name: _default_cfg(name) for name in ARCHITECTURES})


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


def vit_architecture(size: str, image_size: int, patch_size: int) -> str:
    """The timm name of the project's ``size`` ViT at a geometry, registered with timm on first use.

    Args:
        size: ``"edge"`` or ``"server"``.
        image_size: side of the square input image in pixels.
        patch_size: side of a square patch in pixels; divides ``image_size``.

    Returns:
        ``semcomm_vit_<size>_p<patch>_<image>`` (e.g. ``semcomm_vit_edge_p8_64``),
        ready for ``timm.create_model`` and :class:`semcomm.train.vit.TrainConfig`.
    """
    if size not in SIZES:
        raise ValueError(f"unknown ViT size {size!r}; choose from {', '.join(SIZES)}")
    if not (isinstance(image_size, int) and isinstance(patch_size, int) and 1 <= patch_size <= image_size):
        raise ValueError(f"geometry needs integer sides with 1 <= patch <= image, got image {image_size!r}, "
                         f"patch {patch_size!r}")
    if image_size % patch_size:
        raise ValueError(f"patch size {patch_size} does not divide image size {image_size}")
    name = f"semcomm_vit_{size}_p{patch_size}_{image_size}"
    if not is_model(name):
        _register(name, size, image_size, patch_size)
    return name


def register_architecture(name: str) -> bool:
    """Register ``semcomm_vit_<size>_p<patch>_<image>`` if ``name`` has that form; False for any other name."""
    match = _NAME.fullmatch(name)
    if match is None:
        return False
    vit_architecture(match[1], int(match[3]), int(match[2]))
    return True


def _nearest_shape(size: str, image_size: int, patch_size: int) -> dict:
    """Width, depth, heads and MLP ratio of the registered ``size`` ViT whose grid has the closest patch count."""
    patches = (image_size // patch_size) ** 2

    def distance(suffix: str) -> int:
        geometry = GEOMETRIES[suffix]
        return abs((geometry["img_size"] // geometry["patch_size"]) ** 2 - patches)

    return ARCHITECTURES[f"semcomm_vit_{size}_{min(_SHAPE_GEOMETRIES, key=distance)}"]


def _register(name: str, size: str, image_size: int, patch_size: int) -> None:
    GEOMETRIES.setdefault(f"p{patch_size}_{image_size}", dict(img_size=image_size, patch_size=patch_size,
                                                              mean=IMAGENET_MEAN, std=IMAGENET_STD))
    ARCHITECTURES[name] = _nearest_shape(size, image_size, patch_size)
    default_cfgs.update(generate_default_cfgs({name: _default_cfg(name)}))

    def build(pretrained: bool = False, **kwargs) -> VisionTransformer:
        return _build(name, pretrained, **kwargs)

    build.__name__, build.__qualname__, build.__module__ = name, name, __name__
    setattr(sys.modules[__name__], name, build)
    register_model(build)
