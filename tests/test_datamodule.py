"""Training from scvi-tools' TileDBDataModule over a small TileDB-SOMA experiment."""

import anndata as ad
import numpy as np
import pytest
import torch
from helpers import TINY, make_marker_counts
from lightning.pytorch import LightningDataModule

import scvi_cfgen
from scvi_cfgen.model._datamodule import DataModuleAdapter
from scvi_cfgen.model._datamodule_passes import (
    fit_streamed_latent_statistics,
    streamed_latent_splitter,
)
from scvi_cfgen.model._latent_table import latent_table
from scvi_cfgen.model._training_split import datamodule_split
from scvi_cfgen.model._training_statistics import fit_data_statistics, fit_latent_statistics

tiledbsoma = pytest.importorskip("tiledbsoma")
tiledbsoma_io = pytest.importorskip("tiledbsoma.io")
pytest.importorskip("tiledbsoma_ml")
from scvi.dataloaders import TileDBDataModule  # noqa: E402

ATTRIBUTES = ["cell_type", "batch"]


def write_soma(adata: ad.AnnData, uri: str) -> str:
    """``adata``'s counts as the ``raw`` layer of a SOMA experiment (measurement ``RNA``)."""
    # anndata >= 0.13 lists X as layers[None], which tiledbsoma 2.3 cannot name: store the
    # counts as a named layer only
    counts_only = ad.AnnData(obs=adata.obs, var=adata.var, layers={"raw": adata.X})
    return tiledbsoma_io.from_anndata(uri, counts_only, measurement_name="RNA")


def open_bounded(uri: str):
    """The experiment at ``uri`` read with a bounded TileDB memory budget (as docs/scale.md)."""
    config = {"sm.mem.total_budget": str(2**27), "soma.init_buffer_bytes": str(2**25)}
    return tiledbsoma.Experiment.open(
        uri, context=tiledbsoma.SOMATileDBContext(tiledb_config=config)
    )


def tiledb_module(query, **kwargs) -> TileDBDataModule:
    arguments = {
        "layer_name": "raw",
        "batch_size": 32,
        "shuffle": True,
        "seed": 0,
        "train_size": 0.8,
        "split_seed": 1,
        "batch_column_names": ["batch"],
        "categorical_covariate_keys": ["cell_type"],
        "dataloader_kwargs": {"num_workers": 0},
        **kwargs,
    }
    return TileDBDataModule(query, **arguments)


@pytest.fixture(scope="module")
def soma(tmp_path_factory):
    adata = make_marker_counts(n_cells=240)
    uri = write_soma(adata, str(tmp_path_factory.mktemp("soma") / "experiment"))
    experiment = open_bounded(uri)
    yield adata, experiment
    experiment.close()


@pytest.fixture(scope="module")
def trained(soma):
    adata, experiment = soma
    datamodule = tiledb_module(experiment.axis_query("RNA"))
    registry = scvi_cfgen.CFGenModel.registry_from_datamodule(
        datamodule, attributes=ATTRIBUTES, gene_names="var_id"
    )
    model = scvi_cfgen.CFGenModel(adata=None, registry=registry, **TINY)
    torch.manual_seed(0)
    model.train(datamodule=datamodule, max_epochs=2, enable_progress_bar=False)
    return adata, datamodule, model


def anndata_twin(adata, model) -> scvi_cfgen.CFGenModel:
    """A model on the same cells registered from the AnnData, with ``model``'s weights."""
    adata = adata.copy()
    scvi_cfgen.CFGenModel.setup_anndata(adata, categorical_covariate_keys=ATTRIBUTES)
    twin = scvi_cfgen.CFGenModel(adata, **TINY)
    twin.module.load_state_dict(model.module.state_dict())
    twin.module.eval()
    return twin


def split_rows(datamodule) -> tuple[np.ndarray, np.ndarray]:
    """AnnData rows of the data module's training and validation cells (soma_joinid = row)."""
    return tuple(
        np.asarray(dataset.query_ids.obs_joinids)
        for dataset in (datamodule.train_dataset, datamodule.val_dataset)
    )


def test_trains_generates_and_round_trips(trained, tmp_path):
    adata, _, model = trained
    assert model.trained_stages == ["autoencoder", "flow"]
    assert {"train_loss_autoencoder", "validation_loss_flow"} <= set(model.history)
    assert list(model.gene_names) == list(adata.var_names)
    categories = model.attribute_categories
    assert list(categories) == ATTRIBUTES
    assert list(categories["cell_type"]) == ["type0", "type1", "type2"]

    generated = model.generate(n_cells=12, conditions={"cell_type": "type1"}, seed=0)
    assert list(generated.var_names) == list(adata.var_names)
    assert (generated.obs["cell_type"] == "type1").all()
    counts = generated.X.toarray()
    assert (counts >= 0).all()
    assert np.array_equal(counts, np.round(counts))
    assert counts.sum() > 0

    model.save(tmp_path / "model")
    loaded = scvi_cfgen.CFGenModel.load(tmp_path / "model")
    again = loaded.generate(n_cells=12, conditions={"cell_type": "type1"}, seed=0)
    assert np.array_equal(again.X.toarray(), counts)
    both = {"cell_type": "type2", "batch": "b0"}
    np.testing.assert_array_equal(
        loaded.generate(n_cells=5, conditions=both, seed=1).X.toarray(),
        model.generate(n_cells=5, conditions=both, seed=1).X.toarray(),
    )


def test_streamed_statistics_equal_the_anndata_path(trained):
    adata, datamodule, model = trained
    train_rows, validation_rows = split_rows(datamodule)
    assert len(train_rows) == 192
    assert len(validation_rows) == 48
    assert not set(train_rows) & set(validation_rows)
    assert model.train_indices is None  # data-module rows are not AnnData rows

    twin = anndata_twin(adata, model)
    fit_data_statistics(twin, train_rows)
    fit_latent_statistics(twin, train_rows)
    streamed, expected = model.module.statistics, twin.module.statistics
    assert torch.equal(streamed.combinations, expected.combinations)
    assert torch.equal(streamed.combination_counts, expected.combination_counts)
    for name in ("log_library_mean", "log_library_std", "log_library_min", "log_library_max"):
        torch.testing.assert_close(getattr(streamed, name), getattr(expected, name))
    torch.testing.assert_close(streamed.latent_mean, expected.latent_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(streamed.latent_std, expected.latent_std, rtol=1e-5, atol=1e-6)

    # a wrong pass (e.g. with the validation cells) gives other moments
    fit_latent_statistics(twin, np.concatenate([train_rows, validation_rows]))
    assert not torch.allclose(streamed.latent_mean, expected.latent_mean, atol=1e-4)


def test_streamed_latent_table_keeps_training_and_validation_cells_apart(trained):
    adata, datamodule, model = trained
    train_rows, validation_rows = split_rows(datamodule)
    twin = anndata_twin(adata, model)
    adapter = datamodule_split(model, datamodule, None, None, 256, None)
    splitter = streamed_latent_splitter(model, adapter)
    streamed = splitter.adata_manager.adata
    expected = latent_table(twin).adata
    assert (len(splitter.train_idx), len(splitter.val_idx)) == (192, 48)
    for rows, table_rows in (
        (train_rows, splitter.train_idx),
        (validation_rows, splitter.val_idx),
    ):
        # the loaders shuffle cells: compare each split's cells as sorted rows
        order = np.lexsort(expected.X[rows].T)
        table_order = np.lexsort(streamed.X[table_rows].T)
        np.testing.assert_allclose(
            streamed.X[table_rows][table_order], expected.X[rows][order], rtol=1e-4, atol=1e-5
        )
        for column in ("log_library", "seed_total", "code_0", "code_1"):
            np.testing.assert_allclose(
                streamed.obs[column].to_numpy()[table_rows][table_order],
                expected.obs[column].to_numpy()[rows][order],
                rtol=1e-6,
            )

    # refitting the moments from the data module gives the trained model's
    before = model.module.statistics.latent_mean.clone()
    fit_streamed_latent_statistics(model, adapter)
    torch.testing.assert_close(model.module.statistics.latent_mean, before)


def test_registry_of_the_data_module_works_directly(soma):
    _, experiment = soma
    datamodule = tiledb_module(experiment.axis_query("RNA"))
    model = scvi_cfgen.CFGenModel(adata=None, registry=datamodule.registry, **TINY)
    assert list(model.attribute_categories) == ["cell_type"]
    assert model.n_genes == 40
    assert list(model.gene_names[:2]) == ["0", "1"]  # TileDB's registry: soma_joinids


def test_joint_covariates_are_split_into_attributes(soma):
    adata, experiment = soma
    adata_obs = experiment.obs.read().concat().to_pandas()
    assert list(adata_obs["cell_type"]) == list(adata.obs["cell_type"])
    datamodule = tiledb_module(
        experiment.axis_query("RNA"),
        batch_column_names=["obs_id"],
        categorical_covariate_keys=["cell_type", "batch"],
    )
    model = scvi_cfgen.CFGenModel(adata=None, registry=datamodule.registry, **TINY)
    assert list(model.attribute_categories) == ["cell_type", "batch"]
    adapter = datamodule_split(model, datamodule, None, None, 256, None)
    rows = {str(name): row for row, name in enumerate(adata.obs_names)}
    datamodule.setup()
    for raw in datamodule.train_dataloader():
        names = raw[1]["obs_id"].to_numpy()
        codes = adapter.on_before_batch_transfer(raw, 0)["extra_categorical_covs"].numpy()
        expected = np.stack(
            [adata.obs[key].cat.codes.to_numpy()[[rows[n] for n in names]] for key in ATTRIBUTES],
            axis=1,
        )
        np.testing.assert_array_equal(codes, expected)


def test_unusable_data_modules_fail_before_training(soma, trained):
    _, experiment = soma
    _, datamodule, model = trained

    class NoRegistry(LightningDataModule):
        pass

    with pytest.raises(ValueError, match="has no scvi-tools `registry`"):
        model.train(datamodule=NoRegistry(), max_epochs=1)
    with pytest.raises(ValueError, match="has no scvi-tools `registry`"):
        scvi_cfgen.CFGenModel.registry_from_datamodule(NoRegistry())

    without_covariates = tiledb_module(
        experiment.axis_query("RNA"),
        batch_column_names=["cell_type"],
        categorical_covariate_keys=None,
    )
    with pytest.raises(ValueError, match=r"conditions on \['batch'\], which the data module"):
        model.train(datamodule=without_covariates, max_epochs=1)
    with pytest.raises(ValueError, match=r"Attributes \['donor'\] are not coded"):
        scvi_cfgen.CFGenModel.registry_from_datamodule(datamodule, attributes=["donor"])
    with pytest.raises(ValueError, match="`gene_names='symbol'` is not a column"):
        scvi_cfgen.CFGenModel.registry_from_datamodule(datamodule, gene_names="symbol")
    with pytest.raises(ValueError, match="pass `train_size`"):
        model.train(datamodule=datamodule, train_size=0.5, max_epochs=1)
    with pytest.raises(ValueError, match="pass `batch_size`"):
        model.train(datamodule=datamodule, batch_size=64, max_epochs=1)
    with pytest.raises(ValueError, match="do not work with a `datamodule`"):
        model.train(datamodule=datamodule, checkpoint_dir="unused", max_epochs=1)

    two_types = experiment.axis_query(
        "RNA", obs_query=tiledbsoma.AxisQuery(value_filter="cell_type in ['type0', 'type1']")
    )
    narrow = scvi_cfgen.CFGenModel(adata=None, registry=tiledb_module(two_types).registry, **TINY)
    with pytest.raises(ValueError, match=r"not trained with: \{'cell_type': \['type2'\]\}"):
        narrow.train(datamodule=tiledb_module(experiment.axis_query("RNA")), max_epochs=1)
    assert narrow.trained_stages == []


def test_bad_counts_and_lone_cells_fail_before_training(tmp_path):
    adata = make_marker_counts(n_cells=60)
    adata.X = adata.X.astype(np.float32) * 0.5
    experiment = open_bounded(write_soma(adata, str(tmp_path / "halves")))
    datamodule = tiledb_module(experiment.axis_query("RNA"))
    model = scvi_cfgen.CFGenModel(adata=None, registry=datamodule.registry, **TINY)
    with pytest.raises(ValueError, match="non-integer values"):
        model.train(datamodule=datamodule, max_epochs=1)
    assert model.trained_stages == []

    adata = make_marker_counts(n_cells=41)  # 33 training cells: two minibatches of 16 and 1
    experiment = open_bounded(write_soma(adata, str(tmp_path / "lone")))
    datamodule = tiledb_module(experiment.axis_query("RNA"), batch_size=16, train_size=0.8)
    model = scvi_cfgen.CFGenModel(adata=None, registry=datamodule.registry, **TINY)
    with pytest.raises(ValueError, match="minibatch of 1 cell"):
        model.train(datamodule=datamodule, max_epochs=1)


def test_default_tiledb_read_budget_is_warned_about(soma, recwarn):
    adata, experiment = soma
    registry = tiledb_module(experiment.axis_query("RNA")).registry
    model = scvi_cfgen.CFGenModel(adata=None, registry=registry, **TINY)

    def adapt(query):
        return DataModuleAdapter(
            tiledb_module(query), model.attribute_categories, list(model.gene_names)
        )

    adapt(experiment.axis_query("RNA"))  # opened with a bounded budget: no warning
    assert not [w for w in recwarn if "memory budget" in str(w.message)]
    unbounded = tiledbsoma.Experiment.open(experiment.uri)
    try:
        with pytest.warns(
            UserWarning, match=r"default memory budget \(sm.mem.total_budget = 10 GiB"
        ):
            adapt(unbounded.axis_query("RNA"))
        # raised where the user calls train, not inside the package
        with pytest.warns(UserWarning, match="default memory budget") as caught:
            model.train(
                datamodule=tiledb_module(unbounded.axis_query("RNA")),
                max_epochs=1,
                enable_progress_bar=False,
            )
        budget_warnings = [w for w in caught if "memory budget" in str(w.message)]
        assert [w.filename for w in budget_warnings] == [__file__]
    finally:
        unbounded.close()
