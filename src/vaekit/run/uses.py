"""Class-conditional generation and style transfer with a label-conditional model (the VAE/GAN survey's
sec. 4.3 and 4.4.2, figures 6, 7 and 9)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..conditioning import one_hot
from ..errors import ConfigError
from ..models.base import inference


def _require_labels(model) -> None:
    if not model.capabilities.label_conditional:
        raise ConfigError(f"this model is not conditioned on class labels (its condition: "
                          f"{model.capabilities.condition!r}); "
                          "conditional generation and style transfer need a label-conditional run (cvae, cvae_gan)")


def _y(model, labels: Tensor) -> Tensor:
    return one_hot(labels, model.classes).to(model.device)


@inference
def generate(model, label: int, n: int, classes: int) -> Tensor:
    """n samples for class `label` (of the data's `classes`): z ~ p(z|y), decoded with y. (n, C, H, W)"""
    _require_labels(model)
    if not 0 <= label < classes:
        raise ConfigError(f"--label must lie in [0, {classes - 1}], got {label}")
    return model.sample(n, _y(model, torch.full((n,), label)))


@inference
def class_grid(model, classes: int, per_class: int = 10) -> Tensor:
    """One row per class, `per_class` samples each. (classes * per_class, C, H, W)"""
    _require_labels(model)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return model.sample(len(labels), _y(model, labels))


@inference
def style_transfer_grid(model, x: Tensor, labels: Tensor, classes: int) -> Tensor:
    """Each row: an image, then its code z = mean of q(z|x, y) (y its own label) decoded with every
    label 0..k-1 of the data's `classes`: the style of the image, the class of the column.
    (rows * (k + 1), C, H, W)"""
    _require_labels(model)
    x = x.to(model.device)
    z = model.latent_code(x, _y(model, labels))  # (R, D)
    every = _y(model, torch.arange(classes))  # (k, model.classes)
    decoded = model.decode(z.repeat_interleave(classes, 0), every.repeat(len(x), 1))
    decoded = decoded.reshape(len(x), classes, *x.shape[1:])
    return torch.cat([x.unsqueeze(1), decoded], 1).flatten(0, 1)
