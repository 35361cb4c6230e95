"""The flow stage's exponential moving average of the velocity field's weights."""

import numpy as np
import pytest
import torch
from helpers import TINY, train_tiny_flow

from scvi_cfgen import CFGenModel
from scvi_cfgen.train import FlowTrainingPlan
from scvi_cfgen.train._ema import ExponentialMovingAverage, ema_decay


def test_decay_warms_up_to_its_maximum():
    assert ema_decay(1) == pytest.approx(2 / 11)
    assert ema_decay(100) == pytest.approx(101 / 110)
    assert ema_decay(100_000) == 0.999
    assert ema_decay(10**6, max_decay=0.99) == 0.99


def test_average_follows_the_update_rule_and_swaps_back():
    param = torch.nn.Parameter(torch.zeros(3))
    ema = ExponentialMovingAverage([param], max_decay=0.9)
    expected = np.zeros(3)
    for step, value in enumerate([1.0, 2.0, 4.0, 8.0], start=1):
        param.data.fill_(value)
        ema.update()
        decay = ema_decay(step, 0.9)
        expected = decay * expected + (1 - decay) * value
    np.testing.assert_allclose(ema.shadow[0].numpy(), expected, rtol=1e-6)
    ema.swap()
    np.testing.assert_allclose(param.detach().numpy(), expected, rtol=1e-6)
    ema.swap()
    assert torch.equal(param.detach(), torch.full((3,), 8.0))
    restored = ExponentialMovingAverage([torch.nn.Parameter(torch.zeros(3))], max_decay=0.9)
    restored.load_state_dict(ema.state_dict())
    assert restored.n_updates == 4
    assert torch.equal(restored.shadow[0], ema.shadow[0])
    with pytest.raises(ValueError, match="decay"):
        ExponentialMovingAverage([param], max_decay=1.0)


def _flow_weights(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.flow.parameters()]


def test_flow_plan_validates_and_ends_with_the_average(marker_adata):
    CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["cell_type"])
    module = CFGenModel(marker_adata, **TINY).module
    plan = FlowTrainingPlan(module, ema_decay=0.999)
    plan.on_fit_start()
    assert not any(p.requires_grad for p in module.autoencoder.parameters())
    first = _flow_weights(module)
    for step in range(3):
        with torch.no_grad():
            for p in module.flow.parameters():
                p.add_(1.0)
        plan.on_train_batch_end({"loss": torch.tensor(1.0)}, None, step)
    current = _flow_weights(module)
    # three updates by +1, +2, +3 with decays 2/11, 3/12, 4/13 from the initial weights
    offset = 0.0
    for n, value in enumerate([1.0, 2.0, 3.0], start=1):
        offset = ema_decay(n) * offset + (1 - ema_decay(n)) * value
    plan.on_validation_epoch_start()
    for averaged, start in zip(_flow_weights(module), first, strict=True):
        torch.testing.assert_close(averaged, start + offset)
    plan.on_validation_epoch_end()
    for restored, now in zip(_flow_weights(module), current, strict=True):
        assert torch.equal(restored, now)
    checkpoint = {}
    plan.on_save_checkpoint(checkpoint)
    assert checkpoint["flow_weight_average"]["n_updates"] == 3
    plan.on_train_end()
    for final, start in zip(_flow_weights(module), first, strict=True):
        torch.testing.assert_close(final, start + offset)

    resumed = FlowTrainingPlan(CFGenModel(marker_adata, **TINY).module, ema_decay=0.999)
    resumed.on_load_checkpoint(checkpoint)
    resumed.on_fit_start()
    assert resumed.ema.n_updates == 3


def test_flow_plan_without_average_keeps_the_last_step(marker_adata):
    CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["cell_type"])
    module = CFGenModel(marker_adata, **TINY).module
    plan = FlowTrainingPlan(module)  # the default keeps the last step's weights
    plan.on_fit_start()
    with torch.no_grad():
        for p in module.flow.parameters():
            p.add_(1.0)
    last = _flow_weights(module)
    plan.on_train_batch_end({"loss": torch.tensor(1.0)}, None, 0)
    plan.on_train_end()
    assert all(torch.equal(a, b) for a, b in zip(_flow_weights(module), last, strict=True))
    with pytest.raises(ValueError, match="ema_decay"):
        FlowTrainingPlan(module, ema_decay=1.5)


def test_trained_flow_differs_with_and_without_average(marker_adata):
    CFGenModel.setup_anndata(marker_adata, categorical_covariate_keys=["cell_type"])
    weights = {}
    for decay in (None, 0.999):
        model = train_tiny_flow(marker_adata, 4, ema_decay=decay)
        weights[decay] = torch.cat([p.detach().ravel() for p in model.module.flow.parameters()])
    assert not torch.allclose(weights[None], weights[0.999])
    assert torch.isfinite(weights[0.999]).all()
