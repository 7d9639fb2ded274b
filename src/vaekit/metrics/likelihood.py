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


@torch.no_grad()
def log_importance_weights(model, x: Tensor, k: int, chunk: int = 64) -> Tensor:
    """log p(x|z_k) + log p(z_k) - log q(z_k|x) for k posterior draws. -> (K, B)"""
    q = model.encode(x)
    out = []
    for start in range(0, k, chunk):
        n = min(chunk, k - start)
        z = q.sample(n)  # (n, B, D)
        flat = z.reshape(n * x.shape[0], *z.shape[2:])
        x_rep = x.unsqueeze(0).expand(n, *x.shape).reshape(n * x.shape[0], *x.shape[1:])
        log_px = model.log_likelihood(x_rep, flat).view(n, x.shape[0])
        log_pz = standard_normal_log_prob(flat).view(n, x.shape[0])
        out.append(log_px + log_pz - q.log_prob(z))
    return torch.cat(out, 0)


def iwae_bound(log_w: Tensor) -> Tensor:
    """log (1/K) sum_k w_k from log-weights (K, B). -> (B,)"""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


@torch.no_grad()
def iwae_nll(model, x: Tensor, k: int) -> Tensor:
    """Importance-weighted upper bound on -log p(x) per image, in nats. (B,)"""
    return -iwae_bound(log_importance_weights(model, x, k))


def supports_likelihood(model) -> bool:
    """Models with a Gaussian posterior and a tractable p(x|z) can be scored by ELBO/IWAE."""
    return hasattr(model, "log_likelihood") and model.has_posterior
