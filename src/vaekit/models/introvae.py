"""IntroVAE (Huang et al. 2018, "IntroVAE: Introspective Variational Autoencoders for Photographic
Image Synthesis"): the encoder is also the discriminator, through the KL of its posterior.

Encoder E (phi_E) and generator G (theta_G), eqs. (11)-(12):
    L_E = L_REG(Enc(x)) + alpha * sum_{s=r,p} [m - L_REG(Enc(ng(x_s)))]^+ + beta * L_AE(x, x_r)
    L_G = alpha * sum_{s=r,p} L_REG(Enc(x_s)) + beta * L_AE(x, x_r)
with L_REG the KL of q(z|.) to N(0, I) (eq. 9, summed over latent dimensions), L_AE = 1/2 ||x_r - x||^2
summed over pixels (eq. 10), x_r = Dec(z), z ~ q(z|x), and x_p = Dec(z_p), z_p ~ N(0, I).

Training follows Algorithm 1 exactly with the trainer's two phases (update="alternating"):
phase 0 (lines 3-10) draws z and z_p, decodes them and steps phi_E on L_E; phase 1 (lines 11-13)
decodes the *same* z and z_p again (theta_G has not changed, so X_r and X_p are the same images),
re-encodes them with the *updated* encoder and steps theta_G on L_G. Each group's gradient is
restricted to its own parameters, so L_E never reaches the generator and L_G never reaches the
encoder - the two leaks of the official code. update="simultaneous" computes both gradients
before either step (the alternative appendix C allows), one forward pass fewer.

Batch norm: every encode of a generated image (X_r, X_p, in either phase) normalises with that
batch's statistics, as the game is played, but leaves the running statistics alone; only the real
images (line 4's Enc(X)) move them, so eval mode - KL(real), reconstructions, codes, metrics -
normalises real images with statistics of real images, not a mixture four-fifths generated.

Pre-training (sec. 3.3, appendix D): for `pretrain_epochs` the model is trained with alpha = 0, a
plain VAE with a Gaussian decoder of variance 1/beta (beta * 1/2 ||x_r - x||^2 is its negative
log-likelihood up to a constant); the KL of real images it reaches is what the margin m should
slightly exceed, and the run's report states it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import ConfigError
from ..config import applies_when
from ..nn.config import NetworkConfig
from ..nn.batchnorm import running_stats_frozen
from ..objectives.image_losses import l2_loss
from ..objectives.introspective import HINGES, kl_margin_hinge
from .base import Batch
from .autoencoder import GaussianAutoencoder

UPDATES = ("alternating", "simultaneous")


@dataclass(frozen=True)
class PretrainingConfig:
    """Epochs trained as a plain VAE before an introspective game starts (IntroVAE's sec. 3.3, Soft-IntroVAE's
    `num_vae`), counted in steps once the run knows an epoch's."""

    pretrain_epochs: float = 0.0  # epochs trained as a plain VAE first; the IntroVAE paper suggests 1-2
    steps_per_epoch: int = field(default=0, metadata=applies_when(lambda c: c.pretrain_epochs > 0,
                                                                  "model.pretrain_epochs > 0"))
    #   set by the run from the data and train.batch_size

    def check_pretraining(self) -> None:
        if self.pretrain_epochs < 0 or self.steps_per_epoch < 0:
            raise ConfigError("model.pretrain_epochs and model.steps_per_epoch must be >= 0")

    @property
    def pretrain_steps(self) -> int:
        return round(self.pretrain_epochs * self.steps_per_epoch)

    def pretraining(self, step: int) -> bool:
        """Whether `step` is one of the plain-VAE steps."""
        if self.pretrain_epochs > 0 and self.steps_per_epoch == 0:
            raise ConfigError("model.steps_per_epoch must be set for model.pretrain_epochs "
                              "(a run sets it from the data and train.batch_size)")
        return step < self.pretrain_steps


def pretraining_from_data(config, facts):
    """`config` (a PretrainingConfig) with the steps of an epoch filled in from the data."""
    if config.pretrain_epochs > 0 and config.steps_per_epoch == 0:
        return dataclasses.replace(config, steps_per_epoch=facts.steps_per_epoch)
    return config


@dataclass(frozen=True)
class IntroVAEConfig(NetworkConfig, PretrainingConfig):
    alpha: float = 0.25  # weight of the adversarial terms (eq. 11-12); the paper uses 0.25 at every size
    beta: float = 10.0  # weight of L_AE; larger beta -> sharper reconstructions, needs a larger m (app. D).
    #                     L_AE is summed over pixels: keep beta * pixels roughly constant across sizes
    #                     (the paper: 0.5 at 128 px, 0.0025 at 1024 px); the introvae_64 preset does,
    #                     and pre-trains 0.1 epoch (its pre-trained KL(real) is ~22 nats, below m = 35)
    margin: float = 35.0  # m (eq. 5): the KL generated images are pushed above; slightly above the
    #                       pre-trained VAE's KL(real) (app. D; ~29 nats for beta 10 on 28x28
    #                       Fashion-MNIST); the run's report prints that KL
    hinge: str = "batch"  # batch: [m - mean KL]^+ (eq. 11) | sample: mean [m - KL_i]^+
    update: str = "alternating"  # alternating: Algorithm 1 | simultaneous: both gradients, then both steps
    # the networks (NetworkConfig), with appendix B's residual network as the default:
    architecture: str = "resnet"  # resnet: appendix B (res-blocks, avg-pool / upsample) | conv | mlp
    base_channels: int = 16  # width at full resolution, doubled per halving (the paper: 16 at 1024 px)
    max_channels: int = 128  # the paper caps at 512; 128 keeps 64x64 training practical on a CPU

    def __post_init__(self):
        super().__post_init__()
        if self.alpha < 0 or self.beta <= 0 or self.margin <= 0:
            raise ConfigError("model.alpha must be >= 0, model.beta and model.margin > 0 "
                              f"(got {self.alpha}, {self.beta}, {self.margin})")
        if self.hinge not in HINGES:
            raise ConfigError(f"model.hinge must be one of {', '.join(HINGES)}, got {self.hinge!r}")
        if self.update not in UPDATES:
            raise ConfigError(f"model.update must be one of {', '.join(UPDATES)}, got {self.update!r}")
        self.check_pretraining()


class IntroVAE(GaussianAutoencoder):
    description = "IntroVAE: the encoder discriminates real from generated images by its KL (Algorithm 1)"
    paper = "Huang et al. 2018, IntroVAE: Introspective Variational Autoencoders for Photographic Image Synthesis"
    config_class = IntroVAEConfig

    @classmethod
    def settings_from_data(cls, config: IntroVAEConfig, facts):
        return pretraining_from_data(config, facts)

    # --- optimisation -------------------------------------------------------------------
    def optim_groups(self):
        return {"loss/encoder": list(self.encoder.parameters()), "loss/generator": list(self.decoder.parameters())}

    def update_phases(self):
        if self.config.update == "alternating":
            return (("loss/encoder",), ("loss/generator",))  # Algorithm 1: line 10, then lines 11-13
        return (("loss/encoder", "loss/generator"),)

    def adversarial_weight(self, step: int) -> float:
        """alpha, or 0 while pre-training as a plain VAE."""
        return 0.0 if self.config.pretraining(step) else self.config.alpha

    def _kl_generated(self, x: Tensor) -> Tensor:
        """L_REG per image (eq. 9) of generated images, (B,): batch norm uses their batch's statistics
        but keeps its running statistics for the real images (the module docstring)."""
        with running_stats_frozen(self.encoder):
            return self.encode(x).kl()

    def loss(self, batch: Batch, step: int = 0, phase: int = 0) -> dict[str, Tensor]:
        c, x = self.config, batch.x
        alpha = self.adversarial_weight(step)
        if phase == 1:  # Algorithm 1, lines 11-13: the same z, z_p; the updated encoder
            if "introvae" not in batch.memo:
                raise RuntimeError("IntroVAE phase 1 reuses phase 0's codes: call loss(batch, step, 0) first")
            z, z_p = batch.memo["introvae"]
            x_r, x_p = self.decode(z), self.decode(z_p)
            l_ae = 0.5 * l2_loss(x_r, x).mean()  # eq. 10
            kl_rec, kl_sample = self._kl_generated(x_r), self._kl_generated(x_p)
            return {"loss/generator": alpha * (kl_rec.mean() + kl_sample.mean()) + c.beta * l_ae,
                    "recon": l_ae}

        q = self.encode(x)  # lines 3-6
        z = q.sample()  # (B, D)
        z_p = torch.randn_like(z)
        batch.memo["introvae"] = (z.detach(), z_p)
        x_r, x_p = self.decode(z), self.decode(z_p)
        l_ae = 0.5 * l2_loss(x_r, x).mean()  # line 7, eq. 10
        kl_real = q.kl()
        with torch.set_grad_enabled(torch.is_grad_enabled() and alpha > 0):
            kl_rec_ng = self._kl_generated(x_r.detach())  # line 8: ng(.)
            kl_sample_ng = self._kl_generated(x_p.detach())
        hinge_rec = kl_margin_hinge(kl_rec_ng, c.margin, c.hinge)
        hinge_sample = kl_margin_hinge(kl_sample_ng, c.margin, c.hinge)
        terms = {
            "loss/encoder": kl_real.mean() + alpha * (hinge_rec + hinge_sample) + c.beta * l_ae,  # lines 9-10
            "recon": l_ae, "kl": kl_real.mean(),
            "kl/real": kl_real.mean(), "kl/rec": kl_rec_ng.mean(), "kl/sample": kl_sample_ng.mean(),
            "adv/hinge_rec": hinge_rec, "adv/hinge_sample": hinge_sample, "adv/alpha": kl_real.new_tensor(alpha),
        }
        if c.update == "simultaneous":  # L_G on the same weights: the encoder passes without ng(.)
            kl_rec, kl_sample = self._kl_generated(x_r), self._kl_generated(x_p)
            terms["loss/generator"] = alpha * (kl_rec.mean() + kl_sample.mean()) + c.beta * l_ae
        return terms

    # --- the run folder -------------------------------------------------------------------
    def curve_panels(self) -> list[tuple[str, list[str], dict[str, float]]]:
        """The paper's figure 5: KL of real, reconstructed and sampled images against the margin, and L_AE."""
        return [("KL divergences (fig. 5)", ["kl/real", "kl/rec", "kl/sample"], {"margin m": self.config.margin}),
                ("L_AE (eq. 10)", ["recon"], {})]

    def report_notes(self, rows: list[dict]) -> list[str]:
        """Margin advice from the logged KL(real) (appendix D: m a little above the VAE's KL)."""
        c = self.config
        pre = [r["kl/real"] for r in rows if "kl/real" in r and r["step"] <= c.pretrain_steps]
        notes = []
        if pre:
            tail = pre[-max(1, len(pre) // 10):]
            kl = sum(tail) / len(tail)
            notes.append(f"KL(real) at the end of VAE pre-training ({c.pretrain_steps} steps): {kl:.2f} nats; "
                         f"the paper chooses m a little above it (m = {c.margin:g} here"
                         f"{'' if c.margin > kl else ', BELOW it: generated images already pass the margin'}).")
        # KL(real) is trained from step 1; the generated images' KLs only once the game is on (alpha > 0):
        # in pre-training the encoder never sees them, and a huge KL of a random decoder's output means nothing
        wild = [(r["step"], k, r[k]) for r in rows for k in ("kl/real", "kl/rec", "kl/sample")
                if r.get(k, 0) > 1000 * c.margin and (k == "kl/real" or r["step"] > c.pretrain_steps)]
        if wild:
            step, key, value = wild[0]
            notes.append(f"{key} reached {value:.3g} nats (logged at step {step}), over 1000 m: the game blew up "
                         f"there, and the decoder may not recover (check L_AE). Pre-train as a VAE "
                         f"(model.pretrain_epochs) or lower train.lr (the paper: 2e-4).")
        post = [r for r in rows if r["step"] > c.pretrain_steps and "kl/real" in r]
        if post:
            tail = post[-max(1, len(post) // 10):]
            real, rec, smp = (sum(r[k] for r in tail) / len(tail) for k in ("kl/real", "kl/rec", "kl/sample"))
            gap = min(rec, smp) - real
            if gap <= 0:
                state = ("KL(real) is not below the generated KLs: the encoder does not tell real from generated "
                         "images; lower m or beta, or raise alpha")
            elif real >= c.margin:
                state = "KL(real) sits above m: raise m a little above KL(real) (appendix D)"
            elif gap < 0.5 * (c.margin - real):
                state = ("weakly separated: the generated KLs are barely above KL(real) and below m; train "
                         "longer, or check m against the pre-trained KL")
            else:
                state = "balanced as Theorem 1 expects (KL(real) below m, generated KLs pushed up towards m)"
            notes.append(f"Last 10% of training: KL(real) {real:.2f}, KL(rec) {rec:.2f}, KL(sample) {smp:.2f} "
                         f"vs m = {c.margin:g}: {state}.")
        return notes
