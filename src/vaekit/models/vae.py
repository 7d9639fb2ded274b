"""VAE (Kingma & Welling 2014), beta-VAE (Higgins et al. 2017) and beta-TCVAE (Chen et al. 2018),
with a plain autoencoder beside. The three VAEs differ only in the prior term, so they are one class.

ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || N(0, I))    (Kingma & Welling 2014, eq. 3 / 10)
beta-VAE optimises E_q[log p(x|z)] - beta * KL         (Higgins et al. 2017, eq. 4)
beta-TCVAE: E_q[log p(x|z)] - alpha*MI - beta*TC - gamma*DWKL, the KL split into index-code mutual
information, total correlation and dimension-wise KL, estimated on the minibatch (Chen et al. 2018,
eq. 2 and 4; the overview paper's section V).
beta-VAE_B: E_q[log p(x|z)] - gamma * |KL - C|, the capacity C raised linearly during training
(Burgess et al. 2018, "Understanding disentangling in beta-VAE", sec. 5; gamma is model.beta here, C a
schedule of model.capacity, vaekit.schedules).
Reconstruction and KL are summed over pixels and latent dimensions and averaged over the batch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from torch import Tensor

from ..conditioning import ConditionConfig
from ..config import applies_when
from ..errors import ConfigError
from ..objectives.total_correlation import ESTIMATORS, beta_tc_penalty
from .autoencoder import DeterministicEncoder, FittedCodeGaussian, GaussianAutoencoder
from .base import Batch
from .observation import LikelihoodConfig, LikelihoodDecoder


def _is_tc(c) -> bool:
    return c.prior_term == "tc"


_TC = "model.prior_term = 'tc' (beta-TCVAE)"
_KL = "model.prior_term = 'kl'"


def _is_kl(c) -> bool:
    return c.prior_term == "kl"



@dataclass(frozen=True)
class VAEConfig(LikelihoodConfig, ConditionConfig):
    """A VAE; with `condition` a CVAE (Sohn et al. 2015; the VAE/GAN survey's sec. 2.2): encoder, decoder and
    optionally the prior take side information y (vaekit.conditioning)."""

    beta: float = 1.0  # weight of the KL term; 1 is the ELBO, > 1 is beta-VAE
    prior_term: str = "kl"  # kl: beta * KL | tc: alpha*MI + beta*TC + gamma*DWKL (beta-TCVAE)
    alpha: float = field(default=1.0, metadata=applies_when(_is_tc, _TC))  # weight of the index-code MI
    gamma: float = field(default=1.0, metadata=applies_when(_is_tc, _TC))  # weight of the dimension-wise KL
    tc_estimator: str = field(default="mss", metadata=applies_when(_is_tc, _TC))
    #   mss (minibatch-stratified) or mws (minibatch-weighted; its logged terms are offset by constants
    #   of log N; its gradients differ from MSS's unless the batch is the whole data set)
    dataset_size: int = field(default=0, metadata=applies_when(_is_tc, _TC))
    #   N of the estimators; 0 = the training set's size, set by the run
    capacity: float | None = field(default=None, metadata=applies_when(_is_kl, _KL))
    #   C of beta-VAE_B (Burgess et al. 2018): the loss weighs |KL - C| by beta instead of KL; usually a
    #   schedule rising linearly, e.g. {schedule = "linear", start = 0, end = 25, steps = 100000}

    def __post_init__(self):
        super().__post_init__()
        if self.beta < 0:
            raise ConfigError(f"model.beta must be >= 0, got {self.beta}")
        if self.prior_term not in ("kl", "tc"):
            raise ConfigError(f"model.prior_term must be 'kl' or 'tc', got {self.prior_term!r}")
        if self.tc_estimator not in ESTIMATORS:
            raise ConfigError(f"model.tc_estimator must be one of {', '.join(ESTIMATORS)}, got {self.tc_estimator!r}")
        if self.capacity is not None and self.capacity < 0:
            raise ConfigError(f"model.capacity must be >= 0 (nats), got {float(self.capacity)}")
        if self.dataset_size < 0 or self.alpha < 0 or self.gamma < 0:
            raise ConfigError("model.dataset_size, model.alpha and model.gamma must be >= 0")
        self.check_condition()
        if self.prior_term == "tc" and self.prior == "learned":
            raise ConfigError("model.prior_term = 'tc' decomposes the KL to N(0, I); it cannot use model.prior = 'learned'")


# beta-TCVAE's MI / TC / DWKL are minibatch estimates: on an evaluation batch of fewer images they are
# badly biased (and the stratified estimator needs two), so such a batch reports recon, kl, elbo only.
TC_EVAL_MIN_BATCH = 64


class VAE(LikelihoodDecoder, GaussianAutoencoder):
    description = "Variational autoencoder; beta > 1 gives beta-VAE"
    paper = "Kingma & Welling 2014, Auto-Encoding Variational Bayes; Higgins et al. 2017, beta-VAE"
    config_class = VAEConfig

    def __init__(self, config: VAEConfig, image_shape):
        super().__init__(config, image_shape)
        self.likelihood = config.make_likelihood()

    @classmethod
    def settings_from_data(cls, config: VAEConfig, facts):
        config = super().settings_from_data(config, facts)
        if config.prior_term == "tc" and config.dataset_size == 0:
            return dataclasses.replace(config, dataset_size=facts.train_images)
        return config

    def elbo_pass(self, x: Tensor, y: Tensor | None = None):
        """One pass of the ELBO: q(z|x, y), a draw z ~ q (B, D), the decoder's raw likelihood parameters
        (B, C, H, W), -log p(x|z, y) and the KL term (`kl_term`), each (B,)."""
        q = self.encode(x, y)
        z = q.sample()
        params = self.raw_decode(z, y)
        return q, z, params, -self.likelihood.log_prob(params, x), self.kl_term(q, z, y)

    def kl_term(self, q, z: Tensor, y: Tensor | None) -> Tensor:
        """KL(q(z|x, y) || p(z|y)) per image, (B,): analytic for the Gaussian priors (a mixture prior estimates
        it from the draw z)."""
        return q.kl(self.prior(y, len(z)))

    def loss_and_output(self, batch: Batch, step: int = 0) -> tuple[dict[str, Tensor], Tensor]:
        y = self.side_information(batch)
        q, z, params, recon, kl = self.elbo_pass(batch.x, y)
        terms = {"recon": recon.mean(), "kl": kl.mean(), "elbo": -(recon + kl).mean()}
        c = self.config
        if c.prior_term == "kl" and c.capacity is not None:  # beta-VAE_B: the KL pulled towards capacity C
            terms["loss"] = (recon + c.beta * (kl - c.capacity).abs()).mean()
        elif c.prior_term == "kl":
            terms["loss"] = (recon + c.beta * kl).mean()
        elif self.training or len(batch.x) >= TC_EVAL_MIN_BATCH:
            if c.dataset_size < 1:
                raise ConfigError("model.dataset_size must be set for prior_term='tc' (the run sets it from the data)")
            parts = beta_tc_penalty(q, z, c.dataset_size, c.alpha, c.beta, c.gamma, c.tc_estimator)
            terms["loss"] = (recon + parts["penalty"]).mean()
            terms.update({f"tc/{k}": parts[k].mean() for k in ("mi", "tc", "dwkl")})
        # else: an evaluation batch too small for the minibatch estimators: no total, no tc/* terms
        return terms, self.likelihood.mean(params)


@dataclass(frozen=True)
class AEConfig(LikelihoodConfig):
    code_momentum: float = 0.01  # running fit of the codes' mean/variance, used by `sample`

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.code_momentum <= 1:
            raise ConfigError(f"model.code_momentum must lie in (0, 1], got {self.code_momentum}")


class AE(LikelihoodDecoder, FittedCodeGaussian, DeterministicEncoder):
    """Deterministic autoencoder trained on -log p(x|z). It has no prior, so `sample` draws from a
    diagonal Gaussian fitted to the training codes (running mean/variance, like batch norm's)."""

    description = "Deterministic autoencoder (samples from a Gaussian fitted to its codes)"
    paper = "Hinton & Salakhutdinov 2006, Reducing the dimensionality of data with neural networks"
    config_class = AEConfig

    def __init__(self, config: AEConfig, image_shape):
        super().__init__(config, image_shape)
        self.likelihood = config.make_likelihood()
        self.register_code_fit(config.latent_dim)

    def loss_and_output(self, batch: Batch, step: int = 0) -> tuple[dict[str, Tensor], Tensor]:
        z = self.latent_code(batch.x)  # (B, D)
        if self.training:
            self.fit_codes(z)
        params = self.decoder(z)
        recon = -self.likelihood.log_prob(params, batch.x)
        return {"loss": recon.mean(), "recon": recon.mean()}, self.likelihood.mean(params)
