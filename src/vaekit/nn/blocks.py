"""Convolutional encoder/decoder that adapt to the image's size and channels, and residual blocks.

The encoder halves the resolution with stride-2 4x4 convolutions until the feature map is at most
7 pixels on a side (28 -> 14 -> 7, 32 -> 16 -> 8 -> 4, 64 -> ... -> 4, 128 -> ... -> 4), then maps the
flattened features to a vector. The decoder mirrors it exactly, using `output_padding` where a size
was odd, so any input size round-trips to itself.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ConfigError


def conv_sizes(size: int, n: int) -> list[int]:
    """Spatial sizes after each of n stride-2 4x4 convolutions (padding 1): [size, ..., final]."""
    sizes = [size]
    for _ in range(n):
        sizes.append((sizes[-1] + 2 - 4) // 2 + 1)  # floor((s + 2p - k) / stride) + 1 with p=1, k=4, stride=2
    return sizes


def n_downsamples(h: int, w: int, min_size: int = 7) -> int:
    """How many halvings bring the larger side to at most `min_size`."""
    n, side = 0, max(h, w)
    while side > min_size:
        side, n = (side + 2 - 4) // 2 + 1, n + 1
    if n == 0:
        raise ConfigError(f"images of {h}x{w} are too small for a convolutional encoder/decoder")
    short = min(h, w)
    for _ in range(n):
        short = (short + 2 - 4) // 2 + 1
    if short < 1:
        raise ConfigError(f"images of {h}x{w} are too elongated for a convolutional encoder/decoder ({n} halvings of "
                          f"the longer side leave nothing of the shorter); set data.size to make them square")
    return n


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"unknown norm {kind!r}; choose 'batch' or 'none'")


def _widths(n: int, base: int, cap: int) -> list[int]:
    return [min(base * 2**i, cap) for i in range(n)]


class ResidualBlock(nn.Module):
    """x + conv(act(norm(conv(x)))) with two 3x3 convolutions and batch norm (He et al. 2016)."""

    def __init__(self, channels: int, norm: str = "batch"):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=norm == "none"),
            _norm(norm, channels),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, channels, 3, padding=1, bias=norm == "none"),
            _norm(norm, channels),
        )
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.body(x))


def _check_downsamples(h: int, w: int, n: int | None, min_size: int) -> int:
    if n is None or n == 0:
        return n_downsamples(h, w, min_size)
    if conv_sizes(min(h, w), n)[-1] < 1:
        raise ConfigError(f"{n} stride-2 convolutions are too many for {h}x{w} images")
    return n


class ConvEncoder(nn.Module):
    """(B, C, H, W) -> (B, out_features). Stride-2 convolutions, then one linear layer."""

    def __init__(self, image_shape: tuple[int, int, int], out_features: int, base_channels: int = 32,
                 max_channels: int = 256, norm: str = "batch", min_size: int = 7, downsamples: int | None = None):
        super().__init__()
        c, h, w = image_shape
        n = _check_downsamples(h, w, downsamples, min_size)
        hs, ws = conv_sizes(h, n), conv_sizes(w, n)
        widths = _widths(n, base_channels, max_channels)
        layers: list[nn.Module] = []
        in_ch = c
        for out_ch in widths:
            layers += [nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1, bias=norm == "none"),
                       _norm(norm, out_ch), nn.LeakyReLU(0.2)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.feature_shape = (in_ch, hs[-1], ws[-1])
        self.head = nn.Linear(in_ch * hs[-1] * ws[-1], out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1))  # (B, out_features)

    def feature_maps(self, x: Tensor) -> list[Tensor]:
        """The activation after each stride-2 stage (for feature / learned-similarity losses)."""
        return self.forward_with_features(x)[1]

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The output and every stage's activation from one pass (a discriminator's logit and the
        layers its learned similarity compares, Larsen et al. 2016)."""
        maps = []
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                maps.append(x)
        return self.head(x.flatten(1)), maps


class ConvDecoder(nn.Module):
    """(B, in_features) -> (B, out_channels, H, W): the mirror of ConvEncoder.

    The last layer is a plain 3x3 convolution with no activation: it emits the likelihood's raw
    parameters (logits or pre-sigmoid means).
    """

    def __init__(self, in_features: int, image_shape: tuple[int, int, int], out_channels: int | None = None,
                 base_channels: int = 32, max_channels: int = 256, norm: str = "batch", min_size: int = 7,
                 downsamples: int | None = None):
        super().__init__()
        c, h, w = image_shape
        n = _check_downsamples(h, w, downsamples, min_size)
        hs, ws = conv_sizes(h, n), conv_sizes(w, n)
        widths = _widths(n, base_channels, max_channels)[::-1]
        self.start_shape = (widths[0], hs[-1], ws[-1])
        self.head = nn.Sequential(nn.Linear(in_features, widths[0] * hs[-1] * ws[-1]), nn.LeakyReLU(0.2))
        layers: list[nn.Module] = []
        for i in range(n):
            in_ch = widths[i]
            out_ch = widths[i + 1] if i + 1 < n else widths[-1]
            src_h, src_w = hs[n - i], ws[n - i]
            dst_h, dst_w = hs[n - i - 1], ws[n - i - 1]
            # k=4, s=2, p=1 gives 2*in; output_padding adds the odd pixel back (7 -> 14 -> 28, 3 -> 7).
            pad = (dst_h - 2 * src_h, dst_w - 2 * src_w)
            layers += [nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, output_padding=pad,
                                          bias=norm == "none"),
                       _norm(norm, out_ch), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.out = nn.Conv2d(widths[-1], out_channels or c, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.head(z).view(-1, *self.start_shape)  # (B, C0, h0, w0)
        return self.out(self.features(h))  # (B, C, H, W)


class Refiner(nn.Module):
    """f_theta2 of the multi-stage VAE (Cai et al. 2017, sec. 2.2-2.4): image -> image.

    A 3x3 convolution into `channels` feature maps, `blocks` residual blocks, optional x2
    upsampling steps (nearest neighbour + 3x3 conv, the super-resolution reading of sec. 2.4), and a
    3x3 convolution back to the image's channels. Its output is added to the logit of the input
    (upsampled if needed), SRResNet's global skip, so a fresh refiner starts near the identity.
    Returns raw parameters: sigmoid gives the image, a likelihood reads them directly.
    """

    def __init__(self, in_channels: int, channels: int = 64, blocks: int = 5, upsample: int = 1, norm: str = "batch"):
        super().__init__()
        if upsample not in (1, 2, 4, 8):
            raise ConfigError(f"refiner upsample factor must be 1, 2, 4 or 8, got {upsample}")
        self.upsample = upsample
        self.head = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1), nn.LeakyReLU(0.2))
        self.body = nn.Sequential(*[ResidualBlock(channels, norm) for _ in range(blocks)])
        ups: list[nn.Module] = []
        for _ in range(upsample.bit_length() - 1):
            ups += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(channels, channels, 3, padding=1),
                    nn.LeakyReLU(0.2)]
        self.up = nn.Sequential(*ups)
        self.out = nn.Conv2d(channels, in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # start as the identity on the skip path
        nn.init.zeros_(self.out.bias)

    def forward(self, image: Tensor) -> Tensor:
        h = self.up(self.body(self.head(image)))
        skip = torch.logit(image.clamp(1e-4, 1 - 1e-4))  # (B, C, H, W)
        if self.upsample > 1:
            skip = nn.functional.interpolate(skip, scale_factor=self.upsample, mode="nearest")
        return skip + self.out(h)  # (B, C, H*up, W*up) raw parameters
