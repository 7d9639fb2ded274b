"""IWAE as a training objective (Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders")
and the variants of Rainforth et al. 2018 ("Tighter Variational Bounds are Not Necessarily Better", sec. 4).

    w_k = p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x) reparameterised
    L_K(x) = log (1/K) sum_k w_k                          (Burda et al., eq. 8; K = 1 is the ELBO)
    MIWAE(M, K) = (1/M) sum_m L_K^(m)                     M independent bounds of K draws each
    CIWAE(beta) = beta ELBO + (1 - beta) L_K              ELBO = (1/K) sum_k log w_k, the same K draws
    PIWAE(M, K): the decoder (the generative network) ascends L_{MK}, the encoder MIWAE(M, K), on the
                 same M*K draws; two parameter groups, each stepped with the gradient of its own bound

Rainforth et al. show that a tighter bound (larger K) helps the generative network but weakens the
encoder's gradient signal (its signal-to-noise ratio falls as 1/sqrt(K)); MIWAE, CIWAE and PIWAE trade
the two. `model.samples` is K, `model.groups` M. The evaluation's IWAE bound is the same estimator
(vaekit.importance) with its own K. Training decodes K*M images per image of the batch: memory grows
with K*M * batch size, as in the papers (the gradient needs every draw at once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..config import applies_when
from ..errors import ConfigError
from ..importance import repeat_draws
from ..precision import full_precision
from .base import Batch
from .vae import VAE, VAEConfig

VARIANTS = ("iwae", "miwae", "ciwae", "piwae")


def _grouped(c) -> bool:
    return c.variant in ("miwae", "piwae")


def _combined(c) -> bool:
    return c.variant == "ciwae"


@dataclass(frozen=True)
class IWAEConfig(VAEConfig):
    samples: int = 5  # K: importance samples per bound
    variant: str = "iwae"  # iwae | miwae | ciwae | piwae (Rainforth et al. 2018)
    groups: int = field(default=1, metadata=applies_when(_grouped, "model.variant is 'miwae' or 'piwae'"))
    #   M: independent bounds of K draws (MIWAE's average; PIWAE's encoder target)
    ciwae_beta: float = field(default=0.5, metadata=applies_when(_combined, "model.variant = 'ciwae'"))
    #   beta of CIWAE: beta ELBO + (1 - beta) IWAE

    def __post_init__(self):
        super().__post_init__()
        if self.variant not in VARIANTS:
            raise ConfigError(f"model.variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.samples < 1 or self.groups < 1:
            raise ConfigError(f"model.samples and model.groups must be >= 1, got {self.samples} and {self.groups}")
        if not 0 <= self.ciwae_beta <= 1:
            raise ConfigError(f"model.ciwae_beta must lie in [0, 1], got {self.ciwae_beta}")
        if self.beta != 1 or self.prior_term != "kl" or self.capacity is not None:
            raise ConfigError("IWAE bounds log p(x) itself: it takes model.beta = 1, model.prior_term = 'kl' "
                              "and no model.capacity")


class IWAE(VAE):
    description = "IWAE: trained on the importance-weighted bound of K draws; MIWAE / CIWAE / PIWAE as model.variant"
    paper = "Burda, Grosse & Salakhutdinov 2016, Importance Weighted Autoencoders; Rainforth et al. 2018, " \
            "Tighter Variational Bounds are Not Necessarily Better"
    config_class = IWAEConfig

    @classmethod
    def tiny_settings(cls, preset) -> dict:
        return {**super().tiny_settings(preset), "samples": 3}

    def optim_groups(self):
        if self.config.variant != "piwae":
            return super().optim_groups()
        encoder = [p for p in self.encoder.parameters() if p.requires_grad]
        inference = {id(p) for p in encoder}
        generative = [p for p in self.parameters() if p.requires_grad and id(p) not in inference]
        return {"loss/encoder": encoder, "loss/decoder": generative}

    def log_weights(self, batch: Batch, draws: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """log w of `draws` reparameterised draws per image, (draws, B), with the per-image terms of the
        ELBO (recon over the draws, analytic KL) and the first draw's raw decoder output."""
        y = self.side_information(batch)
        x = batch.x
        q = self.encode(x, y)
        prior = self.prior(y, len(x))
        z = q.sample(draws)  # (draws, B, D)
        y_rep = None if y is None else repeat_draws(y, draws)
        params = self.raw_decode(z.reshape(draws * len(x), *z.shape[2:]), y_rep)  # (draws * B, C, H, W)
        log_px = full_precision(self.likelihood.log_prob(params, repeat_draws(x, draws))).view(draws, len(x))
        log_w = log_px + prior.log_prob(z) - q.log_prob(z)  # (draws, B)
        return log_w, -log_px.mean(0), q.kl(prior), params[:len(x)]

    def loss_and_output(self, batch: Batch, step: int = 0) -> tuple[dict[str, Tensor], Tensor]:
        c = self.config
        m = c.groups if c.variant in ("miwae", "piwae") else 1
        log_w, recon, kl, params = self.log_weights(batch, c.samples * m)
        per_group = log_w.view(m, c.samples, -1)  # (M, K, B): draw j*K + k is the k-th of group j
        iwae_k = (torch.logsumexp(per_group, 1) - math.log(c.samples)).mean(0)  # (B,) MIWAE(M, K); L_K if M = 1
        terms = {"recon": recon.mean(), "kl": kl.mean(), "elbo": -(recon + kl).mean(),
                 "bound": iwae_k.mean()}
        if c.variant in ("iwae", "miwae"):
            terms["loss"] = -iwae_k.mean()
        elif c.variant == "ciwae":
            terms["loss"] = -(c.ciwae_beta * log_w.mean(0) + (1 - c.ciwae_beta) * iwae_k).mean()
        else:  # piwae: the decoder's bound uses every draw at once
            iwae_mk = torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])
            terms.update({"loss/encoder": -iwae_k.mean(), "loss/decoder": -iwae_mk.mean(),
                          "bound/decoder": iwae_mk.mean()})
        return terms, self.likelihood.mean(params)
