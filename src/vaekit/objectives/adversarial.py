"""The GAN losses (Goodfellow et al. 2014), written once: non-saturating generator loss and the
discriminator's cross-entropy, on logits, per image (B,); and the cross-entropy of a (k + 1)-class
discriminator (CVAE-GAN, SSL-GAN: the VAE/GAN survey's sec. 3.2-3.3)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..precision import full_precision


def generator_loss(fake_logits: Tensor) -> Tensor:
    """-log D(G(z)): the non-saturating generator loss. (B,)"""
    return F.softplus(-full_precision(fake_logits)).flatten(1).sum(1)


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> tuple[Tensor, Tensor]:
    """(-log D(x), -log(1 - D(G(z)))), each (B,). The caller detaches the fakes: the
    discriminator's loss must not reach the generator."""
    real_logits, fake_logits = full_precision(real_logits), full_precision(fake_logits)
    return F.softplus(-real_logits).flatten(1).sum(1), F.softplus(fake_logits).flatten(1).sum(1)


def class_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """CrossEntropy(softmax(logits), label) = -log D_label(x) of a (k + 1)-class discriminator. (B,)"""
    return F.cross_entropy(full_precision(logits), labels, reduction="none")
