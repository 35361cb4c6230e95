"""Measuring how real generated cells are."""

from ._embedding import PCAProjection, log_normalize
from ._summary import count_summary, knn_label_agreement

__all__ = ["PCAProjection", "count_summary", "knn_label_agreement", "log_normalize"]
