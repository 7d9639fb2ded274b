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

from collections.abc import Sequence
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


def _rows(mu: Tensor, variance: Tensor, size: int) -> Tensor:
    """exp(-(a - mu)^2 / 2 sigma^2) over pixels a = 1..size, each row normalised (eqs. 25-26):
    mu (..., n), variance broadcastable to it -> (..., n, size)."""
    a = torch.arange(1, size + 1, device=mu.device, dtype=mu.dtype)
    return torch.softmax((a - mu[..., None]).pow(2) / (-2 * variance[..., None]), -1)


def filterbank(centre: Tensor, stride: Tensor, variance: Tensor, n: int, size: int) -> Tensor:
    """F[i, a] for one axis: n Gaussian filters over `size` pixels, each row summing to one. (B, n, size)"""
    i = torch.arange(1, n + 1, device=centre.device, dtype=centre.dtype)
    mu = centre[:, None] + (i - n / 2 - 0.5) * stride[:, None]  # (B, n) eqs. 19-20
    return _rows(mu, variance[:, None], size)


def attention_from_parameters(params: Tensor, n: int, height: int, width: int) -> Attention:
    """The filterbanks of raw parameters (B, 5) = (g~_X, g~_Y, log sigma^2, log delta~, log gamma)."""
    return attentions_from_parameters(params[:, None], (n,), height, width)[0]


def attentions_from_parameters(params: Tensor, sizes: Sequence[int], height: int, width: int) -> list[Attention]:
    """k attentions of one batch at once, params (B, k, 5) and grids of sizes[j] x sizes[j] filters: the
    same filterbanks as k calls of attention_from_parameters, built in one pass (one softmax) because
    DRAW's decoder state makes the write of step t and the read of step t+1 together."""
    gx_, gy_, log_var, log_delta, log_gamma = params.float().unbind(-1)  # each (B, k)
    scale = params.new_tensor([(max(width, height) - 1) / max(n - 1, 1) for n in sizes], dtype=torch.float32)
    centre = torch.stack([(width + 1) / 2 * (gx_ + 1), (height + 1) / 2 * (gy_ + 1)], 1)  # (B, 2, k) eqs. 22-23
    stride = scale * log_delta.exp()  # (B, k) eq. 24
    variance = log_var.exp()
    if len(sizes) == 1:
        slot = offset = None
        mu = centre + (torch.arange(1, sizes[0] + 1, device=params.device, dtype=torch.float32)
                       - sizes[0] / 2 - 0.5)[None, None] * stride[:, None]  # (B, 2, n) eqs. 19-20
        var = variance
    else:  # every filter i of attention j gets j's centre, stride and variance
        slot = torch.tensor([j for j, n in enumerate(sizes) for _ in range(n)], device=params.device)
        offset = torch.tensor([i - n / 2 - 0.5 for n in sizes for i in range(1, n + 1)], device=params.device)
        mu = centre[:, :, slot] + offset * stride[:, None, slot]  # (B, 2, S) eqs. 19-20, S = sum of sizes
        var = variance[:, slot]
    if width == height:
        f = _rows(mu, var[:, None], width)  # (B, 2, S, A): both axes in one softmax
        f_x, f_y = f.unbind(1)
    else:
        f_x, f_y = _rows(mu[:, 0], var, width), _rows(mu[:, 1], var, height)  # (B, S, A), (B, S, Bh)
    gamma = log_gamma.exp()
    cuts = list(sizes)
    return [Attention(fx, fy, gamma[:, j], centre[:, 0, j], centre[:, 1, j], stride[:, j], variance[:, j])
            for j, (fx, fy) in enumerate(zip(f_x.split(cuts, 1), f_y.split(cuts, 1)))]


def read_glimpse(image: Tensor, att: Attention) -> Tensor:
    """gamma F_Y x F_X^T per channel: (B, C, H, W) -> (B, C, N, N), in float32 even under autocast."""
    b, c, h, w = image.shape
    n = att.f_x.shape[1]
    with torch.autocast(image.device.type, enabled=False):  # tiny products, slower in bfloat16 than in float32
        # F_X x^T first, every channel's rows side by side, so that both products keep the long side outermost
        cols = torch.bmm(att.f_x, image.float().reshape(b, c * h, w).transpose(1, 2))  # (B, N_i, C H)
        glimpse = torch.bmm(att.f_y, cols.view(b, n * c, h).transpose(1, 2))  # (B, N_j, N_i C)
    return (glimpse * att.gamma[:, None, None]).view(b, n, n, c).permute(0, 3, 1, 2)


def write_patch(patch: Tensor, att: Attention) -> Tensor:
    """1/gamma F_Y^T w F_X per channel: (B, C, N, N) -> (B, C, H, W), in float32 even under autocast."""
    w = patch.float() / att.gamma[:, None, None, None]
    with torch.autocast(patch.device.type, enabled=False):
        return torch.matmul(att.f_y.transpose(1, 2)[:, None], torch.matmul(w, att.f_x[:, None]))


class AttentionHead(nn.Module):
    """The linear layer of a decoder state to one attention's five parameters."""

    def __init__(self, hidden: int, n: int, image_shape: tuple[int, int, int]):
        super().__init__()
        self.n, self.height, self.width = n, image_shape[1], image_shape[2]
        self.linear = nn.Linear(hidden, 5)

    def forward(self, h: Tensor) -> Attention:
        return attention_from_parameters(self.linear(h), self.n, self.height, self.width)
