"""VAE-GAN with the learned similarity of Larsen et al. 2016 ("Autoencoding beyond pixels using a
learned similarity metric"), as section 3.1 of "When VAEs meet GANs" specifies it.

Reconstruction is measured in the discriminator's l-th layer, a Gaussian in feature space:
    L_llike = ||f_l(x) - f_l(x~)||^2 / 2 sigma^2 (sigma = 1), x~ = Dec(z), z ~ q(z|x)
Generator (eq. 2):     L_G = L_KL + L_llike - log D(Dec(z_p)) - log D(Dec(Enc(x)))
Discriminator (eq. 3): L_D = -log D(x) - log(1 - D(Dec(z_p))) - log(1 - D(Dec(Enc(x))))
with z_p ~ N(0, I). The usual weighting (Larsen et al., eq. 9 / Algorithm 1) splits the generator:
the encoder minimises beta * L_KL + L_llike, the decoder gamma * L_llike + L_GAN; the
discriminator minimises L_D only (the similarity never trains it). Three parameter groups, stepped
together after all three gradients are computed, each from its own loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError
from ..nn import ConvEncoder
from ..nn.config import NetworkConfig
from ..objectives.adversarial import discriminator_loss, generator_loss
from ..objectives.image_losses import l2_loss
from ..precision import full_precision
from .base import Batch
from .vae import GaussianAutoencoder


@dataclass(frozen=True)
class VAEGANConfig(NetworkConfig):
    beta: float = 1.0  # weight of the KL in the encoder's loss
    gamma: float = 1.0  # Larsen's gamma: the decoder's weight on L_llike against the GAN term
    adversarial_weight: float = 1.0  # weight of the decoder's GAN term (eq. 2's -log D terms)
    feature_layer: int = -1  # l: which discriminator stage gives f_l (0 = first conv stage, -1 = last)
    pixel_weight: float = 0.0  # optional 1/2 ||x - x~||^2 added to encoder and decoder (a pixel anchor)
    discriminator_channels: int = 32  # width of the discriminator's first stage, doubled per halving
    discriminator_norm: str = "batch"  # batch | none
    #   the encoder/decoder settings (NetworkConfig): conv by default, DCGAN-like as Larsen et al.'s

    def __post_init__(self):
        super().__post_init__()
        if self.discriminator_channels < 1:
            raise ConfigError(f"model.discriminator_channels must be >= 1, got {self.discriminator_channels}")
        if self.discriminator_norm not in ("batch", "none"):
            raise ConfigError(f"model.discriminator_norm must be 'batch' or 'none', got {self.discriminator_norm!r}")
        for name in ("beta", "gamma", "adversarial_weight", "pixel_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"model.{name} must be >= 0, got {getattr(self, name)}")


class VAEGAN(GaussianAutoencoder):
    description = "VAE-GAN: reconstruction in a discriminator's features (learned similarity), GAN loss on samples"
    paper = "Larsen et al. 2016, Autoencoding beyond pixels using a learned similarity metric"
    config_class = VAEGANConfig

    def __init__(self, config: VAEGANConfig, image_shape):
        super().__init__(config, image_shape)  # encoder and decoder
        c = config
        self.discriminator = ConvEncoder(image_shape, 1, c.discriminator_channels, c.max_channels,
                                         c.discriminator_norm, downsamples=c.downsamples)
        stages = sum(isinstance(m, torch.nn.LeakyReLU) for m in self.discriminator.features)
        if not -stages <= c.feature_layer < stages:
            raise ConfigError(f"model.feature_layer={c.feature_layer} but the discriminator has {stages} stages "
                              f"(0..{stages - 1}, or negative from the end)")

    def optim_groups(self):
        return {"loss/encoder": list(self.encoder.parameters()), "loss/decoder": list(self.decoder.parameters()),
                "loss/discriminator": list(self.discriminator.parameters())}

    def loss(self, batch: Batch, step: int = 0, phase: int = 0) -> dict[str, Tensor]:
        c, x, l = self.config, batch.x, self.config.feature_layer
        q = self.encode(x)
        z = q.sample()  # (B, D)
        x_tilde = self.decode(z)  # Dec(Enc(x))
        x_p = self.decode(torch.randn_like(z))  # Dec(z_p)
        kl = q.kl()  # (B,)

        real_logit, real_maps = self.discriminator.forward_with_features(x)
        tilde_logit, tilde_maps = self.discriminator.forward_with_features(x_tilde)
        p_logit = self.discriminator(x_p)
        llike = 0.5 * l2_loss(tilde_maps[l], real_maps[l].detach())  # (B,) L_llike^{Dis_l}, sigma = 1
        gan_g = generator_loss(p_logit) + generator_loss(tilde_logit)  # eq. 2: -log D(x_p) - log D(x~)
        # eq. 3; the fakes are detached: L_D trains the discriminator only
        d_real, d_p = discriminator_loss(real_logit, self.discriminator(x_p.detach()))
        _, d_tilde = discriminator_loss(real_logit, self.discriminator(x_tilde.detach()))
        pixel = 0.5 * l2_loss(x_tilde, x)  # (B,)

        encoder_loss = c.beta * kl + llike + c.pixel_weight * pixel
        decoder_loss = c.gamma * llike + c.adversarial_weight * gan_g + c.pixel_weight * pixel
        return {
            "loss/encoder": encoder_loss.mean(), "loss/decoder": decoder_loss.mean(),
            "loss/discriminator": (d_real + d_p + d_tilde).mean(),
            "kl": kl.mean(), "llike": llike.mean(), "recon": pixel.mean(),
            "adv/g": gan_g.mean(), "adv/d_real": d_real.mean(), "adv/d_sample": d_p.mean(),
            "adv/d_rec": d_tilde.mean(),
            "adv/D(x)": torch.sigmoid(full_precision(real_logit)).mean(),
            "adv/D(x_p)": torch.sigmoid(full_precision(p_logit)).mean(),
        }

    def curve_panels(self) -> list[tuple[str, list[str], dict[str, float]]]:
        return [("discriminator's view", ["adv/D(x)", "adv/D(x_p)"], {"chance": 0.5}),
                ("losses", ["loss/encoder", "loss/decoder", "loss/discriminator"], {}),
                ("learned similarity and pixel error", ["llike", "recon"], {})]
