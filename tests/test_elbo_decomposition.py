"""The ELBO decomposition over a whole data set (MI, TC, DWKL) against exact computations."""

import math

import pytest
import torch
from torch.distributions import Normal

from vaekit.metrics.elbo_decomposition import dataset_elbo_decomposition, elbo_decomposition
from vaekit.metrics.mixture import log_mixture_joint

F64 = torch.float64


def _draws(mu, logvar, seed=1):
    return mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _brute_log_mixture(z, mu, logvar):
    comp = Normal(mu[None], torch.exp(0.5 * logvar)[None]).log_prob(z[:, None])  # (S, N, D)
    return torch.logsumexp(comp.sum(2), 1) - math.log(len(mu)), torch.logsumexp(comp, 1) - math.log(len(mu))


@pytest.mark.parametrize("logvar_shift", [0.0, -40.0])  # -40: the explicit-difference path
def test_joint_mixture_density_is_the_logsumexp_over_every_component(logvar_shift):
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(37, 3, generator=g, dtype=F64) * 1e-6 ** (logvar_shift < 0) + 5.0
    logvar = torch.randn(37, 3, generator=g, dtype=F64) * 0.3 - 1.0 + logvar_shift
    z = torch.cat([_draws(mu, logvar)[:20], torch.randn(5, 3, generator=g, dtype=F64)])
    expected, _ = _brute_log_mixture(z, mu, logvar)
    got = log_mixture_joint(z, mu, logvar, rows=7, cols=5)  # several blocks both ways
    finite = torch.isfinite(expected)
    torch.testing.assert_close(got[finite], expected[finite], rtol=1e-9, atol=1e-7)


def test_terms_against_brute_force_and_sum_to_the_monte_carlo_kl():
    g = torch.Generator().manual_seed(2)
    mu, logvar = torch.randn(40, 3, generator=g, dtype=F64), torch.randn(40, 3, generator=g, dtype=F64) * 0.5 - 1
    z = _draws(mu, logvar)
    out = elbo_decomposition(mu, logvar, z)
    log_qz, log_qz_d = _brute_log_mixture(z, mu, logvar)
    log_qz_x = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(1)
    log_pz = Normal(0.0, 1.0).log_prob(z).sum(1)
    assert out["mi"] == pytest.approx(float((log_qz_x - log_qz).mean()), abs=1e-9)
    # the marginals come from float32 blocks with a float32 remainder: ~1e-7 nats per log q(z_d)
    assert out["tc"] == pytest.approx(float((log_qz - log_qz_d.sum(1)).mean()), abs=1e-6)
    assert out["dwkl"] == pytest.approx(float((log_qz_d.sum(1) - log_pz).mean()), abs=1e-6)
    assert out["kl"] == pytest.approx(float((log_qz_x - log_pz).mean()), abs=1e-9)
    assert out["mi"] <= out["log_n"] and out["n"] == 40 and out["samples"] == 40
    # standard errors over the 40 scored draws: sd / sqrt(S) of each per-draw term
    for key, per_draw in (("mi", log_qz_x - log_qz), ("tc", log_qz - log_qz_d.sum(1)),
                          ("dwkl", log_qz_d.sum(1) - log_pz), ("kl", log_qz_x - log_pz)):
        assert out[f"{key}_se"] == pytest.approx(float(per_draw.std() / math.sqrt(40)), rel=1e-5), key


def test_tc_is_zero_for_a_product_grid_and_positive_on_a_line():
    """Means on a full 6 x 7 grid with equal variances per latent: q(z) = q(z_1) q(z_2) exactly, so every
    draw's TC term is 0. The same number of means on a diagonal line: strongly dependent latents."""
    a, b = torch.meshgrid(torch.linspace(-2, 2, 6, dtype=F64), torch.linspace(-1, 1, 7, dtype=F64), indexing="ij")
    grid = torch.stack([a.flatten(), b.flatten()], 1)
    logvar = torch.full_like(grid, math.log(0.05))
    out = elbo_decomposition(grid, logvar, _draws(grid, logvar))
    assert abs(out["tc"]) < 1e-6
    t = torch.linspace(-2, 2, 42, dtype=F64)
    line = torch.stack([t, t], 1)
    assert elbo_decomposition(line, logvar, _draws(line, logvar))["tc"] > 1.0


def test_subsampled_draws_are_seeded_and_counted():
    g = torch.Generator().manual_seed(3)
    mu, logvar = torch.randn(200, 2, generator=g, dtype=F64), torch.full((200, 2), -2.0, dtype=F64)
    z = _draws(mu, logvar)
    a = elbo_decomposition(mu, logvar, z, samples=50, generator=torch.Generator().manual_seed(0))
    b = elbo_decomposition(mu, logvar, z, samples=50, generator=torch.Generator().manual_seed(0))
    assert a == b and a["samples"] == 50 and a["n"] == 200
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        elbo_decomposition(mu, logvar[:, :1], z)


def test_a_trained_model_over_a_dataset(tiny_data):
    from conftest import tiny_settings
    from vaekit.models import build_model, model_config

    torch.manual_seed(0)
    model = build_model("vae", model_config("vae", tiny_settings("vae")), tiny_data.image_shape).eval()
    full = dataset_elbo_decomposition(model, tiny_data, batch_size=100)
    assert full["n"] == len(tiny_data) and full["mi"] <= math.log(len(tiny_data)) + 1e-9
    part = dataset_elbo_decomposition(model, tiny_data, n=64, samples=32, seed=1)
    assert part["n"] == 64 and part["samples"] == 32
    again = dataset_elbo_decomposition(model, tiny_data, n=64, samples=32, seed=1, batch_size=7)
    assert again == pytest.approx(part, rel=1e-6, abs=1e-9)  # only float32 rounding of other batch shapes
