"""Training: the model-agnostic loop, checkpoints, and the run folder around them."""

from .checkpoint import check_checkpoint, latest_checkpoint, load_checkpoint, save_checkpoint
from .lock import RunFolderBusy, RunLock
from .trainer import EpochSampler, Trainer

__all__ = ["Trainer", "EpochSampler", "save_checkpoint", "load_checkpoint", "latest_checkpoint", "check_checkpoint",
           "RunLock", "RunFolderBusy"]
