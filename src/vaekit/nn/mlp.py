"""Fully connected encoder/decoder: Chen et al. 2018's dSprites networks (their appendix, and the
default of their code): encoder 4096-1200-1200 with ReLU, decoder 1200-1200-1200 with tanh, for any
image size (the image is flattened)."""

from __future__ import annotations

import math

from torch import Tensor, nn


def _stack(sizes: list[int], activation: type[nn.Module], norm: str) -> list[nn.Module]:
    """Linear layers between consecutive sizes, each followed by [batch norm,] activation."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out, bias=norm == "none")]
        if norm == "batch":
            layers += [nn.BatchNorm1d(n_out)]
        layers += [activation()]
    return layers


class MLPEncoder(nn.Module):
    """(B, C, H, W) -> (B, out_features): flatten, hidden layers with ReLU, one linear output layer."""

    def __init__(self, image_shape: tuple[int, int, int], out_features: int, widths: tuple[int, ...] = (1200, 1200),
                 norm: str = "none"):
        super().__init__()
        sizes = [math.prod(image_shape), *widths]
        self.body = nn.Sequential(nn.Flatten(), *_stack(sizes, nn.ReLU, norm))
        self.head = nn.Linear(sizes[-1], out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))  # (B, out_features)


class MLPDecoder(nn.Module):
    """(B, in_features) -> (B, C, H, W): hidden layers with tanh, then a linear layer emitting the
    likelihood's raw parameters (logits or pre-sigmoid means), reshaped to the image."""

    def __init__(self, in_features: int, image_shape: tuple[int, int, int],
                 widths: tuple[int, ...] = (1200, 1200, 1200), norm: str = "none"):
        super().__init__()
        self.image_shape = tuple(image_shape)
        sizes = [in_features, *widths]
        self.body = nn.Sequential(*_stack(sizes, nn.Tanh, norm))
        self.out = nn.Linear(sizes[-1], math.prod(image_shape))

    def forward(self, z: Tensor) -> Tensor:
        return self.out(self.body(z)).view(-1, *self.image_shape)  # (B, C, H, W)
