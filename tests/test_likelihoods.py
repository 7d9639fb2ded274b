"""Likelihoods against torch.distributions; the reduction is a sum over pixels (never a mean)."""

import math

import pytest
import torch
from torch.distributions import Bernoulli as TorchBernoulli
from torch.distributions import Laplace as TorchLaplace
from torch.distributions import Normal

from vaekit.errors import ConfigError
from vaekit.likelihoods import make_likelihood


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    params = torch.randn(3, 2, 5, 4, generator=g)
    x = (torch.rand(3, 2, 5, 4, generator=g) > 0.5).float()
    return params, x


def test_bernoulli_matches_torch():
    params, x = _data()
    lp = make_likelihood("bernoulli").log_prob(params, x)
    ref = TorchBernoulli(logits=params).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(lp, ref)


@pytest.mark.parametrize("learn", [False, True])
def test_gaussian_matches_torch(learn):
    params, x = _data()
    lik = make_likelihood("gaussian", 0.3, learn)
    ref = Normal(torch.sigmoid(params), 0.3).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(lik.log_prob(params, x), ref)
    assert any(True for _ in lik.parameters()) == learn


def test_laplace_matches_torch():
    params, x = _data()
    ref = TorchLaplace(torch.sigmoid(params), 0.2).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(make_likelihood("laplace", 0.2).log_prob(params, x), ref)


def test_reduction_is_a_sum_over_pixels():
    # Doubling the image (same content twice) doubles the log-likelihood: a per-pixel mean would not.
    params, x = _data()
    lik = make_likelihood("gaussian", 0.1)
    single = lik.log_prob(params, x)
    double = lik.log_prob(torch.cat([params, params], 1), torch.cat([x, x], 1))
    torch.testing.assert_close(double, 2 * single)


def test_learned_scale_receives_gradient():
    params, x = _data()
    lik = make_likelihood("gaussian", 0.5, learn_scale=True)
    lik.log_prob(params, x).sum().backward()
    assert lik.log_scale.grad is not None and lik.log_scale.grad.abs() > 0
    assert math.isclose(float(lik.log_scale.detach().exp()), 0.5, rel_tol=1e-6)


def test_bad_likelihood_settings_refused():
    with pytest.raises(ConfigError, match="unknown likelihood"):
        make_likelihood("poisson")
    with pytest.raises(ConfigError, match="> 0"):
        make_likelihood("gaussian", 0.0)
