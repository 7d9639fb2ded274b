"""Image completion: fill the missing part of an image from its kept part, a half or 1-3 quadrants (the
seed's sec. 4.4.1; Sohn et al.'s quadrants).

Two ways, one entry point (`complete`):
- a CVAE conditioned on the kept part (model.condition = that half, "half" or "quadrants"): decode draws of
  z ~ p(z|y) with y the kept part (the seed's figure 8), or the prior's mean for a point estimate;
- any unconditional model, by inference on the observed pixels:
  "optimise": z* = argmax_z log p(x_obs | z) + log p(z), the likelihood over the kept pixels only
  (Adam on z from the code of the mean-filled image), then decode z*; needs a likelihood p(x|z);
  "iterate": x_0 = kept pixels, the rest the training mean; x_{t+1} = kept pixels of x, the rest
  Dec(Enc(x_t)) (a deterministic version of Rezende et al. 2014's sec. 5.3 pseudo-Gibbs chain);
  any model with an encoder.
The kept pixels are always pasted back: a completion changes only the missing region.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .conditioning import HALF_QUADRANTS, HALVES, QUADRANTS, keep_mask, kept_part, kept_quadrants, quadrant_box
from .errors import ConfigError
from .models.base import eval_mode

METHODS = ("auto", "prior", "optimise", "iterate")


def completion_method(model, keep: str, method: str = "auto") -> str:
    """The method `complete` uses for `model` and kept half `keep`, or a one-line refusal."""
    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    kept_quadrants(keep)  # a half or 1-3 quadrants, else refused by name
    cond = model.condition
    if cond == "label":
        raise ConfigError("a label-conditional model cannot complete images; train a CVAE on an image part "
                          "(--set model.condition=left) or complete with an unconditional model")
    if cond != "none":
        if method not in ("auto", "prior"):
            raise ConfigError(f"a model conditioned on an image part completes from its prior p(z|y); --method "
                              f"{method} is for unconditional models")
        fits = cond == "quadrants" or (cond == "half" and keep in HALVES) or \
            (cond in HALVES and kept_quadrants(cond) == kept_quadrants(keep))
        if not fits:
            trained = {"half": "any half"}.get(cond, f"the {cond} half")
            raise ConfigError(f"this model was trained to complete from {trained}, not from {keep} (train with "
                              "--set model.condition=half for any half, or =quadrants for any 1-3 quadrants)")
        if not hasattr(model, "side"):
            raise ConfigError("completion by a conditional multi-stage model is not supported")
        return "prior"
    if method == "prior":
        raise ConfigError("--method prior needs a model conditioned on the kept part (cvae with model.condition=...)")
    if method == "auto":
        return "optimise" if hasattr(model, "log_likelihood") else "iterate"
    if method == "optimise" and not hasattr(model, "log_likelihood"):
        raise ConfigError("--method optimise needs a model with a likelihood p(x|z); use --method iterate")
    return method


def complete(model, x: Tensor, keep: str, method: str = "auto", *, fill: Tensor | None = None,
             mean: bool = False, steps: int = 100, lr: float = 0.05, on_step=None) -> Tensor:
    """Completions of images x (B, C, H, W) from their `keep` half; the kept pixels are x's own.
    mean=True: the point estimate (the prior's mean for a CVAE) instead of a draw. `fill` (C, H, W):
    the first guess of the missing pixels for inference (default 0.5). `on_step()` is called after
    each of the `steps` steps of inference."""
    method = completion_method(model, keep, method)
    x = x.to(model.device)
    return fill_missing(model, x, keep_mask(keep, *x.shape[-2:], device=x.device), method, fill=fill, mean=mean,
                        steps=steps, lr=lr, on_step=on_step)


def fill_missing(model, x: Tensor, mask: Tensor, method: str, *, fill: Tensor | None = None, mean: bool = False,
                 steps: int = 100, lr: float = 0.05, on_step=None) -> Tensor:
    """`complete` for any mask (1 where kept; (1, 1, H, W) or (B, 1, H, W)) and a resolved method: the
    explorer's hand-drawn masks reach unconditional models through this."""
    x = x.to(model.device)
    mask = mask.to(x)
    fill = torch.full_like(x[0], 0.5) if fill is None else fill.to(x.device)
    with eval_mode(model):
        if method == "prior":
            y = kept_part(x, mask)
            prior = model.prior(y, len(x))
            guess = model.decode(prior.mode() if mean else prior.sample(), y)
        elif method == "iterate":
            guess = _iterate(model, x, mask, fill, steps, on_step)
        else:
            guess = _optimise(model, x, mask, fill, steps, lr, on_step)
    return mask * x + (1 - mask) * guess


def _iterate(model, x: Tensor, mask: Tensor, fill: Tensor, steps: int, on_step) -> Tensor:
    current = mask * x + (1 - mask) * fill
    for _ in range(steps):
        current = mask * x + (1 - mask) * model.reconstruct(current)
        if on_step is not None:
            on_step()
    return current


def _optimise(model, x: Tensor, mask: Tensor, fill: Tensor, steps: int, lr: float, on_step) -> Tensor:
    start = mask * x + (1 - mask) * fill
    z = model.latent_code(start).detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([z], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            log_joint = model.log_likelihood(x, z, mask=mask) + model.prior(None, len(z)).log_prob(z)
            (grad,) = torch.autograd.grad(-log_joint.sum(), z)  # the weights get no gradient
            z.grad = grad
            optimiser.step()
            if on_step is not None:
                on_step()
    return model.decode(z.detach())


def completion_rows(model, x: Tensor, keep: str, method: str = "auto", **options) -> tuple[Tensor, list[str]]:
    """Rows: the kept part (the missing half grey), the completion, the truth. -> (3 * B, C, H, W)"""
    x = x.to(model.device)
    mask = keep_mask(keep, *x.shape[-2:], device=x.device)
    shown = mask * x + (1 - mask) * 0.5
    return torch.cat([shown, complete(model, x, keep, method, **options), x]), ["kept", "completion", "truth"]


def missing_regions(keep: str, height: int, width: int) -> list[tuple[slice, slice]]:
    """The missing part when `keep` is kept, as rectangles (rows, columns) that tile it: one when it is a
    half or a quadrant, else one per missing quadrant (an L shape, or two opposite corners)."""
    missing = tuple(q for q in QUADRANTS if q not in kept_quadrants(keep))
    half = next((name for name, qs in HALF_QUADRANTS.items() if qs == missing), None)
    if half is not None:
        rows, cols = quadrant_box(missing[0], height, width)
        last_rows, last_cols = quadrant_box(missing[1], height, width)
        return [(slice(rows.start, last_rows.stop), slice(cols.start, last_cols.stop))]
    return [quadrant_box(q, height, width) for q in missing]
