"""Reconstruction quality: SSIM (Wang et al. 2004) via torchmetrics, and MSE.

SSIM settings are the standard ones: 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
data range 1. A test cross-checks the numbers against scikit-image.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..data.dataset import fixed_sample


def ssim_window(h: int, w: int) -> tuple[int, float]:
    """The Gaussian window (size, sigma): 11 and 1.5, or for images under 11 pixels (8x8 digits, a
    completion's strip) the largest odd size that fits, with sigma (size - 1) / 7 (torchmetrics'
    Gaussian kernel is 2 * int(3.5 sigma + 0.5) + 1 wide, so that sigma gives exactly `size`)."""
    size = min(11, h - (1 - h % 2), w - (1 - w % 2))
    if size < 3:
        raise ValueError(f"images of {h}x{w} are too small for SSIM (need at least 3x3)")
    return size, (1.5 if size == 11 else (size - 1) / 7)


def gaussian_window_1d(size: int, sigma: float, dtype=torch.float32, device=None) -> Tensor:
    t = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-t.square() / (2 * sigma**2))
    return g / g.sum()  # (size,)


_K1, _K2 = 0.01, 0.03  # data range 1


def _band(n: int, g: Tensor) -> Tensor:
    """(n, n - k + 1): column j holds g at rows j..j+k-1, so x @ band filters x's last axis with g."""
    k = len(g)
    out = torch.zeros(n, n - k + 1, dtype=g.dtype, device=g.device)
    for j in range(n - k + 1):
        out[j:j + k, j] = g
    return out


def ssim_and_cs(a: Tensor, b: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """Mean SSIM and mean contrast-structure term (eqs. 2-4 of Wang et al. 2004, C3 = C2 / 2) of each
    image pair over channels and the valid window positions, window the outer product of the 1-D
    Gaussian g. (B,), (B,)"""
    bsz, c, h, w = a.shape
    x = torch.cat([a, b, a * a, b * b, a * b])  # (5B, C, H, W)
    # The separable Gaussian over valid positions only (no padding), as two matrix products with
    # banded matrices: the same sums as two 1-D convolutions, ~6x faster on a CPU than conv2d.
    x = _band(h, g).T @ (x @ _band(w, g))  # (5B, C, H - k + 1, W - k + 1)
    mu_a, mu_b, aa, bb, ab = x.reshape(5, bsz, c, *x.shape[-2:])
    var_a = (aa - mu_a.square()).clamp(min=0)
    var_b = (bb - mu_b.square()).clamp(min=0)
    cov = ab - mu_a * mu_b
    c1, c2 = _K1**2, _K2**2
    cs = (2 * cov + c2) / (var_a + var_b + c2)  # eq. 3 x eq. 4 with C3 = C2/2
    lum = (2 * mu_a * mu_b + c1) / (mu_a.square() + mu_b.square() + c1)  # eq. 2
    return (lum * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def ssim_per_image(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean SSIM of each image pair over channels and the valid window positions, x_hat clamped to
    [0, 1]. (B,)

    The numbers of torchmetrics' SSIM map (reflect padding) averaged over the positions whose window
    lies inside the image, as Wang et al.'s reference code and scikit-image do (torchmetrics' own
    reduction also averages the padded border, which lowers 28x28 scores by ~0.1-0.2). Computed
    directly on those positions with a separable window, which is the same arithmetic on 1/6 of the
    work of torchmetrics' padded 2-D convolution (tests pin it against torchmetrics and scikit-image).
    """
    x_hat, x = x_hat.float().clamp(0, 1), x.float()
    g = gaussian_window_1d(*ssim_window(*x.shape[-2:]), dtype=x.dtype, device=x.device)
    return ssim_and_cs(x_hat, x, g)[0]


def mse_per_image(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean squared error per pixel, one value per image. (B,)"""
    return (x_hat - x).pow(2).flatten(1).mean(1)


@torch.no_grad()
def psnr_from_mse(mse: Tensor, floor: float = 1e-10) -> Tensor:
    """Peak signal-to-noise ratio in dB of images in [0, 1] (peak 1) from their per-image MSE:
    10 log10(1 / MSE), the MSE floored at `floor` (100 dB) so that a perfect copy stays finite."""
    return 10 * torch.log10(1 / mse.double().clamp_min(floor))


def dataset_mean_image(data, batch_size: int = 4096, max_images: int = 65_536) -> Tensor:
    """The mean image of `data` (all of it, or a fixed random subset of `max_images` when larger,
    e.g. dSprites' 737,280). -> (1, C, H, W)"""
    order = fixed_sample(len(data), max_images).sort().values  # sorted: the sum reads memory in order
    total = torch.zeros(data.image_shape, dtype=torch.float64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # a dynamically binarised split draws its pixels when read: the same draw each time
        for start in range(0, len(order), batch_size):
            total += data.batch(order[start:start + batch_size]).double().sum(0)
    return (total / len(order)).float().unsqueeze(0)


_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def laplacian_variance(x: Tensor) -> Tensor:
    """Variance of the 3x3 Laplacian over each image's interior: a blur measure (Pech-Pacheco et
    al. 2000); blurrier images score lower. Averaged over channels. (B,)"""
    b, c, h, w = x.shape
    kernel = _LAPLACIAN.to(x).view(1, 1, 3, 3)
    lap = torch.nn.functional.conv2d(x.float().reshape(b * c, 1, h, w), kernel)  # valid: no border effects
    return lap.reshape(b, c, -1).var(-1, unbiased=False).mean(1)


def gradient_energy(x: Tensor) -> Tensor:
    """Mean squared finite-difference gradient per pixel (Tenengrad-like sharpness). (B,)"""
    dx = x[..., :, 1:] - x[..., :, :-1]
    dy = x[..., 1:, :] - x[..., :-1, :]
    return dx.pow(2).flatten(1).mean(1) + dy.pow(2).flatten(1).mean(1)
