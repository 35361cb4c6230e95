"""Quick summaries used by the demo: label agreement and count properties."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.neighbors import KNeighborsClassifier

from ._counts import gene_mean_variance


def knn_label_agreement(
    real_embedding: np.ndarray,
    real_labels: Sequence,
    generated_embedding: np.ndarray,
    generated_labels: Sequence,
    n_neighbors: int = 10,
) -> pd.Series:
    """Fraction of generated cells a k-NN classifier fitted on real cells gives their own label.

    Returns
    -------
    Series indexed by label, plus an ``"overall"`` entry.
    """
    classifier = KNeighborsClassifier(n_neighbors=n_neighbors).fit(
        real_embedding, np.asarray(real_labels, dtype=str)
    )
    labels = np.asarray(generated_labels, dtype=str)
    correct = classifier.predict(generated_embedding) == labels
    agreement = pd.Series(correct).groupby(labels).mean()
    agreement["overall"] = correct.mean()
    return agreement


def count_summary(real, generated) -> dict[str, float]:
    """Count properties of real vs generated raw counts (cells x genes, same genes).

    Returns mean per-cell zero fraction of each, median total counts of each, and the Pearson
    correlation across genes of log mean and of log variance (genes non-zero in both).
    """
    real = sp.csr_matrix(real)
    generated = sp.csr_matrix(generated)
    if real.shape[1] != generated.shape[1]:
        raise ValueError("Real and generated counts must have the same genes.")
    mean_r, var_r = gene_mean_variance(real)
    mean_g, var_g = gene_mean_variance(generated)
    keep = (mean_r > 0) & (mean_g > 0) & (var_r > 0) & (var_g > 0)
    return {
        "zero_fraction_real": float(1 - (real.getnnz(axis=1) / real.shape[1]).mean()),
        "zero_fraction_generated": float(
            1 - (generated.getnnz(axis=1) / generated.shape[1]).mean()
        ),
        "median_total_counts_real": float(np.median(np.asarray(real.sum(axis=1)).ravel())),
        "median_total_counts_generated": float(
            np.median(np.asarray(generated.sum(axis=1)).ravel())
        ),
        "log_mean_pearson": float(np.corrcoef(np.log(mean_r[keep]), np.log(mean_g[keep]))[0, 1]),
        "log_variance_pearson": float(np.corrcoef(np.log(var_r[keep]), np.log(var_g[keep]))[0, 1]),
    }
