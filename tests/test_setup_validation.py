import numpy as np
import pytest
import scipy.sparse as sp

from scvi_cfgen import CFGenModel


def test_setup_accepts_sparse_counts_without_copying(marker_adata):
    before = marker_adata.X
    CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["cell_type"])
    assert marker_adata.X is before
    assert sp.issparse(marker_adata.X)


def test_setup_reads_a_layer(marker_adata):
    marker_adata.layers["counts"] = marker_adata.X.copy()
    marker_adata.X = marker_adata.X * 0.5
    with pytest.raises(ValueError, match="non-integer"):
        CFGenModel.setup_anndata(marker_adata)
    CFGenModel.setup_anndata(marker_adata, layer="counts")
    with pytest.raises(ValueError, match="Layer 'raw' not found"):
        CFGenModel.setup_anndata(marker_adata, layer="raw")


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda X: X.__setitem__((0, 0), -1), "negative"),
        (lambda X: X.__setitem__((0, 0), 0.5), "non-integer"),
        (lambda X: X.__setitem__((0, 0), np.nan), "NaN"),
        (lambda X: X.__setitem__((3, slice(None)), 0), "zero total counts"),
    ],
)
@pytest.mark.parametrize("sparse", [True, False])
def test_setup_rejects_non_count_data(marker_adata, corrupt, message, sparse):
    X = marker_adata.X.tolil() if sparse else marker_adata.X.toarray()
    corrupt(X)
    marker_adata.X = sp.csr_matrix(X) if sparse else X
    with pytest.raises(ValueError, match=message):
        CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["cell_type"])


def test_setup_rejects_bad_attributes(marker_adata):
    with pytest.raises(ValueError, match="'donor' not found"):
        CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["donor"])
    marker_adata.obs["with_nan"] = marker_adata.obs["cell_type"].astype(object)
    marker_adata.obs.iloc[0, marker_adata.obs.columns.get_loc("with_nan")] = np.nan
    with pytest.raises(ValueError, match="missing values"):
        CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["with_nan"])
    with pytest.raises(ValueError, match="list of column names"):
        CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys="cell_type")


def test_model_rejects_bad_arguments(marker_adata):
    CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["cell_type"])
    with pytest.raises(ValueError, match="size_factor_covariate"):
        CFGenModel(marker_adata, size_factor_covariate="donor")
    with pytest.raises(ValueError, match="dispersion_covariate"):
        CFGenModel(marker_adata, dispersion="gene-covariate", dispersion_covariate="batch")
    with pytest.raises(ValueError, match="p_uncond"):
        CFGenModel(marker_adata, p_uncond=1.0)
    with pytest.raises(ValueError, match="coupling"):
        CFGenModel(marker_adata, coupling="sinkhorn")
