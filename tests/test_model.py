import copy
import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi
import sparse
import torch
from helpers import TINY, make_marker_counts

import scvi_cfgen
from scvi_cfgen import CFGenModel


def quick_model(adata, keys=("cell_type",), **kwargs):
    CFGenModel.setup_anndata(adata, categorical_covariate_keys=list(keys))
    model = CFGenModel(adata, **{**TINY, **kwargs})
    model.train(
        max_epochs={"autoencoder": 2, "flow": 2},
        batch_size=64,
        enable_progress_bar=False,
    )
    return model


def test_generate_returns_integer_counts_with_training_genes(trained_marker_model):
    model, adata = trained_marker_model
    cells = model.generate(n_cells=120, conditions={"cell_type": "type1"}, seed=0)
    assert cells.shape == (120, adata.n_vars)
    assert list(cells.var_names) == list(adata.var_names)
    assert sp.isspmatrix_csr(cells.X) or sp.issparse(cells.X)
    assert cells.X.dtype.kind == "i"
    assert cells.X.min() >= 0
    assert (cells.obs["cell_type"] == "type1").all()
    assert list(cells.obs["cell_type"].cat.categories) == ["type0", "type1", "type2"]
    assert "batch" not in cells.obs  # not conditioned on: left out of the field
    assert (cells.obs["size_factor"] > 0).all()


def test_generated_cells_carry_their_type_markers(trained_marker_model):
    model, _ = trained_marker_model
    for i in range(3):
        cells = model.generate(n_cells=150, conditions={"cell_type": f"type{i}"}, seed=1)
        X = cells.X.toarray().astype(float)
        X = X / X.sum(axis=1, keepdims=True)
        marker_share = [X[:, 5 * j : 5 * j + 5].sum(axis=1).mean() for j in range(3)]
        assert int(np.argmax(marker_share)) == i
        assert marker_share[i] > 3 * max(s for j, s in enumerate(marker_share) if j != i)


def test_generate_like_a_frame_and_at_training_frequencies(trained_marker_model):
    model, adata = trained_marker_model
    frame = adata.obs[["cell_type"]].iloc[:50]
    like = model.generate(conditions=frame, seed=0, progress_bar=False)
    assert like.n_obs == 50
    assert (like.obs["cell_type"].to_numpy() == frame["cell_type"].to_numpy()).all()

    anything = model.generate(n_cells=3000, seed=0, batch_size=1500, solver="euler", n_steps=5)
    observed = anything.obs["cell_type"].value_counts(normalize=True).sort_index()
    train = adata.obs["cell_type"].iloc[model.train_indices].value_counts(normalize=True)
    assert np.allclose(observed.to_numpy(), train.sort_index().to_numpy(), atol=0.03)
    assert set(anything.obs.columns) == {"cell_type", "batch", "size_factor"}


def test_generate_is_reproducible_and_seed_dependent(trained_marker_model):
    model, _ = trained_marker_model
    kwargs = {
        "n_cells": 40,
        "conditions": {"cell_type": "type0"},
        "solver": "euler",
        "n_steps": 10,
    }
    first = model.generate(seed=3, **kwargs)
    assert (first.X != model.generate(seed=3, **kwargs).X).nnz == 0
    assert (first.X != model.generate(seed=4, **kwargs).X).nnz > 0
    chunked = model.generate(seed=3, batch_size=16, **kwargs)
    assert chunked.shape == first.shape


def test_generate_rejects_bad_requests(trained_marker_model):
    model, _ = trained_marker_model
    with pytest.raises(ValueError, match=r"Unknown category 'type9'.*'type0', 'type1', 'type2'"):
        model.generate(n_cells=5, conditions={"cell_type": "type9"})
    with pytest.raises(ValueError, match=r"Unknown attribute 'donor'.*cell_type"):
        model.generate(n_cells=5, conditions={"donor": "d1"})
    with pytest.raises(ValueError, match="non-negative"):
        model.generate(n_cells=5, conditions={"cell_type": "type0"}, guidance_weights=-1.0)
    with pytest.raises(ValueError, match="finite"):
        model.generate(
            n_cells=5, conditions={"cell_type": "type0"}, guidance_weights={"cell_type": np.nan}
        )
    with pytest.raises(ValueError, match="does not set 'batch'"):
        model.generate(
            n_cells=5, conditions={"cell_type": "type0"}, guidance_weights={"batch": 1.0}
        )
    with pytest.raises(ValueError, match="n_cells"):
        model.generate(conditions={"cell_type": "type0"})
    with pytest.raises(ValueError, match="rows"):
        model.generate(n_cells=3, conditions=pd.DataFrame({"cell_type": ["type0"] * 4}))
    with pytest.raises(ValueError, match="Unknown solver"):
        model.generate(n_cells=5, solver="rk45")
    with pytest.raises(ValueError, match="library_size"):
        model.generate(n_cells=5, library_size=[100.0, 200.0])


def test_library_size_and_unconditional_weights(trained_marker_model):
    model, _ = trained_marker_model
    fixed = model.generate(n_cells=30, library_size=1000.0, seed=0, solver="euler", n_steps=5)
    assert np.allclose(fixed.obs["size_factor"], 1000.0)
    totals = np.asarray(fixed.X.sum(axis=1)).ravel()
    assert 700 < np.median(totals) < 1300
    unconditional = model.generate(
        n_cells=30, guidance_weights=0.0, seed=0, solver="euler", n_steps=5
    )
    assert unconditional.uns["cfgen"]["guidance_weights"] == {"cell_type": 0.0, "batch": 0.0}
    assert "cell_type" not in unconditional.obs


def test_save_load_generates_identical_cells(trained_marker_model, tmp_path):
    model, adata = trained_marker_model
    kwargs = {"n_cells": 60, "conditions": {"cell_type": "type2"}, "seed": 11}
    before = model.generate(**kwargs)
    model.save(tmp_path / "model")
    loaded = CFGenModel.load(tmp_path / "model", adata=adata)
    assert (loaded.generate(**kwargs).X != before.X).nnz == 0
    bare = CFGenModel.load(tmp_path / "model")  # no AnnData needed to generate
    again = bare.generate(**kwargs)
    assert (again.X != before.X).nnz == 0
    assert list(again.var_names) == list(adata.var_names)
    stats, loaded_stats = model.module.statistics, bare.module.statistics
    assert torch.equal(stats.combinations, loaded_stats.combinations)
    assert torch.equal(stats.log_library_mean, loaded_stats.log_library_mean)
    assert loaded_stats.fitted_size_factor_law == stats.fitted_size_factor_law == "lognormal"
    assert torch.equal(stats.log_library_quantiles, loaded_stats.log_library_quantiles)


def test_statistics_come_from_training_cells_only(trained_marker_model):
    model, adata = trained_marker_model
    libraries = np.log(np.asarray(adata.X.sum(axis=1)).ravel())
    types = adata.obs["cell_type"].cat.codes.to_numpy()
    train = np.asarray(model.train_indices)
    assert len(train) < adata.n_obs
    for code in range(3):
        expected = libraries[train][types[train] == code].mean()
        assert np.isclose(
            model.module.statistics.log_library_mean[code].item(), expected, atol=1e-5
        )
    assert model.module.statistics.combination_counts.sum().item() == len(train)
    quantiles = model.module.statistics.log_library_quantiles
    for code in range(3):  # the empirical law spans the training cells' depths exactly
        own = libraries[train][types[train] == code]
        assert np.isclose(quantiles[code, 0].item(), own.min(), atol=1e-4)
        assert np.isclose(quantiles[code, -1].item(), own.max(), atol=1e-4)
        assert np.isclose(quantiles[code, 500].item(), np.median(own), atol=1e-4)


def test_generated_size_factors_follow_the_training_depths(trained_marker_model):
    model, adata = trained_marker_model
    libraries = np.asarray(adata.X.sum(axis=1)).ravel()
    train = np.asarray(model.train_indices)
    type2 = libraries[train][adata.obs["cell_type"].to_numpy()[train] == "type2"]
    statistics = model.module.statistics
    statistics.size_factor_law = "empirical"
    try:
        generated = model.generate(n_cells=4000, conditions={"cell_type": "type2"}, seed=3)
    finally:
        statistics.size_factor_law = "lognormal"
    sizes = generated.obs["size_factor"].to_numpy()
    assert sizes.min() >= type2.min() - 1e-3
    assert sizes.max() <= type2.max() + 1e-3
    for q in (0.1, 0.5, 0.9):
        assert abs(np.log(np.quantile(sizes, q)) - np.log(np.quantile(type2, q))) < 0.05


def test_law_and_dropout_choices_survive_save_and_load(marker_adata, tmp_path):
    CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["cell_type"])
    model = CFGenModel(marker_adata, size_factor_law="empirical", dropout_rate=0.2, **TINY)
    assert "empirical size factor" in model._model_summary_string
    model.train(max_epochs={"autoencoder": 1, "flow": 1}, enable_progress_bar=False)
    model.save(tmp_path / "model")
    loaded = CFGenModel.load(tmp_path / "model")
    assert loaded.module.statistics.fitted_size_factor_law == "empirical"
    dropouts = [
        m for m in loaded.module.autoencoder.encoder.body if isinstance(m, torch.nn.Dropout)
    ]
    assert [m.p for m in dropouts] == [0.2]
    kwargs = {"n_cells": 50, "seed": 2, "solver": "euler", "n_steps": 4}
    assert (loaded.generate(**kwargs).X != model.generate(**kwargs).X).nnz == 0
    settings = {k: v for k, v in TINY.items() if k != "n_latent"}
    for latent, expected in (("bottleneck", [0.5]), ("genes", [])):  # 240 cells
        encoder = CFGenModel(marker_adata, latent=latent, **settings).module.autoencoder.encoder
        assert [m.p for m in encoder.body if isinstance(m, torch.nn.Dropout)] == expected


def test_flow_training_leaves_the_encoder_untouched(marker_adata):
    CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["cell_type"])
    model = CFGenModel(marker_adata, **TINY)
    model.train(max_epochs={"autoencoder": 2, "flow": 1}, enable_progress_bar=False)
    latent = model.get_latent_representation()
    encoder = model.module.autoencoder.encoder
    encoder_state = {k: v.clone() for k, v in encoder.state_dict().items()}
    model.train_flow(max_epochs=3, batch_size=64, enable_progress_bar=False)
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, encoder_state[key]), key
    assert np.array_equal(model.get_latent_representation(), latent)


def test_history_has_both_stages(trained_marker_model):
    model, _ = trained_marker_model
    assert {"train_loss_autoencoder", "train_loss_flow"} <= set(model.history)
    assert len(model.history["train_loss_flow"]) == 300


def test_early_stopping_uses_validation_loss(marker_adata):
    model = quick_model(marker_adata)
    assert "validation_loss_autoencoder" in model.history
    assert "validation_loss_flow" in model.history


def test_no_validation_set_disables_early_stopping(marker_adata):
    CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["cell_type"])
    model = CFGenModel(marker_adata, **TINY)
    with pytest.warns(UserWarning, match="early stopping and the flow"):
        model.train(
            max_epochs={"autoencoder": 1, "flow": 1}, train_size=1.0, enable_progress_bar=False
        )


def test_scvi_dropins(trained_marker_model):
    model, adata = trained_marker_model
    latent = model.get_latent_representation(adata, indices=np.arange(10))
    assert latent.shape == (10, 8)
    samples = model.posterior_predictive_sample(indices=np.arange(12))
    assert isinstance(samples, sparse.GCXS)
    assert samples.shape == (12, adata.n_vars)
    several = model.posterior_predictive_sample(
        indices=np.arange(12), n_samples=3, gene_list=["gene0", "gene7"]
    )
    assert several.shape == (12, 2, 3)
    values = several.todense()
    assert (values >= 0).all()
    assert np.array_equal(values, np.round(values))
    averaged = model.get_normalized_expression(
        indices=np.arange(12),
        library_size=1e4,
        gene_list=["gene0", "gene7"],
        n_samples=3,
        return_mean=True,
    )
    assert averaged.shape == (12, 2)
    assert list(averaged.columns) == ["gene0", "gene7"]
    assert isinstance(model.posterior_predictive_sample(n_samples=2), sparse.GCXS)
    assert model.posterior_predictive_sample(n_samples=2).shape == (adata.n_obs, adata.n_vars, 2)
    expression = model.get_normalized_expression(indices=np.arange(12))
    assert isinstance(expression, pd.DataFrame)
    assert list(expression.index) == list(adata.obs_names[:12])
    assert np.allclose(expression.sum(axis=1), 1.0, atol=1e-4)
    latent_scale = model.get_normalized_expression(
        indices=[0, 1], library_size="latent", return_numpy=True
    )
    assert np.allclose(
        latent_scale.sum(axis=1), np.asarray(adata.X[:2].sum(axis=1)).ravel(), rtol=1e-3
    )
    with pytest.raises(ValueError, match="transform_batch"):
        model.get_normalized_expression(transform_batch="b0")


def test_per_category_dispersion_and_size_factor_conditioning(marker_adata):
    model = quick_model(
        marker_adata,
        keys=("cell_type", "batch"),
        dispersion="gene-covariate",
        dispersion_covariate="cell_type",
        size_factor_covariate="batch",
        condition_on_size_factor=True,
        coupling="ot",
        conditioning_scheme="single_and_joint",
    )
    assert model.module.autoencoder.log_theta.shape == (3, marker_adata.n_vars)
    cells = model.generate(
        n_cells=20, conditions={"batch": "b1"}, seed=0, solver="euler", n_steps=4
    )
    assert (cells.obs["batch"] == "b1").all()


def test_unconditional_model(marker_adata):
    model = quick_model(marker_adata, keys=())
    cells = model.generate(n_cells=10, seed=0, solver="midpoint", n_steps=4)
    assert cells.shape == (10, marker_adata.n_vars)
    assert list(cells.obs.columns) == ["size_factor"]


def test_pbmc_slice_end_to_end(pbmc_slice):
    adata = pbmc_slice.copy()
    model = quick_model(adata)
    cells = model.generate(conditions=adata.obs[["cell_type"]].iloc[:100], seed=0)
    assert cells.n_obs == 100
    assert list(cells.var_names) == list(adata.var_names)
    assert cells.X.dtype.kind == "i"


def test_builtin_dataset():
    adata = scvi_cfgen.datasets.pbmc3k()
    assert adata.shape == (2638, 9648)
    assert sp.issparse(adata.X)
    assert adata.obs["cell_type"].value_counts()["B"] == 341
    assert np.array_equal(adata.X.data, np.round(adata.X.data))


def test_two_models_do_not_share_state():
    first, second = make_marker_counts(seed=1), make_marker_counts(seed=2)
    a, b = quick_model(first), quick_model(second)
    assert not torch.equal(
        a.module.statistics.log_library_mean, b.module.statistics.log_library_mean
    )


def test_training_history_plot(trained_marker_model):
    model, _ = trained_marker_model
    figure = scvi_cfgen.pl.training_history(model)
    assert len(figure.axes) == 2
    assert len(figure.axes[1].lines[0].get_xdata()) == 300


@pytest.mark.parametrize("lr_dispersion", [1e-3, 1e-2])
def test_dispersion_learns_at_its_own_rate(marker_adata, lr_dispersion):
    CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["cell_type"])
    model = CFGenModel(marker_adata, **TINY)
    model.train(
        max_epochs={"autoencoder": 6, "flow": 1},
        batch_size=32,
        early_stopping=False,
        enable_progress_bar=False,
        plan_kwargs={"autoencoder": {"lr_dispersion": lr_dispersion}},
    )
    n_steps = 6 * int(np.ceil(0.9 * marker_adata.n_obs / 32))
    moved = model.module.autoencoder.log_theta.detach().abs().max().item()
    # Adam moves a parameter by at most about lr per step
    assert moved <= 1.2 * n_steps * lr_dispersion
    if lr_dispersion == 1e-2:
        assert moved > 2 * n_steps * 1e-3  # more than the networks' rate could have moved it


def test_autoencoder_plan_puts_dispersion_in_its_own_group(marker_adata):
    from scvi_cfgen.train import AutoencoderTrainingPlan

    CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["cell_type"])
    module = CFGenModel(marker_adata, **TINY).module
    log_theta = module.autoencoder.log_theta
    optimizer = AutoencoderTrainingPlan(module, lr_dispersion=0.05).configure_optimizers()[
        "optimizer"
    ]
    networks, dispersion = optimizer.param_groups
    assert dispersion["params"] == [log_theta]
    assert dispersion["lr"] == 0.05
    assert dispersion["weight_decay"] == 0.0
    assert all(p is not log_theta for p in networks["params"])
    assert networks["lr"] == 1e-3
    with pytest.raises(ValueError, match="lr_dispersion"):
        AutoencoderTrainingPlan(module, lr_dispersion=0)


def _patience(call) -> int:
    from scvi_cfgen.train._callbacks import QuietEarlyStopping

    (stopper,) = [c for c in call["callbacks"] if isinstance(c, QuietEarlyStopping)]
    return stopper.patience


class _RecordingRunner:
    """Stands in for scvi's TrainRunner: records what each stage was given, trains nothing."""

    calls: list = []

    def __init__(self, model, training_plan, data_splitter, max_epochs, **kwargs):
        _RecordingRunner.calls.append(
            {
                "plan": training_plan,
                "splitter": data_splitter,
                "max_epochs": max_epochs,
                **kwargs,
            }
        )

    def __call__(self):
        return None


@pytest.mark.parametrize(
    ("n_cells", "batch_size", "devices", "num_nodes"),
    [(300, 32, 1, 1), (2400, 128, 1, 1), (2400, 128, 2, 1), (300, 32, 2, 2)],
)
def test_default_schedule_is_counted_in_optimiser_steps(n_cells, batch_size, devices, num_nodes):
    """Budgets and patience hold the same optimiser steps per process on any number of them."""
    from scvi_cfgen.model import _schedule

    adata = make_marker_counts(n_cells=n_cells)
    scvi_cfgen.CFGenModel.setup_anndata(adata, categorical_covariate_keys=["cell_type"])
    model = scvi_cfgen.CFGenModel(adata, **TINY)
    model._train_runner_cls = _RecordingRunner
    _RecordingRunner.calls = []
    distributed = {"accelerator": "cpu", "devices": devices}
    if num_nodes > 1:
        distributed["num_nodes"] = num_nodes
    model.train(batch_size=batch_size, **distributed)
    autoencoder, flow = _RecordingRunner.calls
    n_train = len(autoencoder["splitter"].train_idx)
    n_val = len(autoencoder["splitter"].val_idx)
    # DDP gives each of devices x nodes processes its own share of the training cells
    processes = devices * num_nodes
    steps = math.ceil(math.ceil(n_train / batch_size) / processes)
    # at least 200 validation cells where that is at most 20 % of the cells, else 10 %
    assert n_val >= min(200, int(0.2 * n_cells)) - 1
    assert n_val <= max(0.2 * n_cells, 0.1 * n_cells + 2) + 1
    for call in (autoencoder, flow):
        assert call["max_epochs"] * steps >= 20_000 > (call["max_epochs"] - 1) * steps
        patience = _patience(call)
        assert patience == max(2, -(-_schedule.EARLY_STOPPING_PATIENCE_STEPS // steps))
    assert flow["plan"].lr_patience == max(2, -(-_schedule.LR_PATIENCE_STEPS // steps))
    if processes > 1:
        return
    # explicit values still win
    _RecordingRunner.calls = []
    model.train(max_epochs=7, early_stopping_patience=3, plan_kwargs={"flow": {"lr_patience": 4}})
    assert [c["max_epochs"] for c in _RecordingRunner.calls] == [7, 7]
    assert [_patience(c) for c in _RecordingRunner.calls] == [3, 3]
    assert _RecordingRunner.calls[1]["plan"].lr_patience == 4


def test_flow_from_the_latent_table_matches_the_flow_from_counts():
    """Encoding each cell once trains the same flow as re-encoding every minibatch."""
    adata = make_marker_counts(n_cells=200)
    scvi_cfgen.CFGenModel.setup_anndata(adata, categorical_covariate_keys=["cell_type", "batch"])
    scvi.settings.seed = 0
    model = scvi_cfgen.CFGenModel(adata, **TINY, condition_on_size_factor=True)
    model.train_autoencoder(max_epochs=3, batch_size=32, enable_progress_bar=False)
    start = copy.deepcopy(model.module.state_dict())
    flows, histories = [], []
    for on_table in (False, True):
        model.module.load_state_dict(start)
        model._flow_on_latent_table = on_table
        scvi.settings.seed = 1
        model.train_flow(
            max_epochs=4,
            batch_size=32,
            enable_progress_bar=False,
            plan_kwargs={"precision": "32"},  # bfloat16 rounding would hide the comparison
        )
        flows.append({k: v.clone() for k, v in model.module.flow.state_dict().items()})
        histories.append(model.history_["validation_loss_flow"].to_numpy(dtype=float).ravel())
    for key, value in flows[0].items():
        torch.testing.assert_close(flows[1][key], value, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-4)


@pytest.mark.parametrize(("n_cells", "expected"), [(60, 10), (240, 24), (499, 49), (5000, 50)])
def test_default_latent_size_gives_each_dimension_ten_cells(n_cells, expected):
    adata = make_marker_counts(n_cells=n_cells, n_genes=20)
    CFGenModel.setup_anndata(adata, categorical_covariate_keys=["cell_type"])
    assert CFGenModel(adata).module.n_latent == expected
    assert CFGenModel(adata, n_latent=7).module.n_latent == 7


@pytest.mark.parametrize(
    ("n_cells", "expected"),
    [
        (None, 0.1),
        (120, 0.5),
        (500, 0.5),
        (707, 0.4),
        (1000, 0.3),
        (1414, 0.2),
        (1999, 0.1),
        (2000, 0.1),
        (10**6, 0.1),
    ],
)
def test_default_dropout_falls_from_small_to_large_data(n_cells, expected):
    from scvi_cfgen.model._size_defaults import default_dropout_rate

    assert default_dropout_rate(n_cells) == pytest.approx(expected, abs=1e-3)


def test_default_dropout_falls_steadily_with_the_number_of_cells():
    from scvi_cfgen.model._size_defaults import default_dropout_rate

    rates = [default_dropout_rate(n) for n in range(400, 2400, 20)]
    assert all(later <= earlier for earlier, later in zip(rates, rates[1:], strict=False))
    assert max(abs(b - a) for a, b in zip(rates, rates[1:], strict=False)) < 0.03


@pytest.mark.parametrize(
    ("n_cells", "expected"),
    [(None, (512, 256)), (120, (128, 64)), (500, (128, 64)), (1000, (181, 91))]
    + [(2000, (256, 128)), (6325, (362, 181)), (20_000, (512, 256)), (10**6, (512, 256))],
)
def test_default_hidden_sizes_grow_from_small_to_large_data(n_cells, expected):
    from scvi_cfgen.model._size_defaults import default_hidden_sizes

    assert default_hidden_sizes(n_cells) == expected


def test_default_hidden_sizes_grow_steadily_with_the_number_of_cells():
    from scvi_cfgen.model._size_defaults import default_hidden_sizes

    widths = [default_hidden_sizes(n)[0] for n in range(400, 25_000, 100)]
    assert all(later >= earlier for earlier, later in zip(widths, widths[1:], strict=False))
    assert max(b - a for a, b in zip(widths, widths[1:], strict=False)) < 20


def _linear_widths(module: torch.nn.Module) -> list[int]:
    return [m.out_features for m in module.modules() if isinstance(m, torch.nn.Linear)]


def test_default_hidden_sizes_build_the_autoencoder_and_are_kept_by_a_saved_model(tmp_path):
    small = make_marker_counts(n_cells=120, n_genes=20)
    CFGenModel.setup_anndata(small, categorical_covariate_keys=["cell_type"])
    model = CFGenModel(small, flow_hidden_dim=16)
    n_latent = model.module.n_latent
    assert _linear_widths(model.module.autoencoder.encoder) == [128, 64, n_latent]
    assert _linear_widths(model.module.autoencoder.decoder) == [64, 128, 20]
    assert "encoder (128, 64) (dropout 0.5)" in model._model_summary_string
    explicit = CFGenModel(small, n_hidden=(32,), flow_hidden_dim=16)
    assert _linear_widths(explicit.module.autoencoder.encoder) == [32, n_latent]
    cellflow = CFGenModel(small, latent="genes", flow_hidden_dim=16)
    assert _linear_widths(cellflow.module.autoencoder.encoder)[:2] == [512, 256]
    model.train(max_epochs=1, enable_progress_bar=False)
    model.save(tmp_path / "model")
    large = make_marker_counts(n_cells=25_000, n_genes=20)
    loaded = CFGenModel.load(tmp_path / "model", adata=large)
    assert _linear_widths(loaded.module.autoencoder.encoder) == [128, 64, n_latent]


def test_default_latent_size_is_kept_by_a_saved_model(tmp_path):
    small = make_marker_counts(n_cells=120, n_genes=20)
    CFGenModel.setup_anndata(small, categorical_covariate_keys=["cell_type"])
    model = CFGenModel(small, n_hidden=(16,), flow_hidden_dim=16)
    model.train(max_epochs=1, enable_progress_bar=False)
    model.save(tmp_path / "model")
    large = make_marker_counts(n_cells=900, n_genes=20)
    loaded = CFGenModel.load(tmp_path / "model", adata=large)
    assert loaded.module.n_latent == model.module.n_latent == 12


def test_data_parallel_processes_count_devices_nodes_and_sampler():
    from scvi_cfgen.model._stage_trainer import data_parallel_processes

    assert data_parallel_processes("cpu", 2, {}) == 2
    assert data_parallel_processes("cpu", 2, {"num_nodes": 3}) == 6
    assert data_parallel_processes("cpu", "auto", {"num_nodes": None}) == 1
    # without Lightning's distributed sampler every process reads every cell
    assert data_parallel_processes("cpu", 2, {"use_distributed_sampler": False}) == 1
