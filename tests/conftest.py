import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi
import torch

import scvi_cfgen

TINY = {"n_latent": 8, "n_hidden": (32,), "flow_hidden_dim": 32, "flow_condition_dim": 16}


def make_marker_counts(
    n_cells: int = 240, n_genes: int = 40, seed: int = 0, n_types: int = 3
) -> ad.AnnData:
    """NB counts where each cell type has 5 marker genes with 20x higher expression."""
    rng = np.random.default_rng(seed)
    types = np.array([f"type{i}" for i in range(n_types)])[np.arange(n_cells) % n_types]
    batch = np.where(rng.random(n_cells) < 0.5, "b0", "b1")
    base = rng.gamma(2.0, 0.5, size=n_genes)
    means = np.tile(base, (n_cells, 1))
    for i in range(n_types):
        means[types == f"type{i}", 5 * i : 5 * i + 5] *= 20
    library = rng.lognormal(np.log(200), 0.3, size=n_cells)
    means = means / means.sum(axis=1, keepdims=True) * library[:, None]
    theta = 5.0
    counts = rng.poisson(rng.gamma(theta, means / theta))
    counts[:, -1] += 1  # no empty cells
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(types), "batch": pd.Categorical(batch)},
        index=[f"cell{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)])
    return ad.AnnData(sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=var)


@pytest.fixture(autouse=True)
def _seed():
    scvi.settings.seed = 0
    torch.set_num_threads(2)


@pytest.fixture
def marker_adata() -> ad.AnnData:
    return make_marker_counts()


@pytest.fixture(scope="session")
def trained_marker_model():
    """A tiny model trained enough to place each type's markers (shared, do not mutate)."""
    scvi.settings.seed = 0
    adata = make_marker_counts(n_cells=300)
    scvi_cfgen.CFGenModel.setup_anndata(adata, categorical_covariate_keys=["cell_type", "batch"])
    model = scvi_cfgen.CFGenModel(adata, **TINY)
    model.train(
        max_epochs_autoencoder=60,
        max_epochs_flow=150,
        batch_size=64,
        early_stopping=False,
        enable_progress_bar=False,
        flow_plan_kwargs={"lr": 1e-3},
    )
    return model, adata


@pytest.fixture(scope="session")
def pbmc_slice() -> ad.AnnData:
    """300 PBMC3k cells (stratified) x the 300 most expressed genes."""
    adata = scvi_cfgen.datasets.pbmc3k()
    rng = np.random.default_rng(0)
    cells = np.concatenate(
        [
            rng.choice(np.flatnonzero(adata.obs["cell_type"] == t), 60, replace=False)
            for t in ["CD4 T", "B", "CD14+ Mono", "NK", "CD8 T"]
        ]
    )
    genes = np.argsort(-np.asarray(adata.X.sum(axis=0)).ravel())[:300]
    subset = adata[np.sort(cells)][:, np.sort(genes)].copy()
    subset.obs["cell_type"] = subset.obs["cell_type"].cat.remove_unused_categories()
    return subset
