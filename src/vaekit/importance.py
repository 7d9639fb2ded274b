"""Importance sampling for the IWAE bound (Burda et al. 2016, eq. 8), in chunks whose size is fixed:

    log p(x) >= E[ log (1/K) sum_k p(x, z_k) / q(z_k|x) ],   z_k ~ q

`chunked_log_weights` is the one loop every model's `log_importance_weights` runs: images in chunks and
draws in groups so that one network call holds at most `images_per_call` (draws x images). Peak memory
is then set by that and the image size, never by K, the batch size or the data set's size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

# 250 rather than more: on CPUs the forward passes of vaekit's convolutional networks run fastest per image
# at a few hundred images (larger activations leave the cache), and memory stays small.
IMAGES_PER_CALL = 250


def repeat_draws(t: Tensor, n: int) -> Tensor:
    """(b, ...) -> (n * b, ...): n copies, the draw index outermost."""
    return t.unsqueeze(0).expand(n, *t.shape).reshape(n * t.shape[0], *t.shape[1:])


@torch.no_grad()
def chunked_log_weights(x: Tensor, k: int, y: Tensor | None,
                        prepare: Callable[[Tensor, Tensor | None], Callable[[int], Tensor]],
                        images_per_call: int = IMAGES_PER_CALL, on_chunk=None) -> Tensor:
    """Log importance weights of images x (B, ...) with side information y, K draws each. `prepare(x_part,
    y_part)` is called once per chunk of images (to encode them once) and returns `draw(n)`, the log
    weights of n fresh draws for each image of the chunk, (n, b). `on_chunk(count)` is told each group's
    decoded count. -> (K, B)"""
    if k < 1:
        raise ValueError(f"the IWAE bound needs K >= 1 draws, got {k}")
    out = []
    for first in range(0, x.shape[0], images_per_call):
        x_part = x[first:first + images_per_call]  # (b, ...)
        y_part = None if y is None else y[first:first + images_per_call]
        b = x_part.shape[0]
        draw = prepare(x_part, y_part)
        per_call = max(1, images_per_call // b)
        rows = []
        for start in range(0, k, per_call):
            n = min(per_call, k - start)
            rows.append(draw(n))  # (n, b)
            if on_chunk is not None:
                on_chunk(n * b)
        out.append(torch.cat(rows, 0))
    return torch.cat(out, 1)


def iwae_bound(log_w: Tensor) -> Tensor:
    """log (1/K) sum_k w_k from log-weights (K, B). -> (B,)"""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])
