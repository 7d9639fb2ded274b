"""Test-set ELBO terms and the importance-weighted bound on -log p(x).

IWAE bound (Burda et al. 2016, eq. 8):  log p(x) >= E[ log (1/K) sum_k p(x, z_k) / q(z_k|x) ],  z_k ~ q.
It equals the ELBO for K = 1 (with the Monte-Carlo KL, not the analytic one) and tightens as K
grows. It is an evaluation quantity: computed under no_grad, so no weight ever carries a gradient.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..distributions import standard_normal_log_prob


# The most images one network call of an evaluation holds (draws x images for the IWAE bound): peak
# memory is then set by this and the image size, never by K, the batch size or the data set's size.
IMAGES_PER_CALL = 500


@torch.no_grad()
def log_importance_weights(model, x: Tensor, k: int, images_per_call: int = IMAGES_PER_CALL,
                           on_chunk=None) -> Tensor:
    """log p(x|z_k) + log p(z_k) - log q(z_k|x) for k posterior draws, decoded in chunks of at most
    `images_per_call` (draws x images); `on_chunk(n)` is told each chunk's decoded count. -> (K, B)"""
    if k < 1:
        raise ValueError(f"the IWAE bound needs K >= 1 draws, got {k}")
    out = []
    for first in range(0, x.shape[0], images_per_call):
        x_part = x[first:first + images_per_call]  # (b, C, H, W)
        b = x_part.shape[0]
        q = model.encode(x_part)
        draws = max(1, images_per_call // b)
        rows = []
        for start in range(0, k, draws):
            n = min(draws, k - start)
            z = q.sample(n)  # (n, b, D)
            flat = z.reshape(n * b, *z.shape[2:])
            x_rep = x_part.unsqueeze(0).expand(n, *x_part.shape).reshape(n * b, *x_part.shape[1:])
            log_px = model.log_likelihood(x_rep, flat).view(n, b)
            log_pz = standard_normal_log_prob(flat).view(n, b)
            rows.append(log_px + log_pz - q.log_prob(z))
            if on_chunk is not None:
                on_chunk(n * b)
        out.append(torch.cat(rows, 0))
    return torch.cat(out, 1)


def iwae_bound(log_w: Tensor) -> Tensor:
    """log (1/K) sum_k w_k from log-weights (K, B). -> (B,)"""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


@torch.no_grad()
def iwae_nll(model, x: Tensor, k: int, on_chunk=None) -> Tensor:
    """Importance-weighted upper bound on -log p(x) per image, in nats. (B,)"""
    return -iwae_bound(log_importance_weights(model, x, k, on_chunk=on_chunk))


def supports_likelihood(model) -> bool:
    """Models with a Gaussian posterior and a tractable p(x|z) can be scored by ELBO/IWAE."""
    return hasattr(model, "log_likelihood") and model.has_posterior
