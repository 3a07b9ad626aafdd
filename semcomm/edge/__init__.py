"""The edge device: patch importance from attention, patch selection, entropy gating and the edge encoder,
which drives a codec pair through what the edge needs of it (``codec``: the protocol and the registry of
codec pairs by name, :data:`~semcomm.edge.codec.CODECS`)."""
from semcomm.edge.encoder import EdgeAnalysis, EdgeEncoder, Transmission, collaborative_predictions
from semcomm.edge.gating import Gate
from semcomm.edge.selection import AttentionSum, RandomK, SelectionRule, SpreadTopK, Threshold, TopK, random_like

__all__ = [
    "AttentionSum", "EdgeAnalysis", "EdgeEncoder", "Gate", "RandomK", "SelectionRule", "SpreadTopK", "Threshold",
    "TopK", "Transmission", "collaborative_predictions", "random_like",
]
