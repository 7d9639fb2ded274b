"""Test-set ELBO terms and the importance-weighted bound on -log p(x).

IWAE bound (Burda et al. 2016, eq. 8):  log p(x) >= E[ log (1/K) sum_k p(x, z_k) / q(z_k|x) ],  z_k ~ q;
for a conditional model every term is conditioned on y, bounding log p(x|y). It equals the ELBO for
K = 1 (with the Monte-Carlo KL, not the analytic one) and tightens as K grows. It is an evaluation
quantity: computed under no_grad, so no weight ever carries a gradient. The weights are the model's
(`GenerativeModel.log_importance_weights`); `posterior_importance_weights` is the default estimator.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


# The most images one network call of an evaluation holds (draws x images for the IWAE bound): peak
# memory is then set by this and the image size, never by K, the batch size or the data set's size.
IMAGES_PER_CALL = 500


def _repeat(t: Tensor, n: int) -> Tensor:
    """(b, ...) -> (n * b, ...): n copies, the draw index outermost."""
    return t.unsqueeze(0).expand(n, *t.shape).reshape(n * t.shape[0], *t.shape[1:])


@torch.no_grad()
def log_importance_weights(model, x: Tensor, k: int, y: Tensor | None = None,
                           images_per_call: int = IMAGES_PER_CALL, on_chunk=None) -> Tensor:
    """The model's log importance weights of images x given side information y. -> (K, B)"""
    if k < 1:
        raise ValueError(f"the IWAE bound needs K >= 1 draws, got {k}")
    return model.log_importance_weights(x, k, y, images_per_call=images_per_call, on_chunk=on_chunk)


@torch.no_grad()
def posterior_importance_weights(model, x: Tensor, k: int, y: Tensor | None = None,
                                 images_per_call: int = IMAGES_PER_CALL, on_chunk=None) -> Tensor:
    """log p(x|z_k, y) + log p(z_k|y) - log q(z_k|x, y) for k draws of the model's factorised posterior,
    its prior `model.prior(y)`, decoded in chunks of at most `images_per_call` (draws x images);
    `on_chunk(n)` is told each chunk's decoded count. -> (K, B)"""
    out = []
    for first in range(0, x.shape[0], images_per_call):
        x_part = x[first:first + images_per_call]  # (b, C, H, W)
        y_part = None if y is None else y[first:first + images_per_call]
        b = x_part.shape[0]
        q = model.encode(x_part, y_part)
        prior = model.prior(y_part, b)  # (b, D) parameters; its log_prob broadcasts over the draws
        draws = max(1, images_per_call // b)
        rows = []
        for start in range(0, k, draws):
            n = min(draws, k - start)
            z = q.sample(n)  # (n, b, D)
            flat = z.reshape(n * b, *z.shape[2:])
            y_rep = None if y_part is None else _repeat(y_part, n)
            log_px = model.log_likelihood(_repeat(x_part, n), flat, y_rep).view(n, b)
            rows.append(log_px + prior.log_prob(z) - q.log_prob(z))
            if on_chunk is not None:
                on_chunk(n * b)
        out.append(torch.cat(rows, 0))
    return torch.cat(out, 1)


def iwae_bound(log_w: Tensor) -> Tensor:
    """log (1/K) sum_k w_k from log-weights (K, B). -> (B,)"""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


@torch.no_grad()
def iwae_nll(model, x: Tensor, k: int, y: Tensor | None = None, on_chunk=None) -> Tensor:
    """Importance-weighted upper bound on -log p(x) (-log p(x|y)) per image, in nats. (B,)"""
    return -iwae_bound(log_importance_weights(model, x, k, y, on_chunk=on_chunk))


def supports_likelihood(model) -> bool:
    """Models with a Gaussian posterior and a tractable p(x|z) can be scored by ELBO/IWAE."""
    return hasattr(model, "log_likelihood") and model.has_posterior


@torch.no_grad()
def conditional_nll(model, x: Tensor, keep: str, k: int, images_per_call: int = IMAGES_PER_CALL) -> Tensor:
    """Importance-weighted upper bound on -log p(x_missing | x_kept) per image, in nats, for a model
    conditioned on the kept part y (Sohn et al. 2015's conditional log-likelihood, sec. 4.2):
        log p(x_m|y) >= E[log (1/K) sum_k p(x_m|z_k, y) p(z_k|y) / q(z_k|x, y)],  z_k ~ q(z|x, y),
    the likelihood over the missing pixels only. (B,)"""
    from ..conditioning import keep_mask, kept_part

    if model.condition in ("none", "label") or not hasattr(model, "log_likelihood"):
        raise ValueError("the conditional log-likelihood needs a model with a likelihood conditioned on an image part")
    mask = keep_mask(keep, *x.shape[-2:], device=x.device)
    y = kept_part(x, mask)
    missing = 1 - mask
    out = []
    for first in range(0, len(x), images_per_call):
        x_part, y_part = x[first:first + images_per_call], y[first:first + images_per_call]
        b = len(x_part)
        q, prior = model.encode(x_part, y_part), model.prior(y_part, b)
        draws = max(1, images_per_call // b)
        rows = []
        for start in range(0, k, draws):
            n = min(draws, k - start)
            z = q.sample(n)  # (n, b, D)
            log_px = model.log_likelihood(_repeat(x_part, n), z.reshape(n * b, -1), _repeat(y_part, n),
                                          mask=missing).view(n, b)
            rows.append(log_px + prior.log_prob(z) - q.log_prob(z))
        out.append(-iwae_bound(torch.cat(rows, 0)))
    return torch.cat(out)
