"""Both stages train with 2 DDP processes on CPU (gloo) and the model then generates."""

import math

import numpy as np
import pytest
import torch
from helpers import TINY, StepCounter, make_marker_counts

from scvi_cfgen import CFGenModel
from scvi_cfgen.model._training_statistics import fit_data_statistics

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is not available"
)


def test_two_cpu_processes_train_both_stages_and_generate(tmp_path):
    adata = make_marker_counts(n_cells=256)
    CFGenModel.setup_anndata(adata, categorical_covariate_keys=["cell_type"])
    model = CFGenModel(adata, **TINY)
    model.train(
        max_epochs={"autoencoder": 2, "flow": 2},
        batch_size=32,
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn_find_unused_parameters_true",
        enable_progress_bar=False,
        callbacks=[StepCounter(tmp_path)],
    )
    assert model.trained_stages == ["autoencoder", "flow"]
    assert len(model.history_["train_loss_flow"]) == 2
    # each process trains on its half of the cells (what the step budgets count on)
    per_process = math.ceil(math.ceil(len(model.train_indices) / 2) / 32)
    for rank in (0, 1):
        lines = (tmp_path / f"rank{rank}.txt").read_text().split()
        assert [int(n) for n in lines] == [2 * per_process, per_process] * 2  # both stages
    # statistics come from the training cells once, in the main process
    single = CFGenModel(adata, **TINY)
    fit_data_statistics(single, np.asarray(model.train_indices))
    for name in ("combinations", "combination_counts", "log_library_mean", "log_library_std"):
        torch.testing.assert_close(
            getattr(model.module.statistics, name), getattr(single.module.statistics, name)
        )
    cells = model.generate(n_cells=40, seed=0, solver="euler", n_steps=4, progress_bar=False)
    assert cells.shape == (40, 40)
    model.save(tmp_path / "ddp")
    loaded = CFGenModel.load(tmp_path / "ddp", adata=adata)
    again = loaded.generate(n_cells=40, seed=0, solver="euler", n_steps=4, progress_bar=False)
    np.testing.assert_array_equal(cells.X.toarray(), again.X.toarray())
