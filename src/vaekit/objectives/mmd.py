"""The maximum mean discrepancy between codes of the encoder and draws of the prior, with the inverse
multiquadratics kernel: WAE-MMD's penalty (Tolstikhin et al. 2018, "Wasserstein Auto-Encoders",
Algorithm 2 and sec. 4).

    k(x, y) = C / (C + ||x - y||^2),  C = 2 d_z sigma_z^2 (sec. 4), summed over multiples s C of C
    MMD_k(P_Z, Q_Z) ~ 1/(n(n-1)) sum_{l != j} k(z_l, z_j) + 1/(n(n-1)) sum_{l != j} k(z~_l, z~_j)
                      - 2/n^2 sum_{l, j} k(z_l, z~_j)                      (Algorithm 2, the U-statistic)

with z_j ~ P_Z and z~_j ~ Q_Z (the codes of the batch's images).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..precision import full_precision


def imq_kernel(a: Tensor, b: Tensor, c: float, scales: tuple[float, ...]) -> Tensor:
    """sum_s s C / (s C + ||a_i - b_j||^2) for codes a (n, D) and b (m, D). (n, m)"""
    distances = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
    return sum(s * c / (s * c + distances) for s in scales)


def imq_mmd(codes: Tensor, prior_draws: Tensor, prior_variance: float = 1.0,
            scales: tuple[float, ...] = (1.0,)) -> Tensor:
    """The unbiased MMD estimate between codes z~ (n, D) and prior draws z (n, D) (Algorithm 2). A scalar."""
    codes, prior_draws = full_precision(codes), full_precision(prior_draws)
    n, d = codes.shape
    if n < 2:
        raise ValueError("the MMD's U-statistic needs at least 2 codes")
    c = 2.0 * d * prior_variance
    off_diagonal = 1.0 - torch.eye(n, device=codes.device, dtype=codes.dtype)
    same_prior = (imq_kernel(prior_draws, prior_draws, c, scales) * off_diagonal).sum() / (n * (n - 1))
    same_codes = (imq_kernel(codes, codes, c, scales) * off_diagonal).sum() / (n * (n - 1))
    across = imq_kernel(prior_draws, codes, c, scales).sum() / (n * n)
    return same_prior + same_codes - 2.0 * across
