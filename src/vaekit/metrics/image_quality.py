"""Reconstruction quality: SSIM (Wang et al. 2004) via torchmetrics, and MSE.

SSIM settings are the standard ones: 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
data range 1. A test cross-checks the numbers against scikit-image.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..data.dataset import fixed_sample


def ssim_per_image(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean SSIM of each image pair over channels and the valid window positions. (B,)

    torchmetrics computes the SSIM map (reflect padding); we average it over the positions whose
    window lies inside the image, as Wang et al.'s reference code and scikit-image do. (torchmetrics'
    own reduction also averages the padded border, which lowers 28x28 scores by ~0.1-0.2.)
    """
    from torchmetrics.functional.image import structural_similarity_index_measure  # slow import: lazily

    h, w = x.shape[-2:]
    kernel = min(11, h - (1 - h % 2), w - (1 - w % 2))  # tiny images (8x8 digits) need a smaller odd window
    sigma = 1.5 if kernel == 11 else (kernel - 1) / 7  # torchmetrics' kernel is 2*int(3.5*sigma+0.5)+1 wide
    _, ssim_map = structural_similarity_index_measure(
        x_hat.float().clamp(0, 1), x.float(), data_range=1.0, kernel_size=kernel, sigma=sigma,
        reduction="none", return_full_image=True)
    pad = (kernel - 1) // 2
    return ssim_map[..., pad:h - pad, pad:w - pad].flatten(1).mean(1)  # (B,)


def mse_per_image(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean squared error per pixel, one value per image. (B,)"""
    return (x_hat - x).pow(2).flatten(1).mean(1)


@torch.no_grad()
def dataset_mean_image(data, batch_size: int = 4096, max_images: int = 65_536) -> Tensor:
    """The mean image of `data` (all of it, or a fixed random subset of `max_images` when larger,
    e.g. dSprites' 737,280). -> (1, C, H, W)"""
    order = fixed_sample(len(data), max_images).sort().values  # sorted: the sum reads memory in order
    total = torch.zeros(data.image_shape, dtype=torch.float64)
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
