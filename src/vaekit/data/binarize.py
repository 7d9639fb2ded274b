"""Binarised images for likelihood comparisons (binarised MNIST is the benchmark of DRAW, IWAE and most
NLL tables): `data.binarize`.

    threshold  every split: a pixel is 1 where its grey level is at least 1/2
    dynamic    training images drawn afresh each time a batch is read, x ~ Bernoulli(grey level)
               (Salakhutdinov & Murray 2008's stochastic binarisation); the test split binarised once
               with a fixed seed, so every evaluation and every run scores the same images
    fixed      every split binarised once, x ~ Bernoulli(grey level), from one stated seed: the test
               split from FIXED_SEED (the very images `dynamic` scores), the train split from
               FIXED_SEED + 1, so the two splits use different draws; the same bits on every load,
               run and machine (torch's CPU generator, seeded explicitly, drawn in fixed chunks)

`fixed` is vaekit's own static binarisation. It is NOT the static binarised MNIST of Larochelle &
Murray (2011), the files most published NLLs use: those are not available offline. A number on it
is comparable with other vaekit runs, not with a paper's table; the split's `source` says so, and
with it every report that names the data. vaekit's data has two splits, train and test; there is
no validation split to binarise (Larochelle's files cut 10,000 validation images off the train set).

A binarised split is named `<name>+<mode>`, so that nothing cached for the grey images (the feature
network of the sample-quality metrics) is reused for it, or the other way round.
"""

from __future__ import annotations

import dataclasses

import torch

from ..errors import ConfigError
from .dataset import ImageDataset

BINARIZE = ("none", "dynamic", "threshold", "fixed")
FIXED_SEED = 0  # the one seed of the fixed binarisation
SPLIT_SEED = {"test": FIXED_SEED, "train": FIXED_SEED + 1}  # a generator per split, derived from it
TEST_SEED = SPLIT_SEED["test"]  # the fixed binarisation of a dynamically binarised test split
CHUNK = 4096  # images drawn at a time: a float copy of a whole split is 4x its size
FIXED_NOTE = (f"binarised once by vaekit, x ~ Bernoulli(grey), from seed {FIXED_SEED} (train {SPLIT_SEED['train']}, "
              f"test {SPLIT_SEED['test']}); NOT Larochelle & Murray's static binarised MNIST, not available offline")


@dataclasses.dataclass(repr=False)
class DynamicallyBinarized(ImageDataset):
    """A split whose `batch` draws x ~ Bernoulli(grey level) with torch's RNG on every read."""

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        return torch.bernoulli(super().batch(index))


def bernoulli_once(images: torch.Tensor, seed: int) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> one draw of x ~ Bernoulli(grey level) as 0/255, from `seed`."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    out = torch.empty_like(images, device="cpu")
    for start in range(0, len(images), CHUNK):
        grey = images[start:start + CHUNK].cpu().float().div_(255)  # (n, C, H, W)
        out[start:start + CHUNK] = (torch.rand(grey.shape, generator=g) < grey).to(torch.uint8) * 255
    return out


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
    if mode == "fixed":
        if split not in SPLIT_SEED:
            raise ConfigError(f"data.binarize=fixed has a seed for the splits {', '.join(SPLIT_SEED)}, not {split!r}")
        return dataclasses.replace(data, name=name, images=bernoulli_once(data.images, SPLIT_SEED[split]),
                                   source=f"{data.source} ({FIXED_NOTE})")
    if split == "test":
        return dataclasses.replace(data, name=name, images=bernoulli_once(data.images, TEST_SEED))
    return DynamicallyBinarized(name, data.split, data.images, data.labels, data.classes, data.source)
