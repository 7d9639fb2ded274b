"""Test-set ELBO terms and the importance-weighted bound on -log p(x).

IWAE bound (Burda et al. 2016, eq. 8):  log p(x) >= E[ log (1/K) sum_k p(x, z_k) / q(z_k|x) ],  z_k ~ q;
for a conditional model every term is conditioned on y, bounding log p(x|y). It equals the ELBO for
K = 1 (with the Monte-Carlo KL, not the analytic one) and tightens as K grows. It is an evaluation
quantity: computed under no_grad, so no weight ever carries a gradient. The weights are the model's
(`GenerativeModel.log_importance_weights`, each in `vaekit.importance`'s chunk loop).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..conditioning import keep_mask
from ..importance import IMAGES_PER_CALL, iwae_bound


@torch.no_grad()
def log_importance_weights(model, x: Tensor, k: int, y: Tensor | None = None,
                           images_per_call: int = IMAGES_PER_CALL, on_chunk=None) -> Tensor:
    """The model's log importance weights of images x given side information y. -> (K, B)"""
    if k < 1:
        raise ValueError(f"the IWAE bound needs K >= 1 draws, got {k}")
    return model.log_importance_weights(x, k, y, images_per_call=images_per_call, on_chunk=on_chunk)


@torch.no_grad()
def iwae_nll(model, x: Tensor, k: int, y: Tensor | None = None, on_chunk=None) -> Tensor:
    """Importance-weighted upper bound on -log p(x) (-log p(x|y)) per image, in nats. (B,)"""
    return -iwae_bound(log_importance_weights(model, x, k, y, on_chunk=on_chunk))


@torch.no_grad()
def conditional_nll(model, x: Tensor, keep: str, k: int, images_per_call: int = IMAGES_PER_CALL) -> Tensor:
    """Importance-weighted upper bound on -log p(x_missing | x_kept) per image, in nats, for a model
    conditioned on the kept part y (Sohn et al. 2015's conditional log-likelihood, sec. 4.2):
        log p(x_m|y) >= E[log (1/K) sum_k p(x_m|z_k, y) p(z_k|y) / q(z_k|x, y)],  z_k ~ q(z|x, y),
    the likelihood over the missing pixels only. (B,)"""
    caps = model.capabilities
    if not (caps.image_conditional and caps.likelihood):
        raise ValueError("the conditional log-likelihood needs a model with a likelihood conditioned on an image part")
    mask = keep_mask(keep, *x.shape[-2:], device=x.device)
    y = model.kept_side_information(x, mask)
    return -iwae_bound(model.log_importance_weights(x, k, y, mask=1 - mask, images_per_call=images_per_call))
