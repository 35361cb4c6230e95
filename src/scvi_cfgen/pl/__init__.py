"""Plots comparing generated and real cells."""

from ._embedding import real_vs_generated_embedding

__all__ = ["real_vs_generated_embedding"]
