import numpy as np
import pytest
import scipy.sparse as sp
from helpers import make_marker_counts

from scvi_cfgen.metrics import PCAProjection, count_summary, knn_label_agreement, log_normalize


def test_log_normalize_keeps_sparsity_and_scales_to_target():
    counts = sp.csr_matrix(np.array([[1.0, 3.0, 0.0], [0.0, 0.0, 5.0]]))
    normalised = log_normalize(counts, target_sum=100)
    assert sp.issparse(normalised)
    assert np.allclose(np.expm1(normalised.toarray()).sum(axis=1), 100)
    assert np.allclose(log_normalize(counts.toarray(), 100), normalised.toarray())


def test_pca_projection_is_out_of_sample_and_centred_on_reference():
    reference = make_marker_counts(n_cells=150, seed=1)
    projection = PCAProjection(reference, n_components=5)
    pcs = projection.transform(reference)
    assert pcs.shape == (150, 5)
    assert np.allclose(pcs.mean(axis=0), 0, atol=1e-4)
    other = projection.transform(make_marker_counts(n_cells=60, seed=2))
    assert other.shape == (60, 5)
    assert np.allclose(projection.transform(reference.X[:10]), pcs[:10], atol=1e-5)


def test_knn_agreement_catches_swapped_labels():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 1, (50, 2)), rng.normal(10, 1, (50, 2))])
    labels = np.repeat(["a", "b"], 50)
    same = knn_label_agreement(points, labels, points + 0.1, labels)
    assert same["overall"] == 1.0
    swapped = knn_label_agreement(points, labels, points, labels[::-1])
    assert swapped["overall"] == 0.0
    assert set(swapped.index) == {"a", "b", "overall"}


def test_count_summary_identical_and_shifted():
    real = make_marker_counts(n_cells=120, seed=3).X
    same = count_summary(real, real)
    assert same["zero_fraction_real"] == same["zero_fraction_generated"]
    assert same["log_mean_pearson"] == pytest.approx(1.0)
    assert same["log_variance_pearson"] == pytest.approx(1.0)
    doubled = count_summary(real, real * 2)
    assert doubled["median_total_counts_generated"] == 2 * doubled["median_total_counts_real"]
    with pytest.raises(ValueError, match="same genes"):
        count_summary(real, real[:, :5])


def test_real_vs_generated_embedding_plot():
    import matplotlib

    matplotlib.use("Agg")
    from scvi_cfgen.pl import real_vs_generated_embedding

    rng = np.random.default_rng(0)
    real, generated = rng.normal(size=(40, 5)), rng.normal(size=(30, 5))
    figure = real_vs_generated_embedding(
        real, ["a"] * 40, generated, ["b"] * 30, method="pca", title="t"
    )
    assert len(figure.axes) == 2
    origin_points = sum(len(c.get_offsets()) for c in figure.axes[1].collections)
    assert origin_points == 70
    with pytest.raises(ValueError, match="method"):
        real_vs_generated_embedding(real, ["a"] * 40, generated, ["b"] * 30, method="tsne")
