"""VAE with the VampPrior (Tomczak & Welling 2018, "VAE with a VampPrior", eq. 9): the prior is the
mixture of the variational posterior at K learned pseudo-inputs u_k,

    p_lambda(z) = (1/K) sum_k q_phi(z | u_k)                                          (eq. 9)
    ELBO(x) = E_q[log p(x|z)] + E_q[log p_lambda(z) - log q_phi(z|x)]                 (eq. 2, the KL by sampling)

The pseudo-inputs are parameters of the prior, learned with the rest by the ELBO; each is kept in the
pixel range [0, 1] by a hard tanh (the paper's pseudo-input layer). The model owns its prior: the KL (one
draw per image, as in the paper), `sample`, traversals and the IWAE bound all use the mixture.

Every evaluation of the prior encodes the K pseudo-inputs: training costs about K extra encoder passes per
step. The encoder takes no batch norm here, since the pseudo-inputs are encoded apart from the data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..distributions import GaussianMixture
from ..errors import ConfigError
from .vae import VAE, VAEConfig


@dataclass(frozen=True)
class VampPriorConfig(VAEConfig):
    norm: str = "none"  # no batch norm: see the module's docstring
    pseudo_inputs: int = 500  # K, the mixture's components (the paper's MNIST setting)
    pseudo_init_mean: float = 0.05  # the pseudo-inputs start as N(mean, std^2) pixels
    pseudo_init_std: float = 0.01

    def __post_init__(self):
        super().__post_init__()
        if self.pseudo_inputs < 1 or self.pseudo_init_std < 0:
            raise ConfigError("model.pseudo_inputs must be >= 1 and model.pseudo_init_std >= 0")
        if self.norm != "none":
            raise ConfigError("the VampPrior encodes its pseudo-inputs apart from the data: set model.norm = 'none' "
                              "(batch statistics would make p(z) depend on the batch)")
        if self.prior_term != "kl" or self.condition != "none" or self.capacity is not None:
            raise ConfigError("the VampPrior is the model's own unconditional prior: it takes model.prior_term = 'kl', "
                              "no model.capacity and no condition")


class VampPriorVAE(VAE):
    description = "VAE with the VampPrior: p(z) a mixture of q(z|u_k) at K learned pseudo-inputs"
    paper = "Tomczak & Welling 2018, VAE with a VampPrior"
    config_class = VampPriorConfig

    def __init__(self, config: VampPriorConfig, image_shape):
        super().__init__(config, image_shape)
        init = torch.randn(config.pseudo_inputs, *image_shape) * config.pseudo_init_std + config.pseudo_init_mean
        self.pseudo_inputs = nn.Parameter(init)  # (K, C, H, W), mapped to [0, 1] by hardtanh when used

    @classmethod
    def tiny_settings(cls, preset) -> dict:
        return {**super().tiny_settings(preset), "pseudo_inputs": 3}

    @property
    def capabilities(self):
        return dataclasses.replace(super().capabilities, prior="mixture")

    def prior(self, y: Tensor | None = None, n: int | None = None) -> GaussianMixture:
        """p_lambda(z) = (1/K) sum_k q(z | u_k) for n codes (eq. 9)."""
        u = F.hardtanh(self.pseudo_inputs, 0.0, 1.0)
        components = self.encode(u)
        return GaussianMixture(components.mu, components.logvar, 1 if n is None else n)

    def kl_term(self, q, z: Tensor, y: Tensor | None) -> Tensor:
        """log q(z|x) - log p_lambda(z) at the draw z: the one-draw estimate of KL(q || p_lambda), (B,)."""
        return q.log_prob(z) - self.prior(None, len(z)).log_prob(z)
