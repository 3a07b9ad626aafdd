"""The rate path: level policies, bit allocation, entropy models and coders, and the codecs.

Every codec speaks one contract (:class:`~semcomm.rate.codec.Codec`: ``compress``, ``decompress``,
``classify``); the codec pairs (``raw8``, ``pixel-iaq``, ``dct-cifar10``, ``latent-cifar10``,
``hyperlatent-cifar10``) are registered by name, built with :func:`create_codec` and listed by :func:`list_codecs`.
"""
from semcomm.rate import dct, hyperlatent, latent, pixels, raw8  # noqa: F401  (register the codec pairs)
from semcomm.rate.codec import Codec, create_codec, list_codecs
from semcomm.rate.pair import CodecPair, Received

__all__ = ["Codec", "CodecPair", "Received", "create_codec", "list_codecs"]
