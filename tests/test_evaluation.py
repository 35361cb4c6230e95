import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from helpers import make_marker_counts

from scvi_cfgen import metrics


@pytest.fixture(scope="module")
def three_way():
    """Real test cells, a disjoint reference and a disjoint floor pool of the same law."""
    cells = make_marker_counts(n_cells=540, n_genes=40, seed=11)
    return cells[:180].copy(), cells[180:360].copy(), cells[360:].copy()


def test_rbf_mmd_matches_hand_computed_unbiased_estimate():
    x, y = np.array([[0.0], [1.0]]), np.array([[0.0], [2.0]])
    expected = np.exp(-1) + np.exp(-4) - 2 * (1 + np.exp(-4) + 2 * np.exp(-1)) / 4
    assert metrics.rbf_mmd(x, y, gammas=[1.0]) == pytest.approx(expected)
    two = metrics.rbf_mmd(x, y, gammas=[1.0, 0.5])
    assert two == pytest.approx((expected + metrics.rbf_mmd(x, y, gammas=[0.5])) / 2)


def test_rbf_mmd_is_unbiased_for_small_samples_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    same = [
        metrics.rbf_mmd(rng.normal(size=(8, 2)), rng.normal(size=(8, 2)), gammas=[0.5])
        for _ in range(300)
    ]
    # the biased estimate would average about 2 (1 - E k) / 8 > 0.1 here
    assert abs(np.mean(same)) < 0.01
    x = rng.normal(size=(100, 2))
    assert metrics.rbf_mmd(x, x + 1.0, gammas=[0.5]) > 0.1
    with pytest.raises(ValueError, match="same space"):
        metrics.rbf_mmd(x, x[:, :1])
    with pytest.raises(ValueError, match="gammas"):
        metrics.rbf_mmd(x, x, gammas=[0.0])


def test_linear_mmd_and_wasserstein2_known_answers():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 3))
    shift = np.array([3.0, 0.0, 4.0])
    assert metrics.linear_mmd(x, x + shift) == pytest.approx(25.0)
    assert metrics.linear_mmd(x, rng.permutation(x)) == pytest.approx(0.0, abs=1e-12)
    assert metrics.wasserstein2(x, x + shift) == pytest.approx(5.0)
    assert metrics.wasserstein2(x, rng.permutation(x)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="NaN"):
        metrics.wasserstein2(x, np.full((5, 3), np.nan))


def test_c2st_is_near_chance_for_one_law_and_sees_shift_and_spread():
    rng = np.random.default_rng(2)
    assert metrics.c2st_auc(rng.normal(size=(300, 5)), rng.normal(size=(300, 5))) == (
        pytest.approx(0.5, abs=0.07)
    )
    assert metrics.c2st_auc(rng.normal(size=(200, 5)), rng.normal(3, 1, size=(200, 5))) > 0.95
    # same mean, different spread: a mean-only test would miss it
    assert metrics.c2st_auc(rng.normal(size=(200, 5)), rng.normal(0, 3, size=(200, 5))) > 0.8


def test_knn_f1_catches_swapped_labels():
    rng = np.random.default_rng(3)
    points = np.concatenate([rng.normal(0, 1, (50, 2)), rng.normal(10, 1, (50, 2))])
    labels = np.repeat(["a", "b"], 50)
    assert metrics.knn_f1(points, labels, points + 0.1, labels)["macro"] == 1.0
    swapped = metrics.knn_f1(points, labels, points, labels[::-1])
    assert swapped["macro"] == 0.0
    assert set(swapped.index) == {"a", "b", "macro"}


def test_count_metrics_known_answers():
    real = sp.csr_matrix(np.array([[0, 1, 0, 2], [3, 0, 0, 1]], dtype=np.float32))
    dense = np.array([[1, 1, 1, 2], [3, 1, 1, 1]], dtype=np.float32)
    assert np.allclose(metrics.zero_fractions(real), [0.5, 0.5])
    assert metrics.zeros_wasserstein(real, dense) == pytest.approx(0.5)
    assert metrics.zeros_wasserstein(real, real) == 0.0
    mean, var = metrics.gene_mean_variance(real)
    assert np.allclose(mean, [1.5, 0.5, 0, 1.5])
    assert np.allclose(var, [2.25, 0.25, 0, 0.25])
    expected = np.abs(np.log1p(mean) - np.log1p(2 * mean)).mean()
    assert metrics.log_mean_error(real, real * 2) == pytest.approx(expected)
    assert metrics.log_variance_error(real, real) == 0.0
    with pytest.raises(ValueError, match="same genes"):
        metrics.log_mean_error(real, dense[:, :3])


def test_generated_cells_that_are_the_floor_score_exactly_the_floor(three_way):
    real, reference, pool = three_way
    generated = metrics.floor_sample(pool, like=real, label_key="cell_type", seed=4)
    results = metrics.evaluate(
        real, generated, "cell_type", reference=reference, floor=pool, seed=4, n_pcs=10
    )
    assert list(results.columns[:4]) == ["set", "label", "n_real", "n_cells"]
    assert set(results["label"]) == {"type0", "type1", "type2", "overall"}
    scores = results.set_index(["set", "label"])[list(metrics.METRICS)]
    pd.testing.assert_frame_equal(scores.loc["generated"], scores.loc["floor"])
    overall = scores.loc[("generated", "overall")]
    assert overall["c2st_auc"] < 0.65
    assert abs(overall["rbf_mmd"]) < 0.01
    assert overall["knn_f1"] > 0.9
    ratios = metrics.compare_to_floor(results)
    assert np.allclose(ratios.loc[ratios["metric"] != "rbf_mmd", "ratio"], 1.0)


def test_distorted_generators_score_worse_than_the_floor(three_way):
    real, reference, pool = three_way
    like_real = metrics.floor_sample(pool, like=real, label_key="cell_type", seed=0)
    shifted = like_real.copy()
    dense = shifted.X.toarray()
    dense[:, 20:25] += 10  # a spurious programme in every cell
    shifted.X = sp.csr_matrix(dense)
    swapped = like_real.copy()
    swapped.obs["cell_type"] = swapped.obs["cell_type"].to_numpy()[::-1]
    kwargs = {"label_key": "cell_type", "reference": reference, "floor": pool, "n_pcs": 10}
    base = metrics.evaluate(real, like_real, **kwargs).set_index(["set", "label"])
    worse = metrics.evaluate(real, shifted, **kwargs).set_index(["set", "label"])
    for metric in ("c2st_auc", "rbf_mmd", "wasserstein2", "linear_mmd", "zeros_w1"):
        assert (
            worse.loc[("generated", "overall"), metric]
            > base.loc[("generated", "overall"), metric]
        )
    assert worse.loc[("generated", "overall"), "c2st_auc"] > 0.8
    lost = metrics.evaluate(real, swapped, **kwargs).set_index(["set", "label"])
    assert (
        lost.loc[("generated", "overall"), "knn_f1"]
        < base.loc[("generated", "overall"), "knn_f1"] - 0.3
    )


def test_evaluate_without_labels_or_reference(three_way):
    real, _, pool = three_way
    with pytest.warns(UserWarning, match="reference"):
        results = metrics.evaluate(real, pool[:150], n_pcs=5)
    assert list(results["label"]) == ["overall"]
    assert list(results["set"]) == ["generated"]
    assert np.isnan(results["knn_f1"].iloc[0])


def test_evaluate_rejects_bad_inputs(three_way):
    real, reference, pool = three_way
    with pytest.raises(ValueError, match="same genes"):
        metrics.evaluate(real, pool[:, :30], reference=reference)
    with pytest.raises(ValueError, match="label_key"):
        metrics.evaluate(real, pool, label_key="donor", reference=reference)
    with pytest.raises(ValueError, match="AnnData"):
        metrics.evaluate(real, pool.X, reference=reference)
    with pytest.raises(ValueError, match="min_cells"):
        metrics.evaluate(real, pool, reference=reference, min_cells=1)
    tiny = ad.AnnData(pool.X[:3], obs=pool.obs.iloc[:3], var=pool.var)
    with pytest.raises(ValueError, match="No label"):
        metrics.evaluate(real, tiny, label_key="cell_type", reference=reference)
    with pytest.raises(ValueError, match="floor rows"):
        metrics.compare_to_floor(metrics.evaluate(real, pool, reference=reference))


def test_quality_plots():
    import matplotlib

    matplotlib.use("Agg")
    from scvi_cfgen import pl

    real = make_marker_counts(n_cells=90, seed=5)
    generated = make_marker_counts(n_cells=60, seed=6)
    figure = pl.mean_variance(real, {"a": generated, "b": generated.X})
    assert len(figure.axes) == 2
    points = sum(len(c.get_offsets()) for c in figure.axes[0].collections)
    assert points > 40  # real and generated genes
    figure = pl.zeros_histogram(real, generated)
    assert len(figure.axes[0].patches) == 2
    reference, pool = make_marker_counts(n_cells=90, seed=7), make_marker_counts(90, seed=8)
    results = pd.concat(
        [
            metrics.evaluate(real, generated, "cell_type", reference, pool, n_pcs=5).assign(
                generator=name, seed=seed
            )
            for name in ("g1", "g2")
            for seed in (0, 1)
        ]
    )
    figure = pl.metrics_vs_floor(results, metrics=["wasserstein2", "c2st_auc"])
    assert len(figure.axes) == 2
    assert len(figure.axes[0].patches) == 2
    with pytest.raises(ValueError, match="No scores"):
        pl.metrics_vs_floor(results, label="type9")
