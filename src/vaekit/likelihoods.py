"""Observation models p(x|z) for images in [0, 1].

The decoder emits raw parameters (B, C, H, W); a likelihood turns them into a log-density and a
mean image. Every `log_prob` is summed over pixels and channels, one value per image, in nats —
never a per-pixel mean, which would silently rescale beta (a PyTorch-VAE bug report).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ConfigError
from .precision import full_precision

LIKELIHOODS = ("bernoulli", "gaussian", "laplace")


def _per_image_sum(t: Tensor, mask: Tensor | None = None) -> Tensor:
    """Sum over pixels and channels; with `mask` (broadcastable to t), of the pixels where it is 1."""
    return (t if mask is None else t * mask).flatten(1).sum(1)


class Likelihood(nn.Module):
    """Base: `log_prob(params, x, mask=None) -> (B,)` (of the pixels where `mask` is 1, if given: the
    observed part when completing an image), `mean(params) -> (B, C, H, W)` in [0, 1]."""

    def log_prob(self, params: Tensor, x: Tensor, mask: Tensor | None = None) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def mean(self, params: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class Bernoulli(Likelihood):
    """p(x|z) = prod Bern(x; sigmoid(logits)). Grey levels are used as soft targets, as is usual
    for (Fashion-)MNIST; the value is then a cross-entropy, not a normalised density."""

    def log_prob(self, params: Tensor, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return -_per_image_sum(F.binary_cross_entropy_with_logits(full_precision(params), x, reduction="none"), mask)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(full_precision(params))


class _LocationScale(Likelihood):
    """Location = sigmoid(params) so means stay in the image range; one scale shared by all
    pixels, either fixed or learned (a single log-scale parameter, as in sigma-VAE)."""

    def __init__(self, scale: float, learn_scale: bool = False):
        super().__init__()
        if not scale > 0:
            raise ConfigError(f"likelihood scale must be > 0, got {scale}")
        log_scale = torch.tensor(math.log(scale))
        if learn_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale, persistent=False)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(full_precision(params))


class Gaussian(_LocationScale):
    """p(x|z) = prod N(x; mu, sigma^2)."""

    def log_prob(self, params: Tensor, x: Tensor, mask: Tensor | None = None) -> Tensor:
        mu = torch.sigmoid(full_precision(params))
        log_sigma = self.log_scale
        lp = -0.5 * (x - mu).pow(2) * torch.exp(-2.0 * log_sigma) - log_sigma - 0.5 * math.log(2 * math.pi)
        return _per_image_sum(lp, mask)


class Laplace(_LocationScale):
    """p(x|z) = prod Laplace(x; mu, b)."""

    def log_prob(self, params: Tensor, x: Tensor, mask: Tensor | None = None) -> Tensor:
        mu = torch.sigmoid(full_precision(params))
        log_b = self.log_scale
        lp = -(x - mu).abs() * torch.exp(-log_b) - log_b - math.log(2.0)
        return _per_image_sum(lp, mask)


_BUILDERS = {
    "bernoulli": lambda scale, learn_scale: Bernoulli(),
    "gaussian": Gaussian,
    "laplace": Laplace,
}


def make_likelihood(name: str, scale: float = 0.1, learn_scale: bool = False) -> Likelihood:
    """`scale` is sigma (gaussian) or b (laplace): fixed, or the initial value when learned."""
    if name not in _BUILDERS:
        raise ConfigError(f"unknown likelihood {name!r}; choose one of {', '.join(LIKELIHOODS)}")
    return _BUILDERS[name](scale, learn_scale)
