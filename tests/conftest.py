import anndata as ad
import numpy as np
import pytest
import scvi
import torch
from helpers import MULTIOME, TINY, TINY_MULTIOME, make_marker_counts, small_multiome

import scvi_cfgen
from scvi_cfgen import CFGenModel


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
    adata = make_marker_counts(n_cells=300, batch_marker_fold=8.0)
    scvi_cfgen.CFGenModel.setup_anndata(adata, categorical_covariate_keys=["cell_type", "batch"])
    model = scvi_cfgen.CFGenModel(adata, **{**TINY, "flow_hidden_dim": 64})
    model.train(
        max_epochs={"autoencoder": 60, "flow": 300},
        batch_size=32,
        early_stopping=False,
        enable_progress_bar=False,
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


@pytest.fixture(scope="session")
def trained_multiome():
    """A tiny RNA + ATAC model trained enough to place each type's peaks (do not mutate)."""
    scvi.settings.seed = 0
    mdata = small_multiome()
    CFGenModel.setup_mudata(mdata, categorical_covariate_keys=["cell_type"], modalities=MULTIOME)
    model = CFGenModel(mdata, **TINY_MULTIOME)
    model.train(
        max_epochs={"autoencoder": 40, "flow": 150},
        batch_size=64,
        early_stopping=False,
        enable_progress_bar=False,
    )
    return model, mdata
