import numpy as np
import pandas as pd
import pytest
import torch

TYPE1_MARKERS = slice(5, 10)
BATCH_MARKERS = slice(30, 35)


def shares(cells, genes):
    X = cells.X.toarray().astype(float)
    return X[:, genes].sum(axis=1) / X.sum(axis=1)


def batch_threshold(adata):
    values = shares(adata, BATCH_MARKERS)
    b1 = (adata.obs["batch"] == "b1").to_numpy()
    return (np.median(values[b1]) + np.median(values[~b1])) / 2


def test_one_attribute_leaves_the_other_at_its_data_frequency(trained_marker_model):
    model, adata = trained_marker_model
    cells = model.generate(n_cells=400, conditions={"cell_type": "type1"}, seed=0)
    carrying_b1 = (shares(cells, BATCH_MARKERS) > batch_threshold(adata)).mean()
    real_type1 = adata.obs["cell_type"] == "type1"
    expected = (adata.obs.loc[real_type1, "batch"] == "b1").mean()
    assert abs(carrying_b1 - expected) < 0.2
    plain = (shares(cells, TYPE1_MARKERS) > 0.3).mean()
    assert plain > 0.65
    guided = model.generate(
        n_cells=400, conditions={"cell_type": "type1"}, guidance_weights=2.0, seed=0
    )
    stronger = (shares(guided, TYPE1_MARKERS) > 0.3).mean()
    assert stronger > max(plain, 0.85)


def test_raising_the_second_weight_concentrates_cells_in_the_intersection(trained_marker_model):
    model, adata = trained_marker_model
    threshold = batch_threshold(adata)
    carrying_b1, in_both = [], []
    for batch_weight in (0.0, 1.0, 3.0):
        cells = model.generate(
            n_cells=400,
            conditions={"cell_type": "type1", "batch": "b1"},
            guidance_weights={"cell_type": 1.0, "batch": batch_weight},
            seed=0,
        )
        b1 = shares(cells, BATCH_MARKERS) > threshold
        carrying_b1.append(b1.mean())
        in_both.append((b1 & (shares(cells, TYPE1_MARKERS) > 0.3)).mean())
    assert carrying_b1[0] < carrying_b1[1] < carrying_b1[2]
    assert carrying_b1[2] > 0.9
    assert in_both[1] > in_both[0] + 0.1


def test_transfer_round_trip_returns_the_latents(trained_marker_model):
    model, adata = trained_marker_model
    cells = np.arange(40)
    latent = model.get_latent_representation(adata, indices=cells)
    own = adata.obs["batch"].iloc[cells]
    b0 = cells[(own == "b0").to_numpy()]
    same = model.transfer(adata, to={"batch": "b0"}, indices=b0, rtol=1e-7, atol=1e-7, seed=0)
    error = np.abs(same.obsm["X_cfgen_transferred"] - latent[(own == "b0").to_numpy()]).max()
    assert error < 1e-3
    assert (same.obs["batch"] == "b0").all()


def test_transfer_moves_the_batch_and_keeps_the_type(trained_marker_model):
    model, adata = trained_marker_model
    b0 = np.flatnonzero((adata.obs["batch"] == "b0").to_numpy())
    moved = model.transfer(adata, to={"batch": "b1"}, indices=b0, seed=0)
    assert moved.n_obs == len(b0)
    assert list(moved.obs_names) == list(adata.obs_names[b0])
    assert (moved.obs["batch"] == "b1").all()
    assert (moved.obs["batch_original"] == "b0").all()
    threshold = batch_threshold(adata)
    before = (shares(adata[b0], BATCH_MARKERS) > threshold).mean()
    after = (shares(moved, BATCH_MARKERS) > threshold).mean()
    assert before < 0.3
    assert after > 0.6
    type_codes = adata.obs["cell_type"].cat.codes.to_numpy()[b0]
    X = moved.X.toarray().astype(float)
    marker_blocks = np.stack([X[:, 5 * j : 5 * j + 5].sum(axis=1) for j in range(3)], axis=1)
    assert (marker_blocks.argmax(axis=1) == type_codes).mean() > 0.9


def test_transfer_rejects_bad_targets(trained_marker_model):
    model, adata = trained_marker_model
    with pytest.raises(ValueError, match="trained with attributes"):
        model.transfer(adata, to={"donor": "d1"})
    with pytest.raises(ValueError, match="Unknown category 'b7'"):
        model.transfer(adata, to={"batch": "b7"})
    with pytest.raises(ValueError, match="new attributes"):
        model.transfer(adata, to={})


def test_augment_upsamples_rare_categories(trained_marker_model):
    model, adata = trained_marker_model
    probabilities = model.augmentation_probabilities("cell_type")
    train_counts = adata.obs["cell_type"].iloc[model.train_indices].value_counts()
    expected = (1 / train_counts) / (1 / train_counts).sum()
    assert np.allclose(probabilities[expected.index].to_numpy(), expected.to_numpy())
    extra = model.augment(
        n_total=adata.n_obs + 90, label_key="cell_type", seed=0, solver="euler", n_steps=5
    )
    assert extra.n_obs == 90
    combined = model.augment(
        n_total=adata.n_obs + 30,
        label_key="cell_type",
        seed=0,
        concatenate=True,
        solver="euler",
        n_steps=5,
    )
    assert combined.n_obs == adata.n_obs + 30
    assert combined.obs["cfgen_generated"].sum() == 30
    assert combined.obs["cell_type"].notna().all()
    with pytest.raises(ValueError, match="n_total"):
        model.augment(n_total=10, label_key="cell_type")
    with pytest.raises(ValueError, match="Unknown attribute"):
        model.augment(n_total=1000, label_key="donor")


def test_augmentation_probabilities_favour_rare_types():
    from helpers import TINY, make_marker_counts

    from scvi_cfgen import CFGenModel

    adata = make_marker_counts(n_cells=200)
    rare = adata.obs_names[(adata.obs["cell_type"] == "type2").to_numpy()][10:]
    adata = adata[~adata.obs_names.isin(rare)].copy()
    CFGenModel.setup_anndata(adata, categorical_covariate_keys=["cell_type"])
    model = CFGenModel(adata, **TINY)
    model.module.statistics.fit_attributes_and_sizes(
        torch.as_tensor(adata.obs["cell_type"].cat.codes.to_numpy())[:, None],
        torch.zeros(adata.n_obs),
        None,
    )
    probabilities = model.augmentation_probabilities("cell_type")
    assert probabilities.idxmax() == "type2"
    assert np.isclose(probabilities.sum(), 1.0)
    counts = pd.Series(adata.obs["cell_type"]).value_counts()
    assert np.isclose(
        probabilities["type2"] / probabilities["type0"], counts["type0"] / counts["type2"]
    )
