"""semcomm: semantic communication with Vision Transformers.

The names a notebook uses, from the library core (``semcomm.train`` and ``semcomm.experiments`` are imported
only when asked for, Ray only by a Ray engine):

>>> import semcomm
>>> edge = semcomm.create_model("vit-edge-cifar10")  # doctest: +SKIP
>>> test = semcomm.load_split("cifar10", "test", limit=256)  # doctest: +SKIP
>>> encoder = semcomm.EdgeEncoder(edge, semcomm.TopK(16), semcomm.Gate("min_entropy", 1.0))  # doctest: +SKIP
"""
from semcomm.data import ImageSplit, evaluation_split, load_split
from semcomm.edge import (
    AttentionSum, EdgeAnalysis, EdgeEncoder, Gate, RandomK, SelectionRule, SpreadTopK, Threshold, TopK, Transmission,
    collaborative_predictions, random_like,
)
from semcomm.models import TimmViT, ViTAdapter, create_model, list_checkpoints
from semcomm.rate import Codec, CodecPair, create_codec, list_codecs
from semcomm.server import ServerDecoder
from semcomm.server.backends import create_backend, list_backends, list_saved_backends, load_backend
from semcomm.transport import LinkSpec, over_link
from semcomm.zoo import CheckpointError

__version__ = "0.1.0"
__all__ = [
    "AttentionSum", "CheckpointError", "Codec", "CodecPair", "EdgeAnalysis", "EdgeEncoder", "Gate", "ImageSplit",
    "LinkSpec", "RandomK", "SelectionRule", "ServerDecoder", "SpreadTopK", "Threshold", "TimmViT", "TopK",
    "Transmission", "ViTAdapter", "__version__", "collaborative_predictions", "create_backend", "create_codec",
    "create_model", "evaluation_split", "list_backends", "list_checkpoints", "list_codecs", "list_saved_backends",
    "load_backend", "load_split", "over_link", "random_like",
]
