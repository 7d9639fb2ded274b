"""Soft-IntroVAE (Daniel & Tamar 2021) against its losses written out from the authors' Algorithm 1: one
trainer step, the encoder stepped with the gradient of L_E at the weights before the step, then the decoder
with the gradient of L_D seen through the updated encoder (phase 1), each group's own gradient only."""

import copy
import math

import pytest
import torch

import paper_losses as paper
from vaekit.models import build_model, model_config

SHAPE = (1, 8, 8)
S = 1 / 64  # 1 / (C H W)


def make(**over):
    settings = {"latent_dim": 3, "architecture": "mlp", "mlp_widths": [16], "mlp_decoder_widths": [16],
                "norm": "none", "beta_rec": 0.7, "beta_kl": 1.3, "beta_neg": 20.0, "gamma_r": 0.5, **over}
    return build_model("soft_introvae", model_config("soft_introvae", settings), SHAPE)


def kl(mu, logvar):
    return 0.5 * (mu ** 2 + logvar.exp() - logvar - 1).sum(1)


def sq(a, b):
    return ((a - b) ** 2).flatten(1).sum(1)  # L_rec: ||a - b||^2 over pixels


def test_both_players_step_with_the_gradients_of_the_written_out_losses():
    model = make()
    x = torch.rand(6, *SHAPE, generator=torch.Generator().manual_seed(0))
    before, model = paper.step_once(model, x, seed=2)

    def encode(m, images):
        mu, logvar = m.encoder(images).chunk(2, dim=1)
        return mu, logvar, mu + (0.5 * logvar).exp() * torch.randn_like(mu)

    def decode(m, z):
        return torch.sigmoid(m.decoder(z))

    torch.manual_seed(2)  # phase 0's draws: z, z_f, then z' of x_r and of x_f
    mu, logvar, z = encode(before, x)
    z_f = torch.randn_like(z)
    x_f, x_r = decode(before, z_f), decode(before, z)
    mu_r, lv_r, z_rr = encode(before, x_r.detach())
    mu_f, lv_f, z_ff = encode(before, x_f.detach())
    elbo_r = -(0.7 * sq(decode(before, z_rr), x_r) + 20.0 * kl(mu_r, lv_r))
    elbo_f = -(0.7 * sq(decode(before, z_ff), x_f) + 20.0 * kl(mu_f, lv_f))
    loss_e = S * (0.7 * sq(x_r, x).mean() + 1.3 * kl(mu, logvar).mean()) \
        + 0.25 * (torch.exp(2 * S * elbo_r).mean() + torch.exp(2 * S * elbo_f).mean())

    # phase 1: the same z, z_f decoded by the decoder before its step, encoded by the encoder after its step
    seen = copy.deepcopy(before)
    seen.encoder.load_state_dict(model.encoder.state_dict())
    x_f, x_r = decode(seen, z_f), decode(seen, z.detach())
    mu_r, lv_r, z_rr = encode(seen, x_r)
    mu_f, lv_f, z_ff = encode(seen, x_f)
    loss_d = S * (0.7 * sq(x_r, x).mean() + 0.5 * 1.3 * (kl(mu_r, lv_r).mean() + kl(mu_f, lv_f).mean())
                  + 0.5 * 0.5 * 0.7 * (sq(decode(seen, z_rr.detach()), x_r.detach()).mean()
                                       + sq(decode(seen, z_ff.detach()), x_f.detach()).mean()))
    grads_e = torch.autograd.grad(loss_e, list(before.encoder.parameters()))
    grads_d = torch.autograd.grad(loss_d, list(seen.decoder.parameters()))
    for p, g in zip(model.encoder.parameters(), grads_e):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)
    for p, g in zip(model.decoder.parameters(), grads_d):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)


def test_a_settings_error_names_the_setting():
    from vaekit.errors import ConfigError
    with pytest.raises(ConfigError, match="beta_neg"):
        model_config("soft_introvae", {"beta_neg": -1.0})
