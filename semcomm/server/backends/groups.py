"""The partition of a backend's classes into groups: which classes each sub-model or student answers for."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ClassGroups:
    """A partition of the classes 0..C-1 into N non-empty groups.

    Attributes:
        groups: N tuples of class indices (each sorted ascending).
        num_classes: C; every class lies in exactly one group.

    >>> ClassGroups([[0, 2], [1, 3]], 4).group_of(3)
    1
    """

    groups: tuple[tuple[int, ...], ...]
    num_classes: int

    def __post_init__(self):
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {self.num_classes!r}")
        if isinstance(self.groups, (str, bytes)) or not isinstance(self.groups, Sequence) or not self.groups:
            raise ValueError(f"groups must be a non-empty list of lists of class indices, got {self.groups!r}")
        groups = []
        for i, group in enumerate(self.groups):
            if isinstance(group, (str, bytes)) or not isinstance(group, Sequence) or len(group) == 0:
                raise ValueError(f"group {i} must be a non-empty list of class indices, got {group!r}")
            if any(isinstance(c, bool) or not isinstance(c, int) for c in group):
                raise ValueError(f"group {i} must hold integer class indices, got {list(group)!r}")
            groups.append(tuple(sorted(group)))
        seen: dict[int, int] = {}
        for i, group in enumerate(groups):
            outside = [c for c in group if not 0 <= c < self.num_classes]
            if outside:
                raise ValueError(f"group {i} holds classes {outside} outside 0..{self.num_classes - 1}")
            for c in group:
                if c in seen:
                    raise ValueError(f"class {c} is in group {seen[c]} and group {i}: groups must not overlap")
                seen[c] = i
        missing = sorted(set(range(self.num_classes)) - set(seen))
        if missing:
            raise ValueError(f"groups do not cover all {self.num_classes} classes: {missing} are in no group")
        object.__setattr__(self, "groups", tuple(groups))

    def __len__(self) -> int:
        return len(self.groups)

    def __iter__(self):
        return iter(self.groups)

    def __getitem__(self, i: int) -> tuple[int, ...]:
        return self.groups[i]

    @property
    def sizes(self) -> list[int]:
        return [len(g) for g in self.groups]

    def group_of(self, c: int) -> int:
        """The group holding class ``c``."""
        for i, group in enumerate(self.groups):
            if c in group:
                return i
        raise ValueError(f"class {c} outside 0..{self.num_classes - 1}")

    def order(self) -> torch.Tensor:
        """C int64: the classes in group order (group 0's, then group 1's, ...): where each concatenated
        sub-model output belongs in the full label space."""
        return torch.tensor([c for group in self.groups for c in group], dtype=torch.int64, device="cpu")

    def to_list(self) -> list[list[int]]:
        return [list(g) for g in self.groups]
