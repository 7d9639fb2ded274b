"""Distances between images used as reconstruction or refine losses. Every loss is summed over
pixels and channels (or feature elements) and returned per image, (B,): the toolkit's reduction."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from ..precision import full_precision


def l1_loss(x_hat: Tensor, x: Tensor) -> Tensor:
    """sum |x - x_hat| per image — the multi-stage VAE's default refine loss (Cai et al. 2017, sec. 3.1)."""
    return (full_precision(x_hat) - full_precision(x)).abs().flatten(1).sum(1)


def l2_loss(x_hat: Tensor, x: Tensor) -> Tensor:
    """sum (x - x_hat)^2 per image."""
    return (full_precision(x_hat) - full_precision(x)).pow(2).flatten(1).sum(1)


def feature_loss(features: Callable[[Tensor], list[Tensor]], x_hat: Tensor, x: Tensor) -> Tensor:
    """sum over layers l of ||phi_l(x) - phi_l(x_hat)||^2 per image: a feature (perceptual) loss in the
    feature maps of a network phi (Johnson et al. 2016; Larsen et al. 2016's learned similarity when
    phi is a discriminator). The target's features carry no gradient."""
    total = 0.0
    for f_hat, f in zip(features(x_hat), features(x)):
        total = total + l2_loss(f_hat, f.detach())
    return total
