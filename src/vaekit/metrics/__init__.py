"""Measures: likelihood bounds, reconstruction quality, sample quality and disentanglement."""

from .evaluate import evaluate_disentanglement, evaluate_kl_decomposition, evaluate_model, evaluate_samples
from .image_quality import dataset_mean_image, mse_per_image, ssim_per_image
from .likelihood import iwae_bound, iwae_nll, log_importance_weights

__all__ = ["evaluate_model", "evaluate_disentanglement", "evaluate_kl_decomposition", "evaluate_samples", "dataset_mean_image", "mse_per_image", "ssim_per_image",
           "iwae_bound", "iwae_nll", "log_importance_weights"]
