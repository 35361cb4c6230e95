import numpy as np
import pytest
import scipy.sparse as sp

import scvi_cfgen
from scvi_cfgen.metrics import (
    TFIDFProjection,
    accessibility_correlation,
    accessibility_fractions,
    inverse_document_frequency,
    marker_expression_correlation,
    marker_genes,
    tfidf,
)


@pytest.fixture(scope="module")
def multiome():
    return scvi_cfgen.datasets.synthetic_multiome(
        n_cells=300, n_genes=60, n_peaks=300, n_types=3, markers_per_type=5, peaks_per_type=30
    )


def test_tfidf_binarises_stays_sparse_and_uses_reference_idf():
    counts = sp.csr_matrix(np.array([[2, 0, 1], [0, 0, 3], [1, 1, 0]], dtype=np.float32))
    idf = inverse_document_frequency(counts)
    assert np.allclose(idf, [3 / 2, 3 / 1, 3 / 2])
    transformed = tfidf(counts)
    assert sp.issparse(transformed)
    assert transformed.nnz == counts.nnz
    expected = np.log1p(1e4 * 0.5 * 1.5)  # cell 0: 2 accessible peaks, peak 0 in 2 of 3 cells
    assert np.isclose(transformed[0, 0], expected)
    assert np.allclose(tfidf(counts).toarray(), tfidf((counts > 0).astype(float)).toarray())
    fixed = tfidf(counts, idf=np.ones(3))
    assert np.isclose(fixed[0, 0], np.log1p(1e4 * 0.5))
    with pytest.raises(ValueError, match="3 peaks"):
        tfidf(counts, idf=np.ones(2))


def test_tfidf_projection_is_fitted_on_reference_and_applies_out_of_sample(multiome):
    atac = multiome["atac"].X
    projection = TFIDFProjection(atac[:200], n_components=10)
    assert projection.n_components == 10
    inside = projection.transform(atac[:200])
    outside = projection.transform(atac[200:], chunk_size=32)
    assert inside.shape == (200, 10)
    assert outside.shape == (100, 10)
    assert np.allclose(projection.transform(atac[200:]), outside, atol=1e-5)


def test_accessibility_fractions_and_correlation(multiome):
    atac, labels = multiome["atac"].X, multiome.obs["cell_type"].to_numpy()
    fractions = accessibility_fractions(atac, labels)
    assert fractions.shape == (3, 300)
    type1 = multiome.uns["type_peaks"]["type1"]
    assert (
        fractions.loc["type1"].iloc[type1].mean() > 3 * fractions.loc["type0"].iloc[type1].mean()
    )
    same = accessibility_correlation(atac, labels, atac, labels)
    assert np.allclose(same.to_numpy(), 1.0)
    assert list(same.index) == ["type0", "type1", "type2", "overall"]
    swapped = np.where(labels == "type0", "type1", np.where(labels == "type1", "type0", labels))
    assert accessibility_correlation(atac, labels, atac, swapped)["overall"] < 0.8
    with pytest.raises(ValueError, match="share no label"):
        accessibility_correlation(atac, labels, atac, np.full(len(labels), "other"))


def test_marker_genes_and_expression_correlation(multiome):
    rna, labels = multiome["rna"].X, multiome.obs["cell_type"].to_numpy()
    markers = marker_genes(rna, labels, n_markers=5)
    for i in range(3):
        assert set(markers[f"type{i}"]) == set(multiome.uns["type_markers"][f"type{i}"])
    same = marker_expression_correlation(rna, labels, rna, labels)
    assert np.allclose(same.to_numpy(), 1.0)
    swapped = np.where(labels == "type0", "type2", np.where(labels == "type2", "type0", labels))
    shuffled = marker_expression_correlation(rna, labels, rna, swapped, markers=markers)
    assert shuffled["overall"] < same["overall"] - 0.3
