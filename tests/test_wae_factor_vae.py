"""WAE-MMD (Tolstikhin et al. 2018, Algorithm 2) and FactorVAE (Kim & Mnih 2018, eq. 2 and Algorithm 2)
against their objectives written out from the papers: one trainer step, each group stepped with the
gradient of its own written-out loss."""

import math

import pytest
import torch

import paper_losses as paper
from vaekit.models import build_model, model_config
from vaekit.models.factor_vae import permute_dims
from vaekit.objectives.mmd import imq_mmd

SHAPE = (1, 8, 8)


def images(n, seed=0):
    return (torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed)) > 0.5).float()


def mmd_written_out(codes, draws, variance, scales):
    """1/(n(n-1)) sum_{l != j} k(z_l, z_j) + 1/(n(n-1)) sum_{l != j} k(z~_l, z~_j) - 2/n^2 sum_{l, j} k(z_l, z~_j),
    k(a, b) = sum_s s C / (s C + ||a - b||^2), C = 2 d sigma^2."""
    n, d = codes.shape
    c = 2 * d * variance

    def k(a, b):
        return sum(s * c / (s * c + ((a - b) ** 2).sum()) for s in scales)

    same = sum(k(draws[l], draws[j]) + k(codes[l], codes[j]) for l in range(n) for j in range(n) if l != j)
    across = sum(k(draws[l], codes[j]) for l in range(n) for j in range(n))
    return same / (n * (n - 1)) - 2 * across / n ** 2


def test_the_mmd_is_algorithm_2s_u_statistic():
    g = torch.Generator().manual_seed(0)
    codes, draws = torch.randn(6, 3, generator=g) * 2 + 1, torch.randn(6, 3, generator=g)
    ours = imq_mmd(codes, draws, 1.5, (0.5, 1.0, 2.0))
    torch.testing.assert_close(ours, mmd_written_out(codes, draws, 1.5, (0.5, 1.0, 2.0)))
    same = torch.randn(200, 2, generator=g)
    assert abs(float(imq_mmd(same, torch.randn(200, 2, generator=g)))) < 0.02 < float(imq_mmd(same + 3, same))


def test_wae_steps_with_the_gradient_of_the_penalised_cost():
    settings = {"latent_dim": 3, "architecture": "mlp", "mlp_widths": [16], "mlp_decoder_widths": [16],
                "norm": "none", "mmd_weight": 7.0, "cost_weight": 0.3, "prior_variance": 2.0}
    model = build_model("wae_mmd", model_config("wae_mmd", settings), SHAPE)
    x = images(5)
    before, model = paper.step_once(model, x, seed=2)

    torch.manual_seed(2)
    codes = before.encoder(x)  # z~ = Q(x), deterministic
    draws = math.sqrt(2.0) * torch.randn_like(codes)  # z ~ N(0, sigma^2 I)
    cost = ((torch.sigmoid(before.decoder(codes)) - x) ** 2).flatten(1).sum(1)  # ||x - G(z~)||^2
    loss = 0.3 * cost.mean() + 7.0 * mmd_written_out(codes, draws, 2.0, settings.get("kernel_scales",
                                                                                        (0.1, 0.2, 0.5, 1, 2, 5, 10)))
    paper.assert_each_group_stepped_with(model, before, {"loss": loss})
    assert model.capabilities.bound is None and not model.capabilities.factorised


def test_permute_dims_shuffles_each_dimension_on_its_own():
    z = torch.arange(200.0).view(100, 2) * torch.tensor([1.0, -1.0])
    p = permute_dims(z, torch.Generator().manual_seed(0))
    for j in range(2):
        assert sorted(p[:, j].tolist()) == sorted(z[:, j].tolist())  # the same values in each column
    assert abs(float(torch.corrcoef(p.T)[0, 1])) < 0.3  # the columns' pairing is broken (z's is -1)


def test_factor_vae_groups_step_with_the_papers_losses():
    settings = {"latent_dim": 3, "architecture": "mlp", "mlp_widths": [16], "mlp_decoder_widths": [16],
                "norm": "none", "tc_weight": 5.0, "discriminator_width": 8, "discriminator_layers": 2}
    model = build_model("factor_vae", model_config("factor_vae", settings), SHAPE)
    x = images(6)
    before, model = paper.step_once(model, x, seed=2)

    torch.manual_seed(2)
    mu, logvar = before.encoder(x).chunk(2, dim=1)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    order = torch.rand(*z.shape).argsort(0)  # one permutation per latent dimension
    z_perm = torch.stack([z[order[:, j], j] for j in range(z.shape[1])], 1)
    D = before.discriminator
    log_d = torch.log_softmax(D(z), 1)  # [log D(z), log(1 - D(z))]
    vae = (paper.bernoulli_nll(before.decoder(z), x) + paper.kl_to_standard_normal(mu, logvar)
           + 5.0 * (log_d[:, 0] - log_d[:, 1])).mean()
    disc = -0.5 * (torch.log_softmax(D(z.detach()), 1)[:, 0].mean()
                   + torch.log_softmax(D(z_perm.detach()), 1)[:, 1].mean())
    paper.assert_each_group_stepped_with(model, before, {"loss/vae": vae, "loss/discriminator": disc})
    assert model.capabilities.factorised and model.capabilities.bound == "p(x)"
