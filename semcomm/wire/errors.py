"""The one error of the wire: a string or packet that is truncated, corrupted or of an unknown format."""
from __future__ import annotations


class BitstreamError(ValueError):
    """A byte string is truncated, corrupted or of an unknown format."""
