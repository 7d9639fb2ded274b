"""Models: every one keeps the small contract of `GenerativeModel`."""

from .base import Batch, GenerativeModel
from .registry import MODELS, build_model, settings_from_data, get_entry, model_config, register
from .vae import AE, VAE, AEConfig, VAEConfig

__all__ = ["Batch", "GenerativeModel", "MODELS", "build_model", "settings_from_data", "get_entry", "model_config", "register",
           "AE", "VAE", "AEConfig", "VAEConfig"]
