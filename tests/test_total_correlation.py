"""The TC estimators against a brute-force computation on a tiny case.

A tiny "data set" is N known Gaussian posteriors q(z|x_n); its aggregate posterior
q(z) = (1/N) sum_n q(z|x_n) is then an explicit mixture, so log q(z) and log q(z_d) are exact for any z.
"""

import itertools
import math

import pytest
import torch
from torch.distributions import Normal

from vaekit.distributions import DiagonalGaussian, standard_normal_log_prob
from vaekit.errors import ConfigError
from vaekit.objectives import ESTIMATORS, beta_tc_penalty, log_q_z_matrix, log_qz_estimates, tc_decomposition

F64 = torch.float64


def _posteriors(n=5, d=2, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(n, d, generator=g, dtype=dtype)
    logvar = torch.randn(n, d, generator=g, dtype=dtype) * 0.5 - 1.0
    return mu, logvar


def _exact_log_q(mu, logvar, z):
    """Brute force over the whole data set: (log q(z), sum_d log q(z_d)) for each row of z, (S,)."""
    comp = Normal(mu[None], torch.exp(0.5 * logvar)[None]).log_prob(z[:, None])  # (S, N, D)
    log_n = math.log(mu.shape[0])
    return torch.logsumexp(comp.sum(2), 1) - log_n, (torch.logsumexp(comp, 1) - log_n).sum(1)


def _draw(mu, logvar, seed=1):
    g = torch.Generator().manual_seed(seed)
    return mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g, dtype=mu.dtype)


# --- the pairwise density matrix --------------------------------------------------------------


def test_log_q_z_matrix_is_every_sample_under_every_posterior_per_dim():
    mu, logvar = _posteriors(n=4, d=3, dtype=torch.float32)
    z = torch.randn(4, 3)
    mat = log_q_z_matrix(DiagonalGaussian(mu, logvar), z)
    assert mat.shape == (4, 4, 3)
    ref = Normal(mu[None], torch.exp(0.5 * logvar)[None]).log_prob(z[:, None])  # [i, j, d]
    torch.testing.assert_close(mat, ref)
    torch.testing.assert_close(mat.diagonal(dim1=0, dim2=1).sum(0), DiagonalGaussian(mu, logvar).log_prob(z))


def test_latents_of_any_shape_are_flattened():
    mu, logvar = _posteriors(n=3, d=8, dtype=torch.float32)
    z = _draw(mu, logvar)
    flat = tc_decomposition(DiagonalGaussian(mu, logvar), z, 10, "mss")
    q_shaped = DiagonalGaussian(mu.view(3, 2, 2, 2), logvar.view(3, 2, 2, 2))
    shaped = tc_decomposition(q_shaped, z.view(3, 2, 2, 2), 10, "mss")
    for k in flat:
        torch.testing.assert_close(shaped[k], flat[k])


# --- the estimators against the exact mixture --------------------------------------------------


def test_whole_data_batch_mws_is_exact_minus_log_n():
    """M = N: MWS = logsumexp over all the data - log(N M), the exact value is logsumexp - log N, so
    the paper's estimator sits exactly log M (= log N) below, for the joint and for each marginal."""
    mu, logvar = _posteriors(n=6, d=2)
    q, z = DiagonalGaussian(mu, logvar), _draw(mu, logvar)
    log_qz, log_qz_prod = log_qz_estimates(q, z, dataset_size=6, estimator="mws")
    exact_qz, exact_prod = _exact_log_q(mu, logvar, z)
    torch.testing.assert_close(log_qz, exact_qz - math.log(6))
    torch.testing.assert_close(log_qz_prod, exact_prod - 2 * math.log(6))


def test_identical_posteriors_show_the_weights_normalisation():
    """All q(z|x_n) equal: q(z) = q(z|x). MSS's weights sum to one, MWS's to 1/N."""
    mu = torch.tensor([[0.3, -1.0]], dtype=F64).expand(5, 2)
    logvar = torch.tensor([[-0.5, 0.2]], dtype=F64).expand(5, 2)
    q = DiagonalGaussian(mu, logvar)
    z = _draw(mu, logvar)
    log_qz_x = q.log_prob(z)
    for n in (5, 1000):
        mss, mss_prod = log_qz_estimates(q, z, n, "mss")
        torch.testing.assert_close(mss, log_qz_x)
        torch.testing.assert_close(mss_prod, log_qz_x)
        mws, mws_prod = log_qz_estimates(q, z, n, "mws")
        torch.testing.assert_close(mws, log_qz_x - math.log(n))
        torch.testing.assert_close(mws_prod, log_qz_x - 2 * math.log(n))


def _batch_expectations(mu, logvar, z_star, n_star, batch_size, estimator):
    """E[q_hat(z*)] over every ordered batch of distinct datapoints containing n*: a uniformly drawn,
    randomly ordered minibatch conditioned on holding n*. Returns (joint, per-dim (D,)) means."""
    n, d = mu.shape
    joint, marg, count = 0.0, torch.zeros(d, dtype=mu.dtype), 0
    for batch in itertools.permutations(range(n), batch_size):
        if n_star not in batch:
            continue
        idx = torch.tensor(batch)
        pos = batch.index(n_star)
        z = mu[idx].clone()  # the other samples' values do not enter row pos
        z[pos] = z_star
        joint += log_qz_estimates(DiagonalGaussian(mu[idx], logvar[idx]), z, n, estimator)[0][pos].exp()
        for k in range(d):  # one latent dimension alone: its joint estimate is the marginal's
            q_k = DiagonalGaussian(mu[idx, k : k + 1], logvar[idx, k : k + 1])
            marg[k] += log_qz_estimates(q_k, z[:, k : k + 1], n, estimator)[0][pos].exp()
        count += 1
    return joint / count, marg / count


@pytest.mark.parametrize("batch_size", [2, 3, 5])
def test_mss_is_unbiased_for_q_z_and_its_marginals(batch_size):
    """Stratified sampling is unbiased for q(z) itself (not its log): the average of exp(estimate)
    over all minibatches holding the sample's datapoint is the exact mixture density — for M < N and
    for M = N (where one batch is not exact, but the average over orderings is)."""
    mu, logvar = _posteriors(n=5, d=2, seed=3)
    z_all = _draw(mu, logvar, seed=4)
    for n_star in (0, 3):
        z_star = z_all[n_star]
        joint, marg = _batch_expectations(mu, logvar, z_star, n_star, batch_size, "mss")
        exact_joint = _exact_log_q(mu, logvar, z_star[None])[0].exp()[0]
        exact_marg = torch.stack(
            [_exact_log_q(mu[:, k : k + 1], logvar[:, k : k + 1], z_star[None, k : k + 1])[0].exp()[0] for k in range(2)]
        )
        torch.testing.assert_close(joint, exact_joint, rtol=1e-10, atol=0)
        torch.testing.assert_close(marg, exact_marg, rtol=1e-10, atol=0)


def test_mws_expectation_is_the_papers_down_weighted_average():
    """MWS gives every batch element 1/(N M). Averaged over batches holding n*, that is
    (1/(N M)) [q(z|n*) + (M-1)/(N-1) sum_{n != n*} q(z|n)]: a lower bound on q(z), by design."""
    n, m = 5, 3
    mu, logvar = _posteriors(n=n, d=2, seed=5)
    z_star, n_star = _draw(mu, logvar, seed=6)[2], 2
    joint, _ = _batch_expectations(mu, logvar, z_star, n_star, m, "mws")
    dens = DiagonalGaussian(mu, logvar).log_prob(z_star.expand(n, 2)).exp()  # q(z*|x_n) for every n
    expected = (dens[n_star] + (m - 1) / (n - 1) * (dens.sum() - dens[n_star])) / (n * m)
    torch.testing.assert_close(joint, expected, rtol=1e-10, atol=0)
    assert joint < _exact_log_q(mu, logvar, z_star[None])[0].exp()[0]


# --- the decomposition ---------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_terms_sum_to_the_monte_carlo_kl(estimator):
    mu, logvar = _posteriors(n=8, d=3, seed=7)
    q, z = DiagonalGaussian(mu, logvar), _draw(mu, logvar)
    t = tc_decomposition(q, z, dataset_size=100, estimator=estimator)
    assert set(t) == {"mi", "tc", "dwkl"} and all(v.shape == (8,) for v in t.values())
    mc_kl = q.log_prob(z) - standard_normal_log_prob(z)
    torch.testing.assert_close(t["mi"] + t["tc"] + t["dwkl"], mc_kl, rtol=0, atol=1e-12)


def _grid_and_line(n_side=8, sigma=0.15, seed=0):
    """Factorised: means on the full 8 x 8 product grid, per-dim variances set by that coordinate only,
    so q(z) = q(z_1) q(z_2) exactly. Correlated: 64 means on the diagonal line z_1 = z_2.
    Rows shuffled, as a data loader would."""
    a = torch.linspace(-1.5, 1.5, n_side, dtype=F64)
    grid = torch.cartesian_prod(a, a)
    grid_logvar = torch.log(sigma**2 * (1 + 0.5 * (grid + 1.5)))  # varies with the coordinate
    line = torch.linspace(-1.5, 1.5, n_side**2, dtype=F64)[:, None].expand(-1, 2).clone()
    line_logvar = torch.full_like(line, math.log(sigma**2))
    perm = torch.randperm(n_side**2, generator=torch.Generator().manual_seed(seed))
    return (grid[perm], grid_logvar[perm]), (line[perm], line_logvar[perm])


def test_tc_vanishes_when_the_aggregate_posterior_factorises_and_not_on_a_line():
    (g_mu, g_lv), (l_mu, l_lv) = _grid_and_line()
    n = g_mu.shape[0]
    for mu, logvar, factorised in ((g_mu, g_lv, True), (l_mu, l_lv, False)):
        q, z = DiagonalGaussian(mu, logvar), _draw(mu, logvar, seed=2)
        exact_qz, exact_prod = _exact_log_q(mu, logvar, z)
        exact_tc = exact_qz - exact_prod
        if factorised:
            torch.testing.assert_close(exact_tc, torch.zeros_like(exact_tc), rtol=0, atol=1e-10)
        else:
            assert exact_tc.mean() > 1.0
        # whole data set as the batch (M = N): MWS is the exact TC plus (D - 1) log N, pointwise
        mws = tc_decomposition(q, z, n, "mws")["tc"]
        torch.testing.assert_close(mws - math.log(n), exact_tc)
        # MSS: close to the exact TC on average over the batch
        mss = tc_decomposition(q, z, n, "mss")["tc"]
        assert abs(mss.mean() - exact_tc.mean()) < 0.1


def test_tc_from_small_minibatches_separates_factorised_from_correlated():
    (g_mu, g_lv), (l_mu, l_lv) = _grid_and_line()
    g = torch.Generator().manual_seed(3)
    means = {}
    for name, (mu, logvar) in {"grid": (g_mu, g_lv), "line": (l_mu, l_lv)}.items():
        z = _draw(mu, logvar, seed=4)
        tcs = []
        for _ in range(20):
            idx = torch.randperm(64, generator=g)[:16]
            tcs.append(tc_decomposition(DiagonalGaussian(mu[idx], logvar[idx]), z[idx], 64, "mss")["tc"].mean())
        means[name] = torch.stack(tcs).mean()
    assert abs(means["grid"]) < 0.6
    assert means["line"] > means["grid"] + 1.0


# --- the weighted penalty -------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_unit_weights_give_the_kl(estimator):
    torch.manual_seed(0)
    q = DiagonalGaussian(torch.randn(400, 3) * 0.8, torch.randn(400, 3) * 0.3 - 0.5)
    z = q.sample()
    out = beta_tc_penalty(q, z, dataset_size=10_000, estimator=estimator)
    assert set(out) == {"penalty", "mi", "tc", "dwkl"} and out["penalty"].shape == (400,)
    torch.testing.assert_close(out["penalty"], out["mi"] + out["tc"] + out["dwkl"])
    torch.testing.assert_close(out["penalty"], q.log_prob(z) - standard_normal_log_prob(z), rtol=1e-4, atol=1e-4)
    assert abs(out["penalty"].mean() - q.kl().mean()) < 0.3  # a Monte-Carlo estimate of the KL


def test_weights_scale_their_own_terms():
    mu, logvar = _posteriors(n=6, d=2, dtype=torch.float32)
    q, z = DiagonalGaussian(mu, logvar), _draw(mu, logvar)
    out = beta_tc_penalty(q, z, 50, alpha=0.5, beta=6.0, gamma=2.0, estimator="mss")
    torch.testing.assert_close(out["penalty"], 0.5 * out["mi"] + 6.0 * out["tc"] + 2.0 * out["dwkl"])


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_gradients_reach_mu_and_logvar(estimator):
    torch.manual_seed(1)
    mu = torch.randn(16, 4, requires_grad=True)
    logvar = (torch.randn(16, 4) * 0.5).requires_grad_()
    q = DiagonalGaussian(mu, logvar)
    beta_tc_penalty(q, q.sample(), 1000, beta=6.0, estimator=estimator)["penalty"].mean().backward()
    for p in (mu, logvar):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_stable_when_cross_densities_underflow(estimator):
    """Far-apart, very narrow posteriors: q(z_i|x_j) underflows to 0 for i != j, logsumexp does not."""
    mu = (torch.arange(8.0)[:, None] * 50.0).expand(8, 3).clone().requires_grad_()
    logvar = torch.full((8, 3), -20.0, requires_grad=True)
    q = DiagonalGaussian(mu, logvar)
    out = beta_tc_penalty(q, q.sample(), 8, beta=4.0, estimator=estimator)
    assert all(torch.isfinite(v).all() for v in out.values())
    out["penalty"].sum().backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(logvar.grad).all()


# --- the fused (blockwise, hand-differentiated) estimator against the full-matrix reference ------


def _both_paths(mu, logvar, eps, estimator, n, weights=(1.3, -2.1)):
    """Values and (mu, logvar) gradients of w0 * sum log q(z) + w1 * sum log prod q(z_d), fused and reference."""
    out = {}
    for fused in (True, False):
        m, lv = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
        z = m + torch.exp(0.5 * lv) * eps  # the gradient also flows through the sample
        log_qz, log_prod = log_qz_estimates(DiagonalGaussian(m, lv), z, n, estimator, fused=fused)
        loss = weights[0] * log_qz.sum() + weights[1] * log_prod.sum()
        out[fused] = (log_qz.detach(), log_prod.detach(), *torch.autograd.grad(loss, (m, lv)))
    return out[True], out[False]


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("shape", [(2, 1), (7, 3), (300, 5)])  # 300 x 5 spans several row blocks
def test_fused_estimates_and_gradients_equal_the_full_matrix_reference(estimator, shape):
    mu, logvar = _posteriors(n=shape[0], d=shape[1], seed=3)
    eps = torch.randn(shape, generator=torch.Generator().manual_seed(4), dtype=F64)
    fused, reference = _both_paths(mu, logvar, eps, estimator, n=1000)
    for a, b in zip(fused, reference):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("weights", [(1.0, 0.0), (0.0, 1.0)])
def test_fused_gradient_when_only_one_estimate_is_used(weights):
    mu, logvar = _posteriors(n=9, d=4, seed=5)
    eps = torch.randn(9, 4, generator=torch.Generator().manual_seed(6), dtype=F64)
    fused, reference = _both_paths(mu, logvar, eps, "mss", n=50, weights=weights)
    for a, b in zip(fused[2:], reference[2:]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_fused_backward_passes_gradcheck():
    from vaekit.objectives.total_correlation import _MixtureLogDensities, _log_weights

    mu, logvar = _posteriors(n=5, d=3, seed=7)
    z = _draw(mu, logvar, seed=8)
    log_w = _log_weights(5, 40, "mss", F64, torch.device("cpu"))
    inputs = tuple(t.clone().requires_grad_() for t in (z, mu, logvar))
    assert torch.autograd.gradcheck(lambda *t: _MixtureLogDensities.apply(*t, log_w), inputs)


def test_fused_float32_matches_the_reference_at_a_training_batch():
    """float32, B = 512, D = 10: the blockwise sums differ from the full matrix's only by rounding."""
    torch.manual_seed(0)
    mu, logvar = torch.randn(512, 10), torch.randn(512, 10) - 2.0
    fused, reference = _both_paths(mu, logvar, torch.randn(512, 10), "mss", n=737_280)
    for a, b in zip(fused, reference):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)


# --- settings -------------------------------------------------------------------------------------


def test_bad_settings_are_config_errors():
    mu, logvar = _posteriors(n=4, d=2, dtype=torch.float32)
    q, z = DiagonalGaussian(mu, logvar), _draw(mu, logvar)
    with pytest.raises(ConfigError, match="estimator"):
        log_qz_estimates(q, z, 100, estimator="mcmc")
    with pytest.raises(ConfigError, match="smaller than the batch"):
        tc_decomposition(q, z, 3)
    for bad in (100.0, True, "100"):
        with pytest.raises(ConfigError, match="integer"):
            beta_tc_penalty(q, z, bad)
    with pytest.raises(ConfigError, match="at least 2"):
        log_qz_estimates(DiagonalGaussian(mu[:1], logvar[:1]), z[:1], 10, "mss")
    with pytest.raises(ConfigError, match="finite"):
        beta_tc_penalty(q, z, 100, beta=float("nan"))
    with pytest.raises(ValueError, match="same shape"):
        log_q_z_matrix(q, z[:, :1])
    # a batch of one is fine for MWS, and the batch may be the whole data set
    assert log_qz_estimates(DiagonalGaussian(mu[:1], logvar[:1]), z[:1], 1)[0].shape == (1,)
    assert beta_tc_penalty(q, z, 4, estimator="mss")["penalty"].shape == (4,)
