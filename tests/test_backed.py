"""Training from a backed h5ad: the count matrix is read in chunks of rows, never whole."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from anndata.abc import CSRDataset
from helpers import TINY, make_marker_counts

import scvi_cfgen._validation as validation
import scvi_cfgen.model._latent_table as latent_table_module
from scvi_cfgen import CFGenModel
from scvi_cfgen.model._latent_table import latent_table
from scvi_cfgen.model._training_statistics import fit_data_statistics, fit_latent_statistics

BATCH_SIZE = 64
FAST = {"seed": 0, "solver": "euler", "n_steps": 4, "progress_bar": False}


@pytest.fixture
def counts_on_disk(tmp_path) -> tuple[ad.AnnData, str]:
    adata = make_marker_counts(n_cells=300, n_genes=50)
    path = str(tmp_path / "counts.h5ad")
    adata.write_h5ad(path)
    return adata, path


def _count_backed_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the rows of every read of a backed CSR matrix; loading it whole fails."""
    reads: list[int] = []

    def counting(read):
        def counted(self, index):
            rows = read(self, index)
            reads.append(rows.shape[0] if getattr(rows, "ndim", 0) == 2 else 1)
            return rows

        return counted

    def refuse(self):
        raise AssertionError("the backed matrix was loaded whole (to_memory)")

    for concrete in CSRDataset.__subclasses__():
        monkeypatch.setattr(concrete, "__getitem__", counting(concrete.__getitem__))
        monkeypatch.setattr(concrete, "to_memory", refuse)
    monkeypatch.setattr(validation, "CHUNK_ROWS", BATCH_SIZE)
    monkeypatch.setattr(latent_table_module, "ENCODING_BATCH_SIZE", BATCH_SIZE)
    return reads


def _trained(adata: ad.AnnData) -> CFGenModel:
    scvi.settings.seed = 0
    CFGenModel.setup_anndata(adata, categorical_covariate_keys=["cell_type", "batch"])
    model = CFGenModel(adata, **TINY)
    model.train(
        max_epochs={"autoencoder": 3, "flow": 2},
        batch_size=BATCH_SIZE,
        early_stopping=False,
        enable_progress_bar=False,
    )
    return model


@pytest.fixture(scope="module")
def backed_model(tmp_path_factory):
    """A tiny model trained on a backed h5ad, the reads of it, its cells in memory and output."""
    in_memory = make_marker_counts(n_cells=300, n_genes=50)
    path = tmp_path_factory.mktemp("backed") / "counts.h5ad"
    in_memory.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    assert isinstance(backed.X, CSRDataset)
    with pytest.MonkeyPatch.context() as monkeypatch:
        rows_read = _count_backed_reads(monkeypatch)
        model = _trained(backed)
        generated = model.generate(n_cells=50, conditions={"cell_type": "type1"}, **FAST)
    return model, rows_read, in_memory, generated


def _same_autoencoder_in_memory(model: CFGenModel, in_memory: ad.AnnData) -> CFGenModel:
    """A model on the in-memory cells with the backed model's autoencoder and split, fitted."""
    CFGenModel.setup_anndata(in_memory, categorical_covariate_keys=["cell_type", "batch"])
    twin = CFGenModel(in_memory, **TINY)
    twin.module.autoencoder.load_state_dict(model.module.autoencoder.state_dict())
    twin.trained_stages_ = ["autoencoder"]
    fit_data_statistics(twin, np.asarray(model.train_indices))
    fit_latent_statistics(twin, np.asarray(model.train_indices))
    return twin


def test_backed_counts_are_only_read_in_minibatches_and_chunks(backed_model):
    model, rows_read, _, _ = backed_model
    assert rows_read, "the backed matrix was never read"
    # scvi-tools' count check reads 100 rows; its default inference minibatch is 128
    assert max(rows_read) <= max(100, scvi.settings.batch_size) < model.adata.n_obs


def test_statistics_from_backed_counts_equal_those_in_memory(backed_model):
    model, _, in_memory, _ = backed_model
    twin = _same_autoencoder_in_memory(model, in_memory)
    statistics = model.module.statistics.state_dict()
    assert float(statistics["log_library_std"].min()) > 0  # fitted, not the initial ones
    for name, value in twin.module.statistics.state_dict().items():
        np.testing.assert_allclose(
            statistics[name].numpy(), value.numpy(), rtol=1e-6, atol=1e-7, err_msg=name
        )
    backed_table, memory_table = latent_table(model).adata, latent_table(twin).adata
    np.testing.assert_allclose(backed_table.X, memory_table.X, rtol=1e-5, atol=1e-6)
    pd.testing.assert_frame_equal(backed_table.obs, memory_table.obs)
    np.testing.assert_allclose(
        model.get_latent_representation(), twin.get_latent_representation(), rtol=1e-5, atol=1e-6
    )


def test_latent_statistics_are_the_moments_of_the_training_latents(backed_model):
    model, _, _, _ = backed_model
    latents = torch.as_tensor(model.get_latent_representation(indices=model.train_indices))
    statistics = model.module.statistics
    torch.testing.assert_close(statistics.latent_mean, latents.mean(dim=0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        statistics.latent_std, latents.std(dim=0).clamp_min(1e-6), rtol=1e-5, atol=1e-6
    )


def test_cells_of_backed_data_come_in_the_order_of_the_indices(backed_model):
    model, _, _, _ = backed_model
    every = model.get_latent_representation()
    indices = np.random.default_rng(0).permutation(model.adata.n_obs)[:150]
    np.testing.assert_array_equal(
        model.get_latent_representation(indices=indices, batch_size=64), every[indices]
    )


def test_a_backed_model_trains_both_stages_and_generates(backed_model):
    model, _, in_memory, generated = backed_model
    assert model.trained_stages == ["autoencoder", "flow"]
    assert len(model.history["flow_matching_loss_train_flow"]) == 2
    assert generated.shape == (50, in_memory.n_vars)
    assert (generated.obs["cell_type"] == "type1").all()
    values = generated.X.data
    assert np.all(values >= 0)
    assert np.all(values == np.round(values))


def test_dense_backed_counts_are_read_in_chunks(tmp_path, counts_on_disk, monkeypatch):
    in_memory, _ = counts_on_disk
    dense = ad.AnnData(in_memory.X.toarray(), obs=in_memory.obs, var=in_memory.var)
    path = tmp_path / "dense.h5ad"
    dense.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    monkeypatch.setattr(validation, "DENSE_CHUNK_VALUES", 7 * in_memory.n_vars)
    blocks = [rows.shape[0] for _, rows in validation.row_chunks(backed.X)]
    assert max(blocks) == 7
    assert sum(blocks) == backed.n_obs
    np.testing.assert_array_equal(
        validation.row_sums(backed.X), np.asarray(in_memory.X.sum(axis=1)).ravel()
    )
    CFGenModel.setup_anndata(backed, categorical_covariate_keys=["cell_type"])


def test_backed_csc_counts_are_refused_with_the_fix(tmp_path, counts_on_disk):
    in_memory, _ = counts_on_disk
    column_major = ad.AnnData(in_memory.X.tocsc(), obs=in_memory.obs, var=in_memory.var)
    path = tmp_path / "csc.h5ad"
    column_major.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    with pytest.raises(ValueError, match=r"CSC.*tocsr\(\)"):
        CFGenModel.setup_anndata(backed, categorical_covariate_keys=["cell_type"])


def test_augment_refuses_to_concatenate_backed_cells(backed_model):
    model, _, _, _ = backed_model
    with pytest.raises(ValueError, match="backed.*out="):
        model.augment(400, "cell_type", concatenate=True, **FAST)
