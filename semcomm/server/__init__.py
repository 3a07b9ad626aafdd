"""The server side: the decoder that parses strings and classifies, and the backends that run the classifier."""
from semcomm.server.decoder import ServerDecoder

__all__ = ["ServerDecoder"]
