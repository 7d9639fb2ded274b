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
