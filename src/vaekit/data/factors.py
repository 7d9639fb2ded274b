"""Datasets with known generative factors (dSprites, synthetic codes), as the disentanglement
metrics see them. A metric asks for factor settings and for the images they produce; it never
needs to know how the images are stored."""

from __future__ import annotations

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
