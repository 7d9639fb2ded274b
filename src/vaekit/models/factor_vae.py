"""FactorVAE (Kim & Mnih 2018, "Disentangling by Factorising", eq. 2 and Algorithm 2): the ELBO minus
gamma times the total correlation of the aggregate posterior, the TC estimated by a discriminator.

    VAE:            max  1/N sum_i [ E_q[log p(x_i|z)] - KL(q(z|x_i) || p(z)) ] - gamma KL(q(z) || q~(z))
    TC estimate:    KL(q(z) || q~(z)) ~ E_q(z)[ log D(z) / (1 - D(z)) ]           (the density-ratio trick)
    discriminator:  max  E_q(z)[log D(z)] + E_q~(z)[log(1 - D(z~))],  z~: z with each dimension permuted
                    across the batch (Algorithm 1, "permute_dims"), a draw of q~(z) = prod_j q(z_j)

D is a 6-layer MLP of 1000 LeakyReLU(0.2) units with two logits (the paper's appendix); log D/(1 - D) is
their difference. Two parameter groups: `loss/vae` (encoder and decoder) and `loss/discriminator`, each
stepped with the gradient of its own loss. The discriminator sees the batch's own codes and their
permutation (as disentanglement_lib does) where Algorithm 2 draws a second batch for the permutation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..precision import full_precision
from .base import Batch
from .vae import VAE, VAEConfig


@dataclass(frozen=True)
class FactorVAEConfig(VAEConfig):
    tc_weight: float = 40.0  # gamma; Kim & Mnih sweep 10-100 on dSprites
    discriminator_width: int = 1000
    discriminator_layers: int = 6  # hidden layers

    def __post_init__(self):
        super().__post_init__()
        if self.tc_weight < 0:
            raise ConfigError(f"model.tc_weight must be >= 0, got {self.tc_weight}")
        if self.discriminator_width < 1 or self.discriminator_layers < 1:
            raise ConfigError("model.discriminator_width and model.discriminator_layers must be >= 1")
        if self.prior_term != "kl" or self.condition != "none" or self.capacity is not None:
            raise ConfigError("FactorVAE penalises the TC beside the plain KL: it takes model.prior_term = 'kl', "
                              "no model.capacity and no condition")


def permute_dims(z: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Each latent dimension shuffled across the batch by its own permutation (Algorithm 1). (B, D)"""
    b, d = z.shape
    order = torch.argsort(torch.rand(b, d, generator=generator, device=z.device), dim=0)  # (B, D)
    return torch.gather(z, 0, order)


class FactorVAE(VAE):
    description = "FactorVAE: the ELBO minus gamma times a discriminator's estimate of the codes' total correlation"
    paper = "Kim & Mnih 2018, Disentangling by Factorising"
    config_class = FactorVAEConfig

    def __init__(self, config: FactorVAEConfig, image_shape):
        super().__init__(config, image_shape)
        c = config
        layers: list[nn.Module] = []
        width = c.latent_dim
        for _ in range(c.discriminator_layers):
            layers += [nn.Linear(width, c.discriminator_width), nn.LeakyReLU(0.2)]
            width = c.discriminator_width
        self.discriminator = nn.Sequential(*layers, nn.Linear(width, 2))  # logits of (from q(z), from q~(z))

    @classmethod
    def tiny_settings(cls, preset) -> dict:
        return {**super().tiny_settings(preset), "discriminator_width": 8, "discriminator_layers": 2}

    def optim_groups(self):
        vae = [p for name, p in self.named_parameters() if not name.startswith("discriminator.") and p.requires_grad]
        return {"loss/vae": vae, "loss/discriminator": list(self.discriminator.parameters())}

    def loss_and_output(self, batch: Batch, step: int = 0) -> tuple[dict[str, Tensor], Tensor]:
        c = self.config
        q, z, params, recon, kl = self.elbo_pass(batch.x)  # (B,) each of recon and kl
        logits = full_precision(self.discriminator(z))  # (B, 2)
        tc = logits[:, 0] - logits[:, 1]  # (B,) log D(z) / (1 - D(z))
        terms = {"recon": recon.mean(), "kl": kl.mean(), "elbo": -(recon + kl).mean(), "tc": tc.mean(),
                 "loss/vae": (recon + c.beta * kl + c.tc_weight * tc).mean()}
        if len(z) >= 2:  # a permutation of one code is itself
            # the VAE's pass serves the discriminator too: the trainer steps each group with its own loss's
            # gradient only, so L_D never reaches the encoder
            real = logits
            permuted = full_precision(self.discriminator(permute_dims(z.detach())))
            d_loss = 0.5 * (F.cross_entropy(real, torch.zeros(len(z), dtype=torch.long, device=z.device))
                            + F.cross_entropy(permuted, torch.ones(len(z), dtype=torch.long, device=z.device)))
            terms["loss/discriminator"] = d_loss
            terms["discriminator/accuracy"] = 0.5 * ((real.argmax(1) == 0).float().mean()
                                                     + (permuted.argmax(1) == 1).float().mean())
        return terms, self.likelihood.mean(params)
