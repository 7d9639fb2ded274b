"""One registry: name -> model class and preset config. `vaekit models` prints it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from ..config import from_dict
from ..errors import ConfigError
from ..schedules import Scheduled, at_step, scheduled_fields
from .base import DataFacts, GenerativeModel
from .dip_vae import DIPVAE, DIPVAEConfig, dip_vae_ii_preset
from .draw import DRAW, DRAWGAN, DRAWConfig, DRAWGANConfig
from .factor_vae import FactorVAE, FactorVAEConfig
from .introvae import IntroVAE, IntroVAEConfig
from .soft_introvae import SoftIntroVAE, SoftIntroVAEConfig
from .iwae import IWAE, IWAEConfig
from .m2 import M2, M2Config
from .ssl_vaegan import SSLVAEGAN, SSLVAEGANConfig
from .multistage import MultiStageVAE, msvae_preset, residual_vae_preset
from .vamp_prior import VampPriorConfig, VampPriorVAE
from .vae import AE, VAE, AEConfig, VAEConfig
from .vaegan import VAEGAN, VAEGANConfig
from .vq_vae import VQVAE, VQVAEConfig
from .wae import WAE, WAEConfig


@dataclass(frozen=True)
class ModelEntry:
    name: str
    model_class: type[GenerativeModel]
    preset: Any  # the config a user gets with no overrides
    description: str
    paper: str
    train: dict  # the train settings the model's preset brings (below a config file and --set)


MODELS: dict[str, ModelEntry] = {}


def register(name: str, model_class: type[GenerativeModel], preset: Any = None,
             description: str | None = None, paper: str | None = None, train: dict | None = None) -> None:
    MODELS[name] = ModelEntry(name, model_class, preset if preset is not None else model_class.config_class(),
                              description or model_class.description, paper or model_class.paper, dict(train or {}))


register("ae", AE, AEConfig())
register("vae", VAE, VAEConfig())
register("beta_vae", VAE, VAEConfig(beta=4.0), "beta-VAE: a VAE whose KL weight beta is 4 by default",
         "Higgins et al. 2017, beta-VAE: Learning basic visual concepts with a constrained variational framework")
register("beta_vae_b", VAE, VAEConfig(beta=1000.0, capacity=Scheduled("linear", 0.0, 25.0, 100_000)),
         "beta-VAE_B: gamma |KL - C| with the capacity C rising linearly from 0 to 25 nats over 100,000 steps",
         "Burgess et al. 2018, Understanding disentangling in beta-VAE")
register("btcvae", VAE, VAEConfig(prior_term="tc", beta=6.0),
         "beta-TCVAE: the KL split into MI, total correlation and dimension-wise KL, weighted alpha, beta, gamma",
         "Chen et al. 2018, Isolating Sources of Disentanglement in Variational Autoencoders")
register("iwae", IWAE, IWAEConfig())
# Kim & Mnih's appendix: Adam at 1e-4 for both, the discriminator's with beta1 = 0.5, beta2 = 0.9
register("factor_vae", FactorVAE, FactorVAEConfig(), train={"lr": 1e-4, "group_lr": {"loss/discriminator": 1e-4},
                                                            "group_adam_betas": {"loss/discriminator": [0.5, 0.9]}})
register("vamp_prior", VampPriorVAE, VampPriorConfig())
register("dip_vae", DIPVAE, DIPVAEConfig())
register("dip_vae_ii", DIPVAE, dip_vae_ii_preset(), "DIP-VAE-II: the ELBO plus moment matching of q(z)'s covariance to I")
register("wae_mmd", WAE, WAEConfig(latent_dim=8),
         "WAE-MMD: a deterministic autoencoder, its codes matched to N(0, I) by an IMQ-kernel MMD (lambda 10, d_z 8)")
# van den Oord et al.'s lr 2e-4 (sec. 4.1) and batch 128
register("vq_vae", VQVAE, VQVAEConfig(), train={"lr": 2e-4, "batch_size": 128})
register("residual_vae", MultiStageVAE, residual_vae_preset(),
         "Residual-VAE: the decoder followed by residual blocks, one likelihood on the refined output (eq. 2.9)")
register("msvae", MultiStageVAE, msvae_preset(),
         "Multi-stage VAE: likelihood on the coarse output, l1 refine loss on the refined one (eq. 2.12); "
         "any number of stages via model.stages")
register("introvae", IntroVAE, IntroVAEConfig(),
         "IntroVAE: the encoder tells real from generated images by its KL (Algorithm 1); settings tested on 28x28")
register("introvae_64", IntroVAE, IntroVAEConfig(beta=2.0, pretrain_epochs=0.1),
         "IntroVAE for 64x64 images: beta scaled to 2 (beta * pixels as at 28x28), m = 35, 0.1 epoch of VAE "
         "pre-training (alpha = 0) first; settings tested on 64x64")
# the authors' MNIST / Fashion-MNIST settings: beta_rec = beta_kl = 1, beta_neg = 256, z of 32, lr 2e-4, batch 128
register("soft_introvae", SoftIntroVAE, SoftIntroVAEConfig(), train={"lr": 2e-4, "batch_size": 128})
register("vaegan", VAEGAN, VAEGANConfig())
# the VAE/GAN survey's sec. 4.3 networks (DCGAN-like strided convolutions, latent 50), scaled to the image size by
# the conv encoder/decoder; its learning rates: 1e-3 for VAEs, 1e-4 with a GAN (sec. 4).
_SEED_NETWORKS = dict(latent_dim=50, base_channels=32, max_channels=128)
register("cvae", VAE, VAEConfig(condition="label", **_SEED_NETWORKS),
         "Conditional VAE: encoder, decoder (and optionally the prior) take a label or a kept image part",
         "Sohn, Lee & Yan 2015, Learning structured output representation using deep conditional generative models",
         train={"lr": 1e-3, "batch_size": 100})
register("cvae_gan", VAEGAN, VAEGANConfig(condition="label", **_SEED_NETWORKS),
         "CVAE-GAN: a CVAE with a (k+1)-class discriminator, the extra class for generated images",
         "When Variational Auto-encoders meet Generative Adversarial Networks (sec. 3.2); Larsen et al. 2016",
         train={"lr": 1e-4, "batch_size": 100})
# Semi-supervised (the VAE/GAN survey's sec. 4.5, its learning rates as above): train with --set data.labelled=N
register("m2", M2, M2Config(), train={"lr": 1e-3, "batch_size": 100})
register("ssl_vaegan", SSLVAEGAN, SSLVAEGANConfig(), train={"lr": 1e-4, "batch_size": 100})
# DRAW (Gregor et al.'s Table 3 settings: T = 64, read N = 2, write N = 5, z of 100, LSTMs of 256; their lr 1e-3)
register("draw", DRAW, DRAWConfig(), train={"lr": 1e-3, "batch_size": 100})
register("conditional_draw", DRAW, DRAWConfig(condition="label"),
         "Conditional DRAW: the one-hot label fed to DRAW's encoder and decoder at every step",
         "When Variational Auto-encoders meet Generative Adversarial Networks (sec. 2.4); Gregor et al. 2015",
         train={"lr": 1e-3, "batch_size": 100})
register("draw_gan", DRAWGAN, DRAWGANConfig(), train={"lr": 1e-4, "batch_size": 100})


def get_entry(name: str) -> ModelEntry:
    key = name.replace("-", "_")
    if key not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return MODELS[key]


def model_config(name: str, overrides: dict | None = None):
    """The preset config of `name` with `overrides` (a dict) applied, validated."""
    entry = get_entry(name)
    base = dataclasses.asdict(entry.preset)
    base.update(overrides or {})
    return from_dict(type(entry.preset), base, "model")


def build_model(name: str, config, image_shape) -> GenerativeModel:
    return get_entry(name).model_class.build(config, tuple(image_shape), CATALOGUE)


def _tensors(model) -> dict:
    """Every parameter and buffer, the non-persistent ones too (a fixed likelihood scale)."""
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def refuse_built_schedules(name: str, config, image_shape) -> None:
    """A schedule applies to a setting the model reads at every step (a loss weight); one it reads when it is
    built (a likelihood's initial scale, a network's size) would keep its first value silently. Such a setting
    is found by building the model at the schedule's start and at its end from one seed: their weights differ."""
    fields = scheduled_fields(config)
    if not fields:
        return
    first = at_step(config, 0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        reference = _tensors(build_model(name, first, image_shape))
        for field, schedule in fields.items():
            torch.manual_seed(0)
            try:
                built = _tensors(build_model(name, dataclasses.replace(first, **{field: schedule.end}), image_shape))
            except ConfigError:
                built = {}
            differing = [k for k in reference if k not in built or built[k].shape != reference[k].shape
                         or not torch.equal(built[k], reference[k])] or list(set(built) - set(reference))
            if differing:
                raise ConfigError(f"model.{field} is read when the model is built (it sets {differing[0]}), so it "
                                  "cannot follow a schedule; give it one value")


def settings_from_data(name: str, config, facts: DataFacts):
    """`config` with the settings model `name` takes from the data filled in (`settings_from_data`)."""
    return get_entry(name).model_class.fill_from_data(config, facts, CATALOGUE)


class Catalogue:
    """The registry as an object handed to models (`GenerativeModel.build`): a composite model (the
    multi-stage VAE) builds its parts by name through it, without importing this module."""

    def model_class(self, name: str) -> type[GenerativeModel]:
        return get_entry(name).model_class

    def config(self, name: str, overrides: dict | None = None):
        return model_config(name, overrides)

    def build(self, name: str, config, image_shape) -> GenerativeModel:
        return build_model(name, config, image_shape)

    def fill_from_data(self, name: str, config, facts: DataFacts):
        return settings_from_data(name, config, facts)


CATALOGUE = Catalogue()
