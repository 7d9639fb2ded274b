"""Binarised images for likelihood comparisons (binarised MNIST is the benchmark of DRAW, IWAE and most
NLL tables): `data.binarize`.

    threshold  every split: a pixel is 1 where its grey level is at least 1/2
    dynamic    training images drawn afresh each time a batch is read, x ~ Bernoulli(grey level)
               (Salakhutdinov & Murray 2008's stochastic binarisation); the test split binarised once
               with a fixed seed, so every evaluation and every run scores the same images

A binarised split is named `<name>+<mode>`, so that nothing cached for the grey images (the feature
network of the sample-quality metrics) is reused for it, or the other way round.
"""

from __future__ import annotations

import dataclasses

import torch

from ..errors import ConfigError
from .dataset import ImageDataset

BINARIZE = ("none", "dynamic", "threshold")
TEST_SEED = 0  # the fixed binarisation of a dynamically binarised test split


@dataclasses.dataclass(repr=False)
class DynamicallyBinarized(ImageDataset):
    """A split whose `batch` draws x ~ Bernoulli(grey level) with torch's RNG on every read."""

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        return torch.bernoulli(super().batch(index))


def binarized(data: ImageDataset, mode: str, split: str) -> ImageDataset:
    """`data` binarised as `mode` says (see the module docstring); `data` itself for "none"."""
    if mode not in BINARIZE:
        raise ConfigError(f"data.binarize must be one of {', '.join(BINARIZE)}, got {mode!r}")
    if mode == "none":
        return data
    if data.images is None:  # a generated dataset (dsprites) renders binary images already
        raise ConfigError(f"data.binarize applies to datasets of stored images; {data.name} renders its own")
    name = f"{data.name}+{mode}"
    if mode == "threshold":
        return dataclasses.replace(data, name=name, images=(data.images >= 128).to(torch.uint8) * 255)
    if split == "test":
        g = torch.Generator().manual_seed(TEST_SEED)
        fixed = torch.empty_like(data.images)
        for start in range(0, len(fixed), 4096):  # in chunks: a float copy of the whole split is 4x its size
            grey = data.images[start:start + 4096].float().div_(255)
            fixed[start:start + 4096] = (torch.rand(grey.shape, generator=g) < grey).to(torch.uint8) * 255
        return dataclasses.replace(data, name=name, images=fixed)
    return DynamicallyBinarized(name, data.split, data.images, data.labels, data.classes, data.source)
