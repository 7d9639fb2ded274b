"""Training: the model-agnostic loop, checkpoints, and the run folder around them."""

from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .trainer import EpochSampler, Trainer

__all__ = ["Trainer", "EpochSampler", "save_checkpoint", "load_checkpoint", "latest_checkpoint"]
