import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from helpers import MULTIOME, TINY, TINY_MULTIOME, small_multiome

import scvi_cfgen
from scvi_cfgen import CFGenModel
from scvi_cfgen.metrics import accessibility_correlation, marker_expression_correlation
from scvi_cfgen.module import CFGenModule


def quick_multiome_model(mdata, modalities, epochs: int = 2, **kwargs) -> CFGenModel:
    CFGenModel.setup_mudata(mdata, categorical_covariate_keys=["cell_type"], modalities=modalities)
    model = CFGenModel(mdata, **{**TINY_MULTIOME, **kwargs})
    model.train(
        max_epochs={"autoencoder": epochs, "flow": epochs},
        batch_size=64,
        enable_progress_bar=False,
    )
    return model


# ---------------------------------------------------------------------- generation


def test_generate_returns_mudata_with_training_features(trained_multiome):
    model, mdata = trained_multiome
    generated = model.generate(n_cells=90, conditions={"cell_type": "type1"}, seed=0)
    assert isinstance(generated, md.MuData)
    assert set(generated.mod) == {"rna", "atac"}
    rna, atac = generated["rna"], generated["atac"]
    assert rna.shape == (90, 100)
    assert atac.shape == (90, 400)
    assert list(rna.var_names) == list(mdata["rna"].var_names)
    assert list(atac.var_names) == list(mdata["atac"].var_names)
    assert sp.isspmatrix_csr(rna.X)
    assert sp.isspmatrix_csr(atac.X)
    assert rna.X.dtype == np.int32
    assert rna.X.min() >= 0
    assert atac.X.dtype == np.uint8
    assert set(np.unique(atac.X.data)) <= {1}  # sparse 0/1
    for obs in (generated.obs, rna.obs, atac.obs):
        assert (obs["cell_type"] == "type1").all()
        assert list(obs["cell_type"].cat.categories) == ["type0", "type1", "type2"]
    assert (generated.obs["size_factor"] > 0).all()
    assert generated.uns["cfgen"]["seed"] == 0


def test_generated_cells_recover_each_type_accessibility(trained_multiome):
    model, mdata = trained_multiome
    generated = model.generate(conditions=mdata.obs[["cell_type"]], seed=1)
    labels = generated.obs["cell_type"].to_numpy()
    for i in range(3):
        cells = generated["atac"].X[labels == f"type{i}"]
        own = cells[:, mdata.uns["type_peaks"][f"type{i}"]].mean()
        others = [cells[:, mdata.uns["type_peaks"][f"type{j}"]].mean() for j in range(3) if j != i]
        real = mdata["atac"].X[mdata.obs["cell_type"].to_numpy() == f"type{i}"]
        real_own = (real[:, mdata.uns["type_peaks"][f"type{i}"]] > 0).mean()
        assert abs(own - real_own) < 0.1
        assert own > 4 * max(others)
    peaks = accessibility_correlation(
        mdata["atac"].X, mdata.obs["cell_type"], generated["atac"].X, labels
    )
    genes = marker_expression_correlation(
        mdata["rna"].X, mdata.obs["cell_type"], generated["rna"].X, labels
    )
    assert peaks["overall"] > 0.95
    assert genes["overall"] > 0.95


def test_generated_mudata_writes_and_reads_h5mu(trained_multiome, tmp_path):
    model, _ = trained_multiome
    generated = model.generate(n_cells=30, seed=0, progress_bar=False)
    path = tmp_path / "generated.h5mu"
    generated.write(path)
    back = md.read_h5mu(path)
    assert back.shape == generated.shape
    assert (back["atac"].X != generated["atac"].X).nnz == 0
    assert (back["rna"].X != generated["rna"].X).nnz == 0
    assert list(back.obs["cell_type"]) == list(generated.obs["cell_type"])


def test_save_load_gives_the_same_cells(trained_multiome, tmp_path):
    model, mdata = trained_multiome
    kwargs = {"n_cells": 40, "conditions": {"cell_type": "type2"}, "seed": 5}
    before = model.generate(**kwargs)
    model.save(tmp_path / "model", overwrite=True)
    loaded = CFGenModel.load(tmp_path / "model", adata=mdata)
    after = loaded.generate(**kwargs)
    assert (before["rna"].X != after["rna"].X).nnz == 0
    assert (before["atac"].X != after["atac"].X).nnz == 0
    assert np.allclose(
        loaded.get_latent_representation(mdata), model.get_latent_representation(mdata)
    )
    without_data = CFGenModel.load(tmp_path / "model")
    again = without_data.generate(**kwargs)
    assert (before["atac"].X != again["atac"].X).nnz == 0
    assert list(again["atac"].var_names) == list(mdata["atac"].var_names)


def test_latent_transfer_and_rna_drop_ins_on_multiome(trained_multiome):
    model, mdata = trained_multiome
    z = model.get_latent_representation(mdata)
    assert z.shape == (mdata.n_obs, 8)
    cells = np.flatnonzero(mdata.obs["cell_type"].to_numpy() == "type0")[:30]
    moved = model.transfer(
        mdata, to={"cell_type": "type2"}, indices=cells, seed=0, solver="rk4", n_steps=20
    )
    assert isinstance(moved, md.MuData)
    assert moved["atac"].shape == (30, 400)
    assert (moved.obs["cell_type"] == "type2").all()
    assert (moved.obs["cell_type_original"] == "type0").all()
    own = np.asarray(moved["atac"].X[:, mdata.uns["type_peaks"]["type2"]].mean())
    before = (mdata["atac"].X[cells][:, mdata.uns["type_peaks"]["type2"]] > 0).mean()
    assert own > before + 0.2
    expression = model.get_normalized_expression(mdata, indices=np.arange(10))
    assert expression.shape == (10, 100)
    assert list(expression.columns) == list(mdata["rna"].var_names)


# ---------------------------------------------------------------------- modalities


def test_rna_only_and_atac_only_mudata():
    mdata = small_multiome(n_cells=120)
    rna_only = quick_multiome_model(mdata, {"rna_layer": "rna"})
    generated = rna_only.generate(n_cells=10, seed=0, progress_bar=False)
    assert set(generated.mod) == {"rna"}
    assert generated["rna"].shape == (10, 100)
    assert "decoder_atac" not in dict(rna_only.module.autoencoder.named_children())

    mdata = small_multiome(n_cells=120)
    atac_only = quick_multiome_model(
        mdata, {"atac_layer": "atac", "categorical_covariate_keys": "atac"}
    )
    generated = atac_only.generate(n_cells=10, conditions={"cell_type": "type0"}, seed=0)
    assert set(generated.mod) == {"atac"}
    assert generated["atac"].shape == (10, 400)
    assert "size_factor" not in generated.obs
    assert not hasattr(atac_only.module, "log_theta")
    with pytest.raises(ValueError, match="no RNA modality"):
        atac_only.get_normalized_expression(mdata)
    with pytest.raises(ValueError, match="no RNA modality"):
        atac_only.generate(n_cells=5, library_size=1000)
    assert atac_only.get_latent_representation(mdata).shape == (120, 8)


def test_attributes_from_a_modality_obs():
    mdata = small_multiome(n_cells=120)
    del mdata.obs["cell_type"]
    with pytest.raises(ValueError, match="categorical_covariate_keys': 'rna'"):
        CFGenModel.setup_mudata(
            mdata, categorical_covariate_keys=["cell_type"], modalities=MULTIOME
        )
    model = quick_multiome_model(
        mdata, {**MULTIOME, "categorical_covariate_keys": "rna"}, epochs=1
    )
    assert list(model.attribute_categories["cell_type"]) == ["type0", "type1", "type2"]


def test_rna_only_anndata_module_keeps_its_state_dict_keys():
    module = CFGenModule(n_input=20, n_categories_per_attribute=[3], n_latent=4, n_hidden=(8,))
    keys = set(module.state_dict())
    assert {
        "autoencoder.encoder.head.weight",
        "autoencoder.decoder.head.weight",
        "autoencoder.log_theta",
    } <= keys
    assert not any("atac" in key or "bodies" in key for key in keys)
    assert module.modalities == ("rna",)


def test_peak_counts_are_binarised_and_modalities_weighted():
    torch.manual_seed(0)
    module = CFGenModule(
        n_input=20,
        n_categories_per_attribute=[2],
        n_latent=4,
        n_hidden=(8,),
        n_input_atac=30,
        n_hidden_atac=(16,),
    ).eval()
    x = torch.poisson(torch.full((6, 20), 3.0)) + 1
    peaks = torch.poisson(torch.full((6, 30), 0.8))
    codes = torch.zeros(6, 1)
    losses = {}
    for name, atac in {"counts": peaks, "binary": (peaks > 0).float()}.items():
        tensors = {"X": x, "atac": atac, "extra_categorical_covs": codes}
        _, _, losses[name] = module(tensors)
    assert torch.allclose(losses["counts"].loss, losses["binary"].loss)
    parts = losses["counts"].reconstruction_loss
    assert set(parts) == {"reconstruction_loss_rna", "reconstruction_loss_atac"}
    module.autoencoder.atac_weight = 0.0
    _, _, rna_only = module({"X": x, "atac": peaks, "extra_categorical_covs": codes})
    assert torch.allclose(rna_only.loss, parts["reconstruction_loss_rna"].mean())


def test_modality_weights_are_checked():
    mdata = small_multiome(n_cells=60)
    CFGenModel.setup_mudata(mdata, categorical_covariate_keys=["cell_type"], modalities=MULTIOME)
    model = CFGenModel(mdata, **TINY_MULTIOME, modality_weights={"atac": 0.5})
    assert model.module.autoencoder.atac_weight == 0.5
    assert model.module.autoencoder.rna_weight == 1.0
    with pytest.raises(ValueError, match="'rna' and/or 'atac'"):
        CFGenModel(mdata, modality_weights={"protein": 1.0})


# ---------------------------------------------------------------------- validation


def test_setup_mudata_rejects_missing_or_unnamed_modalities():
    mdata = small_multiome(n_cells=60)
    with pytest.raises(ValueError, match="`modalities` must map"):
        CFGenModel.setup_mudata(mdata)
    with pytest.raises(ValueError, match="'peaks'.*not found.*\\['rna', 'atac'\\]"):
        CFGenModel.setup_mudata(mdata, modalities={"rna_layer": "rna", "atac_layer": "peaks"})
    with pytest.raises(ValueError, match="at least one data modality"):
        CFGenModel.setup_mudata(mdata, modalities={"categorical_covariate_keys": "rna"})
    with pytest.raises(ValueError, match="Unknown `modalities`"):
        CFGenModel.setup_mudata(mdata, modalities={**MULTIOME, "protein_layer": "adt"})
    with pytest.raises(ValueError, match="Layer 'binary'"):
        CFGenModel.setup_mudata(mdata, atac_layer="binary", modalities=MULTIOME)
    with pytest.raises(ValueError, match="needs a MuData"):
        CFGenModel.setup_mudata(mdata["rna"], modalities=MULTIOME)


def test_setup_mudata_rejects_mismatched_cells():
    mdata = small_multiome(n_cells=60)
    unpaired = md.MuData({"rna": mdata["rna"][:50].copy(), "atac": mdata["atac"].copy()})
    unpaired.obs["cell_type"] = mdata.obs["cell_type"]
    with pytest.raises(ValueError, match="every cell measured in every registered modality"):
        CFGenModel.setup_mudata(unpaired, modalities=MULTIOME)


@pytest.mark.parametrize(
    ("value", "message"), [(-1.0, "negative values"), (0.5, "non-integer values")]
)
def test_setup_mudata_rejects_bad_peak_values(value, message):
    mdata = small_multiome(n_cells=60)
    atac = mdata["atac"].X.tolil()
    atac[3, 7] = value
    mdata["atac"].X = sp.csr_matrix(atac)
    with pytest.raises(
        ValueError, match=f"mdata.mod\\['atac'\\].X contains {message}.*atac_layer"
    ):
        CFGenModel.setup_mudata(mdata, modalities=MULTIOME)


def test_setup_mudata_accepts_binary_peaks_and_cells_without_peaks():
    mdata = small_multiome(n_cells=60)
    binary = (mdata["atac"].X > 0).astype(np.float32).tolil()
    binary[0, :] = 0
    mdata["atac"].layers["binary"] = sp.csr_matrix(binary)
    CFGenModel.setup_mudata(mdata, atac_layer="binary", modalities=MULTIOME)
    empty_rna = mdata["rna"].X.tolil()
    empty_rna[2, :] = 0
    mdata["rna"].X = sp.csr_matrix(empty_rna)
    with pytest.raises(ValueError, match="zero total counts"):
        CFGenModel.setup_mudata(mdata, modalities=MULTIOME)


def test_multiome_generate_rejects_unknown_categories(trained_multiome):
    model, _ = trained_multiome
    with pytest.raises(ValueError, match="Unknown category 'B'"):
        model.generate(n_cells=5, conditions={"cell_type": "B"})
    with pytest.raises(ValueError, match="Unknown attribute"):
        model.generate(n_cells=5, conditions={"donor": "d1"})
    with pytest.raises(ValueError, match="for models set up with `setup_anndata`"):
        model.augment(n_total=700, label_key="cell_type", concatenate=True)


def test_setup_anndata_path_unchanged(marker_adata):
    CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["cell_type"])
    model = CFGenModel(marker_adata, **TINY)
    assert model.modality_names is None
    assert model.has_rna
    assert not model.has_atac
    assert model.n_peaks == 0
    assert isinstance(model.module.autoencoder.encoder, scvi_cfgen.module.CountEncoder)


def test_synthetic_multiome_shapes():
    mdata = scvi_cfgen.datasets.synthetic_multiome(n_cells=50, seed=3)
    assert mdata["rna"].shape == (50, 200)
    assert mdata["atac"].shape == (50, 2000)
    assert isinstance(mdata["atac"].X, sp.csr_matrix)
    assert mdata["atac"].X.max() > 1  # peak counts, not only 0/1
    assert isinstance(mdata.obs["cell_type"].dtype, pd.CategoricalDtype)
    assert isinstance(mdata["rna"], ad.AnnData)
