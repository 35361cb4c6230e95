"""cellFlow mode (``latent="genes"``): no bottleneck, the flow models every gene's logit."""

import numpy as np
import pytest
import scvi
import torch
from helpers import MULTIOME, TINY, make_marker_counts, small_multiome

from scvi_cfgen import CFGenModel

GENES_TINY = {key: value for key, value in TINY.items() if key != "n_latent"}
QUICK = {"enable_progress_bar": False, "batch_size": 64}


@pytest.fixture(scope="module")
def cellflow():
    """A tiny cellFlow model on three cell types with 5 marker genes each, and two batches."""
    scvi.settings.seed = 0
    adata = make_marker_counts(n_cells=300)
    CFGenModel.setup_anndata(adata, categorical_covariate_keys=["cell_type", "batch"])
    model = CFGenModel(adata, **GENES_TINY, latent="genes")
    model.train(max_epochs={"autoencoder": 25, "flow": 150}, **QUICK)
    return model, adata


def marker_share(counts: np.ndarray, cell_type: int) -> float:
    """Fraction of the cells' counts on the 5 markers of ``type{cell_type}``."""
    counts = np.asarray(counts.todense() if hasattr(counts, "todense") else counts)
    return float(counts[:, 5 * cell_type : 5 * cell_type + 5].sum() / counts.sum())


def test_the_latent_is_the_gene_logits_of_the_nb_mean(cellflow):
    model, adata = cellflow
    autoencoder = model.module.autoencoder
    assert model.module.n_latent == adata.n_vars
    assert isinstance(autoencoder.decoder, torch.nn.Identity)
    assert model.module.flow.coupling == "ot"
    latent = model.get_latent_representation(adata[:6])
    assert latent.shape == (6, adata.n_vars)
    library = torch.full((6,), 100.0)
    mean = autoencoder.count_distribution(torch.as_tensor(latent), library, None).mean
    expected = 100.0 * torch.softmax(torch.as_tensor(latent), dim=-1)
    torch.testing.assert_close(mean, expected)
    # every cell's largest logits are its own type's markers
    types = adata.obs["cell_type"].cat.codes.to_numpy()[:6]
    for row, code in zip(latent, types, strict=True):
        assert set(np.argsort(row)[-3:]) <= set(range(5 * code, 5 * code + 5))


def test_generated_cells_carry_their_type_markers(cellflow):
    model, adata = cellflow
    for code in range(3):
        cells = model.generate(
            n_cells=60, conditions={"cell_type": f"type{code}"}, seed=1, progress_bar=False
        )
        assert (cells.obs["cell_type"] == f"type{code}").all()
        assert cells.X.dtype.kind == "i"
        own = marker_share(cells.X, code)
        for other in set(range(3)) - {code}:
            assert own > 1.8 * marker_share(cells.X, other), (code, other)


def test_guidance_transfer_and_save_load(cellflow, tmp_path):
    model, adata = cellflow
    conditions = {"cell_type": "type2", "batch": "b1"}
    request = {
        "n_cells": 40,
        "conditions": conditions,
        "guidance_weights": {"cell_type": 2.0},
        "seed": 3,
        "progress_bar": False,
    }
    weighted = model.generate(**request)
    assert (weighted.obs[["cell_type", "batch"]] == ["type2", "b1"]).all(axis=None)
    source = adata[adata.obs["cell_type"] == "type0"][:20].copy()
    moved = model.transfer(source, {"cell_type": "type1"})
    assert moved.shape == source.shape
    assert marker_share(moved.X, 1) > marker_share(source.X, 1)
    model.save(tmp_path / "model")
    loaded = CFGenModel.load(tmp_path / "model", adata=adata)
    assert loaded.module.n_latent == adata.n_vars
    again = loaded.generate(**request)
    np.testing.assert_array_equal(weighted.X.toarray(), again.X.toarray())


def test_independent_coupling_can_be_chosen_and_is_kept_by_saved_models(marker_adata, tmp_path):
    CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["cell_type"])
    model = CFGenModel(marker_adata, **GENES_TINY, latent="genes", coupling="independent")
    assert model.module.flow.coupling == "independent"
    by_default = CFGenModel(marker_adata, **TINY)
    assert by_default.module.flow.coupling == "ot"
    # the resolved coupling, not the `None` passed, is what a saved model stores
    assert by_default.init_params_["non_kwargs"]["coupling"] == "ot"
    chosen = CFGenModel(marker_adata, **TINY, coupling="independent")
    assert chosen.module.flow.coupling == "independent"
    chosen.save(tmp_path / "model")
    assert CFGenModel.load(tmp_path / "model").module.flow.coupling == "independent"
    assert CFGenModel(marker_adata, **TINY).module.n_latent == TINY["n_latent"]


def test_settings_that_cannot_work_are_refused(marker_adata):
    CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["cell_type"])
    with pytest.raises(ValueError, match="leave out `n_latent`"):
        CFGenModel(marker_adata, **TINY, latent="genes")
    with pytest.raises(ValueError, match="`latent` must be one of"):
        CFGenModel(marker_adata, **GENES_TINY, latent="logits")
    mdata = small_multiome(n_cells=60)
    CFGenModel.setup_mudata(mdata, categorical_covariate_keys=["cell_type"], modalities=MULTIOME)
    with pytest.raises(ValueError, match="models RNA counts only"):
        CFGenModel(mdata, **GENES_TINY, latent="genes")
