"""VAE (Kingma & Welling 2014), beta-VAE (Higgins et al. 2017) and beta-TCVAE (Chen et al. 2018),
with a plain autoencoder beside. The three VAEs differ only in the prior term, so they are one class.

ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || N(0, I))    (Kingma & Welling 2014, eq. 3 / 10)
beta-VAE optimises E_q[log p(x|z)] - beta * KL         (Higgins et al. 2017, eq. 4)
beta-TCVAE: E_q[log p(x|z)] - alpha*MI - beta*TC - gamma*DWKL, the KL split into index-code mutual
information, total correlation and dimension-wise KL, estimated on the minibatch (Chen et al. 2018,
eq. 2 and 4; the overview paper's section V).
Reconstruction and KL are summed over pixels and latent dimensions and averaged over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..distributions import DiagonalGaussian
from ..errors import ConfigError
from ..likelihoods import LIKELIHOODS, make_likelihood
from ..nn import check_network_settings, make_decoder, make_encoder
from ..objectives.total_correlation import ESTIMATORS, beta_tc_penalty
from ..precision import full_precision
from .base import Batch, GenerativeModel


@dataclass(frozen=True)
class VAEConfig:
    latent_dim: int = 32
    beta: float = 1.0  # weight of the KL term; 1 is the ELBO, > 1 is beta-VAE
    likelihood: str = "bernoulli"  # bernoulli | gaussian | laplace
    scale: float = 0.1  # sigma (gaussian) or b (laplace); initial value when learn_scale
    learn_scale: bool = False  # learn one shared scale (sigma-VAE) instead of fixing it
    architecture: str = "conv"  # conv: stride-2 convolutions | resnet: IntroVAE's residual network (appendix B)
    #                             | mlp: fully connected (Chen et al. 2018's dSprites networks)
    base_channels: int = 32  # width of the first conv layer, doubled per halving
    max_channels: int = 256
    norm: str = "batch"  # batch | none
    downsamples: int = 0  # stride-2 convolutions in the encoder (mirrored in the decoder); 0 = until <= 7 px
    mlp_widths: tuple[int, ...] = (1200, 1200)  # mlp only: encoder hidden layers (ReLU)
    mlp_decoder_widths: tuple[int, ...] = (1200, 1200, 1200)  # mlp only: decoder hidden layers (tanh)
    prior_term: str = "kl"  # kl: beta * KL | tc: alpha*MI + beta*TC + gamma*DWKL (beta-TCVAE)
    alpha: float = 1.0  # tc only: weight of the index-code mutual information
    gamma: float = 1.0  # tc only: weight of the dimension-wise KL
    tc_estimator: str = "mss"  # tc only: mss (minibatch-stratified) or mws (minibatch-weighted; its logged
    #                            terms are offset by constants of log N, its gradients are the same)
    dataset_size: int = 0  # tc only: N of the estimators; 0 = the training set's size, set by the run

    def __post_init__(self):
        check_network_settings(self)
        if self.beta < 0:
            raise ConfigError(f"model.beta must be >= 0, got {self.beta}")
        if self.likelihood not in LIKELIHOODS:
            raise ConfigError(f"model.likelihood must be one of {', '.join(LIKELIHOODS)}, got {self.likelihood!r}")
        if not self.scale > 0:
            raise ConfigError(f"model.scale must be > 0, got {self.scale}")
        if self.prior_term not in ("kl", "tc"):
            raise ConfigError(f"model.prior_term must be 'kl' or 'tc', got {self.prior_term!r}")
        if self.tc_estimator not in ESTIMATORS:
            raise ConfigError(f"model.tc_estimator must be one of {', '.join(ESTIMATORS)}, got {self.tc_estimator!r}")
        if self.dataset_size < 0 or self.alpha < 0 or self.gamma < 0:
            raise ConfigError("model.dataset_size, model.alpha and model.gamma must be >= 0")


class ConvAutoencoderBase(GenerativeModel):
    """An encoder emitting `code_width_factor * latent_dim` features and a decoder emitting raw image
    parameters, built from the shared network settings (`nn.check_network_settings`). The decoded
    mean image is sigmoid(decoder(z)) unless a subclass decodes through a likelihood."""

    code_width_factor = 1  # features per latent dimension the encoder emits

    def __init__(self, config, image_shape):
        super().__init__(config, image_shape)
        c = config
        self.encoder = make_encoder(c, image_shape, self.code_width_factor * c.latent_dim)
        self.decoder = make_decoder(c, c.latent_dim, image_shape)

    def decode(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.decoder(z))  # (B, C, H, W) in [0, 1]


class GaussianAutoencoder(ConvAutoencoderBase):
    """q(z|x) = N(mu, diag exp(logvar)) from the encoder and the prior N(0, I): what VAE, IntroVAE and
    VAE-GAN share; they differ in their objectives and parameter groups."""

    code_width_factor = 2  # mu and logvar

    def encode(self, x: Tensor) -> DiagonalGaussian:
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (B, D) each
        return DiagonalGaussian(mu, logvar)

    def prior_sample(self, n: int) -> Tensor:
        return torch.randn(n, self.config.latent_dim, device=self.device)  # p(z) = N(0, I)


class LikelihoodDecoder:
    """Mixin: decode and score through `self.likelihood` (a probabilistic decoder p(x|z))."""

    def decode(self, z: Tensor) -> Tensor:
        return self.likelihood.mean(self.decoder(z))

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) per image, (B,)."""
        return self.likelihood.log_prob(self.decoder(z), x)


class VAE(LikelihoodDecoder, GaussianAutoencoder):
    description = "Variational autoencoder; beta > 1 gives beta-VAE"
    paper = "Kingma & Welling 2014, Auto-Encoding Variational Bayes; Higgins et al. 2017, beta-VAE"
    config_class = VAEConfig

    def __init__(self, config: VAEConfig, image_shape):
        super().__init__(config, image_shape)
        self.likelihood = make_likelihood(config.likelihood, config.scale, config.learn_scale)

    def loss_and_output(self, batch: Batch, step: int = 0) -> tuple[dict[str, Tensor], Tensor]:
        q = self.encode(batch.x)
        z = q.sample()  # (B, D)
        params = self.decoder(z)  # (B, C, H, W) raw likelihood parameters
        recon = -self.likelihood.log_prob(params, batch.x)  # (B,)  -log p(x|z)
        kl = q.kl()  # (B,) analytic
        terms = {"recon": recon.mean(), "kl": kl.mean(), "elbo": -(recon + kl).mean()}
        if self.config.prior_term == "kl":
            terms["loss"] = (recon + self.config.beta * kl).mean()
        else:
            c = self.config
            if c.dataset_size < 1:
                raise ConfigError("model.dataset_size must be set for prior_term='tc' (the run sets it from the data)")
            parts = beta_tc_penalty(q, z, c.dataset_size, c.alpha, c.beta, c.gamma, c.tc_estimator)
            terms["loss"] = (recon + parts["penalty"]).mean()
            terms.update({f"tc/{k}": parts[k].mean() for k in ("mi", "tc", "dwkl")})
        return terms, self.likelihood.mean(params)


@dataclass(frozen=True)
class AEConfig(VAEConfig):
    code_momentum: float = 0.01  # running fit of the codes' mean/variance, used by `sample`

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.code_momentum <= 1:
            raise ConfigError(f"model.code_momentum must lie in (0, 1], got {self.code_momentum}")


class AE(LikelihoodDecoder, ConvAutoencoderBase):
    """Deterministic autoencoder trained on -log p(x|z). It has no prior, so `sample` draws from a
    diagonal Gaussian fitted to the training codes (running mean/variance, like batch norm's)."""

    description = "Deterministic autoencoder (samples from a Gaussian fitted to its codes)"
    paper = "Hinton & Salakhutdinov 2006, Reducing the dimensionality of data with neural networks"
    config_class = AEConfig
    has_posterior = False  # no q(z|x): ELBO and IWAE do not apply

    def __init__(self, config: AEConfig, image_shape):
        super().__init__(config, image_shape)
        self.likelihood = make_likelihood(config.likelihood, config.scale, config.learn_scale)
        self.register_buffer("code_mean", torch.zeros(config.latent_dim))
        self.register_buffer("code_var", torch.ones(config.latent_dim))

    def encode(self, x: Tensor) -> DiagonalGaussian:
        z = self.encoder(x)
        return DiagonalGaussian(z, torch.full_like(z, -30.0))  # a point mass, for a uniform API

    def latent_code(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def loss_and_output(self, batch: Batch, step: int = 0) -> tuple[dict[str, Tensor], Tensor]:
        z = full_precision(self.encoder(batch.x))  # (B, D)
        if self.training:
            with torch.no_grad():
                m = self.config.code_momentum
                self.code_mean.lerp_(z.mean(0), m)
                self.code_var.lerp_(z.var(0, unbiased=False), m)
        params = self.decoder(z)
        recon = -self.likelihood.log_prob(params, batch.x)
        return {"loss": recon.mean(), "recon": recon.mean()}, self.likelihood.mean(params)

    def prior_sample(self, n: int) -> Tensor:
        return self.code_mean + self.code_var.sqrt() * torch.randn(n, self.config.latent_dim, device=self.device)
