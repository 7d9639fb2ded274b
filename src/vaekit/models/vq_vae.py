"""VQ-VAE (van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation Learning"): an encoder
to a grid of D-dimensional vectors z_e(x), each replaced by its nearest entry of a codebook of K
(`vaekit.nn.quantiser`, eq. 1-2), a decoder p(x|z_q(x)), trained on

    L = -log p(x|z_q(x)) + ||sg[z_e(x)] - e||^2 + beta ||z_e(x) - sg[e]||^2                  (eq. 3)

with the straight-through gradient, beta = 0.25 (sec. 4.1); with model.codebook_update = "ema" the codebook
follows exponential moving averages instead (appendix A.1) and the second term is dropped; model.dead_count
restarts unused entries. The prior over the code grid is learned afterwards (sec. 3.3): a gated PixelCNN
(`vaekit.nn.pixelcnn`) fitted to the codes of the trained VQ-VAE, as the second stage of the same run: from
step `prior_start` (the last `prior_fraction` of the run's steps) only the PixelCNN trains, its loss
-log p(c) the group `loss/prior`; the VQ-VAE is then frozen. Sampling draws a grid from the PixelCNN and
decodes it.

q(z|x) is a point mass on one grid of indices, so the IWAE bound equals the ELBO for every K and is not
computed (no posterior to draw from); the evaluation reports the ELBO with the learned prior,
log p(x) >= log p(x|z_q(x)) + log p(c(x)), as `elbo` (its KL term is -log p(c(x)), the codes' NLL under the
PixelCNN, `prior_nll`). `encode(x)` gives the grid of indices; `latent_code(x)` the continuous z_e(x),
flattened, which `decode` quantises, so that interpolations and the explorer's sliders work on it; `prior`
is a Gaussian fitted to those codes (their spread, for the sliders), not the sampling distribution.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..config import applies_when, refuse_inapplicable
from ..errors import ConfigError
from ..nn.code_grid import GridDecoder, GridEncoder, grid_shape
from ..nn.pixelcnn import GatedPixelCNN
from ..nn.quantiser import VectorQuantiser
from ..precision import full_precision
from .autoencoder import FittedCodeGaussian
from .base import Batch, GenerativeModel, inference
from .observation import ObservationConfig

UPDATES = ("gradient", "ema")


def _is_ema(c) -> bool:
    return c.codebook_update == "ema"


@dataclass(frozen=True)
class VQVAEConfig(ObservationConfig):
    codes: int = 512  # K, the codebook's entries (the paper's 512)
    code_dim: int = 64  # D of each entry (the paper's 64 for CIFAR10)
    hidden_channels: int = 128  # the networks' hidden units (the paper's 256, for 32x32 colour images)
    residual_blocks: int = 2
    residual_channels: int = 32  # the 3x3 convolution's width inside a residual block
    downsamples: int = 2  # stride-2 convolutions: 28x28 images -> a 7x7 grid, 64x64 -> 16x16
    commitment: float = 0.25  # beta of eq. 3
    codebook_update: str = "gradient"  # gradient: eq. 3's codebook term | ema: moving averages (appendix A.1)
    ema_decay: float = field(default=0.99, metadata=applies_when(_is_ema, "model.codebook_update = 'ema'"))
    dead_count: float = 0.0  # restart entries given fewer vectors than this per batch (EMA); 0 = never
    code_momentum: float = 0.01  # running fit of the codes' spread (`prior`, the explorer's slider scale)
    prior_fraction: float = 0.25  # the share of the run's steps that train the PixelCNN prior, at its end
    prior_start: int = 0  # the step from which only the prior trains; 0 = set by the run from prior_fraction
    #   (a model trained outside a run, prior_start 0, trains both at every step)
    prior_channels: int = 64
    prior_layers: int = 8  # gated layers: a 7x7 first one (type A), then 3x3 ones

    def __post_init__(self):
        self.check_observation()
        refuse_inapplicable(self)
        if self.codebook_update not in UPDATES:
            raise ConfigError(f"model.codebook_update must be one of {', '.join(UPDATES)}, got {self.codebook_update!r}")
        if self.codes < 2 or self.code_dim < 1 or self.hidden_channels < 2 or self.residual_channels < 1:
            raise ConfigError("model.codes must be >= 2, model.code_dim and model.residual_channels >= 1, "
                              "model.hidden_channels >= 2")
        if self.residual_blocks < 0 or self.downsamples < 1:
            raise ConfigError("model.residual_blocks must be >= 0 and model.downsamples >= 1")
        if self.commitment < 0 or not 0 < self.ema_decay < 1 or self.dead_count < 0:
            raise ConfigError("model.commitment and model.dead_count must be >= 0, model.ema_decay in (0, 1)")
        if not 0 < self.prior_fraction < 1 or self.prior_start < 0:
            raise ConfigError(f"model.prior_fraction must lie in (0, 1), got {self.prior_fraction}; "
                              f"model.prior_start must be >= 0")
        if not 0 < self.code_momentum <= 1:
            raise ConfigError(f"model.code_momentum must lie in (0, 1], got {self.code_momentum}")
        if self.prior_channels < 1 or self.prior_layers < 1:
            raise ConfigError("model.prior_channels and model.prior_layers must be >= 1")


class VQVAE(FittedCodeGaussian, GenerativeModel):
    description = "VQ-VAE: a codebook of K vectors (straight-through), a gated PixelCNN prior over the code grid"
    paper = "van den Oord, Vinyals & Kavukcuoglu 2017, Neural Discrete Representation Learning"
    config_class = VQVAEConfig

    def __init__(self, config: VQVAEConfig, image_shape):
        super().__init__(config, image_shape)
        c = config
        self.grid = grid_shape(self.image_shape, c.downsamples)  # (h, w)
        nets = dict(hidden=c.hidden_channels, downsamples=c.downsamples, blocks=c.residual_blocks,
                    residual_hidden=c.residual_channels)
        self.encoder = GridEncoder(self.image_shape, c.code_dim, **nets)
        self.decoder = GridDecoder(self.image_shape, c.code_dim, **nets)
        self.quantiser = VectorQuantiser(c.codes, c.code_dim, _is_ema(c), c.ema_decay, c.dead_count)
        self.prior_net = GatedPixelCNN(c.codes, c.prior_channels, c.prior_layers)
        self.likelihood = c.make_likelihood()
        self.register_code_fit(c.code_dim * self.grid[0] * self.grid[1])  # the spread of z_e, for sliders

    @classmethod
    def tiny_settings(cls, preset) -> dict:
        return {"codes": 8, "code_dim": 3, "hidden_channels": 8, "residual_channels": 4, "prior_channels": 8,
                "prior_layers": 2}

    @classmethod
    def settings_from_data(cls, config: VQVAEConfig, facts):
        if config.prior_start == 0 and facts.train_steps > 1:
            start = min(facts.train_steps - 1, max(1, round(facts.train_steps * (1 - config.prior_fraction))))
            return dataclasses.replace(config, prior_start=start)
        return config

    @property
    def capabilities(self):
        return dataclasses.replace(super().capabilities, posterior="none", prior="autoregressive", discrete=True)

    # --- optimisation ------------------------------------------------------------------------
    def optim_groups(self) -> dict[str, list]:
        prior = {id(p) for p in self.prior_net.parameters()}
        return {"loss": [p for p in self.parameters() if p.requires_grad and id(p) not in prior],
                "loss/prior": list(self.prior_net.parameters())}

    def stage(self, step: int) -> str:
        """What a training step at `step` trains: "vq" (the VQ-VAE), "prior" (the PixelCNN on the frozen
        VQ-VAE's codes) or "both" (no prior_start set, and every evaluation)."""
        if not self.training or self.config.prior_start == 0:
            return "both"
        return "prior" if step >= self.config.prior_start else "vq"

    def loss(self, batch: Batch, step: int = 0, phase: int = 0) -> dict[str, Tensor]:
        """The terms of eq. 3 (`loss`) before prior_start, the PixelCNN's -log p(c(x)) (`loss/prior`) after;
        an evaluation gets both and the ELBO with the learned prior."""
        c, x, stage = self.config, batch.x, self.stage(step)
        terms: dict[str, Tensor] = {}
        if stage == "prior":  # the VQ-VAE is frozen: its codes are data
            with torch.no_grad():
                indices = self.quantiser.indices(self.encoder(x))
        else:
            z_e = full_precision(self.encoder(x))  # (B, D, h, w); the distances and eq. 3's terms in float32
            q = self.quantiser(z_e)
            params = self.decoder(q["z_q"])
            recon = -self.likelihood.log_prob(params, x)  # (B,)
            total = recon + c.commitment * q["commitment"]
            if not self.quantiser.ema:
                total = total + q["codebook"]
            terms.update(recon=recon.mean(), codebook=q["codebook"].mean(), commitment=q["commitment"].mean(),
                         perplexity=self.quantiser.perplexity(q["counts"]),
                         codes_used=(q["counts"] > 0).sum().float(), loss=total.mean())
            indices = q["indices"]
            if self.training:
                self.quantiser.update(z_e, indices, q["counts"])
                self.fit_codes(z_e.detach().flatten(1))
        if stage != "vq":
            nll = -self.prior_net.log_prob(indices)  # (B,) nats of the code grid
            terms.update({"prior_nll": nll.mean(), "loss/prior": nll.mean()})
            if stage == "both":
                terms["elbo"] = -(recon.detach() + nll.detach()).mean()
        return terms

    # --- use --------------------------------------------------------------------------------
    @inference
    def encode(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The grid of codebook indices of each image. (B, h, w), int64"""
        return self.quantiser.indices(self.encoder(x))

    def latent_code(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """z_e(x), the encoder's continuous output before quantisation, flattened. (B, D * h * w)"""
        return full_precision(self.encoder(x).flatten(1))

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Codes z (B, D * h * w), quantised to their nearest entries, decoded to the mean image."""
        return self.decode_indices(self.quantiser.indices(z.view(len(z), self.config.code_dim, *self.grid)))

    def decode_indices(self, indices: Tensor) -> Tensor:
        """A grid of indices (B, h, w) decoded to the mean image."""
        return self.likelihood.mean(self.decoder(self.quantiser.lookup(indices)))

    def prior_sample(self, n: int, y: Tensor | None = None) -> Tensor:
        """n code grids drawn from the PixelCNN, as their entries flattened (B, D * h * w)."""
        indices = self.prior_net.sample(n, *self.grid, device=self.device)
        return self.quantiser.lookup(indices).flatten(1)

    # --- its run folder ---------------------------------------------------------------------------
    def curve_panels(self) -> list[tuple[str, list[str], dict[str, float]]]:
        return [("codebook use (perplexity: K when even)", ["perplexity", "codes_used"], {"K": float(self.config.codes)}),
                ("PixelCNN prior: -log p(codes), nats", ["prior_nll"], {})]
