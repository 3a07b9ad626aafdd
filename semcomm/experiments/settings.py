"""The fields a result records about the settings that made it: gate, selection rule, level policy.

Results keep these as plain JSON fields beside their display labels, so a notebook filters points by
``point.rule == "top-k" and point.budget == 16`` and nothing reads a label back into settings. Names are
the ones the strategies are registered under (:data:`~semcomm.edge.gating.GATES`,
:data:`~semcomm.edge.selection.SELECTION_RULES`, :data:`~semcomm.rate.policies.LEVEL_POLICIES`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, is_dataclass

from semcomm.edge.gating import GATES, Gate
from semcomm.edge.selection import SelectionRule
from semcomm.rate.policies import LEVEL_POLICIES, LevelPolicy


def gate_fields(gate: Gate | None) -> dict:
    """``{"gate", "gate_kind", "threshold"}`` of a gate (None: every image sent, gate ``none``).

    The threshold of a gate that never offloads (inf, the edge alone) is recorded as None: JSON has no infinity.
    """
    if gate is None:
        return dict(gate="none", gate_kind=None, threshold=None)
    return dict(gate=gate.label, gate_kind=GATES.name_of(gate.kind),
                threshold=None if math.isinf(gate.threshold) else gate.threshold)


def rule_fields(name: str, budget: int | None, rule: SelectionRule) -> dict:
    """``{"rule", "budget", "rule_settings"}``: the rule's registered name, its patches per image (None for a rule
    without a fixed budget) and its parameters (a dataclass rule's fields, else None)."""
    return dict(rule=name, budget=budget, rule_settings=_parameters(rule))


def policy_fields(policy: LevelPolicy | None) -> dict:
    """``{"policy", "policy_settings"}``: the level policy's registered name and its parameters (both None for no
    policy: raw 8-bit patches)."""
    if policy is None:
        return dict(policy=None, policy_settings=None)
    return dict(policy=LEVEL_POLICIES.name_of(type(policy)), policy_settings=_parameters(policy))


def _parameters(strategy: object) -> dict | None:
    """A dataclass strategy's fields (a function among them by its name), else None."""
    if not is_dataclass(strategy):
        return None
    plain = (str, int, float, bool, type(None))
    return {key: value if isinstance(value, plain) else getattr(value, "__name__", repr(value))
            for key, value in asdict(strategy).items()}
