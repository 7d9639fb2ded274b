"""DIP-VAE-I and -II (Kumar, Sattigeri & Balakrishnan 2018, "Variational Inference of Disentangled Latent
Concepts from Unlabeled Observations", sec. 3): the ELBO plus a penalty that matches moments of the
aggregate posterior q(z) = E_p(x)[q(z|x)] to those of the prior N(0, I).

    max  ELBO(x) - lambda_od * sum_{i != j} [C]_ij^2 - lambda_d * sum_i ([C]_ii - 1)^2

DIP-VAE-I:  C = Cov_p(x)[mu(x)]                          (the covariance of the posterior means)
DIP-VAE-II: C = Cov_p(x)[mu(x)] + E_p(x)[diag sigma^2(x)]  (the covariance of q(z) itself)
both estimated on the minibatch. The penalty is a batch quantity, added once to the batch-mean loss.
Defaults are disentanglement_lib's: lambda_od = 10, lambda_d = 10 lambda_od (I) or lambda_od (II).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError
from .base import Batch
from .vae import VAE, VAEConfig


@dataclass(frozen=True)
class DIPVAEConfig(VAEConfig):
    dip_type: str = "i"  # i: the covariance of the posterior means | ii: the covariance of q(z)
    lambda_od: float = 10.0  # weight of the off-diagonal entries' squares
    lambda_d: float = 100.0  # weight of the diagonal entries' squared distance to 1

    def __post_init__(self):
        super().__post_init__()
        if self.dip_type not in ("i", "ii"):
            raise ConfigError(f"model.dip_type must be 'i' or 'ii', got {self.dip_type!r}")
        if self.lambda_od < 0 or self.lambda_d < 0:
            raise ConfigError("model.lambda_od and model.lambda_d must be >= 0")
        if self.prior_term != "kl" or self.condition != "none":
            raise ConfigError("DIP-VAE matches q(z) to N(0, I): it takes model.prior_term = 'kl' and no condition")


def dip_penalty(mu: Tensor, logvar: Tensor, dip_type: str, lambda_od: float, lambda_d: float) -> dict[str, Tensor]:
    """The moment-matching penalty of a batch of posteriors N(mu, diag exp(logvar)), each (B, D)."""
    centred = mu - mu.mean(0, keepdim=True)
    # (D, D) Cov[mu(x)] over the batch, as a product and a mean: no matmul, which autocast would run in bf16
    cov = (centred[:, :, None] * centred[:, None, :]).mean(0)
    if dip_type == "ii":
        cov = cov + torch.diag(logvar.exp().mean(0))  # + E[diag sigma^2(x)]: Cov of q(z)
    diag = torch.diagonal(cov)
    off = cov - torch.diag(diag)
    parts = {"offdiag": (off ** 2).sum(), "diag": ((diag - 1) ** 2).sum()}
    parts["penalty"] = lambda_od * parts["offdiag"] + lambda_d * parts["diag"]
    return parts


class DIPVAE(VAE):
    description = "DIP-VAE-I / -II: the ELBO plus moment matching of the aggregate posterior's covariance to I"
    paper = "Kumar, Sattigeri & Balakrishnan 2018, Variational Inference of Disentangled Latent Concepts from " \
            "Unlabeled Observations"
    config_class = DIPVAEConfig

    def loss_and_output(self, batch: Batch, step: int = 0) -> tuple[dict[str, Tensor], Tensor]:
        c = self.config
        q, z, params, recon, kl = self.elbo_pass(batch.x)  # (B,) each of recon and kl
        parts = dip_penalty(q.mu, q.logvar, c.dip_type, c.lambda_od, c.lambda_d)
        terms = {"recon": recon.mean(), "kl": kl.mean(), "elbo": -(recon + kl).mean(),
                 "dip/offdiag": parts["offdiag"], "dip/diag": parts["diag"],
                 "loss": (recon + c.beta * kl).mean() + parts["penalty"]}
        return terms, self.likelihood.mean(params)


def dip_vae_ii_preset() -> DIPVAEConfig:
    return dataclasses.replace(DIPVAEConfig(), dip_type="ii", lambda_d=10.0)
