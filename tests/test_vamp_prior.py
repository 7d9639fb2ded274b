"""The VampPrior (Tomczak & Welling 2018, eq. 9) against the mixture written out: its density, its draws,
the one-draw KL of the ELBO (one trainer step, the gradient reaching the pseudo-inputs) and the IWAE
bound's weights."""

import math

import pytest
import torch

import paper_losses as paper
from vaekit.distributions import GaussianMixture
from vaekit.errors import ConfigError
from vaekit.models import build_model, model_config

SHAPE = (1, 8, 8)


def make(**over):
    settings = {"latent_dim": 2, "architecture": "mlp", "mlp_widths": [16], "mlp_decoder_widths": [16],
                "pseudo_inputs": 4, "pseudo_init_mean": 0.5, "pseudo_init_std": 0.3, **over}
    return build_model("vamp_prior", model_config("vamp_prior", settings), SHAPE)


def mixture_log_density(z, means, logvars):
    """log (1/K) sum_k prod_d N(z_d; mu_kd, sigma_kd^2), in float64, term by term."""
    z, means, variances = z.double(), means.double(), logvars.double().exp()
    total = 0.0
    for k in range(len(means)):
        total = total + torch.exp(-0.5 * ((z - means[k]) ** 2 / variances[k]
                                          + torch.log(2 * math.pi * variances[k])).sum(-1))
    return torch.log(total / len(means))


def log_normal(z, mu, logvar):
    return (-0.5 * ((z - mu) ** 2 / logvar.exp() + logvar + math.log(2 * math.pi))).sum(-1)


def test_the_mixture_density_and_draws():
    g = torch.Generator().manual_seed(0)
    means, logvars = torch.tensor([[-4.0, 0.0], [4.0, 1.0], [0.0, 5.0]]), torch.randn(3, 2, generator=g) * 0.3
    prior = GaussianMixture(means, logvars, 5)
    z = torch.randn(7, 5, 2, generator=g) * 3
    torch.testing.assert_close(prior.log_prob(z), mixture_log_density(z, means, logvars).float())
    torch.manual_seed(0)
    draws = prior.sample(4000)  # (4000, 5, 2)
    nearest = torch.cdist(draws.reshape(-1, 2), means).argmin(1)
    assert torch.bincount(nearest, minlength=3).float().div(len(nearest)).sub(1 / 3).abs().max() < 0.03
    torch.testing.assert_close(draws.reshape(-1, 2).mean(0), means.mean(0), atol=0.1, rtol=0)
    torch.testing.assert_close(prior.mu[0], means.mean(0))  # the moment-matched Gaussian's mean


def test_the_elbo_step_uses_the_mixture_of_posteriors_at_the_pseudo_inputs():
    model = make(beta=0.7)
    x = (torch.rand(5, *SHAPE, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    before, model = paper.step_once(model, x, seed=2)

    torch.manual_seed(2)
    u = before.pseudo_inputs.clamp(0, 1)  # the hard tanh to [0, 1]
    means, logvars = before.encoder(u).chunk(2, dim=1)  # q(z | u_k)
    mu, logvar = before.encoder(x).chunk(2, dim=1)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    kl = log_normal(z, mu, logvar) - mixture_log_density(z, means, logvars).float()
    loss = (paper.bernoulli_nll(before.decoder(z), x) + 0.7 * kl).mean()
    paper.assert_each_group_stepped_with(model, before, {"loss": loss})
    assert model.pseudo_inputs.grad.abs().sum() > 0  # the prior is learned
    assert model.capabilities.prior == "mixture"


def test_the_iwae_bound_weighs_by_the_mixture():
    model = make().eval()
    x = (torch.rand(3, *SHAPE, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    torch.manual_seed(5)
    ours = model.log_importance_weights(x, 4)  # (4, 3)
    with torch.no_grad():
        torch.manual_seed(5)
        means, logvars = model.encoder(model.pseudo_inputs.clamp(0, 1)).chunk(2, dim=1)
        mu, logvar = model.encoder(x).chunk(2, dim=1)
        z = mu + (0.5 * logvar).exp() * torch.randn(4, *mu.shape)
        log_px = -paper.bernoulli_nll(model.decoder(z.reshape(-1, 2)), x.repeat(4, 1, 1, 1)).view(4, 3)
        want = log_px + mixture_log_density(z, means, logvars).float() - log_normal(z, mu, logvar)
    torch.testing.assert_close(ours, want, rtol=1e-4, atol=1e-4)


def test_batch_norm_is_refused():
    with pytest.raises(ConfigError, match="norm"):
        model_config("vamp_prior", {"norm": "batch"})
