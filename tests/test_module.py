import numpy as np
import pytest
import torch
from scvi.distributions import NegativeBinomial

from scvi_cfgen.module import (
    CFGenModule,
    CountDecoder,
    CountEncoder,
    DataStatistics,
    LatentFlow,
    LinearGaussianPath,
    ResNetVelocityField,
    drop_conditions,
    guided_velocity,
    integrate,
    ot_pair_noise,
)


def make_module(**kwargs) -> CFGenModule:
    defaults = {
        "n_input": 20,
        "n_categories_per_attribute": [3, 2],
        "n_latent": 4,
        "n_hidden": (16,),
        "flow_hidden_dim": 16,
        "flow_condition_dim": 8,
    }
    return CFGenModule(**{**defaults, **kwargs})


def counts_batch(n=12, genes=20, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.poisson(torch.full((n, genes), 3.0), generator=generator)
    x[:, 0] += 1
    codes = torch.stack([torch.arange(n) % 3, torch.arange(n) % 2], dim=1)
    return {"X": x, "extra_categorical_covs": codes.float()}


def test_encoder_decoder_shapes():
    encoder, decoder = CountEncoder(20, 4, (16, 8)), CountDecoder(4, 20, (16, 8))
    z = encoder(torch.ones(5, 20))
    assert z.shape == (5, 4)
    assert decoder(z).shape == (5, 20)
    assert decoder(z.unsqueeze(0).expand(3, -1, -1)).shape == (3, 5, 20)
    assert [m.out_features for m in decoder.body if isinstance(m, torch.nn.Linear)] == [8, 16]


def test_encoder_sees_log1p_counts():
    encoder = CountEncoder(3, 2, (4,)).eval()
    x = torch.tensor([[0.0, 5.0, 100.0]])
    manual = encoder.head(encoder.body(torch.log1p(x)))
    assert torch.allclose(encoder(x), manual)


def test_encoder_dropout_acts_in_training_only():
    module = make_module(dropout_rate=0.5)
    encoder = module.autoencoder.encoder
    assert [m.p for m in encoder.body if isinstance(m, torch.nn.Dropout)] == [0.5]
    x = counts_batch()["X"]
    encoder.train()
    torch.manual_seed(0)
    first, second = encoder(x), encoder(x)
    assert not torch.allclose(first, second)  # a fresh mask per pass
    encoder.eval()
    assert torch.equal(encoder(x), encoder(x))
    module.set_training_stage("flow")
    module.train()  # the flow stage encodes with the frozen, dropout-free encoder
    assert not encoder.training
    assert not any(isinstance(m, torch.nn.Dropout) for m in make_module().autoencoder.encoder.body)
    with pytest.raises(ValueError, match="dropout_rate"):
        make_module(dropout_rate=1.0)


def test_nb_loss_matches_scvi_and_closed_form():
    module = make_module()
    tensors = counts_batch()
    _, generative, loss = module(tensors)
    px = generative["px"]
    x = tensors["X"]
    mu, theta = px.mu, px.theta
    closed = (
        torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
        + theta * torch.log(theta / (theta + mu))
        + x * torch.log(mu / (theta + mu))
    )
    assert torch.allclose(loss.loss, -closed.sum(-1).mean(), rtol=1e-4)
    scvi_nb = NegativeBinomial(mu=mu, theta=theta)
    assert torch.allclose(loss.loss, -scvi_nb.log_prob(x).sum(-1).mean())
    # the mean is library * softmax(decoder(z)), so it sums to the observed library
    assert torch.allclose(mu.sum(-1), x.sum(-1), rtol=1e-4)


def test_dispersion_per_category_uses_that_category():
    module = make_module(dispersion_attribute_index=0)
    with torch.no_grad():
        module.autoencoder.log_theta.copy_(torch.arange(3.0)[:, None].expand(3, 20))
    tensors = counts_batch()
    _, generative, _ = module(tensors)
    expected = torch.exp(tensors["extra_categorical_covs"][:, 0])[:, None].expand(-1, 20)
    assert torch.allclose(generative["px"].theta, expected)


def test_drop_conditions_rates_and_structure():
    torch.manual_seed(0)
    codes = torch.tensor([[1, 0, 2]]).repeat(20000, 1)
    null = torch.tensor([5, 6, 7])
    dropped = drop_conditions(codes, null, p_uncond=0.3, scheme="single")
    kept = dropped != null
    all_null = (~kept).all(dim=1)
    assert abs(all_null.float().mean().item() - 0.3) < 0.02
    # every conditioned cell keeps exactly one attribute, chosen uniformly
    assert (kept[~all_null].sum(dim=1) == 1).all()
    per_attribute = kept[~all_null].float().mean(dim=0)
    assert torch.allclose(per_attribute, torch.full((3,), 1 / 3), atol=0.02)
    # kept values are the cell's own codes
    assert (dropped[kept] == codes[kept]).all()

    joint = drop_conditions(codes, null, p_uncond=0.0, scheme="single_and_joint")
    n_kept = (joint != null).sum(dim=1)
    assert set(n_kept.unique().tolist()) == {1, 3}
    assert abs((n_kept == 3).float().mean().item() - 0.25) < 0.02
    assert (drop_conditions(codes, null, p_uncond=0.0) != null).sum(dim=1).eq(1).all()


def velocity_and_inputs(seed=0):
    torch.manual_seed(seed)
    field = ResNetVelocityField(4, [3, 2], hidden_dim=16, condition_dim=8)
    z = torch.randn(6, 4)
    t = torch.tensor(0.3)
    codes = torch.tensor([[0, 1], [1, 0], [2, 1], [0, 0], [1, 1], [2, 0]])
    null = torch.tensor([3, 2])
    return field, z, t, codes, null


def test_guidance_all_zero_weights_is_unconditional_exactly():
    field, z, t, codes, null = velocity_and_inputs()
    weights = torch.zeros(6, 2)
    guided = guided_velocity(field, z, t, codes, weights, null)
    unconditional = field(z, t.expand(6), null.expand(6, -1))
    assert torch.equal(guided, unconditional)


def test_guidance_weight_one_is_conditional_and_formula_holds():
    field, z, t, codes, null = velocity_and_inputs()
    tt = t.expand(6)
    v_null = field(z, tt, null.expand(6, -1))
    v_type = field(z, tt, torch.stack([codes[:, 0], null[1].expand(6)], dim=1))
    v_batch = field(z, tt, torch.stack([null[0].expand(6), codes[:, 1]], dim=1))
    single = guided_velocity(field, z, t, codes, torch.tensor([[1.0, 0.0]]).expand(6, -1), null)
    assert torch.allclose(single, v_type, atol=1e-6)
    weights = torch.tensor([[1.5, 2.0]]).expand(6, -1)
    guided = guided_velocity(field, z, t, codes, weights, null)
    expected = v_null + 1.5 * (v_type - v_null) + 2.0 * (v_batch - v_null)
    assert torch.allclose(guided, expected, atol=1e-5)


def test_guidance_evaluates_all_fields_in_one_pass():
    field, z, t, codes, null = velocity_and_inputs()
    calls = []

    def counting_field(*args):
        calls.append(args[0].shape[0])
        return field(*args)

    guided_velocity(counting_field, z, t, codes, torch.tensor([[1.0, 2.0]]).expand(6, -1), null)
    assert calls == [18]  # null + two single-attribute fields, stacked


def test_linear_gaussian_path_endpoints():
    path = LinearGaussianPath(sigma_min=1e-4)
    z0, z1 = torch.randn(5, 3), torch.randn(5, 3)
    at0, target = path.sample(z0, z1, torch.zeros(5))
    at1, _ = path.sample(z0, z1, torch.ones(5))
    assert torch.allclose(at0, z0)
    assert torch.allclose(at1, z1 + 1e-4 * z0)
    t = torch.rand(5)
    zt, _ = path.sample(z0, z1, t)
    eps = 1e-3
    zt2, _ = path.sample(z0, z1, t + eps)
    assert torch.allclose((zt2 - zt) / eps, target, atol=1e-3)


def test_ot_pairing_is_a_permutation_with_lower_cost():
    torch.manual_seed(0)
    z0, z1 = torch.randn(64, 3), torch.randn(64, 3) + 2
    paired = ot_pair_noise(z0, z1)
    assert sorted(map(tuple, paired.tolist())) == sorted(map(tuple, z0.tolist()))
    assert (paired - z1).pow(2).sum() < (z0 - z1).pow(2).sum()


def test_ot_pairing_reaches_the_exact_ot_cost_of_pot():
    ot = pytest.importorskip("ot")
    torch.manual_seed(1)
    z0, z1 = torch.randn(50, 6), torch.randn(50, 6) * 2 + 1
    paired = ot_pair_noise(z0, z1)
    cost = torch.cdist(z0, z1).pow(2).double().numpy()
    optimum = ot.emd2(np.full(50, 1 / 50), np.full(50, 1 / 50), cost) * 50
    assert (paired - z1).pow(2).sum().item() == pytest.approx(optimum, rel=1e-5)
    assert (z0 - z1).pow(2).sum().item() > 1.2 * optimum


def test_ot_pairing_within_groups_keeps_each_groups_noise():
    """Each condition's cells are paired with their own noise, which stays standard normal."""
    torch.manual_seed(0)
    groups = torch.arange(128) % 2
    z1 = torch.randn(128, 4) + torch.where(groups[:, None] == 0, -4.0, 4.0)
    z0 = torch.randn(128, 4)
    paired = ot_pair_noise(z0, z1, groups)
    for group in (0, 1):
        members = groups == group
        assert sorted(map(tuple, paired[members].tolist())) == sorted(
            map(tuple, z0[members].tolist())
        )
    assert (paired - z1).pow(2).sum() < (z0 - z1).pow(2).sum()
    # across groups, OT hands each group the half of the Gaussian nearest its cells
    shared = ot_pair_noise(z0, z1)
    assert shared[groups == 0].mean() < -0.3 < 0.3 < shared[groups == 1].mean()
    for group in (0, 1):  # each group's pairing is its own exact OT pairing
        members = groups == group
        assert torch.equal(paired[members], ot_pair_noise(z0[members], z1[members]))
    # a cell alone in its group keeps its own noise
    alone = torch.cat([groups[:-1], torch.tensor([2])])
    assert torch.equal(ot_pair_noise(z0, z1, alone)[-1], z0[-1])


class RecordingField(torch.nn.Module):
    """A velocity field that predicts zero and keeps what it was given."""

    def forward(self, zt, t, codes, size_condition):
        self.seen = (zt, t, codes, size_condition)
        return torch.zeros_like(zt)


def test_ot_coupling_keeps_each_cells_latent_conditions_and_size_together():
    flow = LatentFlow(5, [3, 2], p_uncond=0.0, sigma_min=0.0, coupling="ot")
    flow.velocity_field = RecordingField()
    torch.manual_seed(0)
    z1 = torch.randn(32, 5) * 3 + torch.arange(32.0)[:, None] / 4
    codes = torch.stack([torch.arange(32) % 3, torch.arange(32) % 2], dim=1)
    size = torch.rand(32, 1)
    loss = flow.loss(z1, codes, size, generator=torch.Generator().manual_seed(1))
    zt, t, seen_codes, seen_size = flow.velocity_field.seen
    target = loss.detach()  # the field predicts 0, so the loss is the target's mean square
    noise = torch.randn(32, 5, generator=torch.Generator().manual_seed(1))
    groups = torch.unique(codes, dim=0, return_inverse=True)[1]
    paired = ot_pair_noise(noise, z1, groups)
    expected_zt = t[:, None] * z1 + (1 - t[:, None]) * paired
    kept = seen_codes != flow.null_codes  # the "single" scheme nulls attributes, never swaps
    assert kept.any(dim=1).all()
    assert torch.equal(seen_codes[kept], codes[kept])
    assert torch.equal(seen_size, size)
    assert torch.allclose(zt, expected_zt, atol=1e-5)
    assert torch.allclose(target, (z1 - paired).pow(2).mean(dim=1), atol=1e-5)
    assert not torch.allclose(paired, noise)  # the pairing did reorder the noise


def test_adaptive_and_fixed_step_solvers_agree():
    matrix = torch.tensor([[-0.5, 1.0], [-1.0, -0.5]])
    z0 = torch.tensor([[1.0, 0.0], [0.5, -1.0]])
    exact = z0 @ torch.linalg.matrix_exp(matrix).T

    def linear(t, z):
        return z @ matrix.T

    adaptive = integrate(linear, z0, method="dopri5", rtol=1e-7, atol=1e-7)
    assert torch.allclose(adaptive, exact, atol=1e-5)
    for method, steps, tol in (("euler", 2000, 1e-3), ("midpoint", 200, 1e-4), ("rk4", 50, 1e-5)):
        assert torch.allclose(integrate(linear, z0, method=method, n_steps=steps), exact, atol=tol)
    back = integrate(linear, adaptive, t_start=1.0, t_end=0.0, rtol=1e-7, atol=1e-7)
    assert torch.allclose(back, z0, atol=1e-5)


def test_solver_agreement_on_the_velocity_network():
    field, z, _, codes, null = velocity_and_inputs()
    weights = torch.ones(6, 2)

    def velocity(t, state):
        return guided_velocity(field, state, t, codes, weights, null)

    with torch.no_grad():
        adaptive = integrate(velocity, z, method="dopri5", rtol=1e-6, atol=1e-6)
        fixed = integrate(velocity, z, method="rk4", n_steps=200)
    assert torch.allclose(adaptive, fixed, atol=1e-4)


def test_torchdyn_backend_agrees_with_torchdiffeq():
    pytest.importorskip("torchdyn")
    field, z, _, codes, null = velocity_and_inputs()
    weights = torch.ones(6, 2)

    def velocity(t, state):
        return guided_velocity(field, state, t, codes, weights, null)

    with torch.no_grad():
        reference = integrate(velocity, z, method="dopri5", rtol=1e-6, atol=1e-6)
        dyn = integrate(velocity, z, method="dopri5", rtol=1e-6, atol=1e-6, backend="torchdyn")
        dyn_euler = integrate(velocity, z, method="euler", n_steps=1000, backend="torchdyn")
    assert torch.allclose(dyn, reference, atol=1e-4)
    assert torch.allclose(dyn_euler, reference, atol=1e-2)


def test_solver_rejects_bad_settings():
    with pytest.raises(ValueError, match="Unknown solver"):
        integrate(lambda t, z: z, torch.zeros(1, 1), method="heun3")
    with pytest.raises(ValueError, match="n_steps"):
        integrate(lambda t, z: z, torch.zeros(1, 1), method="euler", n_steps=0)
    with pytest.raises(ValueError, match="backend"):
        integrate(lambda t, z: z, torch.zeros(1, 1), backend="scipy")


def test_flow_stage_freezes_autoencoder_in_eval_mode():
    module = make_module()
    module.set_training_stage("flow")
    module.train()
    assert not module.autoencoder.encoder.training
    assert not module.autoencoder.decoder.training
    assert module.flow.velocity_field.training
    assert not any(p.requires_grad for p in module.autoencoder.encoder.parameters())
    assert all(p.requires_grad for p in module.flow.velocity_field.parameters())
    running_mean = module.autoencoder.encoder.body[1].running_mean.clone()
    loss = module.flow_loss(counts_batch())
    loss.loss.backward()
    assert torch.equal(module.autoencoder.encoder.body[1].running_mean, running_mean)
    assert all(p.grad is None for p in module.autoencoder.encoder.parameters())
    assert any(p.grad is not None for p in module.flow.velocity_field.parameters())

    module.set_training_stage("autoencoder")
    module.train()
    assert module.autoencoder.encoder.training
    assert not any(p.requires_grad for p in module.flow.velocity_field.parameters())


def test_null_embedding_is_learned_per_attribute():
    module = make_module()
    tables = module.flow.velocity_field.condition.attributes
    assert [t.num_embeddings for t in tables] == [4, 3]  # categories + one null token each
    module.set_training_stage("flow")
    module.flow_loss(counts_batch(n=64)).loss.backward()
    assert tables[0].weight.grad[3].abs().sum() > 0  # the null token received gradient


def test_data_statistics_fit_sample_and_resize_on_load():
    stats = DataStatistics(n_attributes=2, n_size_factor_categories=2, n_latent=3)
    codes = torch.tensor([[0, 0]] * 6 + [[1, 1]] * 3 + [[1, 0]])
    log_library = torch.tensor([5.0] * 6 + [7.0, 7.5, 8.0, 6.0])
    stats.fit_attributes_and_sizes(codes, log_library, codes[:, 0])
    assert stats.combinations.tolist() == [[0, 0], [1, 0], [1, 1]]
    assert stats.combination_counts.tolist() == [6.0, 1.0, 3.0]
    assert torch.allclose(stats.log_library_mean, torch.tensor([5.0, 7.125]))
    assert stats.log_library_std[0] == 0
    torch.manual_seed(0)
    filled = stats.sample_missing_attributes(torch.tensor([[1, -1]] * 4000 + [[-1, 1]] * 10))
    assert (filled[:4000, 0] == 1).all()
    assert abs((filled[:4000, 1] == 1).float().mean().item() - 0.75) < 0.03
    assert (filled[4000:] == torch.tensor([1, 1])).all()
    unseen = stats.sample_missing_attributes(torch.tensor([[0, 1], [-1, -1]]))
    assert unseen[0].tolist() == [0, 1]

    fresh = DataStatistics(n_attributes=2, n_size_factor_categories=2, n_latent=3)
    fresh.load_state_dict(stats.state_dict())
    assert torch.equal(fresh.combinations, stats.combinations)
    assert torch.equal(fresh.combination_counts, stats.combination_counts)


def test_sample_log_library_follows_category_laws():
    stats = DataStatistics(1, 2, 2)
    stats.log_library_mean.copy_(torch.tensor([3.0, 8.0]))
    stats.log_library_std.copy_(torch.tensor([0.1, 0.5]))
    torch.manual_seed(0)
    draws = stats.sample_log_library(torch.tensor([0] * 5000 + [1] * 5000), 10000)
    assert abs(draws[:5000].mean().item() - 3.0) < 0.01
    assert abs(draws[5000:].std().item() - 0.5) < 0.02


def test_empirical_size_factor_law_keeps_a_heavy_left_tail():
    generator = torch.Generator().manual_seed(0)
    shallow = torch.cat(
        [torch.randn(900, generator=generator) * 0.2 + 7.0, torch.full((100,), 4.0)]
    )
    deep = torch.randn(500, generator=generator) * 0.3 + 9.0
    log_library = torch.cat([shallow, deep]).double()
    groups = torch.tensor([0] * 1000 + [1] * 500)
    codes = groups[:, None]
    empirical = DataStatistics(1, 2, 2, size_factor_law="empirical")
    lognormal = DataStatistics(1, 2, 2, size_factor_law="lognormal")
    for stats in (empirical, lognormal):
        stats.fit_attributes_and_sizes(codes, log_library, groups)
    assert empirical.fitted_size_factor_law == "empirical"
    assert lognormal.fitted_size_factor_law == "lognormal"
    assert torch.equal(lognormal.log_library_quantiles, empirical.log_library_quantiles)
    draw_groups = torch.tensor([0] * 20000 + [1] * 20000)
    torch.manual_seed(1)
    from_empirical = empirical.sample_log_library(draw_groups, 40000)
    from_lognormal = lognormal.sample_log_library(draw_groups, 40000)
    # one cell in ten at depth e^4: the empirical law keeps that mode, the log-normal smears it
    assert abs((from_empirical[:20000] < 5).float().mean().item() - 0.1) < 0.01
    assert (from_lognormal[:20000] < 5).float().mean().item() < 0.06
    assert from_empirical[:20000].min() >= 4.0 - 1e-5  # never below the training range
    assert abs(from_empirical[20000:].mean().item() - deep.mean().item()) < 0.01
    assert abs(from_empirical[20000:].std().item() - deep.std().item()) < 0.01
    lognormal.size_factor_law = "empirical"  # both laws are fitted: switchable after training
    assert lognormal.fitted_size_factor_law == "empirical"
    torch.manual_seed(1)
    assert torch.equal(lognormal.sample_log_library(draw_groups, 40000), from_empirical)


def test_truncated_lognormal_law_stays_in_the_training_range():
    generator = torch.Generator().manual_seed(0)
    common = torch.randn(500, generator=generator) * 0.3 + 7.0
    rare = torch.randn(20, generator=generator) * 0.6 + 8.0  # wide law, few cells
    log_library = torch.cat([common, rare]).double()
    groups = torch.tensor([0] * 500 + [1] * 20)
    lognormal = DataStatistics(1, 2, 2, size_factor_law="lognormal")
    truncated = DataStatistics(1, 2, 2, size_factor_law="truncated_lognormal")
    for stats in (lognormal, truncated):
        stats.fit_attributes_and_sizes(groups[:, None], log_library, groups)
    assert truncated.fitted_size_factor_law == "truncated_lognormal"
    low, high = log_library.min().item(), log_library.max().item()
    draw_groups = torch.tensor([0] * 20000 + [1] * 20000)
    torch.manual_seed(0)
    untruncated = lognormal.sample_log_library(draw_groups, 40000)
    torch.manual_seed(0)
    draws = truncated.sample_log_library(draw_groups, 40000)
    assert ((untruncated < low) | (untruncated > high)).float().mean() > 0.005
    assert draws.min() >= low - 1e-5
    assert draws.max() <= high + 1e-5
    # no mass piled on the bounds: inversion, not clipping
    assert (draws >= high - 1e-3).float().mean() < 1e-3
    # inside the range the law is the log-normal's: the common category is barely touched
    assert abs(draws[:20000].mean().item() - lognormal.log_library_mean[0].item()) < 0.01
    assert abs(draws[:20000].std().item() - lognormal.log_library_std[0].item()) < 0.01
    # the rare, wide category loses its upper tail beyond the largest training cell
    assert draws[20000:].mean() < untruncated[20000:].mean()
    with pytest.raises(ValueError, match="size_factor_law"):
        DataStatistics(1, 2, 2, size_factor_law="gamma")


def test_empirical_size_factor_law_for_absent_and_single_cell_categories():
    stats = DataStatistics(1, 3, 2, size_factor_law="empirical")
    log_library = torch.tensor([5.0, 6.0, 7.0, 9.0]).double()
    groups = torch.tensor([0, 0, 0, 1])  # category 2 has no training cell
    stats.fit_attributes_and_sizes(groups[:, None], log_library, groups)
    torch.manual_seed(0)
    single = stats.sample_log_library(torch.ones(4000, dtype=torch.long), 4000)
    absent = stats.sample_log_library(torch.full((4000,), 2), 4000)
    # one cell: its own depth with the global law's spread around it (the interpolated
    # quantile function of 4 values has mean 8.92 and 6.67 for these, not 9 and 6.75)
    assert abs(single.mean().item() - 8.917) < 0.05
    assert single.std().item() > 0.5
    assert abs(absent.mean().item() - 6.667) < 0.05


def test_models_saved_without_library_quantiles_keep_the_lognormal_law():
    stats = DataStatistics(1, 1, 2, size_factor_law="lognormal")
    stats.fit_attributes_and_sizes(
        torch.zeros(3, 1, dtype=torch.long), torch.tensor([5.0, 6.0, 7.0]).double(), None
    )
    saved = {k: v for k, v in stats.state_dict().items() if k != "log_library_quantiles"}
    loaded = DataStatistics(1, 1, 2, size_factor_law="empirical")
    loaded.load_state_dict(saved)  # strict: the missing quantiles are not an error
    assert loaded.fitted_size_factor_law == "lognormal"
    torch.manual_seed(0)
    draws = loaded.sample_log_library(None, 20000)
    assert abs(draws.mean().item() - 6.0) < 0.02
    assert abs(draws.std().item() - 1.0) < 0.02
    refitted = DataStatistics(1, 1, 2, size_factor_law="empirical")
    refitted.fit_attributes_and_sizes(
        torch.zeros(3, 1, dtype=torch.long), torch.tensor([5.0, 6.0, 7.0]).double(), None
    )
    reloaded = DataStatistics(1, 1, 2, size_factor_law="empirical")
    reloaded.load_state_dict(refitted.state_dict())
    assert reloaded.fitted_size_factor_law == "empirical"
    assert torch.equal(reloaded.log_library_quantiles, refitted.log_library_quantiles)


def test_sample_counts_are_nonnegative_integers():
    module = make_module().eval()
    torch.manual_seed(0)
    z = torch.randn(2000, 4)
    counts = module.autoencoder.sample_counts(z, torch.full((2000,), 500.0), None)
    assert counts.shape == (2000, 20)
    assert (counts >= 0).all()
    assert torch.equal(counts, counts.round())
    # NB(theta=1) totals of ~20 genes have sd ~115 per cell: sd of the mean ~2.6
    assert np.isclose(counts.sum(dim=1).float().mean().item(), 500, rtol=0.03)


def test_flow_validation_loss_uses_common_random_numbers():
    module = make_module()
    module.set_training_stage("flow")
    batch = counts_batch(n=32)
    module.eval()
    first, second = module.flow_loss(batch).loss, module.flow_loss(batch).loss
    assert torch.equal(first, second)  # same cells, same draws, every validation pass
    module.train()
    assert not torch.equal(module.flow_loss(batch).loss, module.flow_loss(batch).loss)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"coupling": "sinkhorn"}, "coupling"),
        ({"p_uncond": 1.0}, "p_uncond"),
        ({"conditioning_scheme": "joint"}, "conditioning_scheme"),
        ({"sigma_min": -0.1}, "sigma_min"),
        ({"dispersion_attribute_index": 5}, "dispersion_attribute_index"),
        ({"n_latent": 0}, "n_latent"),
    ],
)
def test_module_parts_validate_their_own_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_module(**kwargs)


def test_guided_velocity_module_is_built_once_and_matches_eq_10():
    from scvi_cfgen.module import GuidedVelocity

    torch.manual_seed(0)
    field = ResNetVelocityField(4, [3, 2], hidden_dim=16, condition_dim=8)
    z, t = torch.randn(6, 4), torch.tensor(0.3)
    codes = torch.stack([torch.arange(6) % 3, torch.arange(6) % 2], dim=1)
    weights = torch.tensor([[1.5, 0.5]]).expand(6, -1)
    null = torch.tensor([3, 2])
    guided = GuidedVelocity(field, codes, weights, null)
    assert guided.n_blocks == 3  # null (coefficient 1 - 2 = -1) and both attributes
    v_null = field(z, t.expand(6), null.expand(6, -1))
    v0 = field(z, t.expand(6), torch.stack([codes[:, 0], null[1].expand(6)], dim=1))
    v1 = field(z, t.expand(6), torch.stack([null[0].expand(6), codes[:, 1]], dim=1))
    expected = v_null + 1.5 * (v0 - v_null) + 0.5 * (v1 - v_null)
    assert torch.allclose(guided(t, z), expected, atol=1e-5)
    assert torch.allclose(guided(t, z), guided_velocity(field, z, t, codes, weights, null))


def test_state_dicts_of_the_single_class_module_still_load():
    module = make_module()
    legacy = {}
    for key, value in module.state_dict().items():
        if key == "autoencoder.encoder_input_scale":  # added after 0.1
            continue
        for new, old in (
            ("autoencoder.log_theta", "log_theta"),
            ("autoencoder.", ""),
            ("flow.velocity_field.", "velocity_field."),
        ):
            if key.startswith(new):
                key = old + key[len(new) :]
                break
        legacy[key] = value.clone()
    fresh = make_module()
    fresh.load_state_dict(legacy)
    for key, value in module.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_count_splitting_parts_add_up_and_follow_the_binomial():
    module = make_module(n_input=200, count_split=0.3)
    x = torch.poisson(torch.full((400, 200), 4.0))
    seen, held_out = module.autoencoder.split_counts(x)
    assert torch.equal(seen + held_out, x)
    assert bool((seen >= 0).all() and (held_out >= 0).all())
    assert torch.equal(seen, seen.round())
    assert abs(float(seen.sum() / x.sum()) - 0.3) < 0.01


def test_count_splitting_scores_the_held_out_part_in_training_only():
    module = make_module(count_split=0.5)
    batch = counts_batch(n=64)
    module.train()
    torch.manual_seed(0)
    inference, generative, _ = module(batch, inference_kwargs={"split_counts": True})
    target = inference["x_target"]
    assert torch.equal(inference["library"], target.sum(dim=1, keepdim=True))
    assert not torch.equal(target, batch["X"])
    assert float(target.sum()) < 0.6 * float(batch["X"].sum())
    loss = module.loss(batch, inference, generative)
    expected = -generative["px"].log_prob(target).sum(-1).mean()
    assert torch.allclose(loss.loss, expected)
    # outside training the encoder gets the expected seen part and the decoder all counts
    module.eval()
    inference, _, _ = module(batch)
    assert "x_target" not in inference
    assert torch.equal(inference["library"], batch["X"].sum(dim=1, keepdim=True))
    with torch.no_grad():
        expected_z = module.autoencoder._encode_inputs(0.5 * batch["X"])
    assert torch.allclose(inference["z"], expected_z)


def test_count_splitting_validation_split_is_the_same_every_pass():
    module = make_module(count_split=0.5).eval()
    batch = counts_batch(n=32)
    first = module.inference(batch["X"], split_counts=True)["x_target"]
    again = module.inference(batch["X"], split_counts=True)["x_target"]
    assert torch.equal(first, again)


def test_encoder_input_scale_is_saved_and_old_files_encode_all_counts():
    module = make_module(count_split=0.25)
    assert float(module.autoencoder.encoder_input_scale) == 0.25
    state = {k: v for k, v in module.state_dict().items() if "encoder_input_scale" not in k}
    old = make_module(count_split=0.25)
    old.load_state_dict(state)
    assert float(old.autoencoder.encoder_input_scale) == 1.0
    with pytest.raises(ValueError, match="count_split"):
        make_module(count_split=1.5)


def test_retraining_an_old_autoencoder_adopts_its_count_split():
    from scvi_cfgen.train import AutoencoderTrainingPlan

    module = make_module(count_split=0.5)
    module.autoencoder.encoder_input_scale.fill_(1.0)  # as loaded from a file saved before
    AutoencoderTrainingPlan(module).on_fit_start()
    assert float(module.autoencoder.encoder_input_scale) == 0.5
