"""Normalisation and a PCA projection fitted on real cells, applied out of sample alike."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA

from scvi_cfgen._validation import row_sums


def log_normalize(counts, target_sum: float = 1e4) -> np.ndarray | sp.csr_matrix:
    """``log1p`` of counts scaled to ``target_sum`` per cell (sparse in, sparse out).

    Parameters
    ----------
    counts
        Cells x genes counts: an AnnData (its ``X``), a dense array or a sparse matrix.
    target_sum
        Total counts every cell is scaled to.
    """
    matrix = counts.X if isinstance(counts, ad.AnnData) else counts
    totals = row_sums(matrix)
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    if sp.issparse(matrix):
        scaled = sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ sp.csr_matrix(matrix))
        scaled.data = np.log1p(scaled.data.astype(np.float32))
        return scaled
    return np.log1p(np.asarray(matrix, dtype=np.float32) * scale[:, None].astype(np.float32))


class PCAProjection:
    """PCA of log-normalised counts, fitted on reference cells and applied to any cells.

    Every projected set is centred with the reference means and rotated with the reference
    loadings, so real held-out cells and generated cells are projected out of sample alike.

    Parameters
    ----------
    reference
        Real cells (AnnData or counts matrix) that define the space.
    n_components
        Number of principal components.
    seed
        Seed of the randomised solver.
    """

    def __init__(self, reference, n_components: int = 30, seed: int = 0):
        data = log_normalize(reference)
        dense = data.toarray() if sp.issparse(data) else data
        n_components = min(n_components, min(dense.shape) - 1)
        self._pca = PCA(n_components=n_components, random_state=seed).fit(dense)

    @property
    def n_components(self) -> int:
        """Number of components of the projection."""
        return int(self._pca.n_components_)

    def transform(self, counts, chunk_size: int = 10_000) -> np.ndarray:
        """Project counts (AnnData or matrix) into the reference PC space, chunk by chunk."""
        data = log_normalize(counts)
        parts = []
        for start in range(0, data.shape[0], chunk_size):
            chunk = data[start : start + chunk_size]
            parts.append(self._pca.transform(chunk.toarray() if sp.issparse(chunk) else chunk))
        return np.concatenate(parts) if parts else np.zeros((0, self.n_components))
