"""M2, the semi-supervised VAE of Kingma et al. 2014 ("Semi-supervised learning with deep generative
models", sec. 3.1.2 and 3.2; the VAE/GAN survey's sec. 2.3): y ~ Cat(uniform), z ~ N(0, I), x ~ p(x|y, z), with
q(y|x) and q(z|x, y) (vaekit.models.semi_supervised).

Labelled images are scored by L(x, y), unlabelled ones by U(x) = sum_y q(y|x) L(x, y) - H(q(y|x)),
every class enumerated in one batched pass (vaekit.objectives.semi_supervised, eq. 6-9); labelled
images add alpha * -log q(y|x) with Kingma et al.'s alpha = 0.1 N / N_labelled per image. The loss of
a batch is the mean of these per-image terms over its images; labelled images fill
`data.labelled_fraction` of each batch rather than their share of the data, so they weigh that much
more than in J^alpha's sum (as with the equal labelled and unlabelled batches of common
implementations); `weighting = "data"` re-weights both parts to their shares of the training set, an
unbiased estimate of J^alpha / N. A class is predicted by argmax q(y|x). The IWAE bound is on log p(x): y is drawn
from q(y|x) with z, never told.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from ..conditioning import one_hot
from ..config import refuse_inapplicable
from ..distributions import DiagonalGaussian, standard_normal_log_prob
from ..errors import ConfigError
from ..importance import IMAGES_PER_CALL, chunked_log_weights
from ..objectives.semi_supervised import enumerate_classes, log_uniform_prior, unlabelled_bound
from .base import Batch
from .semi_supervised import SemiSupervisedBase, SemiSupervisedConfig, batch_labels
from .observation import LikelihoodDecoder, ObservationConfig


@dataclass(frozen=True)
class M2Config(SemiSupervisedConfig, ObservationConfig):
    weighting: str = "batch"  # batch: the mean of the batch's per-image terms | data: each part re-weighted to
    #                           its share of the training set, an unbiased estimate of J^alpha / N

    def __post_init__(self):
        self.check_observation()
        self.check_semi_supervised()
        if self.weighting not in ("batch", "data"):
            raise ConfigError(f"model.weighting must be 'batch' or 'data', got {self.weighting!r}")
        refuse_inapplicable(self)


class M2(LikelihoodDecoder, SemiSupervisedBase):
    description = "M2: semi-supervised VAE with q(y|x), q(z|x,y), p(x|y,z); classifies by argmax q(y|x)"
    paper = "Kingma, Rezende, Mohamed & Welling 2014, Semi-supervised learning with deep generative models"
    config_class = M2Config

    @property
    def capabilities(self):
        # y is a latent class of an unlabelled image: the bound is on p(x), y drawn from q(y|x) with z
        return dataclasses.replace(super().capabilities, declared_bound="p(x)")

    def __init__(self, config: M2Config, image_shape):
        super().__init__(config, image_shape)
        self.likelihood = config.make_likelihood()

    def bounds(self, x: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """L(x, y) of the labelled images (labels >= 0) and L(x, c) of every class c for the others
        (`per_class`, (n_u, k)), from one pass of the posterior and decoder networks; log q(y|x) of
        every image; recon and KL per image (expected under q(y|x) where unlabelled)."""
        h = self.nets.trunk(x)
        log_q_y = self.log_q_y(h)  # (B, k)
        r = self.rows(h, x, labels)
        q = DiagonalGaussian(*self.nets.posterior(r.h, r.y))
        recon = -self.likelihood.log_prob(self.nets.decode(q.sample(), r.y), r.x)  # (rows,)
        kl = q.kl()  # (rows,) to p(z) = N(0, I)
        bound = recon + kl - log_uniform_prior(self.classes)  # L(x, y) per row
        q_u = log_q_y[~r.labelled].exp()
        n_l = r.n_labelled
        return {"labelled": bound[:n_l], "per_class": r.per_class(bound), "log_q_y": log_q_y, "lab": r.labelled,
                "recon": torch.cat([recon[:n_l], (q_u * r.per_class(recon)).sum(1)]),
                "kl": torch.cat([kl[:n_l], (q_u * r.per_class(kl)).sum(1)])}

    def loss(self, batch: Batch, step: int = 0, phase: int = 0) -> dict[str, Tensor]:
        x, labels = batch.x, batch_labels(batch)
        if self.training:
            b = self.bounds(x, labels)
            lab = b["lab"]
            ce = -b["log_q_y"][lab].gather(1, labels[lab, None]).squeeze(1)  # (n_l,) -log q(y|x)
            u = unlabelled_bound(b["per_class"], b["log_q_y"][~lab])  # (n_u,)
            w_l, w_u = self._part_weights(len(ce), len(u))
            total = w_l * (b["labelled"] + self.alpha * ce).sum() + w_u * u.sum()
            terms = {"loss": total / len(x), "recon": b["recon"].mean(), "kl": b["kl"].mean()}
            if len(ce):
                terms.update({"bound/labelled": b["labelled"].mean(), "classification": ce.mean(),
                              "accuracy/labelled": (b["log_q_y"][lab].argmax(1) == labels[lab]).float().mean()})
            if len(u):
                terms["bound/unlabelled"] = u.mean()
            return terms
        # evaluation: U(x) of every image (the bound on log p(x) other models report as elbo; its terms recon
        # and kl under q(y|x), and kl_y = KL(q(y|x) || p(y)), so that elbo = -(recon + kl + kl_y)) and, where
        # the label is known, L(x, y) and the classification term; in chunks, so that one network call
        # holds at most IMAGES_PER_CALL rows whatever the number of classes
        per_image: dict[str, list[Tensor]] = {}
        chunk = max(1, IMAGES_PER_CALL // self.classes)
        for start in range(0, len(x), chunk):
            for k, v in self._evaluation_terms(x[start:start + chunk], labels[start:start + chunk]).items():
                per_image.setdefault(k, []).append(v)
        terms = {k: torch.cat(v).mean() for k, v in per_image.items()}
        terms["elbo"] = -terms.pop("unlabelled")
        if "labelled" in terms:
            terms["bound/labelled"] = terms.pop("labelled")
        return terms

    def _part_weights(self, n_labelled: int, n_unlabelled: int) -> tuple[float, float]:
        """The weights of the labelled and unlabelled images' terms in the batch mean: 1 and 1, or with
        weighting = "data" their shares of the training set over their shares of the batch."""
        c, b = self.config, n_labelled + n_unlabelled
        if c.weighting == "batch" or not (n_labelled and n_unlabelled) or c.train_images < 1:
            return 1.0, 1.0
        share = c.labelled_images / c.train_images
        return share * b / n_labelled, (1 - share) * b / n_unlabelled

    def _evaluation_terms(self, x: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Per image, from one enumerated pass: U(x), and where the label is known L(x, y) (the pass's
        column for y) and the classification term."""
        hidden = self.bounds(x, torch.full_like(labels, -1))
        log_q_y = hidden["log_q_y"]
        # -U(x) = -E_q(y|x)[recon + KL_z] - KL(q(y|x) || p(y)) (eq. 7): the three terms add up to the elbo
        kl_y = (log_q_y.exp() * (log_q_y - log_uniform_prior(self.classes))).sum(1)
        out = {"unlabelled": unlabelled_bound(hidden["per_class"], log_q_y), "recon": hidden["recon"],
               "kl": hidden["kl"], "kl_y": kl_y}
        lab = labels >= 0
        if bool(lab.any()):
            told = hidden["per_class"][lab].gather(1, labels[lab, None]).squeeze(1)  # L(x, y)
            ce = -hidden["log_q_y"][lab].gather(1, labels[lab, None]).squeeze(1)
            out.update({"loss": told + self.alpha * ce, "labelled": told, "classification": ce})
        return out

    def log_importance_weights(self, x: Tensor, k: int, y: Tensor | None = None, *, mask: Tensor | None = None,
                               images_per_call: int = IMAGES_PER_CALL, on_chunk=None) -> Tensor:
        """log p(x|y_k, z_k) + log p(y_k) + log p(z_k) - log q(y_k|x) - log q(z_k|x, y_k), (y_k, z_k) drawn
        from q(y|x) q(z|x, y): the IWAE bound on log p(x), whatever y says. (K, B)"""

        def prepare(x_part, _):
            h = self.nets.trunk(x_part)
            log_q_y = self.log_q_y(h)  # (b, k)

            def draw(n):
                labels = torch.distributions.Categorical(logits=log_q_y).sample((n,))  # (n, b)
                y_rows = one_hot(labels.flatten(), self.classes).to(x.device)
                mu, logvar = self.nets.posterior(enumerate_classes(h, n), y_rows)
                q = DiagonalGaussian(mu, logvar)
                z = q.sample()
                log_px = self.likelihood.log_prob(self.nets.decode(z, y_rows), enumerate_classes(x_part, n), mask)
                log_w = (log_px + standard_normal_log_prob(z) - q.log_prob(z) + log_uniform_prior(self.classes)
                         - log_q_y.gather(1, labels.t()).t().flatten())
                return log_w.view(n, len(x_part))
            return draw

        return chunked_log_weights(x, k, None, prepare, images_per_call, on_chunk)
