"""The residual encoder and generator of IntroVAE (Huang et al. 2018, appendix B, table 3), scaled
to the image size.

Encoder: 5x5 conv -> [avg-pool, res-block] per halving -> res-block -> FC. Generator: FC ->
res-block -> [upsample, res-block] per doubling -> 5x5 conv. The paper's 1024x1024 network has eight
halvings from 16 to 512 channels; "we reduce the number of [Res-block + AvgPool] ... for smaller
resolutions", which is what `n_downsamples` does here: halve until the map is at most 7 pixels
(28 -> 14 -> 7, 64 -> 32 -> 16 -> 8 -> 4). Odd sizes are handled by upsampling to the exact size the
encoder saw, so any image size round-trips.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..errors import ConfigError
from .blocks import _check_downsamples, _norm


class ResBlock(nn.Module):
    """IntroVAE's res-block: [1x1 conv when the width changes] + two 3x3 convolutions with batch norm
    and leaky ReLU (table 3's "[1x1, c; 3x3, c; 3x3, c]")."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch"):
        super().__init__()
        bias = norm == "none"
        self.shortcut = (nn.Identity() if in_channels == out_channels
                         else nn.Conv2d(in_channels, out_channels, 1, bias=False))
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias), _norm(norm, out_channels),
            nn.LeakyReLU(0.2),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias), _norm(norm, out_channels),
        )
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.shortcut(x) + self.body(x))


def _pool_sizes(size: int, n: int) -> list[int]:
    sizes = [size]
    for _ in range(n):
        sizes.append(sizes[-1] // 2)  # AvgPool2d(2) floors odd sizes
    return sizes


def _plan(image_shape, base: int, cap: int, downsamples: int | None, min_size: int):
    """Halvings n, widths per level (n + 1), and the map sizes per level: shared by encoder and
    generator so the generator upsamples back to exactly the sizes the encoder saw."""
    _, h, w = image_shape
    n = _check_downsamples(h, w, downsamples, min_size)
    hs, ws = _pool_sizes(h, n), _pool_sizes(w, n)
    if min(hs[-1], ws[-1]) < 1:
        raise ConfigError(f"{n} poolings are too many for {h}x{w} images")
    return n, [min(base * 2**i, cap) for i in range(n + 1)], hs, ws


class ResEncoder(nn.Module):
    """(B, C, H, W) -> (B, out_features)."""

    def __init__(self, image_shape: tuple[int, int, int], out_features: int, base_channels: int = 16,
                 max_channels: int = 256, norm: str = "batch", downsamples: int | None = None, min_size: int = 7):
        super().__init__()
        c = image_shape[0]
        n, widths, hs, ws = _plan(image_shape, base_channels, max_channels, downsamples, min_size)
        layers: list[nn.Module] = [nn.Conv2d(c, widths[0], 5, padding=2, bias=norm == "none"),
                                   _norm(norm, widths[0]), nn.LeakyReLU(0.2)]
        for i in range(n):
            layers += [nn.AvgPool2d(2), ResBlock(widths[i], widths[i + 1], norm)]
        layers.append(ResBlock(widths[-1], widths[-1], norm))
        self.features = nn.Sequential(*layers)
        self.feature_shape = (widths[-1], hs[-1], ws[-1])
        self.head = nn.Linear(widths[-1] * hs[-1] * ws[-1], out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1))  # (B, out_features)


class ResDecoder(nn.Module):
    """(B, in_features) -> (B, C, H, W) raw parameters (no output activation)."""

    def __init__(self, in_features: int, image_shape: tuple[int, int, int], base_channels: int = 16,
                 max_channels: int = 256, norm: str = "batch", downsamples: int | None = None, min_size: int = 7):
        super().__init__()
        c = image_shape[0]
        n, widths, hs, ws = _plan(image_shape, base_channels, max_channels, downsamples, min_size)
        self.start_shape = (widths[-1], hs[-1], ws[-1])
        self.head = nn.Sequential(nn.Linear(in_features, widths[-1] * hs[-1] * ws[-1]), nn.ReLU())
        layers: list[nn.Module] = [ResBlock(widths[-1], widths[-1], norm)]
        for i in range(n, 0, -1):  # back up to the size the encoder saw at each level
            layers += [nn.Upsample(size=(hs[i - 1], ws[i - 1]), mode="nearest"),
                       ResBlock(widths[i], widths[i - 1], norm)]
        self.features = nn.Sequential(*layers)
        self.out = nn.Conv2d(widths[0], c, 5, padding=2)

    def forward(self, z: Tensor) -> Tensor:
        h = self.head(z).view(-1, *self.start_shape)  # (B, C_n, h_n, w_n)
        return self.out(self.features(h))  # (B, C, H, W)
