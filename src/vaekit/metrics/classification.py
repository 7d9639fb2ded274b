"""Test classification error of a model that classifies (M2's and SSL-VAE-GAN's argmax q(y|x), a
CVAE-GAN's discriminator), with its confusion matrix: the measure of the VAE/GAN survey's Table 1 (sec. 4.5)."""

from __future__ import annotations

import math

import torch

from ..data.dataset import fixed_sample
from ..models.base import eval_mode
from ..progress import TaskProgress
from .likelihood import IMAGES_PER_CALL


@torch.no_grad()
def predict(model, data, positions: torch.Tensor, batch_size: int = IMAGES_PER_CALL, shown=None) -> torch.Tensor:
    """argmax of `model.classify` for the images of `data` at `positions`, in eval mode. (n,) int64"""
    device = next(model.parameters()).device
    out = []
    with eval_mode(model):
        for start in range(0, len(positions), batch_size):
            idx = positions[start:start + batch_size]
            out.append(model.classify(data.batch(idx).to(device)).argmax(1).cpu())
            if shown is not None:
                shown.advance(len(idx))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def confusion_matrix(truth: torch.Tensor, predicted: torch.Tensor, classes: int) -> torch.Tensor:
    """counts[i, j]: images of class i predicted as j. (k, k) int64"""
    return torch.bincount(truth * classes + predicted, minlength=classes * classes).view(classes, classes)


def evaluate_classification(model, test_data, images: int | None = None, seed: int = 0,
                            batch_size: int = IMAGES_PER_CALL, progress: bool = False) -> dict:
    """Test error (1 - accuracy) on a fixed uniform sample of `images` test images (all by default), the
    error per class and the confusion matrix (rows: truth). Empty unless the model classifies and the
    test split has labels."""
    if not model.capabilities.classifies or test_data.labels is None:
        return {}
    n = len(test_data) if images is None else min(images, len(test_data))
    positions = fixed_sample(len(test_data), n, seed)
    with TaskProgress("classification", n, "images", enabled=progress) as shown:
        predicted = predict(model, test_data, positions, max(1, min(batch_size, IMAGES_PER_CALL)), shown)
    truth = test_data.labels[positions]
    classes = max(model.classes, int(truth.max()) + 1)
    counts = confusion_matrix(truth, predicted, classes)
    error = float((predicted != truth).float().mean())
    # its standard error over the scored images: a binomial proportion's, sqrt(p (1 - p) / n)
    result = {"classification/error": error, "classification/error_se": math.sqrt(error * (1 - error) / n),
              "classification/images": n}
    for c in range(classes):
        if int(counts[c].sum()):
            result[f"classification/error/{c}"] = 1.0 - float(counts[c, c]) / float(counts[c].sum())
    result["classification/confusion"] = counts.tolist()
    return result
