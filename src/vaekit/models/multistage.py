"""Residual-VAE and the multi-stage coarse-to-fine VAE (Cai, Gao & Ji 2017), on top of any model.

A base model with a decoder (VAE, beta-VAE, AE, ...) produces the coarse image f_theta1(z); refine
stages f_theta2, f_theta3, ... each map the previous stage's image to a finer one (sec. 2.3), and
may upsample it (sec. 2.4: coarse 32x32 -> fine 64x64). All stages are trained jointly:

    Residual-VAE (eq. 2.8-2.10):  L = -log p(x | f2(f1(z))) + KL            coarse_weight = 0,
                                                                              one stage with loss "likelihood"
    MSVAE        (eq. 2.11-2.14): L = -log p(x | f1(z)) + KL + L_rf(x, f2(f1(z)))   coarse_weight = 1,
                                                                              stage loss "l1" (sec. 3.1)

Generalised as the paper proposes: any number of stages, each with its own loss (l1, l2,
likelihood, feature, adversarial) and weight. The coarse term is the base model's `recon`, scaled by
`coarse_weight`; the refine losses reach every stage before them, the encoder included.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..nn import ConvEncoder, Refiner
from ..objectives.adversarial import discriminator_loss, generator_loss
from ..objectives.image_losses import feature_loss, l1_loss, l2_loss
from .base import Batch, GenerativeModel

REFINE_LOSSES = ("l1", "l2", "likelihood", "feature", "adversarial")


@dataclass(frozen=True)
class RefineStageConfig:
    loss: str = "l1"  # l1 | l2 | likelihood (the base's p(x|.)) | feature | adversarial
    weight: float = 1.0  # weight of this stage's loss in the total
    blocks: int = 5  # residual blocks (two 3x3 convolutions with batch norm and a skip, each)
    channels: int = 32  # width of the residual blocks (SRResNet uses 64; 32 keeps CPU training practical)
    upsample: int = 1  # 1, 2, 4 or 8: the stage's output is this many times larger than its input
    pixel_weight: float = 0.0  # adds pixel_weight * l1 to this stage (anchors feature/adversarial losses)
    norm: str = "batch"

    def __post_init__(self):
        if self.loss not in REFINE_LOSSES:
            raise ConfigError(f"refine stage loss must be one of {', '.join(REFINE_LOSSES)}, got {self.loss!r}")
        if self.weight < 0 or self.pixel_weight < 0:
            raise ConfigError("refine stage weight and pixel_weight must be >= 0")
        if self.blocks < 0 or self.channels < 1:
            raise ConfigError("refine stage blocks must be >= 0 and channels >= 1")
        if self.upsample not in (1, 2, 4, 8):
            raise ConfigError(f"refine stage upsample must be 1, 2, 4 or 8, got {self.upsample}")


@dataclass(frozen=True)
class MultiStageConfig:
    base: str = "vae"  # any registered model with a decoder
    base_settings: dict = field(default_factory=dict)  # the base model's own settings, e.g. {latent_dim = 128}
    coarse_weight: float = 1.0  # weight of the base's reconstruction term on f_theta1(z); 0 = Residual-VAE
    stages: tuple[RefineStageConfig, ...] = (RefineStageConfig(),)

    def __post_init__(self):
        if self.coarse_weight < 0:
            raise ConfigError(f"model.coarse_weight must be >= 0, got {self.coarse_weight}")
        if not self.stages:
            raise ConfigError("model.stages must name at least one refine stage")

    @property
    def upsample(self) -> int:
        return math.prod(s.upsample for s in self.stages)


class MultiStageVAE(GenerativeModel):
    description = "Multi-stage coarse-to-fine VAE: refine stages on any decoder, each with its own loss"
    paper = "Cai, Gao & Ji 2017, Multi-Stage Variational Auto-Encoders for Coarse-to-Fine Image Generation"
    config_class = MultiStageConfig

    def __init__(self, config: MultiStageConfig, image_shape, base: GenerativeModel):
        """Refine stages on `base`, a model built for `base_shape(config, image_shape)` (`build`)."""
        super().__init__(config, image_shape)
        c, h, w = image_shape
        self.base_shape = base_shape(config, image_shape)
        self.base = base
        if base.capabilities.posterior == "sequential":
            raise ConfigError(f"model.base={config.base!r} has a sequential posterior; refine stages build on a base "
                              "with one q(z|x)")
        if not base.capabilities.refinable:
            raise ConfigError(f"model.base={config.base!r} has no decoder output that refine stages could build on")
        self.refiners = nn.ModuleList(Refiner(c, s.channels, s.blocks, s.upsample, s.norm) for s in config.stages)
        self.stage_shapes = []
        size = self.base_shape[1:]
        for s in config.stages:
            size = (size[0] * s.upsample, size[1] * s.upsample)
            self.stage_shapes.append((c, *size))
        # A critic per adversarial stage; a frozen, randomly initialised feature network per feature stage
        # (random conv features as the perceptual distance: no pretrained weights exist offline).
        self.critics = nn.ModuleDict({str(i): ConvEncoder(self.stage_shapes[i], 1, norm="none")
                                      for i, s in enumerate(config.stages) if s.loss == "adversarial"})
        self.feature_nets = nn.ModuleDict()
        for i, s in enumerate(config.stages):
            if s.loss == "feature":
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(1234 + i)
                    net = ConvEncoder(self.stage_shapes[i], 1, norm="none")
                net.requires_grad_(False)
                self.feature_nets[str(i)] = net
        if any(s.loss == "likelihood" for s in config.stages) and not base.capabilities.likelihood:
            raise ConfigError(f"refine loss 'likelihood' needs a base with a likelihood; {config.base!r} has none")
        self.condition = base.condition  # a conditional base (cvae) makes a conditional multi-stage model
        self.classes = base.classes

    @classmethod
    def tiny_settings(cls, preset: MultiStageConfig) -> dict:
        """Tiny refine stages on the preset's base (a VAE) at toy widths."""
        return {"base_settings": {"latent_dim": 4, "base_channels": 4, "max_channels": 8},
                "stages": [{"blocks": 1, "channels": 4, "loss": s.loss} for s in preset.stages]}

    @classmethod
    def build(cls, config: MultiStageConfig, image_shape, models) -> "MultiStageVAE":
        if models.model_class(config.base) is cls:
            raise ConfigError("model.base must be a single-stage model (vae, beta_vae, ae, ...)")
        shape = base_shape(config, image_shape)
        return cls(config, image_shape, models.build(config.base, models.config(config.base, config.base_settings), shape))

    @property
    def capabilities(self):
        # the base's posterior, condition and likelihood; every stage's output decoded
        return dataclasses.replace(self.base.capabilities, output="stages", classifies=False, refinable=False)

    @classmethod
    def fill_from_data(cls, config: MultiStageConfig, facts, models):
        """The base model's settings from the data (a beta-TCVAE base's N), kept in base_settings."""
        from ..config import to_dict

        base = models.config(config.base, config.base_settings)
        filled = models.fill_from_data(config.base, base, facts)
        derived = {k: v for k, v in to_dict(filled).items() if v != to_dict(base)[k]}
        if not derived:
            return config
        return dataclasses.replace(config, base_settings={**config.base_settings, **derived})

    # --- optimisation -------------------------------------------------------------------
    def optim_groups(self) -> dict[str, list[nn.Parameter]]:
        main = [p for p in [*self.base.parameters(), *self.refiners.parameters()] if p.requires_grad]
        groups = {"loss": main}
        if len(self.critics):
            groups["loss/discriminator"] = list(self.critics.parameters())
        return groups

    def _down(self, x: Tensor, shape) -> Tensor:
        return x if x.shape[-2:] == tuple(shape[-2:]) else F.interpolate(x, size=shape[-2:], mode="area")

    def loss_and_output(self, batch: Batch, step: int = 0) -> tuple[dict[str, Tensor], Tensor]:
        cfg, x = self.config, batch.x
        terms, image = self.base.loss_and_output(Batch(self._down(x, self.base_shape), batch.y, batch.side), step)
        # eq. 2.12's L_l2 on f_theta1(z); a base may report no total (an evaluation batch too small for
        # beta-TCVAE's estimators), and then neither does this model
        total = terms["loss"] - (1.0 - cfg.coarse_weight) * terms["recon"] if "loss" in terms else None
        out = dict(terms)
        d_loss = None
        last_nll = None
        for i, (stage, refiner) in enumerate(zip(cfg.stages, self.refiners)):
            params = refiner(image)  # (B, C, H_i, W_i) raw
            image = torch.sigmoid(params)
            target = self._down(x, self.stage_shapes[i])
            name = f"stage{i + 1}"
            if stage.loss == "likelihood":
                per_image = -self.base.likelihood.log_prob(params, target)
                last_nll = per_image
            elif stage.loss == "l1":
                per_image = l1_loss(image, target)
            elif stage.loss == "l2":
                per_image = l2_loss(image, target)
            elif stage.loss == "feature":
                per_image = feature_loss(self.feature_nets[str(i)].feature_maps, image, target)
            else:  # adversarial
                critic = self.critics[str(i)]
                per_image = generator_loss(critic(image))
                real, fake = discriminator_loss(critic(target), critic(image.detach()))
                d_loss = (real + fake).mean() if d_loss is None else d_loss + (real + fake).mean()
                out[f"{name}/d_real"], out[f"{name}/d_fake"] = real.mean(), fake.mean()
            out[f"{name}/refine"] = per_image.mean()
            stage_loss = per_image.mean()
            if stage.pixel_weight:
                pixel = l1_loss(image, target).mean()
                out[f"{name}/l1"] = pixel
                stage_loss = stage_loss + stage.pixel_weight * pixel
            total = total + stage.weight * stage_loss if total is not None else None
        if total is not None:
            out["loss"] = total
        if last_nll is not None and "kl" in terms:  # the ELBO of the refined decoder (Residual-VAE)
            out["elbo"] = -(last_nll.mean() + terms["kl"])
        if d_loss is not None:
            out["loss/discriminator"] = d_loss
        return out, image

    # --- use: y is the side information of the base (at its resolution, `side_information`) ----
    def make_side_information(self, batch: Batch) -> Tensor | None:
        return self.base.side_information(Batch(self._down(batch.x, self.base_shape), batch.y))

    def kept_side_information(self, x: Tensor, mask: Tensor) -> Tensor:
        """The kept part at the base's resolution, as the base was trained on it."""
        return self.base.kept_side_information(self._down(x, self.base_shape), self._mask_at(mask, self.base_shape))

    def encode(self, x: Tensor, y: Tensor | None = None):
        return self.base.encode(self._down(x, self.base_shape), y)

    def latent_code(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.base.latent_code(self._down(x, self.base_shape), y)

    def prior(self, y: Tensor | None = None, n: int | None = None):
        return self.base.prior(y, n)

    def decode_stages(self, z: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """{"coarse": f1(z), "refine1": f2(f1(z)), ...}: every stage's image, in order."""
        image = self.base.decode(z, y)
        stages = {"coarse": image}
        for i, refiner in enumerate(self.refiners):
            image = torch.sigmoid(refiner(image))
            stages[f"refine{i + 1}"] = image
        return stages

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return list(self.decode_stages(z, y).values())[-1]

    def log_likelihood(self, x: Tensor, z: Tensor, y: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """log p(x|z, y) of the model's probabilistic decoder: the last stage with a likelihood loss
        (Residual-VAE), else the base's likelihood of the coarse image (MSVAE's ELBO is the VAE's);
        with `mask` (at the image's resolution), of the pixels where it is 1."""
        last = max((i for i, s in enumerate(self.config.stages) if s.loss == "likelihood"), default=None)
        if last is None:
            shape = self.base_shape
            return self.base.log_likelihood(self._down(x, shape), z, y, self._mask_at(mask, shape))
        image = self.base.decode(z, y)
        for i in range(last + 1):
            params = self.refiners[i](image)
            image = torch.sigmoid(params)
        shape = self.stage_shapes[last]
        return self.base.likelihood.log_prob(params, self._down(x, shape), self._mask_at(mask, shape))

    def _mask_at(self, mask: Tensor | None, shape) -> Tensor | None:
        return None if mask is None else (self._down(mask.float(), shape) > 0.5).float()


def base_shape(config: MultiStageConfig, image_shape) -> tuple[int, int, int]:
    """The image size the base model works at: the run's, divided by the stages' total upsampling."""
    c, h, w = image_shape
    up = config.upsample
    if h % up or w % up:
        raise ConfigError(f"{h}x{w} images cannot be reached by refine stages upsampling x{up} in total")
    return (c, h // up, w // up)


def residual_vae_preset() -> MultiStageConfig:
    return MultiStageConfig(coarse_weight=0.0, stages=(RefineStageConfig(loss="likelihood"),))


def msvae_preset() -> MultiStageConfig:
    return MultiStageConfig(coarse_weight=1.0, stages=(RefineStageConfig(loss="l1"),))


__all__ = ["MultiStageVAE", "MultiStageConfig", "RefineStageConfig", "residual_vae_preset", "msvae_preset"]
