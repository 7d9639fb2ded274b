"""IWAE trained on its bound, and Rainforth et al.'s MIWAE / CIWAE / PIWAE, against the objectives written
out from the papers (Burda et al. 2016, eq. 8; Rainforth et al. 2018, sec. 4): one trainer step, each
group's gradient that of its own written-out bound."""

import math

import pytest
import torch

import paper_losses as paper
from vaekit.errors import ConfigError
from vaekit.models import Batch, build_model, model_config

SHAPE = (1, 8, 8)


def make(**over):
    settings = {"latent_dim": 3, "architecture": "mlp", "mlp_widths": [16], "mlp_decoder_widths": [16],
                "norm": "none", **over}
    return build_model("iwae", model_config("iwae", settings), SHAPE)


def log_mean_exp(a):
    """log (1/K) sum_k exp(a_k) over the first axis, with the largest term taken out."""
    top = a.max(0).values
    return top + torch.log(torch.exp(a - top).mean(0))


def written_out_log_weights(model, x, draws, seed):
    """log w_k = log p(x|z_k) + log N(z_k; 0, I) - log N(z_k; mu, sigma^2), z_k = mu + sigma eps_k. (draws, B)"""
    torch.manual_seed(seed)
    mu, logvar = model.encoder(x).chunk(2, dim=1)
    eps = torch.randn(draws, *mu.shape)
    z = mu + (0.5 * logvar).exp() * eps
    logits = model.decoder(z.reshape(-1, mu.shape[1]))
    log_px = -paper.bernoulli_nll(logits, x.repeat(draws, 1, 1, 1)).view(draws, len(x))
    log_pz = (-0.5 * (z ** 2 + math.log(2 * math.pi))).sum(-1)
    log_qz = (-0.5 * ((z - mu) ** 2 / logvar.exp() + logvar + math.log(2 * math.pi))).sum(-1)
    return log_px + log_pz - log_qz


@pytest.mark.parametrize("variant,samples,groups", [("iwae", 4, 1), ("miwae", 2, 3), ("ciwae", 3, 1),
                                                    ("piwae", 2, 3)])
def test_each_variant_steps_with_the_gradient_of_its_bound(variant, samples, groups):
    over = {"variant": variant, "samples": samples}
    if variant in ("miwae", "piwae"):
        over["groups"] = groups
    if variant == "ciwae":
        over["ciwae_beta"] = 0.3
    model = make(**over)
    x = (torch.rand(5, *SHAPE, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    before, model = paper.step_once(model, x, seed=2)

    log_w = written_out_log_weights(before, x, samples * groups, seed=2)
    bounds = [log_mean_exp(log_w[j * samples:(j + 1) * samples]) for j in range(groups)]  # L_K of each group
    miwae = sum(bounds) / groups
    if variant in ("iwae", "miwae"):
        losses = {"loss": -miwae.mean()}
    elif variant == "ciwae":
        losses = {"loss": -(0.3 * log_w.mean(0) + 0.7 * miwae).mean()}
    else:  # the encoder ascends MIWAE(M, K), the decoder IWAE with all M * K draws
        losses = {"loss/encoder": -miwae.mean(), "loss/decoder": -log_mean_exp(log_w).mean()}
    paper.assert_each_group_stepped_with(model, before, losses)


def test_the_bound_tightens_with_k():
    """Burda et al.'s Theorem 1: E[L_K] is non-decreasing in K and L_1 is the ELBO."""
    model = make().eval()
    x = (torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    with torch.no_grad():
        torch.manual_seed(0)
        one = written_out_log_weights(model, x.repeat(400, 1, 1, 1), 1, seed=0).mean()
        fifty = log_mean_exp(written_out_log_weights(model, x.repeat(400, 1, 1, 1), 50, seed=1)).mean()
        terms = model.loss(Batch(x))
    assert float(fifty) > float(one) + 0.05
    assert float(one) == pytest.approx(float(terms["elbo"]), abs=0.5)


def test_settings_that_would_not_bound_log_p_are_refused():
    with pytest.raises(ConfigError, match="beta"):
        model_config("iwae", {"beta": 4.0})
    with pytest.raises(ConfigError, match="groups applies only"):
        model_config("iwae", {"groups": 3})
    with pytest.raises(ConfigError, match="variant"):
        model_config("iwae", {"variant": "diwae"})
