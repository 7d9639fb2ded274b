"""A run's TensorBoard log (RUN/tensorboard/), written when the `tensorboard` package is installed
(`train.tensorboard = auto`, the default; `true` insists, `false` never): every logged row of
metrics.jsonl as `train/*` scalars, every quick evaluation and the final one as `eval/*` scalars, and at
each of them a grid of samples, the reconstructions of 16 fixed test images and the histogram of the
per-dimension KL of their posterior (models with one). Offline: `tensorboard --logdir runs/`.

Rank 0 writes; the pictures are drawn from their own random streams, so a run with the log trains
exactly as one without it. A resumed run drops the events after its checkpoint (`purge_step`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from ..batch import Batch
from ..data.dataset import fixed_sample
from ..errors import ConfigError
from ..models.base import eval_mode
from ..viz import image_grid

FOLDER = "tensorboard"
PICTURE_IMAGES = 16


def tensorboard_wanted(setting) -> bool:
    """train.tensorboard: auto -> whether the package is installed; true without it is refused."""
    installed = importlib.util.find_spec("tensorboard") is not None
    if setting is True and not installed:
        raise ConfigError("train.tensorboard = true needs the tensorboard package (pip install tensorboard); "
                          "auto writes the log only where it is installed")
    return installed if setting == "auto" else bool(setting)


class TensorBoardLog:
    """Trainer callbacks for "on_log", "on_evaluation" and "on_fit_end" (the final evaluation's numbers)."""

    def __init__(self, out: Path, test_data, start_step: int, seed: int):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(out) / FOLDER), purge_step=start_step or None)
        self.test_data, self.seed = test_data, seed
        self.shown = fixed_sample(len(test_data), min(PICTURE_IMAGES, len(test_data)), seed)

    def on_log(self, trainer, row: dict) -> None:
        for k, v in row.items():
            if k != "step" and isinstance(v, (int, float)):
                self.writer.add_scalar(f"train/{k}", v, row["step"])

    def on_evaluation(self, trainer, row: dict) -> None:
        self._evaluation(trainer.model, row)

    def final(self, result: dict, model, step: int) -> None:
        self._evaluation(model, {**{k: v for k, v in result.items() if k != "step"}, "step": step})
        self.writer.close()

    def _evaluation(self, model, row: dict) -> None:
        step = row["step"]
        for k, v in row.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                self.writer.add_scalar(f"eval/{k}", v, step)
        self._pictures(model, step)
        self.writer.flush()

    @torch.no_grad()
    def _pictures(self, model, step: int) -> None:
        device = next(model.parameters()).device
        with eval_mode(model), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            x = self.test_data.batch(self.shown).to(device)
            labels = self.test_data.labels[self.shown].to(device) if self.test_data.labels is not None else None
            y = model.side_information(Batch(x, labels))
            samples = model.sample(64, None if y is None else y[torch.arange(64) % len(y)])
            pairs = torch.stack([x, model.reconstruct(x, y).float().clamp(0, 1)], 1).flatten(0, 1)
            self.writer.add_image("samples", image_grid(samples.float().clamp(0, 1).cpu(), 8), step,
                                  dataformats="HWC")
            self.writer.add_image("reconstructions (image, then its reconstruction)",
                                  image_grid(pairs.cpu(), 8), step, dataformats="HWC")
            if model.capabilities.factorised and model.capabilities.prior == "gaussian":
                q = model.encode(x, y)
                kl = 0.5 * (q.mu.square() + q.logvar.exp() - 1 - q.logvar).flatten(1).mean(0)  # to N(0, I)
                self.writer.add_histogram("kl_per_dimension", kl.cpu(), step)
