"""The semi-supervised objective of M2 (Kingma et al. 2014, eq. 6-9; the VAE/GAN survey's sec. 2.3), per image.

    L(x, y) = -E_q(z|x,y)[log p(x|y, z) + log p(y) + log p(z) - log q(z|x, y)]        (labelled)
    U(x)    = sum_y q(y|x) L(x, y) - H(q(y|x))                                       (unlabelled)
    J^alpha = sum_labelled L(x, y) + sum_unlabelled U(x) + alpha * E_labelled[-log q(y|x)]

with alpha = 0.1 N (N training images) on the expectation, so each labelled image's classification
term weighs `classification_weight` = 0.1 N / N_labelled beside its bound.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def log_uniform_prior(classes: int) -> float:
    """log p(y) of the uniform class prior."""
    return -math.log(classes)


def unlabelled_bound(per_class: Tensor, log_q_y: Tensor) -> Tensor:
    """U(x) = sum_y q(y|x) L(x, y) - H(q(y|x)) = sum_y q(y|x) (L(x, y) + log q(y|x)), from the labelled
    bound of every class, `per_class` (B, k), and log q(y|x) (B, k). (B,)"""
    q = log_q_y.exp()
    return (q * (per_class + log_q_y)).sum(1)


def entropy(log_q_y: Tensor) -> Tensor:
    """H(q(y|x)) per image from log-probabilities (B, k). (B,)"""
    return -(log_q_y.exp() * log_q_y).sum(1)


def classification_weight(scale: float, train_images: int, labelled_images: int) -> float:
    """alpha per labelled image: Kingma et al.'s alpha = scale * N on the mean over the labelled
    images, i.e. scale * N / N_labelled each (scale = 0.1 in their experiments)."""
    if labelled_images < 1:
        raise ValueError("the classification weight needs at least one labelled image")
    return scale * train_images / labelled_images


def enumerate_classes(t: Tensor, classes: int) -> Tensor:
    """(B, ...) -> (k * B, ...): k copies of t, the class index outermost (copy c goes with label c)."""
    return t.unsqueeze(0).expand(classes, *t.shape).reshape(classes * t.shape[0], *t.shape[1:])


def class_one_hots(batch: int, classes: int, device=None) -> Tensor:
    """The one-hots that go with `enumerate_classes`: label c for copy c. (k * B, k)"""
    return torch.eye(classes, device=device).repeat_interleave(batch, 0)
