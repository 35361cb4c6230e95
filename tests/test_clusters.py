"""Conditions from clusters: ``CFGenModel(adata, cluster_resolution=...)`` without labels."""

import numpy as np
import pandas as pd
import pytest
import scvi
from helpers import MULTIOME, TINY, TINY_MULTIOME, make_marker_counts, small_multiome
from lightning.pytorch import LightningDataModule
from sklearn.metrics import adjusted_rand_score

import scvi_cfgen
from scvi_cfgen import CFGenModel

pytest.importorskip("igraph")

QUICK = {"batch_size": 32, "early_stopping": False, "enable_progress_bar": False}


@pytest.fixture(scope="module")
def clustered():
    """A tiny model on three well-separated cell types, registered without any label."""
    scvi.settings.seed = 0
    adata = make_marker_counts(n_cells=300)
    CFGenModel.setup_anndata(adata)
    model = CFGenModel(adata, **TINY, cluster_resolution=0.5)
    model.train(max_epochs={"autoencoder": 25, "flow": 60}, **{**QUICK, "batch_size": 64})
    return model, adata


def _nearest_centroid(latents: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    distances = ((latents[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=-1)
    return distances.argmin(axis=1)


def _centroids(model, adata) -> tuple[np.ndarray, np.ndarray]:
    clusters = model.get_clusters().loc[adata.obs_names]
    latents = model.get_latent_representation()
    categories = clusters.cat.categories
    centroids = np.stack([latents[(clusters == c).to_numpy()].mean(axis=0) for c in categories])
    return centroids, np.asarray(categories)


def test_clusters_recover_the_cell_types(clustered):
    model, adata = clustered
    clusters = model.get_clusters()
    assert list(clusters.index) == list(adata.obs_names)
    assert list(model.attribute_categories) == ["cluster"]
    assert list(model.attribute_categories["cluster"]) == list(clusters.cat.categories)
    assert adjusted_rand_score(adata.obs["cell_type"], clusters) > 0.9
    # the attribute frequencies used to sample conditions are those of the training cells
    train = clusters.iloc[np.asarray(model.train_indices)]
    expected = train.value_counts().reindex(clusters.cat.categories).to_numpy()
    counts = model.module.statistics.category_counts(0, len(clusters.cat.categories))
    np.testing.assert_array_equal(counts.numpy(), expected)
    # no labels: the size-factor laws are per cluster
    assert model.size_factor_covariate == "cluster"
    assert model.module.size_factor_attribute_index == 0


def test_generated_cells_land_in_their_cluster(clustered):
    model, adata = clustered
    centroids, categories = _centroids(model, adata)
    for index, cluster in enumerate(categories):
        cells = model.generate(
            n_cells=60, conditions={"cluster": cluster}, seed=1, progress_bar=False
        )
        assert (cells.obs["cluster"] == cluster).all()
        nearest = _nearest_centroid(model.get_latent_representation(cells), centroids)
        assert (nearest == index).mean() > 0.8, cluster
    cells = model.generate(n_cells=300, seed=2, progress_bar=False)
    shares = cells.obs["cluster"].value_counts(normalize=True)
    assert set(shares.index) == set(categories)
    assert shares.between(0.2, 0.47).all()  # three clusters of 100 cells each


def test_guidance_weight_and_transfer_on_clusters(clustered):
    model, adata = clustered
    centroids, categories = _centroids(model, adata)
    strong = model.generate(
        n_cells=60,
        conditions={"cluster": categories[1]},
        guidance_weights={"cluster": 2.0},
        seed=0,
        progress_bar=False,
    )
    assert strong.uns["cfgen"]["guidance_weights"] == {"cluster": 2.0}
    assert (
        _nearest_centroid(model.get_latent_representation(strong), centroids) == 1
    ).mean() > 0.8
    unconditional = model.generate(n_cells=20, guidance_weights=0.0, seed=0, progress_bar=False)
    assert "cluster" not in unconditional.obs
    source = np.flatnonzero((model.get_clusters() == categories[0]).to_numpy())[:30]
    moved = model.transfer(
        to={"cluster": categories[2]}, indices=source, seed=0, solver="rk4", n_steps=10,
        progress_bar=False,
    )  # fmt: skip
    assert (moved.obs["cluster"] == categories[2]).all()
    landed = _nearest_centroid(moved.obsm["X_cfgen_transferred"], centroids)
    assert (landed == 2).mean() > 0.7
    stranger = make_marker_counts(n_cells=20, seed=5)
    stranger.obs_names = [f"new{i}" for i in range(20)]
    with pytest.raises(ValueError, match="not among the cells the clusters were derived from"):
        model.transfer(stranger, to={"cluster": categories[0]}, progress_bar=False)


def test_clusters_survive_save_and_load(clustered, tmp_path):
    model, adata = clustered
    model.save(tmp_path / "model")
    expected = model.generate(n_cells=80, seed=3, progress_bar=False)
    for data in (adata, None):
        loaded = CFGenModel.load(tmp_path / "model", adata=data)
        pd.testing.assert_series_equal(loaded.get_clusters(), model.get_clusters())
        assert loaded.attribute_categories.keys() == model.attribute_categories.keys()
        np.testing.assert_array_equal(
            loaded.attribute_categories["cluster"], model.attribute_categories["cluster"]
        )
        cells = loaded.generate(n_cells=80, seed=3, progress_bar=False)
        assert (cells.X != expected.X).nnz == 0
        pd.testing.assert_frame_equal(cells.obs, expected.obs)
        conditioned = loaded.generate(n_cells=5, conditions={"cluster": "1"}, progress_bar=False)
        assert (conditioned.obs["cluster"] == "1").all()


def test_clusters_are_one_more_attribute_and_follow_the_autoencoder():
    scvi.settings.seed = 0
    adata = make_marker_counts(n_cells=150)
    CFGenModel.setup_anndata(adata, categorical_covariate_keys=["batch"])
    model = CFGenModel(adata, **TINY, cluster_resolution=1.0)
    assert list(model.attribute_categories) == ["batch"]  # clusters come with the flow stage
    model.train(max_epochs={"autoencoder": 3, "flow": 2}, **QUICK)
    assert list(model.attribute_categories) == ["batch", "cluster"]
    assert model.size_factor_covariate == "batch"
    n_clusters = len(model.attribute_categories["cluster"])
    assert model.module.flow.n_categories_per_attribute == [2, n_clusters]
    cells = model.generate(
        n_cells=10, conditions={"batch": "b1", "cluster": "0"}, seed=0, progress_bar=False
    )
    assert list(cells.obs.columns[:2]) == ["batch", "cluster"]
    clusters = model.get_clusters()

    model.train_flow(max_epochs=1, **QUICK)  # same autoencoder: same clusters
    pd.testing.assert_series_equal(model.get_clusters(), clusters)

    model.train_autoencoder(max_epochs=1, **QUICK)  # new latents: the clusters are gone
    assert list(model.attribute_categories) == ["batch"]
    assert model.trained_stages == ["autoencoder"]
    with pytest.raises(ValueError, match="derived when the flow stage starts"):
        model.get_clusters()
    model.train_flow(max_epochs=1, **QUICK)
    assert list(model.attribute_categories) == ["batch", "cluster"]
    assert model.get_clusters().index.equals(adata.obs_names)


def test_a_single_cluster_warns_that_the_flow_is_unconditional():
    scvi.settings.seed = 0
    adata = make_marker_counts(n_cells=100, n_types=1)
    CFGenModel.setup_anndata(adata)
    model = CFGenModel(adata, **TINY, cluster_resolution=1e-4)
    with pytest.warns(UserWarning, match="single cluster.*unconditional.*higher"):
        model.train(max_epochs={"autoencoder": 2, "flow": 1}, **QUICK)
    assert list(model.attribute_categories["cluster"]) == ["0"]
    assert model.generate(n_cells=4, progress_bar=False).shape == (4, 40)


@pytest.mark.parametrize("resolution", [0, -1.0, float("nan"), "1", True])
def test_bad_resolutions_are_refused_at_init(marker_adata, resolution):
    CFGenModel.setup_anndata(marker_adata)
    with pytest.raises(ValueError, match="`cluster_resolution` must be a positive number"):
        CFGenModel(marker_adata, **TINY, cluster_resolution=resolution)


def test_cluster_settings_that_cannot_work_are_refused(marker_adata):
    marker_adata.obs["cluster"] = marker_adata.obs["cell_type"]
    CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["cluster"])
    with pytest.raises(ValueError, match="already registered"):
        CFGenModel(marker_adata, **TINY, cluster_resolution=1.0)
    CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["batch"])
    with pytest.raises(ValueError, match="dispersion_covariate='cluster'"):
        CFGenModel(
            marker_adata,
            **TINY,
            cluster_resolution=1.0,
            dispersion="gene-covariate",
            dispersion_covariate="cluster",
        )
    plain = CFGenModel(marker_adata, **TINY)
    with pytest.raises(ValueError, match="has no clusters"):
        plain.get_clusters()
    with pytest.raises(ValueError, match="derived when the flow stage starts"):
        CFGenModel(marker_adata, **TINY, cluster_resolution=1.0).get_clusters()
    with pytest.raises(ValueError, match="which a data module does not have"):
        CFGenModel(marker_adata, **TINY, cluster_resolution=1.0).train(
            datamodule=LightningDataModule(), max_epochs=1
        )


def test_unlabelled_model_without_clusters_still_trains(marker_adata):
    scvi_cfgen.CFGenModel.setup_anndata(marker_adata)
    model = CFGenModel(marker_adata, **TINY)
    model.train(max_epochs=1, **QUICK)
    assert model.attribute_categories == {}
    assert model.generate(n_cells=3, progress_bar=False).obs.columns.tolist() == ["size_factor"]


def test_mudata_models_cluster_their_shared_latent():
    scvi.settings.seed = 0
    mdata = small_multiome(n_cells=300)
    CFGenModel.setup_mudata(mdata, modalities=MULTIOME)
    # after 10 epochs the 300-cell default dropout (0.3 then) split one type in two (ARI 0.86)
    model = CFGenModel(mdata, **TINY_MULTIOME, cluster_resolution=0.5, dropout_rate=0.1)
    model.train(max_epochs={"autoencoder": 10, "flow": 2}, **{**QUICK, "batch_size": 64})
    clusters = model.get_clusters()
    assert adjusted_rand_score(mdata.obs["cell_type"], clusters.loc[mdata.obs_names]) > 0.9
    cells = model.generate(n_cells=6, conditions={"cluster": "0"}, seed=0, progress_bar=False)
    assert (cells.obs["cluster"] == "0").all()
    assert (cells["atac"].obs["cluster"] == "0").all()
