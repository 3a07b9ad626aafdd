"""Cards: what is known about a checkpoint, a dataclass stored as indented JSON next to its tensors."""
from __future__ import annotations

import json
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import TypeVar

from semcomm.zoo.errors import CheckpointError

C = TypeVar("C", bound="Card")


class Card:
    """Base of the zoo's card dataclasses (models, codec pairs, backends).

    A card is stored as JSON without its ``directory`` field (where it was read from or written to, when the
    dataclass has one); :meth:`read` refuses a file that is not JSON or whose fields are not the dataclass's.
    """

    def to_dict(self) -> dict:
        """The card as stored in its JSON file (without ``directory``)."""
        data = asdict(self)
        data.pop("directory", None)
        return data

    @classmethod
    def read(cls: type[C], path: Path) -> C:
        """The card in the JSON file ``path`` (its ``directory`` set to the file's folder).

        Raises:
            CheckpointError: the file is not valid JSON, or has unknown fields or lacks required ones.
        """
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(f"card {path} is not valid JSON: {err}") from err
        known = {f.name for f in fields(cls)} - {"directory"}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        if not isinstance(data, dict) or set(data) - known or required - set(data):
            unknown = sorted(set(data) - known) if isinstance(data, dict) else []
            missing = sorted(required - set(data)) if isinstance(data, dict) else sorted(required)
            raise CheckpointError(f"card {path} is malformed: unknown fields {unknown}, missing {missing}")
        card = cls(**data)
        if "directory" in {f.name for f in fields(cls)}:
            card.directory = path.parent
        return card

    def write(self, path: Path) -> Path:
        """Write the card as ``path`` (its ``directory`` set to the file's folder); returns ``path``."""
        write_json(path, self.to_dict())
        if hasattr(self, "directory"):
            self.directory = path.parent
        return path


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON; readers never see a half-written file."""
    tmp = path.with_suffix(".jsontmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
