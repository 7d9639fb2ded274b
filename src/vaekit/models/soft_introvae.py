"""Soft-IntroVAE (Daniel & Tamar 2021, "Soft-IntroVAE: Analyzing and Improving the Introspective Variational
Autoencoder"): IntroVAE's hinge on the KL of generated images replaced by a soft exponential of their whole
ELBO, so the encoder is rewarded smoothly for telling real from generated images and no margin m is needed.

With s = 1 / (C H W), L_rec(a, b) = ||a - b||^2 summed over pixels, KL(x) = KL(q(z|x) || N(0, I)),
x_r = D(z), z ~ q(z|x), x_f = D(z_f), z_f ~ N(0, I), and ELBO_neg(x) = -(beta_rec L_rec(x, D(z')) +
beta_neg KL(x)), z' ~ q(z|x), the two players minimise (the paper's Algorithm 1, as its authors' code runs it)

    L_E = s (beta_rec L_rec(x, x_r) + beta_kl KL(x)) + 1/4 sum_{g = x_r, x_f} exp(2 s ELBO_neg(g))
    L_D = s (beta_rec L_rec(x, x_r) + beta_kl/2 sum_{g} KL(g) + gamma_r beta_rec/2 sum_{g} L_rec(g, D(z_g)))

(the 1/4 is the paper's 1/2 averaged over the reconstructed and the sampled image; each sum a batch mean).
The encoder is stepped first (phase 0); the decoder then (phase 1) decodes the same z and z_f and sees
them through the updated encoder, with each group's gradient its own loss's only (the authors' code freezes
the other network). Every encode of a generated image leaves batch norm's running statistics alone, as in
vaekit's IntroVAE. `pretrain_epochs` trains it as a plain VAE first (the authors' `num_vae`; here the
encoder's and the decoder's steps each draw their own pass, where the authors step both on one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError
from ..nn.batchnorm import running_stats_frozen
from ..nn.config import NetworkConfig
from ..objectives.image_losses import l2_loss
from .autoencoder import GaussianAutoencoder
from .base import Batch
from .introvae import PretrainingConfig, pretraining_from_data


@dataclass(frozen=True)
class SoftIntroVAEConfig(NetworkConfig, PretrainingConfig):
    beta_rec: float = 1.0  # weight of the reconstruction terms
    beta_kl: float = 1.0  # weight of the real images' KL (and the decoder's KL of generated images)
    beta_neg: float = 256.0  # weight of the generated images' KL in their soft ELBO (the authors' MNIST choice)
    gamma_r: float = 1e-8  # weight of the generated images' reconstruction in the decoder's loss
    latent_dim: int = 32  # the authors' MNIST / Fashion-MNIST z
    architecture: str = "resnet"  # the residual networks of IntroVAE's appendix B, as the authors'
    base_channels: int = 16
    max_channels: int = 128

    def __post_init__(self):
        super().__post_init__()
        for name in ("beta_rec", "beta_kl", "beta_neg", "gamma_r"):
            if getattr(self, name) < 0:
                raise ConfigError(f"model.{name} must be >= 0, got {getattr(self, name)}")
        self.check_pretraining()


class SoftIntroVAE(GaussianAutoencoder):
    description = "Soft-IntroVAE: IntroVAE with a soft exponential ELBO of generated images in place of the hinge"
    paper = "Daniel & Tamar 2021, Soft-IntroVAE: Analyzing and Improving the Introspective Variational Autoencoder"
    config_class = SoftIntroVAEConfig

    @classmethod
    def settings_from_data(cls, config: SoftIntroVAEConfig, facts):
        return pretraining_from_data(config, facts)

    def optim_groups(self):
        return {"loss/encoder": list(self.encoder.parameters()), "loss/decoder": list(self.decoder.parameters())}

    def update_phases(self):
        return (("loss/encoder",), ("loss/decoder",))

    def _through(self, g: Tensor) -> tuple[Tensor, Tensor]:
        """KL(q(z|g) || N(0, I)) and D(z'), z' ~ q(z|g), of generated images g: batch norm normalises them by
        their own batch and keeps its running statistics for real images. (B,), (B, C, H, W)"""
        with running_stats_frozen(self.encoder):
            q = self.encode(g)
        return q.kl(), q.sample()

    def loss(self, batch: Batch, step: int = 0, phase: int = 0) -> dict[str, Tensor]:
        c, x = self.config, batch.x
        s = 1.0 / x[0].numel()
        if c.pretraining(step):  # a plain VAE, beta_rec L_rec + beta_kl KL (each phase draws afresh)
            q = self.encode(x)
            x_r = self.decode(q.sample())
            rec, kl = l2_loss(x_r, x).mean(), q.kl().mean()
            vae = c.beta_rec * rec + c.beta_kl * kl
            return {"loss/encoder": vae, "loss/decoder": vae, "recon": rec, "kl": kl, "kl/real": kl}
        if phase == 1:
            if "soft_introvae" not in batch.memo:
                raise RuntimeError("Soft-IntroVAE's decoder phase reuses phase 0's codes: call loss(batch, step, 0) first")
            z, z_f = batch.memo["soft_introvae"]
            x_f, x_r = self.decode(z_f), self.decode(z)
            rec = l2_loss(x_r, x).mean()
            kl_r, z_rr = self._through(x_r)
            kl_f, z_ff = self._through(x_f)
            rec_rr = l2_loss(self.decode(z_rr.detach()), x_r.detach()).mean()
            rec_ff = l2_loss(self.decode(z_ff.detach()), x_f.detach()).mean()
            loss = s * (c.beta_rec * rec + 0.5 * c.beta_kl * (kl_r.mean() + kl_f.mean())
                        + 0.5 * c.gamma_r * c.beta_rec * (rec_rr + rec_ff))
            return {"loss/decoder": loss, "kl/rec_decoder": kl_r.mean(), "kl/sample_decoder": kl_f.mean()}

        q = self.encode(x)
        z = q.sample()
        z_f = torch.randn_like(z)
        batch.memo["soft_introvae"] = (z.detach(), z_f)
        x_f, x_r = self.decode(z_f), self.decode(z)
        rec, kl_real = l2_loss(x_r, x).mean(), q.kl().mean()
        kl_r, z_rr = self._through(x_r.detach())
        kl_f, z_ff = self._through(x_f.detach())
        elbo_neg_r = -(c.beta_rec * l2_loss(self.decode(z_rr), x_r) + c.beta_neg * kl_r)  # (B,)
        elbo_neg_f = -(c.beta_rec * l2_loss(self.decode(z_ff), x_f) + c.beta_neg * kl_f)
        exp_r, exp_f = torch.exp(2 * s * elbo_neg_r).mean(), torch.exp(2 * s * elbo_neg_f).mean()
        return {"loss/encoder": s * (c.beta_rec * rec + c.beta_kl * kl_real) + 0.25 * (exp_r + exp_f),
                "recon": rec, "kl": kl_real, "kl/real": kl_real, "kl/rec": kl_r.mean(), "kl/sample": kl_f.mean(),
                "soft/exp_elbo_rec": exp_r, "soft/exp_elbo_sample": exp_f}

    def curve_panels(self) -> list[tuple[str, list[str], dict[str, float]]]:
        return [("KL of real, reconstructed and sampled images", ["kl/real", "kl/rec", "kl/sample"], {}),
                ("soft exponential ELBO of generated images", ["soft/exp_elbo_rec", "soft/exp_elbo_sample"], {}),
                ("reconstruction ||x - x_r||^2", ["recon"], {})]

    def report_notes(self, rows: list[dict]) -> list[str]:
        """The authors' health check: generated images should keep a KL above the real images'."""
        post = [r for r in rows if r["step"] > self.config.pretrain_steps and "kl/sample" in r]
        if not post:
            return []
        tail = post[-max(1, len(post) // 10):]
        real, smp = (sum(r[k] for r in tail) / len(tail) for k in ("kl/real", "kl/sample"))
        verdict = ("the encoder tells them apart" if smp > real else
                   "NOT above KL(real): no sampling improvement (the authors' advice: lower model.beta_neg)")
        return [f"Last 10% of training: KL(real) {real:.2f}, KL(sample) {smp:.2f} nats: {verdict}."]
