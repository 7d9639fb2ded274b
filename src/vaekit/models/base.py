"""The contract every vaekit model keeps, and the batch it is given.

A model is an `nn.Module` that knows its own objective and its parameter groups; the trainer knows
only the loop (minGPT's split). The contract:

- `loss(batch, step, phase)` -> dict of named terms. The key of each optimised total is the name of a
  parameter group (`loss`, or `loss/encoder`, `loss/decoder`, `loss/discriminator`, ...); every
  other key (`recon`, `kl`, `elbo`, ...) is only logged.
- `optim_groups()` -> {loss key: parameters}; `update_phases()` -> the order of optimiser steps:
  each phase is one fresh call of `loss` (told the phase's index) followed by a step of each group
  named in it, each group seeing exactly the gradient of its own loss (the trainer's job). A model
  whose later phase must reuse an earlier phase's random draws (IntroVAE's Algorithm 1 re-encodes
  the same X_r and X_p after the encoder step) keeps them in `batch.memo`, which lives for one
  iteration. A group whose total is absent from a step's terms rests at that step (no gradient, no
  optimiser step): a model trained in stages (VQ-VAE's prior after the autoencoder) says so by `step`.
- `settings_from_data(config, facts)` (a classmethod): the settings the model takes from the data
  (beta-TCVAE's N, the number of classes of a label-conditional model).
- side information: `side_information(batch)` -> y (None for an unconditional model; see
  `vaekit.conditioning`), and every inference method takes it: `encode(x, y)`, `decode(z, y)` (mean
  image in [0, 1]), `decode_stages(z, y)` (every intermediate output, for multi-stage models),
  `latent_code(x, y)`, `reconstruct(x, y)`, `sample(n, y)`, `log_likelihood(x, z, y)`.
- a model that classifies (`classifies`) gives log q(y|x) by `classify(x)`; a semi-supervised one
  (`semi_supervised`) is trained on partly labelled data, the missing labels -1 in `Batch.y`.
- the model owns its prior, `prior(y, n)` (a DiagonalGaussian: N(0, I), a CVAE's p(z|y), an AE's
  fitted code distribution), which KLs, sampling, traversals and the IWAE bound use, and its
  importance weights for that bound, `log_importance_weights(x, k, y)` (the factorised-posterior
  estimator by default; a model whose posterior is not one q(z|x) supplies its own and says so by
  `factorised_posterior = False`, so that the metrics that need one q(z|x) do not apply).

Reduction convention, everywhere: sum over pixels and latent dimensions, mean over the batch, nats.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..batch import Batch
from ..conditioning import kept_part
from .capabilities import Capabilities
from ..importance import IMAGES_PER_CALL, chunked_log_weights, repeat_draws


@dataclass(frozen=True)
class DataFacts:
    """What a run knows of its training data before the model is built: the source of the settings a
    model takes from the data (`GenerativeModel.settings_from_data`)."""

    train_images: int
    steps_per_epoch: int  # train_images // train.batch_size
    classes: int = 0  # number of classes of the labels; 0 = the data has no labels
    labelled_images: int = 0  # training images that carry a label (all of them unless data.labelled is set)
    train_steps: int = 0  # the run's optimiser steps in all (train.steps, or train.epochs passes); 0 = unknown


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Eval mode and no gradients inside, the previous mode restored after. Sampling, reconstructing
    or scoring with batch norm left in training mode gives wrong pictures and wrong numbers
    (Soft-IntroVAE's FID reports), so every inference and evaluation path goes through this."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def inference(method):
    """`eval_mode` around a model method: every public inference entry point is decorated."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with eval_mode(self):
            return method(self, *args, **kwargs)

    return wrapper


class GenerativeModel(nn.Module):
    """Base class. Subclasses set `config_class`, `description`, `paper` and implement the contract."""

    config_class: ClassVar[type]
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""

    def __init__(self, config, image_shape: tuple[int, int, int]):
        super().__init__()
        self.config = config
        self.image_shape = tuple(image_shape)

    @classmethod
    def tiny_settings(cls, preset) -> dict:
        """Settings (over `preset`, the registered one) small enough for the shared contract and
        configuration-space tests to train and evaluate it in moments: its networks at toy widths."""
        return {}

    @classmethod
    def build(cls, config, image_shape: tuple[int, int, int], models) -> "GenerativeModel":
        """The model for `config`; `models` is the registry (`registry.CATALOGUE`), handed in so that a
        composite model builds its parts by name without importing the registry."""
        return cls(config, image_shape)

    @classmethod
    def fill_from_data(cls, config, facts: DataFacts, models):
        """`settings_from_data`, with the registry handed in for a composite model's parts."""
        return cls.settings_from_data(config, facts)

    @classmethod
    def settings_from_data(cls, config, facts: DataFacts):
        """`config` with the settings this model takes from the data filled in (those left at their
        "set by the run" value, 0): beta-TCVAE's N, IntroVAE's steps per epoch. The run calls this
        once, for every model, and a composite model for its parts."""
        return config

    # --- optimisation --------------------------------------------------------------------
    def optim_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"loss": [p for p in self.parameters() if p.requires_grad]}

    def update_phases(self) -> tuple[tuple[str, ...], ...]:
        return (tuple(self.optim_groups()),)

    def loss(self, batch: Batch, step: int = 0, phase: int = 0) -> dict[str, Tensor]:
        """The named terms; `phase` is the index into `update_phases()` being optimised."""
        return self.loss_and_output(batch, step)[0]

    def loss_and_output(self, batch: Batch, step: int = 0) -> tuple[dict[str, Tensor], Tensor]:
        """The loss terms and the decoded mean image of the same pass, in [0, 1]: what refine
        stages build on. Models with a decoder implement this; others override `loss`."""
        raise NotImplementedError(f"{type(self).__name__} exposes no decoded image for refine stages")

    # --- use ------------------------------------------------------------------------------
    condition: str = "none"  # what side information the model takes (vaekit.conditioning.CONDITIONS)
    classes: int = 0  # k of a label-conditional model (the width of its one-hot y); 0 otherwise

    @property
    def capabilities(self) -> Capabilities:
        """What this model can do (`Capabilities`): every caller outside models/ asks this record. A
        subclass declares what differs, `dataclasses.replace(super().capabilities, ...)`."""
        # refine stages add their losses to the one total of the base (a model of several groups has no one total)
        refinable = type(self).loss_and_output is not GenerativeModel.loss_and_output \
            and tuple(self.optim_groups()) == ("loss",)
        return Capabilities(condition=self.condition, likelihood=False, refinable=refinable)

    def classify(self, x: Tensor) -> Tensor:
        """log q(y|x) over the model's classes, (B, k); the prediction is its argmax."""
        raise NotImplementedError(f"{type(self).__name__} does not classify")

    def side_information(self, batch: Batch) -> Tensor | None:
        """y for the images of `batch`: the batch's own `side` when a caller drew it already (so that every
        term of an evaluation sees one draw of a random kept part), else `make_side_information`."""
        return batch.side if batch.side is not None else self.make_side_information(batch)

    def make_side_information(self, batch: Batch) -> Tensor | None:
        """y made from the batch's labels or its pixels; None: unconditional."""
        return None

    def kept_side_information(self, x: Tensor, mask: Tensor) -> Tensor:
        """y of a model conditioned on an image part, for images x (B, C, H, W) with the part where `mask`
        (1 or B, 1, H, W) is 1 kept: what completion and -log p(missing | kept) condition on."""
        return kept_part(x, mask)

    def encode(self, x: Tensor, y: Tensor | None = None):  # pragma: no cover
        raise NotImplementedError

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def decode_stages(self, z: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """Every output stage as a mean image; single-stage models have just `output`."""
        return {"output": self.decode(z, y)}

    def latent_code(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """A deterministic code for x (the posterior mean), used by interpolation and metrics."""
        return self.encode(x, y).mode()

    def prior(self, y: Tensor | None = None, n: int | None = None):  # pragma: no cover
        """p(z|y) for a batch of n codes (or one per row of y), a DiagonalGaussian."""
        raise NotImplementedError

    def prior_sample(self, n: int, y: Tensor | None = None) -> Tensor:
        """n latent codes from the model's prior (or its fitted code distribution)."""
        return self.prior(y, n).sample()

    def log_importance_weights(self, x: Tensor, k: int, y: Tensor | None = None, *, mask: Tensor | None = None,
                               images_per_call: int = IMAGES_PER_CALL, on_chunk=None) -> Tensor:
        """log p(x|z_k, y) + log p(z_k|y) - log q(z_k|x, y) for k draws of the factorised posterior: the
        IWAE bound's weights (`vaekit.importance`); with `mask`, p(x|z, y) of the pixels where it is 1
        (Sohn et al.'s -log p(x_missing | x_kept)). (K, B)"""

        def prepare(x_part, y_part):
            q, prior = self.encode(x_part, y_part), self.prior(y_part, len(x_part))  # (b, D) parameters

            def draw(n):
                z = q.sample(n)  # (n, b, D); the prior's and q's log_prob broadcast over the draws
                x_rep = repeat_draws(x_part, n)
                y_rep = None if y_part is None else repeat_draws(y_part, n)
                log_px = self.log_likelihood(x_rep, z.reshape(n * len(x_part), *z.shape[2:]), y_rep,
                                             mask=mask).view(n, len(x_part))
                return log_px + prior.log_prob(z) - q.log_prob(z)
            return draw

        return chunked_log_weights(x, k, y, prepare, images_per_call, on_chunk)

    @inference
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.decode(self.latent_code(x, y), y)

    @inference
    def sample(self, n: int, y: Tensor | None = None) -> Tensor:
        return self.decode(self.prior_sample(n, y), y)

    # --- hooks: what a model adds to its run folder, report and explorer (empty by default) ----
    def curve_panels(self) -> list[tuple[str, list[str], dict[str, float]]]:
        """Its own figure of the logged terms, training_curves.png: (title, logged keys, {label: level of a
        reference line}) per panel (IntroVAE's figure 5)."""
        return []

    def report_notes(self, rows: list[dict]) -> list[str]:
        """Lines for the opening of its report, from the logged training rows (metrics.jsonl)."""
        return []

    def report_sections(self, result: dict) -> list[tuple[str, list[str]]]:
        """Sections of its own for the report, from the final evaluation: (title, paragraphs)."""
        return []

    def extra_pictures(self, x: Tensor, y: Tensor | None) -> list[tuple[str, str, Tensor, int]]:
        """Pictures of its own from test images x (a fixed uniform sample) and their side information y:
        (file stem, caption, images (N, C, H, W) in [0, 1], images per row) each, saved in the run folder
        as model-<stem>.png, shown in the report and by the explorer."""
        return []

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
