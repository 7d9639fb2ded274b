"""The convolutional encoder / decoder pair that AE, VAE, IntroVAE and VAE-GAN are built on, taking a
conditional config's side information (vaekit.conditioning)."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from ..batch import Batch
from ..conditioning import SideInformation, classes_from_data
from ..distributions import DiagonalGaussian
from ..precision import full_precision
from ..nn import make_decoder, make_encoder
from .base import GenerativeModel


class ConvAutoencoderBase(GenerativeModel):
    """An encoder emitting `code_width_factor * latent_dim` features and a decoder emitting raw image
    parameters, built from the shared network settings (`nn.check_network_settings`), both taking
    the side information of a conditional config (`vaekit.conditioning`). The decoded mean image is
    sigmoid(decoder(z, y)) unless a subclass decodes through a likelihood."""

    code_width_factor = 1  # features per latent dimension the encoder emits

    def __init__(self, config, image_shape):
        super().__init__(config, image_shape)
        c = config
        self.side = SideInformation(c, image_shape)
        self.condition, self.classes = self.side.condition, self.side.classes
        channels, height, width = image_shape
        self.encoder = make_encoder(c, (channels + self.side.encoder_channels, height, width),
                                    self.code_width_factor * c.latent_dim)
        self.decoder = make_decoder(c, c.latent_dim + self.side.width, image_shape)

    @classmethod
    def tiny_settings(cls, preset) -> dict:
        return {"latent_dim": 4, "base_channels": 4, "max_channels": 8}

    @classmethod
    def settings_from_data(cls, config, facts):
        return classes_from_data(config, facts.classes) if hasattr(config, "condition") else config

    def make_side_information(self, batch: Batch) -> Tensor | None:
        return self.side.from_batch(batch.x, batch.y)

    def raw_decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """The decoder's raw output for codes z and side information y. (B, C, H, W)"""
        return self.decoder(self.side.decoder_input(z, y))

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return torch.sigmoid(self.raw_decode(z, y))  # (B, C, H, W) in [0, 1]


class GaussianAutoencoder(ConvAutoencoderBase):
    """q(z|x, y) = N(mu, diag exp(logvar)) from the encoder and the prior p(z|y) (N(0, I) unless a
    conditional config learns it): what VAE, IntroVAE and VAE-GAN share; they differ in their
    objectives and parameter groups."""

    code_width_factor = 2  # mu and logvar

    def encode(self, x: Tensor, y: Tensor | None = None) -> DiagonalGaussian:
        mu, logvar = self.encoder(self.side.encoder_input(x, y)).chunk(2, dim=1)  # (B, D) each
        return DiagonalGaussian(mu, logvar)

    def prior(self, y: Tensor | None = None, n: int | None = None) -> DiagonalGaussian:
        return self.side.prior(y, n, self.device)




class DeterministicEncoder(ConvAutoencoderBase):
    """An encoder emitting one code z = Enc(x), no posterior (AE, WAE): `encode` gives it as a point mass
    for a uniform API, and no ELBO or IWAE bound applies."""

    @property
    def capabilities(self):
        return dataclasses.replace(super().capabilities, posterior="none")

    def encode(self, x: Tensor, y: Tensor | None = None) -> DiagonalGaussian:
        z = self.encoder(x)
        return DiagonalGaussian(z, torch.full_like(z, -30.0))

    def latent_code(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return full_precision(self.encoder(x))


class FittedCodeGaussian:
    """Mixin for a model without a prior of its own (AE; VQ-VAE, whose prior is over discrete codes): a
    diagonal Gaussian fitted to the training codes by a running mean and variance, like batch norm's, as
    `prior` (sampling for the AE, the explorer's slider scale for both). `config.code_momentum` is the rate."""

    def register_code_fit(self, width: int) -> None:
        self.register_buffer("code_mean", torch.zeros(width))
        self.register_buffer("code_var", torch.ones(width))

    @torch.no_grad()
    def fit_codes(self, z: Tensor) -> None:
        """One running-average step towards the mean and variance of a batch of codes (B, width)."""
        m = self.config.code_momentum
        self.code_mean.lerp_(z.mean(0), m)
        self.code_var.lerp_(z.var(0, unbiased=False), m)

    def prior(self, y: Tensor | None = None, n: int | None = None) -> DiagonalGaussian:
        """The Gaussian fitted to the training codes, for n codes."""
        n = 1 if n is None else n
        return DiagonalGaussian(self.code_mean.expand(n, -1), self.code_var.clamp_min(1e-12).log().expand(n, -1))

