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
from ._classifiers import c2st_auc, knn_f1
from ._counts import (
    gene_mean_variance,
    log_mean_error,
    log_variance_error,
    zero_fractions,
    zeros_wasserstein,
)
from ._distances import DEFAULT_MMD_GAMMAS, linear_mmd, rbf_mmd, wasserstein2
from ._embedding import PCAProjection, log_normalize
from ._evaluate import METRICS, compare_to_floor, evaluate, floor_sample
from ._summary import count_summary, knn_label_agreement

__all__ = [
    "DEFAULT_MMD_GAMMAS",
    "METRICS",
    "PCAProjection",
    "TFIDFProjection",
    "accessibility_correlation",
    "accessibility_fractions",
    "c2st_auc",
    "compare_to_floor",
    "count_summary",
    "evaluate",
    "floor_sample",
    "gene_mean_variance",
    "inverse_document_frequency",
    "knn_f1",
    "knn_label_agreement",
    "linear_mmd",
    "log_mean_error",
    "log_normalize",
    "log_variance_error",
    "marker_expression_correlation",
    "marker_genes",
    "rbf_mmd",
    "tfidf",
    "wasserstein2",
    "zero_fractions",
    "zeros_wasserstein",
]
