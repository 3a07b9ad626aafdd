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

Every card is checked whole when read (JSON object, its fields and their types, the values its kind refuses): a
bad one is a :class:`CheckpointError` naming the file and the field; listing the zoo skips it with a
:class:`ZooWarning` naming the file (:func:`read_cards`), so one bad file never hides the others.
"""
from semcomm.zoo.cards import Card, count_problems, name_problems, read_cards, sha256_problems, write_json
from semcomm.zoo.errors import CheckpointError, ZooWarning
from semcomm.zoo.folders import SHIPPED_DIR, USER_ZOO, find_in_zoo, is_shipped, user_zoo_dirs, zoo_dirs, zoo_entries
from semcomm.zoo.tensors import file_sha256, load_state, load_tensors, save_tensors, verify_sha256

__all__ = [
    "Card", "CheckpointError", "SHIPPED_DIR", "USER_ZOO", "ZooWarning", "count_problems", "file_sha256",
    "find_in_zoo", "is_shipped", "load_state", "load_tensors", "name_problems", "read_cards", "save_tensors",
    "sha256_problems", "user_zoo_dirs", "verify_sha256", "write_json", "zoo_dirs", "zoo_entries",
]
