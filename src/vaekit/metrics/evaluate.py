"""`vaekit evaluate`: every test-set number of a trained model, in eval mode, in one dict.

Per image: ELBO terms (the model's own `loss` terms, in nats), the IWAE bound on -log p(x) with K
samples, SSIM and MSE of reconstructions (posterior mean decoded), and the same for the mean-image
baseline. The counts of images and samples used are part of the output.
"""

from __future__ import annotations

import torch

from ..models.base import Batch, eval_mode
from .image_quality import dataset_mean_image, mse_per_image, ssim_per_image
from .likelihood import iwae_nll, supports_likelihood


@torch.no_grad()
def evaluate_model(model, test_data, *, train_mean: torch.Tensor | None = None, iw_samples: int = 0,
                   iw_images: int | None = None, max_images: int | None = None, batch_size: int = 500,
                   seed: int = 0) -> dict:
    """Evaluate `model` on (the first `max_images` of) `test_data`. Runs in eval mode always."""
    with eval_mode(model), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _evaluate(model, test_data, train_mean, iw_samples, iw_images, max_images, batch_size)


def _evaluate(model, data, train_mean, iw_samples, iw_images, max_images, batch_size) -> dict:
    n = len(data) if max_images is None else min(max_images, len(data))
    device = next(model.parameters()).device
    if train_mean is not None:
        train_mean = train_mean.to(device)
    n_iw = 0 if iw_samples <= 0 or not supports_likelihood(model) else (n if iw_images is None else min(iw_images, n))
    sums: dict[str, float] = {}
    ssim_sum = mse_sum = iw_sum = base_ssim = base_mse = 0.0
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(start + batch_size, n))
        x = data.batch(idx).to(device)
        y = data.labels[idx].to(device) if data.labels is not None else None
        terms = model.loss(Batch(x, y), 0)
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(idx)
        x_hat = model.reconstruct(x)
        ssim_sum += float(ssim_per_image(x_hat, x).sum())
        mse_sum += float(mse_per_image(x_hat, x).sum())
        if train_mean is not None:
            base_ssim += float(ssim_per_image(train_mean.expand_as(x), x).sum())
            base_mse += float(mse_per_image(train_mean.expand_as(x), x).sum())
        if start < n_iw:
            x_iw = x[: n_iw - start]
            iw_sum += float(iwae_nll(model, x_iw, iw_samples).sum())
    result = {f"test/{k}": v / n for k, v in sums.items()}
    result["test/ssim"] = ssim_sum / n
    result["test/mse"] = mse_sum / n
    if n_iw:
        result["test/iwae_nll"] = iw_sum / n_iw
        result["iwae_samples"] = iw_samples
        result["iwae_images"] = n_iw
    if train_mean is not None:  # the (blurry) training mean image as every reconstruction
        result["baseline/mean_image/ssim"] = base_ssim / n
        result["baseline/mean_image/mse"] = base_mse / n
    result["images"] = n
    return result


__all__ = ["evaluate_model", "evaluate_disentanglement", "dataset_mean_image"]


@torch.no_grad()
def evaluate_disentanglement(model, factor_data, mode: str = "fast", seed: int = 0) -> dict:
    """MIG, beta-VAE, FactorVAE, DCI and SAP of the posterior means, on a dataset with known factors
    (dSprites). mode: "fast" (~58k images encoded) or "full" (disentanglement_lib's counts, ~2.9M).
    Empty when the data has no factors or the model no posterior."""
    from ..data.factors import FactorDataset
    from .disentanglement import all_disentanglement_metrics

    if mode == "off" or not isinstance(factor_data, FactorDataset) or not model.has_posterior:
        return {}
    device = next(model.parameters()).device

    def encode(x):
        return model.latent_code(x.to(device)).flatten(1).cpu()

    with eval_mode(model):
        result = all_disentanglement_metrics(encode, factor_data, seed=seed, fast=mode == "fast")
    return {f"disentanglement/{k}": v for k, v in result.items()}
