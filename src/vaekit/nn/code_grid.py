"""The encoder to, and decoder from, a grid of D-dimensional codes of VQ-VAE (van den Oord, Vinyals &
Kavukcuoglu 2017, sec. 4.1): "two strided convolutional layers with stride 2 and window size 4 x 4, followed
by two residual 3 x 3 blocks (implemented as ReLU, 3x3 conv, ReLU, 1x1 conv), all having 256 hidden units";
the decoder "similarly has two residual 3 x 3 blocks, followed by two transposed convolutions with stride 2
and window size 4 x 4". A 1x1 convolution maps the hidden units to the code's D dimensions (and a 3x3 one
back), as in the authors' Sonnet example. Odd image sizes round-trip by `output_padding` (7 -> 3 -> 7).
"""

from __future__ import annotations

from torch import Tensor, nn

from .blocks import _check_downsamples, conv_sizes


class ResidualStack(nn.Module):
    """x + conv1x1(ReLU(conv3x3(ReLU(x)))) per block, then a ReLU."""

    def __init__(self, channels: int, blocks: int, hidden: int):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Sequential(nn.ReLU(), nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(),
                                                   nn.Conv2d(hidden, channels, 1)) for _ in range(blocks)])

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = x + block(x)
        return x.relu()


def grid_shape(image_shape: tuple[int, int, int], downsamples: int) -> tuple[int, int]:
    """The (H, W) of the code grid of images of `image_shape` after `downsamples` stride-2 convolutions."""
    _, h, w = image_shape
    n = _check_downsamples(h, w, downsamples, 1)
    return conv_sizes(h, n)[-1], conv_sizes(w, n)[-1]


class GridEncoder(nn.Module):
    """(B, C, H, W) -> z_e (B, D, H / 2^n, W / 2^n)."""

    def __init__(self, image_shape, code_dim: int, hidden: int = 128, downsamples: int = 2, blocks: int = 2,
                 residual_hidden: int = 32):
        super().__init__()
        channels = image_shape[0]
        _check_downsamples(image_shape[1], image_shape[2], downsamples, 1)
        widths = [max(1, hidden // 2 ** (downsamples - 1 - i)) for i in range(downsamples)]  # ..., hidden/2, hidden
        layers: list[nn.Module] = []
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(channels if i == 0 else widths[i - 1], width, 4, stride=2, padding=1), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Conv2d(widths[-1], hidden, 3, padding=1),
                                 ResidualStack(hidden, blocks, residual_hidden), nn.Conv2d(hidden, code_dim, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class GridDecoder(nn.Module):
    """z_q (B, D, h, w) -> the likelihood's raw parameters (B, C, H, W): GridEncoder's mirror."""

    def __init__(self, image_shape, code_dim: int, hidden: int = 128, downsamples: int = 2, blocks: int = 2,
                 residual_hidden: int = 32):
        super().__init__()
        channels, h, w = image_shape
        hs, ws = conv_sizes(h, downsamples), conv_sizes(w, downsamples)
        widths = [max(1, hidden // 2 ** i) for i in range(downsamples)]  # hidden, hidden/2, ...
        layers: list[nn.Module] = [nn.Conv2d(code_dim, hidden, 3, padding=1), ResidualStack(hidden, blocks, residual_hidden)]
        for i in range(downsamples):
            src, dst = (hs[downsamples - i], ws[downsamples - i]), (hs[downsamples - i - 1], ws[downsamples - i - 1])
            last = i == downsamples - 1
            layers.append(nn.ConvTranspose2d(widths[i], channels if last else widths[i + 1], 4, stride=2, padding=1,
                                             output_padding=(dst[0] - 2 * src[0], dst[1] - 2 * src[1])))
            if not last:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)
