"""The zoo's storage's error, and the warning of a zoo entry skipped while listing."""
from __future__ import annotations


class CheckpointError(RuntimeError):
    """A checkpoint's card or weights are missing, unreadable, corrupted (SHA-256) or do not fit what loads them."""


class ZooWarning(UserWarning):
    """A zoo entry that cannot be read was skipped while listing the zoo (the message names its file); loading
    that entry by name raises the :class:`CheckpointError` the warning quotes."""
