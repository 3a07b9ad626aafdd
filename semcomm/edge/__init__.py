"""The edge device: patch importance from attention, patch selection, entropy gating and the edge encoder."""
from semcomm.edge.encoder import EdgeAnalysis, EdgeEncoder, Transmission, collaborative_predictions
from semcomm.edge.gating import Gate
from semcomm.edge.selection import AttentionSum, RandomK, SelectionRule, SpreadTopK, Threshold, TopK, random_like

__all__ = [
    "AttentionSum", "EdgeAnalysis", "EdgeEncoder", "Gate", "RandomK", "SelectionRule", "SpreadTopK", "Threshold",
    "TopK", "Transmission", "collaborative_predictions", "random_like",
]
