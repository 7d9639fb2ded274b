"""The observation model p(x|z) as a model part: its settings (which likelihood, its scale) and the
decoder mixin that decodes and scores through it (vaekit.likelihoods). AE, VAE, M2 and DRAW share it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from torch import Tensor

from ..config import applies_when
from ..errors import ConfigError
from ..likelihoods import LIKELIHOODS, make_likelihood
from ..nn.config import NetworkConfig

_SCALED = "model.likelihood is 'gaussian' or 'laplace'"


def _has_scale(c) -> bool:
    return c.likelihood in ("gaussian", "laplace")


@dataclass(frozen=True)
class ObservationConfig:
    """The observation model p(x|z): which likelihood, and its scale."""

    likelihood: str = "bernoulli"  # bernoulli | gaussian | laplace
    scale: float = field(default=0.1, metadata=applies_when(_has_scale, _SCALED))
    #   sigma (gaussian) or b (laplace); the initial value when learn_scale
    learn_scale: bool = field(default=False, metadata=applies_when(_has_scale, _SCALED))
    #   learn one shared scale (sigma-VAE) instead of fixing it

    def make_likelihood(self):
        """The observation model these settings name (vaekit.likelihoods)."""
        return make_likelihood(self.likelihood, self.scale, self.learn_scale)

    def check_observation(self) -> None:
        if self.likelihood not in LIKELIHOODS:
            raise ConfigError(f"model.likelihood must be one of {', '.join(LIKELIHOODS)}, got {self.likelihood!r}")
        if not self.scale > 0:
            raise ConfigError(f"model.scale must be > 0, got {self.scale}")


@dataclass(frozen=True)
class LikelihoodConfig(NetworkConfig, ObservationConfig):
    """The network and the observation model p(x|z): what AE and VAE share."""

    def __post_init__(self):
        super().__post_init__()
        self.check_observation()


class LikelihoodDecoder:
    """Mixin: decode and score through `self.likelihood` (a probabilistic decoder p(x|z))."""

    @property
    def capabilities(self):
        return dataclasses.replace(super().capabilities, likelihood=True)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.likelihood.mean(self.raw_decode(z, y))

    def log_likelihood(self, x: Tensor, z: Tensor, y: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """log p(x|z, y) per image, (B,); with `mask`, of the pixels where it is 1 only."""
        return self.likelihood.log_prob(self.raw_decode(z, y), x, mask)


