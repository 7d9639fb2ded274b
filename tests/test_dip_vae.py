"""DIP-VAE's penalty against Kumar et al.'s definition written out entry by entry (sec. 3)."""

import pytest
import torch

from vaekit.models import Batch, build_model, model_config
from vaekit.models.dip_vae import dip_penalty


def written_out(mu, logvar, dip_type, lambda_od, lambda_d):
    """C_ij = 1/B sum_b (mu_bi - mean_i)(mu_bj - mean_j) [+ 1/B sum_b sigma^2_bi if i = j, DIP-VAE-II];
    lambda_od sum_{i != j} C_ij^2 + lambda_d sum_i (C_ii - 1)^2."""
    b, d = mu.shape
    mean = [sum(float(mu[n, i]) for n in range(b)) / b for i in range(d)]
    total = 0.0
    for i in range(d):
        for j in range(d):
            c = sum((float(mu[n, i]) - mean[i]) * (float(mu[n, j]) - mean[j]) for n in range(b)) / b
            if i == j:
                if dip_type == "ii":
                    c += sum(float(logvar[n, i].exp()) for n in range(b)) / b
                total += lambda_d * (c - 1) ** 2
            else:
                total += lambda_od * c ** 2
    return total


@pytest.mark.parametrize("dip_type", ["i", "ii"])
def test_the_penalty_is_the_papers_moment_matching(dip_type):
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(7, 3, generator=g) * 2, torch.randn(7, 3, generator=g)
    ours = dip_penalty(mu, logvar, dip_type, 3.0, 5.0)["penalty"]
    assert float(ours) == pytest.approx(written_out(mu, logvar, dip_type, 3.0, 5.0), rel=1e-5)


def test_the_loss_is_the_negative_elbo_plus_the_penalty():
    name = "dip_vae_ii"
    model = build_model(name, model_config(name, {"latent_dim": 4, "base_channels": 4, "max_channels": 8}), (1, 16, 16))
    x = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    terms = model.loss(Batch(x))
    penalty = model.config.lambda_od * terms["dip/offdiag"] + model.config.lambda_d * terms["dip/diag"]
    torch.testing.assert_close(terms["loss"], -terms["elbo"] + penalty)
    assert model.capabilities.factorised and model.capabilities.bound == "p(x)"
