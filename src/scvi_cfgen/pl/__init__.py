"""Plots comparing generated and real cells, and training curves."""

from ._embedding import real_vs_generated_embedding
from ._history import training_history
from ._quality import mean_variance, metrics_vs_floor, zeros_histogram

__all__ = [
    "mean_variance",
    "metrics_vs_floor",
    "real_vs_generated_embedding",
    "training_history",
    "zeros_histogram",
]
