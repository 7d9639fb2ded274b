"""A gated PixelCNN over a grid of discrete codes (van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves &
Kavukcuoglu 2016, "Conditional Image Generation with PixelCNN Decoders"): the learned prior of a VQ-VAE
(van den Oord, Vinyals & Kavukcuoglu 2017, sec. 3.3).

p(c) = prod_i p(c_i | c_<i) in raster order. Each layer has a vertical stack (rows above) and a horizontal
stack (the row so far), joined by the gated unit tanh(W_f * x) . sigmoid(W_g * x) (eq. 2 of the PixelCNN
paper) and the vertical-to-horizontal 1x1 connection, which together leave no blind spot; the horizontal
stack is residual. The first layer is masked type A (position i does not see c_i), the rest type B.
Here the vertical stack never sees its own row (its first layer drops the kernel's last row), so its
features at row r may feed the horizontal stack at row r without the paper's shift by one row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GatedMaskedConv(nn.Module):
    """One gated layer: (vertical, horizontal) features (B, C, H, W) each -> the next layer's pair."""

    def __init__(self, channels: int, kernel: int, first: bool):
        super().__init__()
        if kernel % 2 == 0 or kernel < 3:
            raise ValueError(f"the PixelCNN kernel must be odd and >= 3, got {kernel}")
        half = kernel // 2
        self.first, self.half = first, half
        # padded above / to the left only (in `forward`), so each output keeps the input's size
        self.vertical = nn.Conv2d(channels, 2 * channels, (half + 1, kernel))
        self.horizontal = nn.Conv2d(channels, 2 * channels, (1, half + 1))
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.horizontal_out = nn.Conv2d(channels, channels, 1)
        # kernel rows / columns that would see the current row / position: masked in the first layer only
        v_mask, h_mask = torch.ones_like(self.vertical.weight), torch.ones_like(self.horizontal.weight)
        if first:
            v_mask[:, :, -1] = 0  # the vertical stack at row r sees rows r - half .. r - 1
            h_mask[:, :, :, -1] = 0  # the horizontal stack at column c sees columns c - half .. c - 1
        self.register_buffer("vertical_mask", v_mask, persistent=False)
        self.register_buffer("horizontal_mask", h_mask, persistent=False)

    @staticmethod
    def _gate(x: Tensor) -> Tensor:
        f, g = x.chunk(2, dim=1)
        return torch.tanh(f) * torch.sigmoid(g)

    def forward(self, v: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        half = self.half
        v_pre = F.conv2d(F.pad(v, (half, half, half, 0)), self.vertical.weight * self.vertical_mask,
                         self.vertical.bias)  # output row r: input rows r - half .. r
        h_pre = F.conv2d(F.pad(h, (half, 0, 0, 0)), self.horizontal.weight * self.horizontal_mask,
                         self.horizontal.bias)  # column c: columns c - half .. c
        out = self.horizontal_out(self._gate(h_pre + self.vertical_to_horizontal(v_pre)))
        # no residual in the first layer: its input holds the current position's code
        return self._gate(v_pre), out if self.first else h + out


class GatedPixelCNN(nn.Module):
    """Logits of p(c_i | c_<i) over `codes` values for every position of a (B, H, W) grid of indices."""

    def __init__(self, codes: int, channels: int = 64, layers: int = 8, first_kernel: int = 7, kernel: int = 3):
        super().__init__()
        if layers < 1:
            raise ValueError(f"the PixelCNN needs at least one layer, got {layers}")
        self.codes = codes
        self.embedding = nn.Embedding(codes, channels)
        self.layers = nn.ModuleList([GatedMaskedConv(channels, first_kernel if i == 0 else kernel, i == 0)
                                     for i in range(layers)])
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, 2 * channels, 1), nn.ReLU(),
                                  nn.Conv2d(2 * channels, codes, 1))

    def forward(self, grid: Tensor) -> Tensor:
        x = self.embedding(grid).permute(0, 3, 1, 2)  # (B, C, H, W)
        v, h = x, x
        for layer in self.layers:
            v, h = layer(v, h)
        return self.head(h)  # (B, codes, H, W)

    def log_prob(self, grid: Tensor) -> Tensor:
        """log p(c) of each grid, summed over its positions, nats. (B,)"""
        return -F.cross_entropy(self(grid), grid, reduction="none").flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, height: int, width: int, device=None) -> Tensor:
        """n grids drawn position by position in raster order (H * W passes). (n, H, W) of indices"""
        grid = torch.zeros(n, height, width, dtype=torch.long, device=device)
        for r in range(height):
            for c in range(width):
                logits = self(grid[:, :r + 1])[:, :, r, c]  # rows below r cannot matter: not computed
                grid[:, r, c] = torch.multinomial(torch.softmax(logits.float(), dim=1), 1).squeeze(1)
        return grid
