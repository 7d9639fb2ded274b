"""SSL-VAE-GAN: M2's networks with CVAE-GAN's (k + 1)-class discriminator ("When VAEs meet GANs", sec. 3.3).

Labelled images (x, y) take CVAE-GAN's losses (sec. 3.2) with y. For an unlabelled image every term
that needs a label is averaged over q(y|x), every class tried in one batched pass (sec. 3.3):
    L_G,unobserved = L_KL - H(q(y|x)) + sum_y q(y|x) (L_llike^{Dis_l}(y) + CE(D(Dec(z, y)), y)
                                                     + CE(D(Dec(Enc(x, y), y)), y))
    L_D            = sum_y q(y|x) (CE(D(x), y) + CE(D(Dec(z, y)), y_fake) + CE(D(Dec(Enc(x, y), y)), y_fake))
with L_KL = sum_y q(y|x) KL(q(z|x, y) || N(0, I)) (q(z|x, y) depends on y). The entropy term is
`entropy_weight` * H(q(y|x)) in the loss minimised, by default -1: the sign of the section's own
-U(x) = sum_y Q(y|x)(-L(x, y)) + H(Q(y|x)), a bound to maximise, whose H "regularises Q as before", i.e.
M2's U(x) = sum_y q(y|x) L(x, y) - H(q(y|x)), which keeps q(y|x) from collapsing onto one class.
`entropy_weight=1` is L_G,unobserved's +H as the paper prints it, which rewards confident q(y|x)
(benchmarks/results/ssl_entropy_sign.md measures both). The generator loss is split as
Larsen et al.'s (vaekit.models.vaegan): the encoder (q(y|x) and q(z|x, y)) minimises
beta * L_KL + L_llike + the entropy term + alpha * CE(q(y|x), y) on labelled images (M2's
classification term, which alone teaches q(y|x) the labels); the decoder gamma * L_llike + the GAN
terms; the discriminator L_D. The q(y|x) weights are detached in the decoder's and discriminator's
losses. Three parameter groups through the one trainer; every loss is a mean over the batch's images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import refuse_inapplicable
from ..distributions import DiagonalGaussian
from ..errors import ConfigError
from ..objectives.adversarial import class_loss
from ..objectives.image_losses import l2_loss
from ..objectives.semi_supervised import entropy, enumerate_classes
from .base import Batch
from .semi_supervised import SemiSupervisedBase, SemiSupervisedConfig, batch_labels
from .adversarial import DiscriminatorConfig, make_discriminator


@dataclass(frozen=True)
class SSLVAEGANConfig(SemiSupervisedConfig, DiscriminatorConfig):
    discriminator_max_channels: int = 128  # the CVAE-GAN preset's discriminator (32 -> 64 -> 128)
    # the unlabelled encoder loss's weight on H(q(y|x)): -1 is -U(x)'s (and M2's) -H, which pushes q(y|x)
    # towards higher entropy; +1 is L_G,unobserved's +H as sec. 3.3 prints it, which pushes it onto one class
    entropy_weight: float = -1.0

    def __post_init__(self):
        self.check_semi_supervised()
        self.check_discriminator()
        if self.discriminator_max_channels < self.discriminator_channels:
            raise ConfigError("model.discriminator_max_channels must be >= model.discriminator_channels")
        refuse_inapplicable(self)


class SSLVAEGAN(SemiSupervisedBase):
    description = "SSL-VAE-GAN: M2 with a (k+1)-class discriminator, unlabelled terms averaged over q(y|x)"
    paper = "When Variational Auto-encoders meet Generative Adversarial Networks (sec. 3.3); Kingma et al. 2014"
    config_class = SSLVAEGANConfig

    @classmethod
    def tiny_settings(cls, preset) -> dict:
        return {**super().tiny_settings(preset), "discriminator_channels": 4, "discriminator_max_channels": 8}

    def __init__(self, config: SSLVAEGANConfig, image_shape):
        super().__init__(config, image_shape)
        self.discriminator = make_discriminator(config, image_shape, self.classes + 1,
                                                config.discriminator_max_channels)

    def optim_groups(self):
        return {"loss/encoder": [*self.nets.trunk.parameters(), *self.nets.classifier.parameters(),
                                 *self._posterior_parameters()],
                "loss/decoder": self._decoder_parameters(),
                "loss/discriminator": list(self.discriminator.parameters())}

    def _posterior_parameters(self):
        n = self.nets
        return list(n.posterior_net.parameters()) if n.architecture == "mlp" else \
            [*n.mu_net.parameters(), *n.logvar_head.parameters()]

    def _decoder_parameters(self):
        n = self.nets
        return [*n.decoder_body.parameters(), *(n.decoder_head.parameters() if hasattr(n, "decoder_head") else ())]

    def loss(self, batch: Batch, step: int = 0, phase: int = 0) -> dict[str, Tensor]:
        c, x, labels, l = self.config, batch.x, batch_labels(batch), self.config.feature_layer
        k = self.classes
        h = self.nets.trunk(x)
        log_q_y = self.log_q_y(h)  # (B, k)
        r = self.rows(h, x, labels)
        lab, n_l = r.labelled, r.n_labelled
        q = DiagonalGaussian(*self.nets.posterior(r.h, r.y))
        x_tilde = self.decode(q.sample(), r.y)  # Dec(Enc(x, y), y) per row
        x_p = self.decode(torch.randn_like(q.mu), r.y)  # Dec(z, y), z ~ N(0, I), per row
        kl = q.kl()  # (rows,)

        real_logit, real_maps = self.discriminator.forward_with_features(x)
        tilde_logit, tilde_maps = self.discriminator.forward_with_features(x_tilde)
        p_logit = self.discriminator(x_p)

        def real_rows(t):  # the real image's value on each row: labelled once, unlabelled k times
            return torch.cat([t[lab], enumerate_classes(t[~lab], k)])

        llike = 0.5 * l2_loss(tilde_maps[l], real_rows(real_maps[l]).detach())  # (rows,) L_llike^{Dis_l}
        fake = torch.full((len(r.y),), k, device=x.device)
        row_labels = r.y.argmax(1)
        gan_g = class_loss(p_logit, row_labels) + class_loss(tilde_logit, row_labels)  # (rows,)
        # L_D reads the same logits: the trainer steps each group with the gradient of its own loss alone
        # (backward(inputs=group)), so L_D moves only the discriminator without detached copies
        d_fakes = class_loss(p_logit, fake) + class_loss(tilde_logit, fake)
        d_real = class_loss(real_rows(real_logit), row_labels)  # CE(D(x), y) per row

        q_u = log_q_y[~lab].exp()  # (n_u, k), the weights of the unlabelled rows
        w = torch.cat([torch.ones(n_l, device=x.device), q_u.t().flatten()])  # per row, encoder's loss
        w_bar = w.detach()
        ce = -log_q_y[lab].gather(1, labels[lab, None]).squeeze(1)  # (n_l,)
        encoder = (w * (c.beta * kl + llike)).sum() + self.alpha * ce.sum() + \
            c.entropy_weight * entropy(log_q_y[~lab]).sum()
        decoder = (w_bar * (c.gamma * llike + c.adversarial_weight * gan_g)).sum()
        discriminator = (w_bar * (d_real + d_fakes)).sum()
        b = len(x)
        real_prob = F.softmax(real_logit.float(), 1)
        terms = {"loss/encoder": encoder / b, "loss/decoder": decoder / b, "loss/discriminator": discriminator / b,
                 "kl": (w_bar * kl).sum() / b, "llike": (w_bar * llike).sum() / b, "adv/g": (w_bar * gan_g).sum() / b,
                 "recon": (w_bar * 0.5 * l2_loss(x_tilde, r.x)).sum().detach() / b,  # pixel error, logged only
                 "adv/D(x)": (1 - real_prob[:, -1]).mean(),
                 "adv/D(x_p)": (1 - F.softmax(p_logit.float(), 1)[:, -1]).mean()}
        if n_l:
            terms.update({"classification": ce.mean(),
                          "accuracy/labelled": (log_q_y[lab].argmax(1) == labels[lab]).float().mean()})
        if r.n_unlabelled:
            terms["entropy/unlabelled"] = entropy(log_q_y[~lab]).mean()
        return terms

    def curve_panels(self) -> list[tuple[str, list[str], dict[str, float]]]:
        return [("discriminator's view", ["adv/D(x)", "adv/D(x_p)"], {"chance": 0.5}),
                ("losses", ["loss/encoder", "loss/decoder", "loss/discriminator"], {}),
                ("classifier", ["classification", "entropy/unlabelled"], {})]
