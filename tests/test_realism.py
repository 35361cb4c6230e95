"""The realism filter: a real-vs-generated scorer and generate(keep_fraction=...)."""

import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from helpers import TINY, make_marker_counts

from scvi_cfgen import CFGenModel
from scvi_cfgen.module._realism import RealismScorer, keep_most_real, oversampled_groups


def test_groups_get_exactly_their_share_of_candidates():
    codes = torch.tensor([[0, 1]] * 5 + [[1, 0]] * 3 + [[0, 1]] * 2)
    sources, groups = oversampled_groups(codes, keep_fraction=0.8)
    sizes = sorted((len(rows), len(positions)) for rows, positions in groups)
    assert sizes == [(3, 4), (7, 9)]  # ceil(3 / 0.8), ceil(7 / 0.8)
    for rows, positions in groups:
        # each candidate copies the conditions of a row of its own group
        assert torch.equal(codes[sources[positions]], codes[rows[:1]].expand(len(positions), -1))
    scores = torch.arange(len(sources), dtype=torch.float32).flip(0)
    kept_rows, kept = keep_most_real(scores, groups)
    assert sorted(kept_rows.tolist()) == list(range(len(codes)))
    for rows, positions in groups:
        chosen = kept[torch.isin(kept_rows, rows)]
        assert set(chosen.tolist()) == set(
            positions[torch.argsort(scores[positions], descending=True)][: len(rows)].tolist()
        )


def test_scorer_one_hot_leaves_missing_attributes_empty():
    scorer = RealismScorer(n_latent=3, n_categories_per_attribute=[2, 3])
    features = scorer.features(torch.zeros(2, 3), torch.tensor([[1, -1], [0, 2]]))
    np.testing.assert_array_equal(features[:, 3:].numpy(), [[0, 1, 0, 0, 0], [1, 0, 0, 0, 1]])


@pytest.fixture(scope="module")
def filtered_model():
    scvi.settings.seed = 0
    adata = make_marker_counts(n_cells=240)
    CFGenModel.setup_anndata(adata, categorical_covariate_keys=["cell_type", "batch"])
    model = CFGenModel(adata, **TINY)
    model.train(
        max_epochs={"autoencoder": 20, "flow": 30},
        batch_size=32,
        early_stopping=False,
        enable_progress_bar=False,
    )
    with pytest.raises(ValueError, match="train_realism_filter"):
        model.generate(n_cells=10, keep_fraction=0.5, progress_bar=False)
    summary = model.train_realism_filter(max_steps=300, progress_bar=False)
    return model, adata, summary


def test_filter_keeps_conditions_and_raises_the_score(filtered_model):
    model, adata, summary = filtered_model
    assert summary["steps"] <= 300
    assert 0.0 <= summary["validation_auc"] <= 1.0
    conditions = pd.DataFrame(
        {"cell_type": np.repeat(adata.obs["cell_type"].cat.categories[:2], 100)}
    )
    plain = model.generate(conditions=conditions, seed=3, progress_bar=False)
    kept = model.generate(conditions=conditions, seed=3, keep_fraction=0.5, progress_bar=False)
    assert kept.n_obs == len(conditions)
    assert (kept.obs["cell_type"].astype(str).to_numpy() == conditions["cell_type"]).all()
    assert np.isfinite(kept.obs["realism_score"]).all()
    assert kept.uns["cfgen"]["keep_fraction"] == 0.5
    # keep_fraction=1 scores every cell without filtering: the filter raises the mean score
    unfiltered = model.generate(
        conditions=conditions, seed=3, keep_fraction=1.0, progress_bar=False
    )
    assert unfiltered.n_obs == len(conditions)
    assert kept.obs["realism_score"].mean() > unfiltered.obs["realism_score"].mean() + 0.05
    assert plain.n_obs == len(conditions)
    again = model.generate(conditions=conditions, seed=3, keep_fraction=0.5, progress_bar=False)
    assert (again.X != kept.X).nnz == 0


def test_scorer_survives_save_and_load(filtered_model, tmp_path):
    model, adata, _ = filtered_model
    model.save(tmp_path / "model")
    loaded = CFGenModel.load(tmp_path / "model", adata=adata)
    assert bool(loaded.module.realism.trained)
    a = model.generate(n_cells=50, seed=1, keep_fraction=0.7, progress_bar=False)
    b = loaded.generate(n_cells=50, seed=1, keep_fraction=0.7, progress_bar=False)
    assert (a.X != b.X).nnz == 0
    np.testing.assert_allclose(a.obs["realism_score"], b.obs["realism_score"], rtol=1e-5)


def test_models_saved_before_the_filter_load_untrained(filtered_model):
    model, _, _ = filtered_model
    state = {k: v for k, v in model.module.state_dict().items() if not k.startswith("realism.")}
    fresh = CFGenModel(model.adata, **TINY).module
    fresh.load_state_dict(state)
    assert not bool(fresh.realism.trained)


@pytest.mark.parametrize("fraction", [0, 1.5, True])
def test_bad_keep_fraction_is_refused(filtered_model, fraction):
    model, _, _ = filtered_model
    with pytest.raises(ValueError, match="keep_fraction"):
        model.generate(n_cells=5, keep_fraction=fraction, progress_bar=False)
