"""The one error of the zoo's storage."""
from __future__ import annotations


class CheckpointError(RuntimeError):
    """A checkpoint's card or weights are missing, unreadable, corrupted (SHA-256) or do not fit what loads them."""
