"""The edge device: patch importance from attention, patch selection, entropy gating and the edge encoder,
which drives a codec pair through what the edge needs of it (``codec``: the protocol and the registry of
codec pairs by name, :data:`~semcomm.edge.codec.CODECS`)."""
from semcomm.edge.codec import CODECS
from semcomm.edge.encoder import EdgeAnalysis, EdgeEncoder, Transmission, collaborative_predictions
from semcomm.edge.gating import GATES, Gate
from semcomm.edge.importance import IMPORTANCE, patch_importance
from semcomm.edge.selection import (
    SELECTION_RULES, AttentionSum, RandomK, SelectionRule, SpreadTopK, Threshold, TopK, random_like, selection_rules,
)

__all__ = [
    "CODECS", "GATES", "IMPORTANCE", "SELECTION_RULES", "AttentionSum", "EdgeAnalysis", "EdgeEncoder", "Gate",
    "RandomK", "SelectionRule", "SpreadTopK", "Threshold", "TopK", "Transmission", "collaborative_predictions",
    "patch_importance", "random_like", "selection_rules",
]
