"""Multiome evaluation: ATAC TF-IDF/LSI space, per-type accessibility and marker expression.

Real and generated cells are compared per label (cell type), after the same transformations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD

from ._embedding import log_normalize


def _matrix(counts) -> sp.csr_matrix:
    matrix = counts.X if isinstance(counts, ad.AnnData) else counts
    return sp.csr_matrix(matrix, dtype=np.float32)


def _binary(counts) -> sp.csr_matrix:
    matrix = _matrix(counts)
    matrix.data = (matrix.data > 0).astype(np.float32)
    matrix.eliminate_zeros()
    return matrix


def inverse_document_frequency(counts) -> np.ndarray:
    """Per-peak inverse document frequency ``n_cells / n_cells_accessible`` (1 where unseen).

    Parameters
    ----------
    counts
        Cells x peaks (AnnData, dense or sparse); any value above zero counts as accessible.
    """
    binary = _binary(counts)
    document_frequency = np.asarray(binary.sum(axis=0)).ravel()
    return np.where(
        document_frequency > 0, binary.shape[0] / np.maximum(document_frequency, 1), 1.0
    )


def tfidf(counts, idf: np.ndarray | None = None, scale_factor: float = 1e4) -> sp.csr_matrix:
    """TF-IDF of binarised peaks: ``log1p(scale_factor * x / n_accessible(cell) * idf)``.

    The accessibility matrix is binarised first, so peak counts and 0/1 data (e.g. generated
    cells) are transformed alike. Sparse in, sparse out.

    Parameters
    ----------
    counts
        Cells x peaks (AnnData, dense or sparse).
    idf
        Inverse document frequency per peak, from :func:`inverse_document_frequency` of the
        reference cells; ``None`` computes it on ``counts``.
    scale_factor
        Multiplier of the term frequency before the logarithm.
    """
    binary = _binary(counts)
    if idf is None:
        idf = inverse_document_frequency(binary)
    if len(idf) != binary.shape[1]:
        raise ValueError(f"`idf` has {len(idf)} values for {binary.shape[1]} peaks.")
    per_cell = np.asarray(binary.sum(axis=1)).ravel()
    inverse = np.divide(1.0, per_cell, out=np.zeros_like(per_cell), where=per_cell > 0)
    scaled = sp.csr_matrix(sp.diags(inverse * scale_factor) @ binary @ sp.diags(idf))
    scaled.data = np.log1p(scaled.data).astype(np.float32)
    return scaled


class TFIDFProjection:
    """LSI: TF-IDF of binarised peaks and a truncated SVD, both fitted on reference cells.

    The inverse document frequency and the SVD loadings come from the reference (real) cells;
    every projected set is transformed with them, so held-out real and generated cells are
    projected out of sample alike.

    Parameters
    ----------
    reference
        Real cells (AnnData or cells x peaks matrix) that define the space.
    n_components
        Number of SVD components (30 by default).
    seed
        Seed of the randomised SVD.
    """

    def __init__(self, reference, n_components: int = 30, seed: int = 0):
        binary = _binary(reference)
        self.idf = inverse_document_frequency(binary)
        data = tfidf(binary, self.idf)
        n_components = min(n_components, min(data.shape) - 1)
        self._svd = TruncatedSVD(n_components=n_components, random_state=seed).fit(data)

    @property
    def n_components(self) -> int:
        """Number of components of the projection."""
        return int(self._svd.n_components)

    def transform(self, counts, chunk_size: int = 10_000) -> np.ndarray:
        """Project cells (AnnData or matrix) into the reference LSI space, chunk by chunk."""
        matrix = _matrix(counts)
        parts = [
            self._svd.transform(tfidf(matrix[start : start + chunk_size], self.idf))
            for start in range(0, matrix.shape[0], chunk_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.n_components))


def _group_means(matrix: sp.csr_matrix, labels: Sequence) -> pd.DataFrame:
    labels = pd.Categorical(np.asarray(labels, dtype=str))
    if len(labels) != matrix.shape[0]:
        raise ValueError(f"{len(labels)} labels for {matrix.shape[0]} cells.")
    indicator = sp.csr_matrix(
        (np.ones(len(labels)), (labels.codes, np.arange(len(labels)))),
        shape=(len(labels.categories), len(labels)),
    )
    sizes = np.asarray(indicator.sum(axis=1)).ravel()
    means = np.asarray((indicator @ matrix).todense()) / np.maximum(sizes, 1)[:, None]
    return pd.DataFrame(means, index=pd.Index(labels.categories, name="label"))


def accessibility_fractions(counts, labels: Sequence) -> pd.DataFrame:
    """Fraction of cells of each label in which each peak is accessible (count above zero).

    Returns
    -------
    DataFrame of labels x peaks.
    """
    return _group_means(_binary(counts), labels)


def _correlate(real: pd.DataFrame, generated: pd.DataFrame) -> pd.Series:
    shared = [label for label in real.index if label in generated.index]
    if not shared:
        raise ValueError("Real and generated cells share no label.")
    if real.shape[1] != generated.shape[1]:
        raise ValueError("Real and generated cells must have the same features.")
    result = {
        label: float(np.corrcoef(real.loc[label], generated.loc[label])[0, 1]) for label in shared
    }
    result["overall"] = float(
        np.corrcoef(real.loc[shared].to_numpy().ravel(), generated.loc[shared].to_numpy().ravel())[
            0, 1
        ]
    )
    return pd.Series(result, name="pearson_r")


def accessibility_correlation(
    real, real_labels: Sequence, generated, generated_labels: Sequence
) -> pd.Series:
    """Pearson r between real and generated per-label peak accessibility fractions.

    One r across peaks per label present in both sets, and ``"overall"``: r across all
    (label, peak) pairs, which also rewards getting the differences between labels right.

    Parameters
    ----------
    real, generated
        Cells x peaks (AnnData or matrices) with the same peaks; any value above zero counts as
        accessible.
    real_labels, generated_labels
        Cell labels (e.g. cell types) of each set.
    """
    return _correlate(
        accessibility_fractions(real, real_labels),
        accessibility_fractions(generated, generated_labels),
    )


def marker_genes(counts, labels: Sequence, n_markers: int = 10) -> dict[str, np.ndarray]:
    """Indices of each label's top genes by mean log-normalised expression over the rest.

    Ranks genes by the difference between the label's mean of ``log1p`` counts normalised to
    1e4 and the mean over all other cells.
    """
    means = _group_means(sp.csr_matrix(log_normalize(_matrix(counts))), labels)
    labels_array = np.asarray(labels, dtype=str)
    sizes = pd.Series(labels_array).value_counts().reindex(means.index).to_numpy()
    total = (means.to_numpy() * sizes[:, None]).sum(axis=0)
    markers = {}
    for row, label in enumerate(means.index):
        rest = (total - means.iloc[row].to_numpy() * sizes[row]) / max(sizes.sum() - sizes[row], 1)
        markers[label] = np.argsort(-(means.iloc[row].to_numpy() - rest))[:n_markers]
    return markers


def marker_expression_correlation(
    real,
    real_labels: Sequence,
    generated,
    generated_labels: Sequence,
    markers: Mapping[str, Sequence[int]] | None = None,
    n_markers: int = 10,
) -> pd.Series:
    """Pearson r between real and generated per-label mean expression of marker genes.

    Means are of ``log1p`` counts normalised to 1e4. The genes are the union of every label's
    markers (given, or the real cells' top ``n_markers`` per label from :func:`marker_genes`).
    One r per label across those genes, and ``"overall"`` across all (label, gene) pairs.
    """
    if markers is None:
        markers = marker_genes(real, real_labels, n_markers)
    genes = np.unique(np.concatenate([np.asarray(m, dtype=int) for m in markers.values()]))
    real_means = _group_means(sp.csr_matrix(log_normalize(_matrix(real))), real_labels)
    generated_means = _group_means(
        sp.csr_matrix(log_normalize(_matrix(generated))), generated_labels
    )
    return _correlate(real_means.iloc[:, genes], generated_means.iloc[:, genes])
