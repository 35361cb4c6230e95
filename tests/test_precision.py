"""The flow stage's arithmetic: bfloat16 matrix products under autocast, float32 elsewhere."""

from unittest import mock

import numpy as np
import pytest
import torch
from helpers import TINY, train_tiny_flow

from scvi_cfgen import CFGenModel
from scvi_cfgen.train import FlowTrainingPlan
from scvi_cfgen.train import _precision as precision_module
from scvi_cfgen.train._precision import flow_autocast, has_fast_bfloat16


def _product_dtype(precision: str) -> torch.dtype:
    layer = torch.nn.Linear(4, 4)
    with flow_autocast(precision, torch.device("cpu")):
        return layer(torch.ones(2, 4)).dtype


def test_autocast_follows_the_precision_and_the_hardware():
    cpu = torch.device("cpu")
    assert _product_dtype("32") == torch.float32
    assert _product_dtype("bf16-mixed") == torch.bfloat16
    with mock.patch.object(torch.cpu, "get_capabilities", return_value={"avx512_bf16": True}):
        assert has_fast_bfloat16(cpu)
        assert _product_dtype("auto") == torch.bfloat16
    with mock.patch.object(torch.cpu, "get_capabilities", return_value={"avx2": True}):
        assert not has_fast_bfloat16(cpu)
        assert _product_dtype("auto") == torch.float32  # emulated bfloat16 would be slower
    assert not has_fast_bfloat16(torch.device("meta"))


def test_unknown_precision_is_refused_before_any_training(marker_adata):
    CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["cell_type"])
    model = CFGenModel(marker_adata, **TINY)
    with pytest.raises(ValueError, match="precision"):
        FlowTrainingPlan(model.module, precision="16")
    with (
        mock.patch.object(model, "_run_stage") as run_stage,
        pytest.raises(ValueError, match="bf16-mixed"),
    ):
        model.train(max_epochs=1, plan_kwargs={"flow": {"precision": "half"}})
    run_stage.assert_not_called()  # the autoencoder did not start


def _flow_after(precision: str, adata) -> tuple[np.ndarray, list[float]]:
    model = train_tiny_flow(adata, 6, precision=precision)
    weights = torch.cat([p.detach().ravel() for p in model.module.flow.parameters()])
    losses = model.history["validation_loss_flow"].to_numpy(dtype=float).ravel()
    return weights.numpy(), losses.tolist()


def test_bfloat16_flow_trains_the_same_field_up_to_rounding(marker_adata):
    CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["cell_type"])
    calls = []
    original = precision_module.flow_autocast

    def counting(precision, device):
        calls.append(precision)
        return original(precision, device)

    with mock.patch("scvi_cfgen.train._training_plans.flow_autocast", counting):
        w32, loss32 = _flow_after("32", marker_adata)
        wbf, lossbf = _flow_after("bf16-mixed", marker_adata)
    assert calls.count("32") > 0
    assert calls.count("bf16-mixed") == calls.count("32")
    # same data, seed and steps: bfloat16 products move the weights only by rounding
    assert not np.array_equal(w32, wbf)
    np.testing.assert_allclose(wbf, w32, atol=0.02)
    np.testing.assert_allclose(lossbf, loss32, rtol=0.02)
    assert np.all(np.isfinite(wbf))
