"""Each row of docs/reliability.md: the input, and the error or behaviour it now gets."""

import shutil

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from helpers import TINY, make_marker_counts

from scvi_cfgen import CFGenModel, metrics
from scvi_cfgen._cli import main

QUIET = {"enable_progress_bar": False}
FAST = {"solver": "euler", "n_steps": 4}


def tiny_model(adata, keys=("cell_type",), **train_kwargs):
    CFGenModel.setup_anndata(adata, categorical_covariate_keys=list(keys))
    model = CFGenModel(adata, **TINY)
    model.train(**{"max_epochs": 2, "batch_size": 64, **QUIET, **train_kwargs})
    return model


@pytest.mark.parametrize("n_cells", [285, 570])
def test_one_cell_in_the_last_minibatch_trains(n_cells):
    # 90 % of 285 cells = 257 = 256 + 1: the default split moves the remainder to validation
    model = tiny_model(make_marker_counts(n_cells=n_cells), batch_size=256)
    assert model.trained_stages == ["autoencoder", "flow"]


def test_an_explicit_split_with_one_cell_left_over_trains():
    adata = make_marker_counts(n_cells=258)  # train_size 0.5 -> 129 = 128 + 1
    model = tiny_model(adata, batch_size=128, train_size=0.5)
    assert len(model.train_indices) % 128 == 1
    assert model.generate(n_cells=5, seed=0, **FAST).n_obs == 5


def test_scvi_training_arguments(marker_adata):
    model = tiny_model(marker_adata, max_epochs=3, plan_kwargs={"lr": 2e-3})
    assert len(model.history["train_loss_autoencoder"]) == 3
    assert len(model.history["train_loss_flow"]) == 3
    model.train_autoencoder(max_epochs=2, batch_size=64, **QUIET)
    assert model.trained_stages == ["autoencoder"]
    with pytest.raises(ValueError, match="needs a trained flow.*train_flow"):
        model.generate(n_cells=3)
    model.train_flow(max_epochs=2, batch_size=64, **QUIET)
    assert model.trained_stages == ["autoencoder", "flow"]
    assert model.generate(n_cells=4, seed=0, **FAST).n_obs == 4
    history = model.history
    assert not any("elbo" in key or "kl_" in key for key in history if key.endswith("_flow"))
    assert {"flow_matching_loss_train_flow", "flow_matching_loss_validation_flow"} <= set(history)
    assert "lr_flow" in history


def test_per_stage_budgets_and_old_names(marker_adata):
    CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["cell_type"])
    model = CFGenModel(marker_adata, **TINY)
    model.train(max_epochs={"autoencoder": 2, "flow": 3}, batch_size=64, **QUIET)
    assert len(model.history["train_loss_autoencoder"]) == 2
    assert len(model.history["train_loss_flow"]) == 3
    with pytest.warns(FutureWarning, match="max_epochs_flow"):
        model.train(max_epochs_autoencoder=1, max_epochs_flow=1, batch_size=64, **QUIET)
    assert len(model.history["train_loss_flow"]) == 1
    with pytest.raises(ValueError, match="mixes stage names"):
        model.train(plan_kwargs={"flow": {}, "lr": 1e-3})


@pytest.mark.parametrize("budget", [0, -1, 2.5])
def test_budgets_must_be_positive(marker_adata, budget):
    CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["cell_type"])
    model = CFGenModel(marker_adata, **TINY)
    with pytest.raises(ValueError, match="positive integer"):
        model.train(max_epochs={"autoencoder": 1, "flow": budget})
    with pytest.raises(ValueError, match="positive integer"), pytest.warns(FutureWarning):
        model.train(max_epochs_autoencoder=budget)
    assert model.trained_stages == []


class _FailingFlowPlan(CFGenModel._flow_plan_cls):
    def training_step(self, batch, batch_idx):
        raise RuntimeError("simulated fault in the flow stage")


def test_a_failed_stage_keeps_what_finished(marker_adata):
    CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["cell_type"])
    model = CFGenModel(marker_adata, **TINY)
    model._flow_plan_cls = _FailingFlowPlan
    with pytest.raises(RuntimeError, match="simulated fault"):
        model.train(max_epochs=2, batch_size=64, **QUIET)
    assert model.trained_stages == ["autoencoder"]
    assert not model.is_trained_
    assert "train_loss_autoencoder" in model.history
    assert model.get_latent_representation().shape == (marker_adata.n_obs, TINY["n_latent"])

    model._flow_plan_cls = CFGenModel._flow_plan_cls
    model.train_flow(max_epochs=2, batch_size=64, **QUIET)
    before = model.generate(n_cells=20, seed=1, **FAST)
    weights = {k: v.clone() for k, v in model.module.state_dict().items()}
    model._flow_plan_cls = _FailingFlowPlan
    with pytest.raises(RuntimeError):
        model.train(max_epochs=2, batch_size=64, **QUIET)  # a failed re-training
    assert model.trained_stages == ["autoencoder", "flow"]
    for key, value in model.module.state_dict().items():
        assert torch.equal(value, weights[key]), key
    assert (model.generate(n_cells=20, seed=1, **FAST).X != before.X).nnz == 0


def test_transfer_matches_categories_by_their_string_form():
    adata = make_marker_counts(n_cells=120)
    adata.obs["donor"] = pd.Categorical(np.where(np.arange(120) % 2, "1", "0"))
    model = tiny_model(adata, keys=("cell_type", "donor"))
    moved = model.transfer(adata[:10], to={"donor": 1}, seed=0, **FAST)
    assert moved.obs["donor"].notna().all()
    assert (moved.obs["donor"] == "1").all()
    assert list(moved.obs["donor"].cat.categories) == ["0", "1"]


@pytest.mark.parametrize(("value", "message"), [(np.nan, "NaN"), (-3.0, "negative")])
def test_transfer_rejects_bad_values_naming_the_cells(trained_marker_model, value, message):
    model, adata = trained_marker_model
    bad = adata[:20].copy()
    bad.X = bad.X.toarray()
    bad.X[4, 2] = value
    with pytest.raises(ValueError, match=rf"{message}.*'cell4'"):
        model.transfer(bad, to={"batch": "b1"}, **FAST)


def test_unused_categories_are_reported_and_refused():
    adata = make_marker_counts(n_cells=120)
    adata.obs["cell_type"] = adata.obs["cell_type"].cat.add_categories(["ghost"])
    with pytest.warns(UserWarning, match=r"categories without cells: \['ghost'\]"):
        CFGenModel.setup_anndata(adata, categorical_covariate_keys=["cell_type"])
    model = CFGenModel(adata, **TINY)
    model.train(max_epochs=1, batch_size=64, **QUIET)
    with pytest.raises(ValueError, match="No training cells had 'cell_type' = 'ghost'"):
        model.generate(n_cells=3, conditions={"cell_type": "ghost"})
    with pytest.raises(ValueError, match="'ghost'"):
        model.transfer(adata[:5], to={"cell_type": "ghost"})
    assert "ghost" not in set(model.generate(n_cells=200, seed=0, **FAST).obs["cell_type"])


def test_continuous_attribute_columns_are_refused():
    adata = make_marker_counts(n_cells=120)
    adata.obs["age"] = np.linspace(20.5, 80.5, 120)
    with pytest.raises(ValueError, match=r"continuous covariate.*astype\('category'\)"):
        CFGenModel.setup_anndata(adata, categorical_covariate_keys=["age"])
    adata.obs["plate"] = np.arange(120) % 4  # few integer labels are fine
    CFGenModel.setup_anndata(adata, categorical_covariate_keys=["plate"])


def test_evaluate_refuses_non_counts(trained_marker_model):
    _, adata = trained_marker_model
    real, other = adata[:100].copy(), adata[100:200].copy()
    logged = other.copy()
    logged.X = sp.csr_matrix(np.log1p(logged.X.toarray()))
    with pytest.raises(ValueError, match="non-integer.*counts=False"):
        metrics.evaluate(real, logged, label_key="cell_type", reference=other)
    scores = metrics.evaluate(
        real, logged, label_key="cell_type", reference=other, counts=False, min_cells=5
    )
    assert len(scores) > 0


def test_load_errors_name_the_file_and_the_fix(trained_marker_model, tmp_path):
    model, adata = trained_marker_model
    with pytest.raises(ValueError, match="No model directory"):
        CFGenModel.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"model\.pt' not found"):
        CFGenModel.load(tmp_path / "empty")
    model.save(tmp_path / "model")
    truncated = tmp_path / "truncated"
    shutil.copytree(tmp_path / "model", truncated)
    data = (truncated / "model.pt").read_bytes()
    (truncated / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        CFGenModel.load(truncated)
    bare = CFGenModel.load(tmp_path / "model")
    with pytest.raises(ValueError, match="loaded without data.*adata"):
        bare.transfer(to={"batch": "b1"})


class _Planted:
    def __reduce__(self):
        return (print, ("this ran while loading",))


def test_load_refuses_files_that_would_run_code(trained_marker_model, tmp_path, capsys):
    model, _ = trained_marker_model
    model.save(tmp_path / "model")
    content = torch.load(tmp_path / "model" / "model.pt", weights_only=False)
    content["attr_dict"]["planted_"] = _Planted()
    torch.save(content, tmp_path / "model" / "model.pt")
    with pytest.raises(ValueError, match=r"builtins\.print.*trust"):
        CFGenModel.load(tmp_path / "model")
    assert "this ran" not in capsys.readouterr().out


def test_cells_do_not_depend_on_the_chunk_size(trained_marker_model):
    model, _ = trained_marker_model
    kwargs = {"n_cells": 300, "seed": 5, **FAST}
    reference = model.generate(batch_size=1024, **kwargs)
    for batch_size in (64, 100, 200):
        other = model.generate(batch_size=batch_size, **kwargs)
        assert (other.X != reference.X).nnz == 0, batch_size
        assert other.obs.equals(reference.obs)


def test_cli_refuses_to_overwrite_before_any_work(tmp_path, capsys):
    data = tmp_path / "cells.h5ad"
    make_marker_counts(n_cells=60).write_h5ad(data)
    existing = tmp_path / "model"
    existing.mkdir()
    code = main(["train", str(data), "--model-dir", str(existing), "--attributes", "cell_type"])
    assert code == 2
    assert "already exists" in capsys.readouterr().err
    output = tmp_path / "cells_out.h5ad"
    output.write_text("precious")
    code = main(
        ["generate", str(tmp_path / "no_model"), "--output", str(output), "--n-cells", "3"]
    )
    assert code == 2
    assert "already exists" in capsys.readouterr().err
    assert output.read_text() == "precious"
