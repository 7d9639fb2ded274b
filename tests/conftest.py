"""Shared fixtures: tiny in-memory datasets and tiny model settings, so the suite stays fast."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

from vaekit.data import ImageDataset

# Feature networks trained by tests go to a throw-away cache, never the user's ~/.cache/vaekit.
os.environ["VAEKIT_CACHE"] = tempfile.mkdtemp(prefix="vaekit-test-cache-")

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
HAVE_FASHION = (FASHION_DIR / "train-images-idx3-ubyte.gz").exists()
# the tiny network settings of the convolutional models, for tests that build one by hand (the shared
# tests take every model's own, `GenerativeModel.tiny_settings`)
TINY = {"latent_dim": 4, "base_channels": 4, "max_channels": 8}

needs_fashion = pytest.mark.skipif(not HAVE_FASHION, reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


def blob_images(n: int, size: int = 16, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """Smooth random blobs as uint8 (N, C, size, size): easy to learn, not constant."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    cx = torch.rand(n, 1, 1, generator=g) * size
    cy = torch.rand(n, 1, 1, generator=g) * size
    r = 2 + torch.rand(n, 1, 1, generator=g) * size / 4
    img = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r**2))  # (N, size, size)
    img = img.unsqueeze(1).expand(n, channels, size, size)
    return (img * 255).round().to(torch.uint8).contiguous()


@pytest.fixture
def tiny_data() -> ImageDataset:
    return ImageDataset("blobs", "train", blob_images(256), torch.arange(256) % 4, ["a", "b", "c", "d"], "memory")


@pytest.fixture
def tiny_test_data() -> ImageDataset:
    return ImageDataset("blobs", "test", blob_images(64, seed=1), torch.arange(64) % 4, ["a", "b", "c", "d"], "memory")


# Every registered model, and conditional settings the presets do not show (an image part as y, the
# learned prior p(z|y)): the contract and configuration-space tests run over all of them.
VARIANTS = {"cvae_half_learned_prior": ("cvae", {"condition": "half", "prior": "learned"}),
            "vae_left": ("vae", {"condition": "left"}),
            "cvae_gan_learned_prior": ("cvae_gan", {"prior": "learned"}),
            "vaegan_top": ("vaegan", {"condition": "top", "prior": "learned"}),
            "cvae_quadrants": ("cvae", {"condition": "quadrants"}),
            "m2_fc_gaussian": ("m2", {"architecture": "fc", "likelihood": "gaussian"}),
            "m2_mlp": ("m2", {"architecture": "mlp"}),
            "ssl_vaegan_mlp": ("ssl_vaegan", {"architecture": "mlp", "entropy_weight": 1.0}),
            "draw_gaussian_no_attention": ("draw", {"likelihood": "gaussian", "attention": False}),
            "conditional_draw_gan_features": ("draw_gan", {"condition": "label", "reconstruction": "features"})}


def model_cases() -> list[tuple[str, dict]]:
    """(registered name, settings) for every registered model and every VARIANT."""
    from vaekit.models import MODELS

    return [(name, {}) for name in MODELS] + list(VARIANTS.values())


def case_id(case) -> str:
    name, over = case
    return name + "".join(f"-{k}={v}" for k, v in over.items())


def tiny_settings(name: str, overrides: dict | None = None) -> dict:
    """Model settings small enough for fast tests, for any registered model, with what a run takes
    from the data (`settings_from_data`) filled in as for a run of 1000 images of 4 classes at batch 10."""
    from vaekit.config import to_dict
    from vaekit.models import MODELS, model_config, settings_from_data
    from vaekit.models.base import DataFacts

    entry = MODELS[name]
    settings = entry.model_class.tiny_settings(entry.preset)  # declared beside the model
    settings.update(overrides or {})
    filled = settings_from_data(name, model_config(name, settings), DataFacts(1000, 100, classes=4, labelled_images=100))
    return {**settings, **{k: v for k, v in to_dict(filled).items() if k in DERIVED}}


# the settings a run fills from the data (`settings_from_data`)
DERIVED = ("dataset_size", "steps_per_epoch", "base_settings", "classes", "train_images", "labelled_images")
