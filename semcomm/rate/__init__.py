"""The rate path: bit allocation, transforms, entropy models and coders, bitstream versions, codec pairs."""
from semcomm.rate import dct, latent, pixels  # noqa: F401  (register the codec pairs)
from semcomm.rate.pair import CodecPair, Received, create_codec, list_codecs, register_codec

__all__ = ["CodecPair", "Received", "create_codec", "list_codecs", "register_codec"]
