"""The diagonal Gaussian of posteriors q(z|x) and priors p(z|y), and the standard-normal prior.

One home for the reparameterisation trick and the Gaussian KL (Kingma & Welling 2014, appendix B),
against N(0, I) or against any diagonal-Gaussian prior (a CVAE's learned p(z|y), Sohn et al. 2015).
Reduction convention of the whole toolkit: sum over latent dimensions, one value per example, nats.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .precision import full_precision

LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I), summed over every dimension after the first. (B, ...) -> (B,)"""
    return -0.5 * (z.pow(2) + LOG_2PI).flatten(1).sum(1)


class DiagonalGaussian:
    """q(z|x) with mean `mu` and log-variance `logvar`, both (B, D) or (B, ...)."""

    def __init__(self, mu: Tensor, logvar: Tensor):
        self.mu = full_precision(mu)  # an encoder under bf16 autocast: the maths stays in float32
        self.logvar = full_precision(logvar)

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, n: int | None = None) -> Tensor:
        """Reparameterised draw z = mu + sigma * eps; with n, shape (n, B, ...)."""
        shape = self.mu.shape if n is None else (n, *self.mu.shape)
        eps = torch.randn(shape, dtype=self.mu.dtype, device=self.mu.device)
        return self.mu + self.std * eps

    def mode(self) -> Tensor:
        return self.mu

    def log_prob(self, z: Tensor) -> Tensor:
        """log q(z|x) summed over latent dims; z may carry a leading sample axis. -> (..., B)"""
        dims = self.mu.dim() - 1
        log_density = -0.5 * ((z - self.mu).pow(2) * torch.exp(-self.logvar) + self.logvar + LOG_2PI)
        return log_density.flatten(-dims).sum(-1)

    def kl_per_dim(self, prior: "DiagonalGaussian | None" = None) -> Tensor:
        """Closed-form KL(q || p) for each latent dimension, p = `prior` or N(0, I). (B, D)
        KL = 1/2 [logvar_p - logvar_q + (exp(logvar_q) + (mu_q - mu_p)^2) / exp(logvar_p) - 1]."""
        if prior is None or isinstance(prior, StandardNormal):
            return 0.5 * (self.mu.pow(2) + self.logvar.exp() - 1.0 - self.logvar)
        return 0.5 * (prior.logvar - self.logvar + (self.logvar.exp() + (self.mu - prior.mu).pow(2))
                      * torch.exp(-prior.logvar) - 1.0)

    def kl(self, prior: "DiagonalGaussian | None" = None) -> Tensor:
        """Closed-form KL(q || p), p = `prior` or N(0, I), summed over latent dimensions. (B,) — >= 0."""
        return self.kl_per_dim(prior).flatten(1).sum(1)

    def detach(self) -> "DiagonalGaussian":
        return DiagonalGaussian(self.mu.detach(), self.logvar.detach())


class StandardNormal(DiagonalGaussian):
    """N(0, I) for a batch of n codes of `dim` dimensions: the unconditional prior p(z)."""

    def __init__(self, n: int, dim: int, device=None):
        zeros = torch.zeros(n, dim, device=device)
        super().__init__(zeros, zeros)


class GaussianMixture(DiagonalGaussian):
    """p(z) = (1/K) sum_k N(z; mu_k, diag sigma_k^2), for a batch of n codes: a prior that is a mixture
    (VampPrior's). Its density and its draws are the mixture's. As a DiagonalGaussian (`mu`, `logvar`,
    `std`, `mode`, and a KL against it) it is its moment-matched Gaussian: what traversals span and rank
    latent dimensions by; a model's KL to the mixture itself is estimated by sampling (log q - log p)."""

    def __init__(self, means: Tensor, logvars: Tensor, n: int):
        self.components = DiagonalGaussian(means, logvars)  # (K, D) each
        mu = self.components.mu.mean(0)
        second = (self.components.logvar.exp() + self.components.mu.pow(2)).mean(0)
        variance = (second - mu.pow(2)).clamp_min(1e-12)
        super().__init__(mu.expand(n, -1), variance.log().expand(n, -1))

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) for z (..., D). -> (...)"""
        means, logvars = self.components.mu, self.components.logvar  # (K, D)
        precision = torch.exp(-logvars)  # (K, D)
        # sum_d (z_d - mu_kd)^2 / sigma_kd^2 expanded into two products: no (..., K, D) tensor, whose memory
        # and time grow with K times the draws (the IWAE bound scores thousands of draws against K = 500)
        flat = z.reshape(-1, z.shape[-1])
        squares = flat.pow(2) @ precision.T - 2 * flat @ (means * precision).T \
            + (means.pow(2) * precision).sum(1)  # (N, K)
        per_component = -0.5 * (squares.clamp_min(0) + (logvars + LOG_2PI).sum(1))  # (N, K)
        return (torch.logsumexp(per_component, -1) - math.log(len(means))).view(z.shape[:-1])

    def sample(self, n: int | None = None) -> Tensor:
        """Draws of the mixture: a component uniformly, then its Gaussian; with n, shape (n, B, D)."""
        shape = self.mu.shape if n is None else (n, *self.mu.shape)
        pick = torch.randint(len(self.components.mu), shape[:-1], device=self.mu.device)
        eps = torch.randn(shape, dtype=self.mu.dtype, device=self.mu.device)
        return self.components.mu[pick] + self.components.std[pick] * eps

    def detach(self) -> "GaussianMixture":
        return GaussianMixture(self.components.mu.detach(), self.components.logvar.detach(), self.mu.shape[0])
