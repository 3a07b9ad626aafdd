"""The zoo's storage: one implementation of cards, SHA-256 and safetensors for every kind of checkpoint.

A checkpoint is a tensors file (safetensors) with a card (a JSON dataclass, :class:`Card`) that records the
file's SHA-256, verified on every load. Checkpoints are found by name in the zoo folders, first match wins
(:func:`zoo_dirs`): the user zoo (``$SEMCOMM_ZOO``, one directory or several separated by ``os.pathsep``, or
else ``<cache>/zoo``: ``$SEMCOMM_CACHE/zoo`` or ``~/.cache/semcomm/zoo``), then the checkpoints shipped in
``semcomm/zoo/checkpoints``. Both are laid out alike::

    <name>.json, <name>.safetensors           model checkpoints (semcomm.models.zoo)
    codecs/<name>.json, <name>.safetensors    codec pairs (semcomm.rate.zoo)
    codecs/hint-<edge>.json                   an edge's hint coder (semcomm.rate.zoo)
    backends/<name>/backend.json, weights.safetensors   saved backends (semcomm.server.backends.storage)

What is specific to a kind (its card's fields, how its tensors become a model) lives with that kind; this
package imports nothing of theirs.
"""
from semcomm.zoo.cards import Card, write_json
from semcomm.zoo.errors import CheckpointError
from semcomm.zoo.folders import SHIPPED_DIR, find_in_zoo, is_shipped, user_zoo_dirs, zoo_dirs, zoo_entries
from semcomm.zoo.tensors import file_sha256, load_state, load_tensors, save_tensors, verify_sha256

__all__ = [
    "Card", "CheckpointError", "SHIPPED_DIR", "file_sha256", "find_in_zoo", "is_shipped", "load_state", "load_tensors",
    "save_tensors", "user_zoo_dirs", "verify_sha256", "write_json", "zoo_dirs", "zoo_entries",
]
