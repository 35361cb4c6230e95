"""Properties of raw counts: zeros per cell and per-gene mean and variance."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.stats import wasserstein_distance

from scvi_cfgen._validation import row_sums


def _matrix(counts):
    return counts.X if hasattr(counts, "X") else counts


def zero_fractions(counts) -> np.ndarray:
    """Fraction of genes with a zero count in every cell (AnnData or cells x genes matrix)."""
    matrix = _matrix(counts)
    n_genes = matrix.shape[1]
    if sp.issparse(matrix):
        nonzero = np.asarray((sp.csr_matrix(matrix) != 0).sum(axis=1)).ravel()
    else:
        nonzero = np.count_nonzero(np.asarray(matrix), axis=1)
    return 1.0 - nonzero / n_genes


def gene_mean_variance(counts) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and (population) variance of counts, without densifying sparse input."""
    matrix = _matrix(counts)
    if sp.issparse(matrix):
        matrix = sp.csr_matrix(matrix, dtype=np.float64)
        mean = np.asarray(matrix.mean(axis=0)).ravel()
        second = np.asarray(matrix.multiply(matrix).mean(axis=0)).ravel()
    else:
        matrix = np.asarray(matrix, dtype=np.float64)
        mean, second = matrix.mean(axis=0), (matrix**2).mean(axis=0)
    return mean, np.maximum(second - mean**2, 0.0)


def _check_genes(real, generated) -> None:
    if _matrix(real).shape[1] != _matrix(generated).shape[1]:
        raise ValueError(
            f"Real and generated counts must have the same genes, got "
            f"{_matrix(real).shape[1]} and {_matrix(generated).shape[1]} columns."
        )


def zeros_wasserstein(real, generated) -> float:
    """1-D Wasserstein distance between the per-cell zero fractions of two sets of raw counts."""
    _check_genes(real, generated)
    return float(wasserstein_distance(zero_fractions(real), zero_fractions(generated)))


def _log_moment_errors(real, generated) -> tuple[float, float]:
    _check_genes(real, generated)
    moments_real, moments_generated = gene_mean_variance(real), gene_mean_variance(generated)
    mean_error, variance_error = (
        float(np.abs(np.log1p(a) - np.log1p(b)).mean())
        for a, b in zip(moments_real, moments_generated, strict=True)
    )
    return mean_error, variance_error


def log_mean_error(real, generated) -> float:
    """Mean over genes of ``|log1p(mean real) - log1p(mean generated)|`` on raw counts."""
    return _log_moment_errors(real, generated)[0]


def log_variance_error(real, generated) -> float:
    """Mean over genes of ``|log1p(var real) - log1p(var generated)|`` on raw counts.

    Over-dispersion is where count generators usually fail (a wrong dispersion leaves the means
    right and the variances wrong), so this is reported apart from :func:`log_mean_error`.
    """
    return _log_moment_errors(real, generated)[1]


def total_counts(counts) -> np.ndarray:
    """Total counts of every cell."""
    return row_sums(_matrix(counts))
