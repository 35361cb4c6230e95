"""Property-based tests: random small AnnData through setup, training and generation."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from helpers import TINY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scvi_cfgen import CFGenModel

FAST = settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@st.composite
def count_data(draw) -> ad.AnnData:
    """Raw counts of random size, depth, sparsity, storage and attribute layout."""
    n_cells = draw(st.integers(20, 70))
    n_genes = draw(st.integers(3, 25))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    depth = draw(st.sampled_from([0.3, 3.0, 40.0]))
    counts = rng.negative_binomial(2, 2 / (2 + depth), size=(n_cells, n_genes))
    counts[np.arange(n_cells), rng.integers(0, n_genes, n_cells)] += 1  # no empty cells
    storage = draw(st.sampled_from(["dense", "csr", "csc"]))
    matrix = counts.astype(np.float32)
    if storage != "dense":
        matrix = getattr(sp, f"{storage}_matrix")(matrix)
    obs = pd.DataFrame(index=[f"c{i}" for i in range(n_cells)])
    n_attributes = draw(st.integers(0, 2))
    for a in range(n_attributes):
        n_categories = draw(st.integers(1, 4))
        labels = np.array([f"a{a}_{k}" for k in range(n_categories)])
        obs[f"attr{a}"] = pd.Categorical(labels[np.arange(n_cells) % n_categories])
    var = pd.DataFrame(index=[f"g{j}" for j in range(n_genes)])
    return ad.AnnData(matrix, obs=obs, var=var)


@FAST
@given(adata=count_data(), n_generated=st.integers(1, 90), data=st.data())
def test_any_count_data_trains_and_generates_counts_of_the_training_shape(
    adata, n_generated, data
):
    keys = [c for c in adata.obs.columns if c.startswith("attr")]
    CFGenModel.setup_anndata(adata, categorical_covariate_keys=keys)
    model = CFGenModel(adata, **TINY)
    model.train(max_epochs=1, batch_size=16, enable_progress_bar=False)
    conditions = {
        key: data.draw(st.sampled_from(list(adata.obs[key].cat.categories))) for key in keys
    }
    cells = model.generate(
        n_cells=n_generated,
        conditions=conditions or None,
        seed=0,
        solver="euler",
        n_steps=3,
        progress_bar=False,
    )
    assert cells.shape == (n_generated, adata.n_vars)
    assert list(cells.var_names) == list(adata.var_names)
    assert sp.issparse(cells.X)
    assert np.issubdtype(cells.X.dtype, np.integer)
    assert cells.X.min() >= 0
    for key, value in conditions.items():
        assert (cells.obs[key] == value).all()
        assert list(cells.obs[key].cat.categories) == list(adata.obs[key].cat.categories)
    latent = model.get_latent_representation()
    assert latent.shape == (adata.n_obs, TINY["n_latent"])
    assert np.isfinite(latent).all()


@FAST
@given(
    adata=count_data(),
    bad=st.sampled_from([-1.0, 0.5, np.nan, np.inf]),
    where=st.tuples(st.floats(0, 0.999), st.floats(0, 0.999)),
)
def test_any_bad_value_is_refused_naming_its_cell(adata, bad, where):
    row, column = int(where[0] * adata.n_obs), int(where[1] * adata.n_vars)
    dense = np.asarray(adata.X.todense() if sp.issparse(adata.X) else adata.X).copy()
    dense[row, column] = bad
    adata.X = dense
    with pytest.raises(ValueError, match=rf"'c{row}'"):
        CFGenModel.setup_anndata(adata)
