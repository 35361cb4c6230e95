"""Measuring how real generated cells are."""

from ._atac import (
    TFIDFProjection,
    accessibility_correlation,
    accessibility_fractions,
    inverse_document_frequency,
    marker_expression_correlation,
    marker_genes,
    tfidf,
)
from ._embedding import PCAProjection, log_normalize
from ._summary import count_summary, knn_label_agreement

__all__ = ["PCAProjection", "count_summary", "knn_label_agreement", "log_normalize"]
__all__ += [
    "TFIDFProjection",
    "accessibility_correlation",
    "accessibility_fractions",
    "inverse_document_frequency",
    "marker_expression_correlation",
    "marker_genes",
    "tfidf",
]
