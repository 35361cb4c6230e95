"""Faults during training lose nothing; output is quiet; seeded training is reproducible."""

import signal

import numpy as np
import pytest
import scvi
import torch
from helpers import TINY, make_marker_counts
from lightning.pytorch.callbacks import Callback

import scvi_cfgen
from scvi_cfgen import CFGenModel
from scvi_cfgen.train import NonFiniteLossError

QUICK = {"enable_progress_bar": False, "batch_size": 64}


def _model(n_cells=240, **kwargs):
    adata = make_marker_counts(n_cells=n_cells)
    CFGenModel.setup_anndata(adata, categorical_covariate_keys=["cell_type"])
    return CFGenModel(adata, **{**TINY, **kwargs}), adata


def _flow_state(model):
    return {k: v.clone() for k, v in model.module.flow.state_dict().items()}


class _NaNFlowPlan(CFGenModel._flow_plan_cls):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.current_epoch == 3 else loss


class _InterruptFlow(Callback):
    """Presses Ctrl+C at the end of a flow epoch."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if pl_module.stage == "flow" and trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


def test_a_nan_loss_stops_naming_the_stage_and_keeps_the_last_good_weights(tmp_path):
    model, _ = _model()
    model._flow_plan_cls = _NaNFlowPlan
    initial_flow = _flow_state(model)
    with pytest.raises(
        NonFiniteLossError, match=r"flow stage's training loss became nan at epoch 4"
    ):
        model.train(max_epochs={"autoencoder": 2, "flow": 10}, **QUICK)
    assert isinstance(NonFiniteLossError("x"), ValueError)
    assert model.trained_stages == ["autoencoder"]
    kept = _flow_state(model)
    assert all(torch.isfinite(v).all() for v in kept.values())
    assert any(not torch.equal(kept[k], initial_flow[k]) for k in kept)  # 3 good epochs kept
    model.save(tmp_path / "model")
    model._flow_plan_cls = CFGenModel._flow_plan_cls
    model.train_flow(max_epochs=2, **QUICK)  # continues from the kept weights
    assert model.generate(n_cells=10, seed=0, solver="euler", n_steps=5).shape == (10, 40)


def test_keyboard_interrupt_leaves_a_usable_model(tmp_path):
    model, _ = _model()
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt, match="interrupted"):
        model.train(
            max_epochs={"autoencoder": 2, "flow": 10}, callbacks=[_InterruptFlow(2)], **QUICK
        )
    assert signal.getsignal(signal.SIGINT) is handler  # Lightning's SIG_IGN undone
    assert model.trained_stages == ["autoencoder"]
    model.save(tmp_path / "half")
    model.get_latent_representation()

    model.train(max_epochs={"autoencoder": 2, "flow": 3}, **QUICK)
    cells = model.generate(n_cells=10, seed=0, solver="euler", n_steps=5)
    with pytest.raises(KeyboardInterrupt):
        model.train(
            max_epochs={"autoencoder": 2, "flow": 10}, callbacks=[_InterruptFlow(1)], **QUICK
        )
    assert model.trained_stages == ["autoencoder", "flow"]  # the previous model is restored
    again = model.generate(n_cells=10, seed=0, solver="euler", n_steps=5)
    np.testing.assert_array_equal(cells.X.toarray(), again.X.toarray())


def test_an_interrupted_run_resumes_from_its_checkpoints(tmp_path):
    budgets = {"autoencoder": 3, "flow": 12}
    model, adata = _model()
    with pytest.raises(KeyboardInterrupt):
        model.train(
            max_epochs=budgets,
            checkpoint_dir=tmp_path / "run",
            checkpoint_interval=0,
            callbacks=[_InterruptFlow(5)],
            **QUICK,
        )
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["autoencoder.pt", "flow.ckpt", "split.npz"]
    with pytest.raises(ValueError, match="not empty"):
        model.train(max_epochs=budgets, checkpoint_dir=tmp_path / "run", **QUICK)

    fresh = CFGenModel(adata, **TINY)  # e.g. a new session on the same data
    fresh.train(max_epochs=budgets, checkpoint_dir=tmp_path / "run", resume=True, **QUICK)
    assert fresh.trained_stages == ["autoencoder", "flow"]
    np.testing.assert_array_equal(np.sort(fresh.train_indices), np.sort(model.train_indices))
    autoencoder = model.module.autoencoder.state_dict()
    for key, value in fresh.module.autoencoder.state_dict().items():
        torch.testing.assert_close(value, autoencoder[key])
    flow_epochs = fresh.history_["train_loss_flow"]
    assert len(flow_epochs) == budgets["flow"] - 5  # epochs 6-12; 1-5 came from the checkpoint
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "autoencoder.pt",
        "flow.pt",
        "split.npz",
    ]
    assert fresh.generate(n_cells=10, seed=0, solver="euler", n_steps=5).shape == (10, 40)

    other, _ = _model(n_cells=120)
    with pytest.raises(ValueError, match="trained on other data"):
        other.train(checkpoint_dir=tmp_path / "run", resume=True, **QUICK)
    with pytest.raises(ValueError, match="Nothing to resume"):
        other.train(checkpoint_dir=tmp_path / "empty", resume=True, **QUICK)


class _FlatValidationPlan(CFGenModel._autoencoder_plan_cls):
    def validation_step(self, batch, batch_idx):
        self.log("validation_loss", 1.0, on_epoch=True, batch_size=2)


def test_training_output_is_quiet_and_says_why_each_stage_stopped(capfd, recwarn):
    model, _ = _model()
    model._autoencoder_plan_cls = _FlatValidationPlan
    model.train(max_epochs={"autoencoder": 50, "flow": 3}, early_stopping_patience=2)
    captured = capfd.readouterr()
    output = (captured.out + captured.err).replace("\r", "\n")
    warned = " ".join(str(w.message) for w in recwarn)
    for noise in ("Tip", "GPU available", "TPU available", "LeafSpec", "eval mode", "v_num"):
        assert noise not in output
        assert noise not in warned
    assert "logging interval" not in warned
    assert "autoencoder: stopped early at step" in output
    assert "flow: budget reached (" in output
    summary = model.training_summary_
    assert summary["autoencoder"]["stopped_by"] == "early stopping"
    assert summary["autoencoder"]["epochs"] == 3  # best at epoch 1, then 2 without improvement
    assert summary["flow"] == {**summary["flow"], "stopped_by": "budget", "epochs": 3}


def test_small_categories_are_reported_by_name_before_training():
    adata = make_marker_counts(n_cells=240)
    adata.obs["donor"] = np.where(np.arange(240) < 4, "rare", "common")
    adata.obs["donor"] = adata.obs["donor"].astype("category")
    CFGenModel.setup_anndata(adata, categorical_covariate_keys=["cell_type", "donor"])
    model = CFGenModel(adata, **TINY)
    with pytest.warns(
        UserWarning, match=r"fewer than 10 training cells: \{'donor': \{'rare': \d\}"
    ):
        model.train(max_epochs=1, **QUICK)


def test_seeded_cpu_training_is_reproducible():
    cells = []
    for _ in range(2):
        scvi.settings.seed = 7
        model, _ = _model()
        model.train(max_epochs={"autoencoder": 3, "flow": 5}, **QUICK)
        cells.append(model.generate(n_cells=50, seed=0, solver="euler", n_steps=5))
    np.testing.assert_array_equal(cells[0].X.toarray(), cells[1].X.toarray())
    scvi.settings.seed = 8
    model, _ = _model()
    model.train(max_epochs={"autoencoder": 3, "flow": 5}, **QUICK)
    other = model.generate(n_cells=50, seed=0, solver="euler", n_steps=5)
    assert not np.array_equal(other.X.toarray(), cells[0].X.toarray())


def test_training_summary_survives_save_and_load(tmp_path):
    model, adata = _model()
    model.train(max_epochs={"autoencoder": 2, "flow": 2}, **QUICK)
    model.save(tmp_path / "m")
    loaded = scvi_cfgen.CFGenModel.load(tmp_path / "m", adata=adata)
    assert loaded.training_summary_ == model.training_summary_
