"""Plots comparing generated and real cells, and training curves."""

from ._embedding import real_vs_generated_embedding
from ._history import training_history

__all__ = ["real_vs_generated_embedding", "training_history"]
