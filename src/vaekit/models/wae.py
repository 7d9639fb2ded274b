"""WAE-MMD (Tolstikhin, Bousquet, Gelly & Schoelkopf 2018, "Wasserstein Auto-Encoders", Algorithm 2): a
deterministic encoder Q(Z|X), a decoder G and the penalised optimal-transport cost

    min  1/n sum_i c(x_i, G(z~_i)) + lambda MMD_k(P_Z, Q_Z),   z~_i = Q(x_i),  c(x, y) = ||x - y||^2

with the inverse multiquadratics kernel (vaekit.objectives.mmd) and P_Z = N(0, sigma_z^2 I). Where the
paper's MNIST set-up says nothing, the settings are those of the authors' code: the squared cost scaled
by 0.05 (`model.cost_weight`) and the kernel summed over C times 0.1, 0.2, 0.5, 1, 2, 5, 10. The paper's
MNIST choices are lambda = 10, d_z = 8, sigma_z^2 = 1 (sec. 4), the registry's preset.

No posterior and no likelihood: the ELBO and the IWAE bound do not apply, and the evaluation says so;
sampling decodes draws of P_Z.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..distributions import DiagonalGaussian
from ..errors import ConfigError
from ..nn.config import NetworkConfig
from ..objectives.mmd import imq_mmd
from ..precision import full_precision
from .autoencoder import DeterministicEncoder
from .base import Batch


@dataclass(frozen=True)
class WAEConfig(NetworkConfig):
    mmd_weight: float = 10.0  # lambda
    cost_weight: float = 0.05  # the weight of c(x, G(z)) = ||x - G(z)||^2 (summed over pixels)
    prior_variance: float = 1.0  # sigma_z^2 of P_Z = N(0, sigma_z^2 I)
    kernel_scales: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)  # multiples of C = 2 d_z sigma_z^2

    def __post_init__(self):
        super().__post_init__()
        if self.mmd_weight < 0 or not self.cost_weight > 0:
            raise ConfigError("model.mmd_weight must be >= 0 and model.cost_weight > 0")
        if not self.prior_variance > 0 or not self.kernel_scales or min(self.kernel_scales) <= 0:
            raise ConfigError("model.prior_variance and every model.kernel_scales entry must be > 0")


class WAE(DeterministicEncoder):
    description = "WAE-MMD: a deterministic autoencoder whose codes match the prior by an IMQ-kernel MMD"
    paper = "Tolstikhin, Bousquet, Gelly & Schoelkopf 2018, Wasserstein Auto-Encoders"
    config_class = WAEConfig

    def prior(self, y: Tensor | None = None, n: int | None = None) -> DiagonalGaussian:
        """P_Z = N(0, sigma_z^2 I) for n codes."""
        zeros = torch.zeros(1 if n is None else n, self.config.latent_dim, device=self.device)
        return DiagonalGaussian(zeros, torch.full_like(zeros, math.log(self.config.prior_variance)))

    def loss_and_output(self, batch: Batch, step: int = 0) -> tuple[dict[str, Tensor], Tensor]:
        c = self.config
        codes = self.latent_code(batch.x)  # (B, D) z~ = Q(x)
        x_hat = full_precision(self.decode(codes))  # G(z~) in [0, 1]
        cost = (x_hat - batch.x).pow(2).flatten(1).sum(1)  # (B,) ||x - G(z~)||^2
        terms = {"recon": cost.mean()}
        if len(codes) >= 2:  # an evaluation batch of one image has no MMD estimate
            mmd = imq_mmd(codes, self.prior(None, len(codes)).sample(), c.prior_variance, c.kernel_scales)
            terms["mmd"] = mmd
            terms["loss"] = c.cost_weight * cost.mean() + c.mmd_weight * mmd
        return terms, x_hat
