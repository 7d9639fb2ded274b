"""Image completion: fill the missing part of an image from its kept part, a half or 1-3 quadrants (the
VAE/GAN survey's sec. 4.4.1; Sohn et al.'s quadrants).

Two ways, one entry point (`complete`):
- a CVAE conditioned on the kept part (model.condition = that half, "half" or "quadrants"): decode draws of
  z ~ p(z|y) with y the kept part (the VAE/GAN survey's figure 8), or the prior's mean for a point estimate;
- any unconditional model, by inference on the observed pixels:
  "optimise": z* = argmax_z log p(x_obs | z) + log p(z), the likelihood over the kept pixels only
  (Adam on z from the code of the mean-filled image), then decode z*; needs a likelihood p(x|z);
  "iterate": x_0 = kept pixels, the rest the training mean; x_{t+1} = kept pixels of x, the rest
  Dec(Enc(x_t)) (a deterministic version of Rezende et al. 2014's sec. 5.3 pseudo-Gibbs chain);
  any model with an encoder.
The kept pixels are always pasted back: a completion changes only the missing region.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..conditioning import HALF_QUADRANTS, QUADRANTS, keep_mask, kept_quadrants, quadrant_box
from ..data.dataset import fixed_sample
from ..importance import IMAGES_PER_CALL
from ..metrics.evaluate import even_batches, mean_and_se
from ..metrics.image_quality import mse_per_image, ssim_per_image
from ..metrics.likelihood import conditional_nll
from ..progress import TaskProgress
from ..errors import ConfigError
from ..models.base import eval_mode

METHODS = ("auto", "prior", "optimise", "iterate")


def completion_method(model, keep: str, method: str = "auto") -> str:
    """The method `complete` uses for `model` and kept half `keep`, or a one-line refusal."""
    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    kept_quadrants(keep)  # a half or 1-3 quadrants, else refused by name
    caps = model.capabilities
    if caps.label_conditional:
        raise ConfigError("a label-conditional model cannot complete images; train a CVAE on an image part "
                          "(--set model.condition=left) or complete with an unconditional model")
    if caps.image_conditional:
        if method not in ("auto", "prior"):
            raise ConfigError(f"a model conditioned on an image part completes from its prior p(z|y); --method "
                              f"{method} is for unconditional models")
        if not caps.completes_from_prior(keep):
            trained = {"half": "any half"}.get(caps.condition, f"the {caps.condition} half")
            raise ConfigError(f"this model was trained to complete from {trained}, not from {keep} (train with "
                              "--set model.condition=half for any half, or =quadrants for any 1-3 quadrants)")
        return "prior"
    if method == "prior":
        raise ConfigError("--method prior needs a model conditioned on the kept part (cvae with model.condition=...)")
    if method == "auto":
        return inference_method(model)
    if method == "optimise" and not caps.likelihood:
        raise ConfigError("--method optimise needs a model with a likelihood p(x|z); use --method iterate")
    return method


def inference_method(model) -> str:
    """How an unconditional model completes by inference: optimising z under its likelihood when it has
    one, else iterating its encoder and decoder."""
    return "optimise" if model.capabilities.likelihood else "iterate"


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
            y = model.kept_side_information(x, mask)
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


def evaluate_completion(model, test_data, train_mean: torch.Tensor, keep: str, *, method: str = "auto",
                        images: int = 1000, batch_size: int = IMAGES_PER_CALL, seed: int = 0, steps: int = 100,
                        nll_samples: int = 0, nll_images: int | None = 200, progress: bool = False) -> dict:
    """Completion of the missing part of `images` test images (a fixed uniform sample) from their
    `keep` part (a half or 1-3 quadrants): MSE and SSIM of the completed region against the truth, the point estimate (a CVAE's
    prior mean, or the inferred code), beside the training mean of that region as the baseline.
    Keys completion/<keep>/{mse,ssim,baseline_mse,baseline_ssim,images,method}. A model conditioned on
    the kept part (method prior) with `nll_samples` = K > 0 adds the importance-weighted bound on
    -log p(x_missing | x_kept) over the first `nll_images` of the sample (completion/<keep>/nll)."""
    from ..run.completion import complete, completion_method, missing_regions

    method = completion_method(model, keep, method)
    n = min(images, len(test_data))
    order = fixed_sample(len(test_data), n, seed)
    regions = missing_regions(keep, *test_data.image_shape[1:])
    areas = [(r.stop - r.start) * (c.stop - c.start) for r, c in regions]
    weights = [a / sum(areas) for a in areas]  # MSE and SSIM of the missing part: area-weighted over its tiles
    device = next(model.parameters()).device
    mean = train_mean.to(device)
    sums = dict(mse=0.0, ssim=0.0, baseline_mse=0.0, baseline_ssim=0.0)
    per_image = 1 if method == "prior" else steps  # inference steps, each a decode (and a gradient) per image
    with torch.random.fork_rng(devices=[]), TaskProgress(f"completion ({keep} kept, {method})", n * per_image,
                                                         "image steps", enabled=progress) as shown:
        torch.manual_seed(seed)
        for start, stop in even_batches(n, batch_size):
            x = test_data.batch(order[start:stop]).to(device)
            b = stop - start
            done = complete(model, x, keep, method, fill=mean, mean=True, steps=steps,
                            on_step=lambda: shown.advance(b))
            for (rows, cols), w in zip(regions, weights):
                truth, region, base = x[..., rows, cols], done[..., rows, cols], mean.expand_as(x)[..., rows, cols]
                sums["mse"] += w * float(mse_per_image(region, truth).sum())
                sums["ssim"] += w * float(ssim_per_image(region, truth).sum())
                sums["baseline_mse"] += w * float(mse_per_image(base, truth).sum())
                sums["baseline_ssim"] += w * float(ssim_per_image(base, truth).sum())
            if method == "prior":
                shown.advance(b)
    out = {f"completion/{keep}/{k}": v / n for k, v in sums.items()}
    if method == "prior" and nll_samples > 0 and model.capabilities.likelihood:
        m = n if nll_images is None else min(nll_images, n)
        with eval_mode(model), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            nll = torch.cat([conditional_nll(model, test_data.batch(order[a:b]).to(device), keep, nll_samples).cpu()
                             for a, b in even_batches(m, batch_size)])
        mean, se = mean_and_se(nll)
        out.update({f"completion/{keep}/nll": mean, f"completion/{keep}/nll_samples": nll_samples,
                    f"completion/{keep}/nll_images": m})
        if math.isfinite(se):
            out[f"completion/{keep}/nll_se"] = se
    out[f"completion/{keep}/images"] = n
    out[f"completion/{keep}/method"] = method
    if method != "prior":
        out[f"completion/{keep}/steps"] = steps
    return out
