"""Cells passed in are matched to the training genes (and peaks) by name."""

import mudata as md
import numpy as np
import pandas as pd
import pytest
import scvi

from scvi_cfgen import CFGenModel
from scvi_cfgen.model._feature_alignment import column_order


def _reversed_genes(adata):
    return adata[:, adata.var_names[::-1]].copy()


def test_column_order_reorders_or_names_the_problem():
    trained = ["a", "b", "c"]
    assert column_order(trained, pd.Index(["a", "b", "c"])) is None
    np.testing.assert_array_equal(column_order(trained, pd.Index(["c", "a", "b"])), [1, 2, 0])
    with pytest.raises(ValueError, match=r"lack 1 of the model's genes: \['b'\]"):
        column_order(trained, pd.Index(["a", "c"]))
    with pytest.raises(ValueError, match=r"1 genes the model was not trained on: \['d'\]"):
        column_order(trained, pd.Index(["a", "b", "c", "d"]))
    with pytest.raises(ValueError, match=r"duplicated names \['a'\]"):
        column_order(trained, pd.Index(["a", "a", "b", "c"]))


def test_reordered_genes_give_the_same_results(trained_marker_model):
    model, adata = trained_marker_model
    shuffled = _reversed_genes(adata)
    np.testing.assert_allclose(
        model.get_latent_representation(shuffled),
        model.get_latent_representation(adata),
        rtol=1e-5,
        atol=1e-6,
    )
    expression = model.get_normalized_expression(shuffled, indices=np.arange(20))
    assert list(expression.columns) == list(adata.var_names)  # training order, named
    reference = model.get_normalized_expression(adata, indices=np.arange(20))
    np.testing.assert_allclose(expression.to_numpy(), reference.to_numpy(), rtol=1e-5)
    subset = model.get_normalized_expression(shuffled, indices=[0], gene_list=["gene3", "gene0"])
    assert list(subset.columns) == ["gene0", "gene3"]
    np.testing.assert_allclose(
        subset.to_numpy(), reference[["gene0", "gene3"]].to_numpy()[:1], rtol=1e-5
    )

    draws = []
    for data in (shuffled, adata):
        scvi.settings.seed = 0
        draws.append(model.posterior_predictive_sample(data, indices=np.arange(20)).todense())
    np.testing.assert_array_equal(*draws)

    kwargs = {"to": {"batch": "b1"}, "indices": np.arange(12), "seed": 0, "solver": "euler"}
    moved = [model.transfer(data, n_steps=10, **kwargs) for data in (shuffled, adata)]
    assert list(moved[0].var_names) == list(adata.var_names)
    np.testing.assert_array_equal(moved[0].X.toarray(), moved[1].X.toarray())


def test_missing_or_extra_genes_are_named(trained_marker_model):
    model, adata = trained_marker_model
    with pytest.raises(ValueError, match=r"lack 2 of the model's genes: \['gene5', 'gene7'\]"):
        model.get_latent_representation(
            adata[:, [f"gene{j}" for j in range(40) if j not in (5, 7)]]
        )
    renamed = adata.copy()
    renamed.var_names = [*renamed.var_names[:-1], "XIST"]
    with pytest.raises(ValueError, match=r"genes the model was not trained on: \['XIST'\]"):
        model.transfer(renamed, to={"batch": "b1"})


def test_load_aligns_the_genes_by_name(trained_marker_model, tmp_path, recwarn):
    model, adata = trained_marker_model
    model.save(tmp_path / "model")
    shuffled = _reversed_genes(adata)
    loaded = CFGenModel.load(tmp_path / "model", adata=shuffled)
    assert not [w for w in recwarn if "var_names" in str(w.message)]
    assert list(loaded.gene_names) == list(adata.var_names)
    np.testing.assert_allclose(
        loaded.get_latent_representation(),
        model.get_latent_representation(adata),
        rtol=1e-5,
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="another order than it was trained with"):
        loaded.train(max_epochs=1)
    with pytest.raises(ValueError, match=r"lack 1 of the model's genes: \['gene39'\]"):
        CFGenModel.load(tmp_path / "model", adata=adata[:, :39].copy())


def test_mudata_peaks_are_aligned_by_name(trained_multiome):
    model, mdata = trained_multiome
    atac = mdata["atac"]
    reordered = md.MuData({"rna": mdata["rna"], "atac": atac[:, atac.var_names[::-1]].copy()})
    reordered.obs["cell_type"] = mdata.obs["cell_type"]
    np.testing.assert_allclose(
        model.get_latent_representation(reordered),
        model.get_latent_representation(mdata),
        rtol=1e-5,
        atol=1e-6,
    )
    short = md.MuData({"rna": mdata["rna"], "atac": atac[:, 1:].copy()})
    short.obs["cell_type"] = mdata.obs["cell_type"]
    with pytest.raises(
        ValueError, match=rf"lack 1 of the model's peaks: \['{atac.var_names[0]}'\]"
    ):
        model.get_latent_representation(short)
