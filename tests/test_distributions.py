"""The posterior maths against torch.distributions and Monte Carlo."""

import torch
from torch.distributions import Normal, kl_divergence

from vaekit.distributions import DiagonalGaussian, standard_normal_log_prob


def _q(b=5, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return DiagonalGaussian(torch.randn(b, d, generator=g), torch.randn(b, d, generator=g))


def test_kl_matches_torch_distributions_and_is_summed_over_dims():
    q = _q()
    ref = kl_divergence(Normal(q.mu, q.std), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(q.kl(), ref)
    assert q.kl().shape == (5,)
    assert (q.kl() >= 0).all()


def test_kl_matches_monte_carlo():
    torch.manual_seed(0)
    q = _q(b=2, d=4)
    z = q.sample(200_000)  # (S, B, D)
    mc = (q.log_prob(z) - standard_normal_log_prob(z.flatten(0, 1)).view(200_000, 2)).mean(0)
    torch.testing.assert_close(mc, q.kl(), atol=0.03, rtol=0.01)


def test_log_prob_matches_torch_distributions():
    q = _q()
    z = torch.randn(7, 5, 3)
    torch.testing.assert_close(q.log_prob(z), Normal(q.mu, q.std).log_prob(z).sum(-1))
    torch.testing.assert_close(standard_normal_log_prob(z[0]), Normal(0.0, 1.0).log_prob(z[0]).sum(-1))


def test_reparameterised_sample_carries_gradient_and_right_moments():
    mu = torch.zeros(1, 2, requires_grad=True)
    q = DiagonalGaussian(mu, torch.log(torch.tensor([[4.0, 0.25]])))
    torch.manual_seed(0)
    z = q.sample(100_000)
    torch.testing.assert_close(z.std(0), torch.tensor([[2.0, 0.5]]), atol=0.02, rtol=0.01)
    z.sum().backward()
    assert mu.grad is not None and torch.all(mu.grad == 100_000)


def test_kl_to_a_diagonal_gaussian_prior_matches_torch_distributions():
    """KL(q || p) in closed form against a learned prior p(z|y) = N(mu_p, diag exp(logvar_p))."""
    from torch.distributions import Normal, kl_divergence

    from vaekit.distributions import DiagonalGaussian, StandardNormal

    g = torch.Generator().manual_seed(0)
    mu_q, lv_q, mu_p, lv_p = (torch.randn(5, 7, generator=g) for _ in range(4))
    q, p = DiagonalGaussian(mu_q, lv_q), DiagonalGaussian(mu_p, lv_p)
    expected = kl_divergence(Normal(mu_q, (0.5 * lv_q).exp()), Normal(mu_p, (0.5 * lv_p).exp()))
    torch.testing.assert_close(q.kl_per_dim(p), expected)
    torch.testing.assert_close(q.kl(p), expected.sum(1))
    standard = kl_divergence(Normal(mu_q, (0.5 * lv_q).exp()), Normal(torch.zeros(5, 7), torch.ones(5, 7))).sum(1)
    torch.testing.assert_close(q.kl(StandardNormal(5, 7)), standard)
    torch.testing.assert_close(q.kl(), standard)


def test_a_cvaes_kl_term_is_the_kl_to_its_learned_prior():
    from conftest import tiny_settings
    from vaekit.models import Batch, build_model, model_config

    torch.manual_seed(0)
    model = build_model("cvae", model_config("cvae", tiny_settings("cvae", {"prior": "learned"})), (1, 16, 16))
    torch.nn.init.normal_(model.side.prior_net[-1].weight)
    model.eval()
    b = Batch(torch.rand(6, 1, 16, 16), torch.arange(6) % 4)
    terms = model.loss(b)
    y = model.side_information(b)
    q, p = model.encode(b.x, y), model.prior(y, 6)
    expected = kl_divergence(Normal(q.mu, q.std), Normal(p.mu, p.std)).sum(1).mean()
    torch.testing.assert_close(terms["kl"], expected)
    assert float(terms["kl"].detach()) > float(q.kl().mean()) + 1  # not the KL to N(0, I)
