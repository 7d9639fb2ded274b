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

CVAE-GAN (the VAE/GAN survey's sec. 3.2), with `condition = "label"`: encoder and decoder take the label y
(a CVAE, vaekit.conditioning) and the discriminator outputs k + 1 classes, the last for generated
images. With CE(p, c) = -log p_c:
    L_G = L_KL + L_llike + CE(D(Dec(z, y)), y) + CE(D(Dec(Enc(x, y), y)), y)
    L_D = CE(D(x), y) + CE(D(Dec(z, y)), y_fake) + CE(D(Dec(Enc(x, y), y)), y_fake)
split over encoder and decoder as above, z ~ p(z|y). Other conditions (an image part) keep the
real/fake discriminator of eq. 2-3 with a conditional encoder and decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..conditioning import ConditionConfig
from ..errors import ConfigError
from ..nn.config import NetworkConfig
from ..objectives.image_losses import l2_loss
from .base import Batch
from .adversarial import AdversarialObjective, DiscriminatorConfig, make_discriminator
from .autoencoder import GaussianAutoencoder


@dataclass(frozen=True)
class VAEGANConfig(NetworkConfig, ConditionConfig, DiscriminatorConfig):
    pixel_weight: float = 0.0  # optional 1/2 ||x - x~||^2 added to encoder and decoder (a pixel anchor)
    #   the encoder/decoder settings (NetworkConfig): conv by default, DCGAN-like as Larsen et al.'s

    def __post_init__(self):
        super().__post_init__()
        self.check_discriminator()
        if self.pixel_weight < 0:
            raise ConfigError(f"model.pixel_weight must be >= 0, got {self.pixel_weight}")
        self.check_condition()


class VAEGAN(AdversarialObjective, GaussianAutoencoder):
    description = "VAE-GAN: reconstruction in a discriminator's features (learned similarity), GAN loss on samples"
    paper = "Larsen et al. 2016, Autoencoding beyond pixels using a learned similarity metric"
    config_class = VAEGANConfig

    def __init__(self, config: VAEGANConfig, image_shape):
        super().__init__(config, image_shape)  # encoder and decoder
        c = config
        # k + 1 outputs for a label-conditional model (the last: generated), else 1 (real / fake)
        self.discriminator = make_discriminator(c, image_shape, self.classes + 1 if self.classes else 1,
                                                c.max_channels, c.downsamples)

    def optim_groups(self):
        # the prior network p(z|y) is trained by the KL (the encoder's loss), the embedding e(y) of an
        # image part by everything the decoder reads it for
        side = self.side
        encoder = [*self.encoder.parameters(), *(side.prior_net.parameters() if side.prior_net is not None else ())]
        decoder = [*self.decoder.parameters(), *(side.embedding.parameters() if side.is_image_part else ())]
        return {"loss/encoder": encoder, "loss/decoder": decoder,
                "loss/discriminator": list(self.discriminator.parameters())}

    def loss(self, batch: Batch, step: int = 0, phase: int = 0) -> dict[str, Tensor]:
        c, x = self.config, batch.x
        y = self.side_information(batch)
        q = self.encode(x, y)
        z = q.sample()  # (B, D)
        prior = self.prior(y, len(z))
        x_tilde = self.decode(z, y)  # Dec(Enc(x, y), y)
        x_p = self.decode(prior.sample(), y)  # Dec(z_p, y)
        pixel = 0.5 * l2_loss(x_tilde, x)  # (B,)
        terms = self.adversarial_terms(x, batch.y, q.kl(prior), x_tilde, x_p, anchor=c.pixel_weight * pixel)
        terms["recon"] = pixel.mean()
        return terms
