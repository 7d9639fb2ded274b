"""DRAW's selective attention: an N x N grid of Gaussian filters (Gregor et al. 2015, sec. 3.2,
eqs. 19-27; restated in ../shared/papers/draw-notes.md).

From a decoder state, one linear layer gives (g~_X, g~_Y, log sigma^2, log delta~, log gamma):
    g_X = (A + 1)/2 (g~_X + 1),  g_Y = (B + 1)/2 (g~_Y + 1)                      (eqs. 22-23)
    delta = (max(A, B) - 1)/(N - 1) * delta~                                     (eq. 24)
    mu_X^i = g_X + (i - N/2 - 0.5) delta,  mu_Y^j = g_Y + (j - N/2 - 0.5) delta  (eqs. 19-20)
    F_X[i, a] = exp(-(a - mu_X^i)^2 / 2 sigma^2) / Z_X                           (eqs. 25-26)
for an image A pixels wide and B high, pixel coordinates a = 1..A, b = 1..B (so that N = A, unit
stride and a centred grid put filter i on pixel i). Then
    read(x, x^, h) = gamma [F_Y x F_X^T, F_Y x^ F_X^T]                           (eq. 27)
    write(h) = 1/gamma^ F^_Y^T w F^_X                                           (eq. 29)
applied to every channel alike. Each row of a filterbank is normalised by a softmax over the pixels,
so it sums to one even where every exp() would underflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class Attention:
    """One step's attention for a batch: the filterbanks and the parameters that made them."""

    f_x: Tensor  # (B, N, A) filters over the columns
    f_y: Tensor  # (B, N, Bh) filters over the rows
    gamma: Tensor  # (B,) intensity
    centre_x: Tensor  # (B,) g_X, in pixel coordinates 1..A
    centre_y: Tensor  # (B,) g_Y
    stride: Tensor  # (B,) delta
    variance: Tensor  # (B,) sigma^2

    def boxes(self) -> Tensor:
        """The region the grid covers, (B, 4) as x0, y0, x1, y1 in 0-based pixel coordinates (the grid's
        N filters a stride apart, half a stride beyond the outer ones): what the pictures draw."""
        n = self.f_x.shape[1]
        half = 0.5 * n * self.stride
        cx, cy = self.centre_x - 1, self.centre_y - 1
        return torch.stack([cx - half, cy - half, cx + half, cy + half], 1)


def filterbank(centre: Tensor, stride: Tensor, variance: Tensor, n: int, size: int) -> Tensor:
    """F[i, a] for one axis: n Gaussian filters over `size` pixels, each row summing to one. (B, n, size)"""
    i = torch.arange(1, n + 1, device=centre.device, dtype=centre.dtype)
    mu = centre[:, None] + (i - n / 2 - 0.5) * stride[:, None]  # (B, n)
    a = torch.arange(1, size + 1, device=centre.device, dtype=centre.dtype)
    return torch.softmax(-(a - mu[:, :, None]).pow(2) / (2 * variance[:, None, None]), -1)


def attention_from_parameters(params: Tensor, n: int, height: int, width: int) -> Attention:
    """The filterbanks of raw parameters (B, 5) = (g~_X, g~_Y, log sigma^2, log delta~, log gamma)."""
    gx_, gy_, log_var, log_delta, log_gamma = params.float().unbind(1)
    centre_x = (width + 1) / 2 * (gx_ + 1)
    centre_y = (height + 1) / 2 * (gy_ + 1)
    stride = (max(width, height) - 1) / max(n - 1, 1) * log_delta.exp()
    variance = log_var.exp()
    return Attention(filterbank(centre_x, stride, variance, n, width), filterbank(centre_y, stride, variance, n, height),
                     log_gamma.exp(), centre_x, centre_y, stride, variance)


def read_glimpse(image: Tensor, att: Attention) -> Tensor:
    """gamma F_Y x F_X^T per channel: (B, C, H, W) -> (B, C, N, N)."""
    glimpse = torch.einsum("bjh,bchw,biw->bcji", att.f_y, image.float(), att.f_x)
    return att.gamma[:, None, None, None] * glimpse


def write_patch(patch: Tensor, att: Attention) -> Tensor:
    """1/gamma F_Y^T w F_X per channel: (B, C, N, N) -> (B, C, H, W)."""
    image = torch.einsum("bjh,bcji,biw->bchw", att.f_y, patch.float(), att.f_x)
    return image / att.gamma[:, None, None, None]


class AttentionHead(nn.Module):
    """The linear layer of a decoder state to one attention's five parameters."""

    def __init__(self, hidden: int, n: int, image_shape: tuple[int, int, int]):
        super().__init__()
        self.n, self.height, self.width = n, image_shape[1], image_shape[2]
        self.linear = nn.Linear(hidden, 5)

    def forward(self, h: Tensor) -> Attention:
        return attention_from_parameters(self.linear(h), self.n, self.height, self.width)
