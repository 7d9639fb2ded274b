"""Datasets with known generative factors (dSprites, synthetic codes), as the disentanglement
metrics see them. A metric asks for factor settings and for the images they produce; it never
needs to know how the images are stored."""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class FactorDataset(Protocol):
    factor_names: list[str]  # e.g. ["shape", "scale", "orientation", "pos_x", "pos_y"]
    factor_sizes: list[int]  # number of distinct values of each factor, e.g. [3, 6, 40, 32, 32]

    def sample_factors(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n factor settings drawn uniformly, as value indices. (n, K) int64"""
        ...

    def images_from_factors(self, factors: torch.Tensor) -> torch.Tensor:
        """The images for factor settings (n, K) int64. -> (n, C, H, W) float32 in [0, 1]"""
        ...


# Settings enumerated at most: 5M x K int64 is 200 MB for K = 5, and anything that large is better
# subsampled (the metrics that use this take `n`).
MAX_SETTINGS = 5_000_000


def all_factor_settings(sizes) -> torch.Tensor:
    """Every factor setting, row-major (the last factor varies fastest, as dSprites' image index).
    -> (prod(sizes), K) int64"""
    sizes = [int(s) for s in sizes]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"factor sizes must be a non-empty list of positive ints, got {sizes}")
    total = math.prod(sizes)
    if total > MAX_SETTINGS:
        raise ValueError(f"{total:,} factor settings (sizes {sizes}) is more than the {MAX_SETTINGS:,} that are "
                         "enumerated; draw a subsample instead (e.g. pass n=...)")
    strides = torch.tensor([math.prod(sizes[k + 1:]) for k in range(len(sizes))], dtype=torch.int64)
    index = torch.arange(total, dtype=torch.int64)
    return (index[:, None] // strides) % torch.tensor(sizes, dtype=torch.int64)
