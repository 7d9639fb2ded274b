"""What the adversarial models share (VAE-GAN, CVAE-GAN, DRAW-GAN, SSL-VAE-GAN): the discriminator's
settings and network, and the generator / discriminator losses (2)-(3) of "When VAEs meet GANs" (Larsen
et al. 2016's split into encoder, decoder and discriminator groups) as a mixin for any encoder and decoder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..nn import ConvEncoder
from ..objectives.adversarial import class_loss, discriminator_loss, generator_loss
from ..objectives.image_losses import l2_loss
from ..precision import full_precision


@dataclass(frozen=True)
class DiscriminatorConfig:
    """A GAN's discriminator and the weights of Larsen et al.'s split of the generator loss: what VAE-GAN,
    CVAE-GAN and SSL-VAE-GAN share."""

    beta: float = 1.0  # weight of the KL in the encoder's loss
    gamma: float = 1.0  # Larsen's gamma: the decoder's weight on L_llike against the GAN term
    adversarial_weight: float = 1.0  # weight of the decoder's GAN term (eq. 2's -log D terms)
    feature_layer: int = -1  # l: which discriminator stage gives f_l (0 = first conv stage, -1 = last)
    discriminator_channels: int = 32  # width of the discriminator's first stage, doubled per halving
    discriminator_norm: str = "batch"  # batch | none

    def check_discriminator(self) -> None:
        if self.discriminator_channels < 1:
            raise ConfigError(f"model.discriminator_channels must be >= 1, got {self.discriminator_channels}")
        if self.discriminator_norm not in ("batch", "none"):
            raise ConfigError(f"model.discriminator_norm must be 'batch' or 'none', got {self.discriminator_norm!r}")
        for name in ("beta", "gamma", "adversarial_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"model.{name} must be >= 0, got {getattr(self, name)}")


def make_discriminator(c, image_shape, outputs: int, max_channels: int, downsamples: int = 0) -> ConvEncoder:
    """The DCGAN-like discriminator of settings `c` (a DiscriminatorConfig) with `outputs` logits: 1
    (real / fake) or k + 1 classes; its feature layer checked against its stages."""
    d = ConvEncoder(image_shape, outputs, c.discriminator_channels, max_channels,
                    c.discriminator_norm, downsamples=downsamples)
    stages = sum(isinstance(m, torch.nn.LeakyReLU) for m in d.features)
    if not -stages <= c.feature_layer < stages:
        raise ConfigError(f"model.feature_layer={c.feature_layer} but the discriminator has {stages} stages "
                          f"(0..{stages - 1}, or negative from the end)")
    return d


class AdversarialObjective:
    """Mixin: the generator and discriminator losses (2)-(3) of the VAE/GAN survey (CVAE-GAN's k + 1-class form
    when the model has `classes`), split into Larsen et al.'s encoder / decoder / discriminator groups,
    for any encoder and decoder: VAE-GAN's and DRAW-GAN's. Needs `self.discriminator`, `self.classes`
    and a config with the DiscriminatorConfig weights."""

    def adversarial_terms(self, x: Tensor, labels: Tensor | None, kl: Tensor, x_tilde: Tensor, x_p: Tensor,
                          reconstruction: Tensor | None = None, anchor: Tensor | float = 0.0) -> dict[str, Tensor]:
        """The three groups' losses and what is logged, from real images x, the per-image KL, the
        reconstructions x~ = Dec(Enc(x)) and samples x_p = Dec(z_p). Both encoder and decoder minimise
        `reconstruction` (per image; default L_llike^{Dis_l}) and `anchor` (VAE-GAN's pixel term)."""
        c, l = self.config, self.config.feature_layer
        real_logit, real_maps = self.discriminator.forward_with_features(x)
        tilde_logit, tilde_maps = self.discriminator.forward_with_features(x_tilde)
        p_logit = self.discriminator(x_p)
        llike = 0.5 * l2_loss(tilde_maps[l], real_maps[l].detach())  # (B,) L_llike^{Dis_l}, sigma = 1
        # the fakes of L_D are detached: L_D trains the discriminator only
        p_logit_d, tilde_logit_d = self.discriminator(x_p.detach()), self.discriminator(x_tilde.detach())
        if self.classes:  # CVAE-GAN (sec. 3.2): k + 1 classes, the last one "generated"
            fake = torch.full_like(labels, self.classes)
            gan_g = class_loss(p_logit, labels) + class_loss(tilde_logit, labels)
            d_real, d_p, d_tilde = (class_loss(real_logit, labels), class_loss(p_logit_d, fake),
                                    class_loss(tilde_logit_d, fake))
            real_prob = F.softmax(full_precision(real_logit), 1)
            p_prob = F.softmax(full_precision(p_logit), 1)
            d_x, d_xp = 1 - real_prob[:, -1], 1 - p_prob[:, -1]  # P(not generated)
        else:
            gan_g = generator_loss(p_logit) + generator_loss(tilde_logit)  # eq. 2: -log D(x_p) - log D(x~)
            d_real, d_p = discriminator_loss(real_logit, p_logit_d)  # eq. 3
            _, d_tilde = discriminator_loss(real_logit, tilde_logit_d)
            d_x, d_xp = torch.sigmoid(full_precision(real_logit)), torch.sigmoid(full_precision(p_logit))
        rec = llike if reconstruction is None else reconstruction
        encoder_loss = c.beta * kl + rec + anchor
        decoder_loss = c.gamma * rec + c.adversarial_weight * gan_g + anchor
        return {
            "loss/encoder": encoder_loss.mean(), "loss/decoder": decoder_loss.mean(),
            "loss/discriminator": (d_real + d_p + d_tilde).mean(),
            "kl": kl.mean(), "llike": llike.mean(),
            "adv/g": gan_g.mean(), "adv/d_real": d_real.mean(), "adv/d_sample": d_p.mean(),
            "adv/d_rec": d_tilde.mean(),
            "adv/D(x)": d_x.mean(), "adv/D(x_p)": d_xp.mean(),
            **({"adv/D_label_accuracy": (real_logit[:, :-1].argmax(1) == labels).float().mean()}
               if self.classes else {}),
        }

    @property
    def capabilities(self):
        return dataclasses.replace(super().capabilities, classifies=bool(self.classes))  # CVAE-GAN's k real classes

    def classify(self, x: Tensor) -> Tensor:
        """log D(y|x) over the k real classes (the "generated" class left out, renormalised). (B, k)"""
        if not self.classes:
            return super().classify(x)
        return F.log_softmax(full_precision(self.discriminator(x))[:, :-1], 1)

    def curve_panels(self) -> list[tuple[str, list[str], dict[str, float]]]:
        return [("discriminator's view", ["adv/D(x)", "adv/D(x_p)"], {"chance": 0.5}),
                ("losses", ["loss/encoder", "loss/decoder", "loss/discriminator"], {}),
                ("learned similarity and pixel error", ["llike", "recon"], {})]


