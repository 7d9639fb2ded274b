"""What the semi-supervised models share (M2, SSL-VAE-GAN): the networks q(y|x), q(z|x, y) and
p(x|y, z) of vaekit.nn.semi_supervised, the settings taken from partly labelled data, prediction by
argmax q(y|x), and the rows of one batched pass in which every class is tried for each unlabelled image.

The label-aware contract: y is a one-hot; where it is not given (an unlabelled image), encode,
reconstruct and the pictures use argmax q(y|x). p(z) = N(0, I) and p(y) is uniform.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..conditioning import one_hot
from ..distributions import DiagonalGaussian, StandardNormal
from ..errors import ConfigError
from ..nn.semi_supervised import SSL_ARCHITECTURES, SemiSupervisedNetworks
from ..objectives.semi_supervised import class_one_hots, classification_weight, enumerate_classes
from ..precision import full_precision
from .base import Batch, GenerativeModel


@dataclass(frozen=True)
class SemiSupervisedConfig:
    latent_dim: int = 50
    architecture: str = "conv"  # conv | fc: the VAE/GAN survey's sec. 4.5 networks | mlp: Kingma et al.'s (500 softplus)
    width_factor: float = 1.0  # every hidden width of the architecture multiplied by this
    alpha_scale: float = 0.1  # Kingma et al.'s alpha = alpha_scale * N on E_labelled[-log q(y|x)]; 0 = no such term
    classes: int = 0  # k; 0 = from the data, set by the run
    train_images: int = 0  # N; 0 = set by the run
    labelled_images: int = 0  # N_labelled; 0 = set by the run

    def check_semi_supervised(self) -> None:
        if self.architecture not in SSL_ARCHITECTURES:
            raise ConfigError(f"model.architecture must be one of {', '.join(SSL_ARCHITECTURES)}, "
                              f"got {self.architecture!r}")
        if self.latent_dim < 1 or not self.width_factor > 0:
            raise ConfigError("model.latent_dim must be >= 1 and model.width_factor > 0")
        if self.alpha_scale < 0 or min(self.classes, self.train_images, self.labelled_images) < 0:
            raise ConfigError("model.alpha_scale, classes, train_images and labelled_images must be >= 0")


@dataclass
class Rows:
    """One batched pass over a partly labelled batch: each labelled image once with its label, then k
    copies of the unlabelled ones, copy c with label c (the class index outermost)."""

    h: Tensor  # trunk features per row
    y: Tensor  # one-hot per row
    x: Tensor  # the image per row
    labelled: Tensor  # (B,) bool: which images of the batch came with a label
    n_labelled: int
    n_unlabelled: int

    def per_class(self, t: Tensor) -> Tensor:
        """The unlabelled rows' values (rows,) as (n_unlabelled, k): column c for label c."""
        k = self.y.shape[1]
        return t[self.n_labelled:].reshape(k, self.n_unlabelled).t()


class SemiSupervisedBase(GenerativeModel):
    condition = "label"

    def __init__(self, config, image_shape):
        super().__init__(config, image_shape)
        if config.classes < 2:
            raise ConfigError("model.classes must be >= 2 (the run sets it from the data's labels)")
        self.classes = config.classes
        self.nets = SemiSupervisedNetworks(config.architecture, image_shape, config.classes, config.latent_dim,
                                           config.width_factor)

    @classmethod
    def tiny_settings(cls, preset) -> dict:
        return {"latent_dim": 4, "width_factor": 0.02}

    @classmethod
    def settings_from_data(cls, config, facts):
        if facts.classes == 0:
            raise ConfigError("a semi-supervised model needs a dataset with class labels; this one has none")
        if config.classes and config.classes < facts.classes:
            raise ConfigError(f"model.classes = {config.classes} but the data has {facts.classes} classes")
        return dataclasses.replace(config, classes=config.classes or facts.classes,
                                   train_images=config.train_images or facts.train_images,
                                   labelled_images=config.labelled_images or facts.labelled_images)

    @property
    def alpha(self) -> float:
        """The classification term's weight per labelled image (Kingma et al.'s scaling)."""
        c = self.config
        if c.alpha_scale == 0:
            return 0.0
        if c.train_images < 1 or c.labelled_images < 1:
            raise ConfigError("model.train_images and model.labelled_images must be set (the run sets them)")
        return classification_weight(c.alpha_scale, c.train_images, c.labelled_images)

    # --- q(y|x), q(z|x, y), p(x|y, z) -------------------------------------------------------
    @property
    def capabilities(self):
        return dataclasses.replace(super().capabilities, classifies=True, semi_supervised=True)

    def log_q_y(self, h: Tensor) -> Tensor:
        """log q(y|x) from the trunk's features h of images x. (B, k)"""
        return F.log_softmax(full_precision(self.nets.logits(h)), 1)

    def classify(self, x: Tensor) -> Tensor:
        return self.log_q_y(self.nets.trunk(x))

    def _check_y(self, y: Tensor | None, n: int) -> Tensor:
        if y is None or tuple(y.shape) != (n, self.classes):
            raise ConfigError(f"side information y must be one-hots of shape {(n, self.classes)}, "
                              f"got {None if y is None else tuple(y.shape)}")
        return y

    def encode(self, x: Tensor, y: Tensor | None = None) -> DiagonalGaussian:
        h = self.nets.trunk(x)
        if y is None:  # not told: the class q(y|x) finds most probable
            y = one_hot(self.log_q_y(h).argmax(1), self.classes)
        mu, logvar = self.nets.posterior(h, self._check_y(y, len(x)))
        return DiagonalGaussian(mu, logvar)

    def raw_decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.nets.decode(z, self._check_y(y, len(z)))

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return torch.sigmoid(self.raw_decode(z, y))

    def prior(self, y: Tensor | None = None, n: int | None = None) -> DiagonalGaussian:
        count = n if y is None else len(y)
        if count is None:
            raise ValueError("the prior needs a batch size n or side information y")
        return StandardNormal(count, self.config.latent_dim, self.device)

    def make_side_information(self, batch: Batch) -> Tensor | None:
        """The one-hot of each image's label; argmax q(y|x) where it has none."""
        labels = batch.y
        known = None if labels is None else labels >= 0
        if known is not None and bool(known.all()):
            return one_hot(labels, self.classes).to(batch.x.device)
        with torch.no_grad():
            predicted = self.classify(batch.x).argmax(1)
        if known is not None:
            predicted = torch.where(known, labels, predicted)
        return one_hot(predicted, self.classes).to(batch.x.device)

    def rows(self, h: Tensor, x: Tensor, labels: Tensor) -> Rows:
        k, lab = self.classes, labels >= 0
        n_u = int((~lab).sum())
        return Rows(h=torch.cat([h[lab], enumerate_classes(h[~lab], k)]),
                    y=torch.cat([one_hot(labels[lab], k).to(x.device), class_one_hots(n_u, k, x.device)]),
                    x=torch.cat([x[lab], enumerate_classes(x[~lab], k)]), labelled=lab,
                    n_labelled=int(lab.sum()), n_unlabelled=n_u)


def batch_labels(batch: Batch) -> Tensor:
    """The batch's labels, -1 for every image when it has none."""
    return batch.y if batch.y is not None else torch.full((len(batch.x),), -1, device=batch.x.device)
