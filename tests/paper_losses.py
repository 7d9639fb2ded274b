"""The adversarial losses of "When Variational Auto-encoders meet Generative Adversarial Networks"
(Chen, Fang & Ju 2016; ../shared/papers/vae-meets-gan.md), written out once from its equations for the
gradient tests of VAE-GAN (sec. 3.1), CVAE-GAN (sec. 3.2), SSL-VAE-GAN (sec. 3.3) and DRAW-GAN (sec. 3.4).

Nothing here imports vaekit's objectives: D(x) is the sigmoid of the discriminator's logit, "the probability
that x is a real image" (sec. 3.1); CrossEntropy(p, c) = -log p_c of the softmax over k + 1 classes (sec. 3.2).
The generator loss is split as the models split it, Larsen et al.'s three groups (their Algorithm 1): the
encoder minimises beta L_KL + L_rec, the decoder gamma L_rec + the GAN terms of L_G (weighted by
`adversarial_weight`), the discriminator L_D. Every loss is a mean over the batch's images.

A test compares each optimiser group's gradient with torch.autograd.grad of its loss here taken with
respect to that group's parameters only, so no detach is needed: f_l(x), the fakes of L_D and SSL's
q(y|x) weights reach the other groups' parameters, not the group whose loss they are in.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from vaekit.config import TrainConfig
from vaekit.data import ImageDataset
from vaekit.models.base import Batch
from vaekit.train.trainer import Trainer


# --- the terms ---------------------------------------------------------------------------------

def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """L_KL = KL(q(z|x) || N(0, I)) = 1/2 sum (mu^2 + sigma^2 - log sigma^2 - 1) per image, over every
    latent dimension (and every step t for DRAW: sec. 2.4's L^z). (B,)"""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).flatten(1).sum(1)


def bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """L^x = -log D(x | c_T) with D Bernoulli of means sigma(c_T) (sec. 2.4). (B,)"""
    p = torch.sigmoid(logits)
    return -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).flatten(1).sum(1)


def llike(f_real: Tensor, f_tilde: Tensor) -> Tensor:
    """L_llike^{Dis_l} = ||f_l(x) - f_l(x~)||^2 / 2 sigma^2 with sigma = 1, the constant dropped (sec. 3.1). (B,)"""
    return (f_real - f_tilde).pow(2).flatten(1).sum(1) / 2


def log_d(logit: Tensor) -> Tensor:
    """log D(x), D(x) = sigmoid(logit) the probability that x is real. (B,)"""
    return torch.log(torch.sigmoid(logit)).flatten(1).sum(1)


def log_1_minus_d(logit: Tensor) -> Tensor:
    """log (1 - D(x)). (B,)"""
    return torch.log(1 - torch.sigmoid(logit)).flatten(1).sum(1)


def cross_entropy(logits: Tensor, c: Tensor) -> Tensor:
    """CrossEntropy(D(x), c) = -log D_c(x), D(x) the softmax over the k + 1 classes (sec. 3.2). (B,)"""
    p = torch.softmax(logits, 1)
    return -torch.log(p.gather(1, c[:, None])).squeeze(1)


def entropy(log_q: Tensor) -> Tensor:
    """H(Q(y|x)) = -sum_y Q(y|x) log Q(y|x) per image. (B,)"""
    return -(log_q.exp() * log_q).sum(1)


# --- the losses of each section ---------------------------------------------------------------

def vaegan_losses(kl, rec, logit_x, logit_p, logit_tilde, *, beta=1.0, gamma=1.0, adversarial_weight=1.0):
    """Sec. 3.1 (DRAW-GAN: sec. 3.4, "the same forms as (2) and (3)"), x_p = Dec(z_p), x~ = Dec(Enc(x)):
        eq. 2  L_G = L_KL + L_rec - log D(x_p) - log D(x~)
        eq. 3  L_D = -log D(x) - log(1 - D(x_p)) - log(1 - D(x~))
    with L_rec = L_llike^{Dis_l} (or DRAW-GAN's -log D(x | c_T), sec. 4.6). Each argument per image (B,)."""
    gan = -log_d(logit_p) - log_d(logit_tilde)
    return {"loss/encoder": (beta * kl + rec).mean(),
            "loss/decoder": (gamma * rec + adversarial_weight * gan).mean(),
            "loss/discriminator": (-log_d(logit_x) - log_1_minus_d(logit_p) - log_1_minus_d(logit_tilde)).mean()}


def cvae_gan_terms(kl, rec, logits_x, logits_p, logits_tilde, y, *, beta=1.0, gamma=1.0, adversarial_weight=1.0):
    """Sec. 3.2 per image, x_p = Dec(z, y), x~ = Dec(Enc(x, y), y), y_fake = k (the (k + 1)st class):
        L_G = L_KL + L_llike + CE(D(x_p), y) + CE(D(x~), y)
        L_D = CE(D(x), y) + CE(D(x_p), y_fake) + CE(D(x~), y_fake)
    -> the three groups' losses per image, not yet averaged. Each argument (B,) or (B, k + 1); y (B,)."""
    fake = torch.full_like(y, logits_x.shape[1] - 1)
    gan = cross_entropy(logits_p, y) + cross_entropy(logits_tilde, y)
    return {"loss/encoder": beta * kl + rec, "loss/decoder": gamma * rec + adversarial_weight * gan,
            "loss/discriminator": cross_entropy(logits_x, y) + cross_entropy(logits_p, fake)
            + cross_entropy(logits_tilde, fake)}


def cvae_gan_losses(*args, **kwargs):
    """Sec. 3.2's losses averaged over the batch's images."""
    return {name: t.mean() for name, t in cvae_gan_terms(*args, **kwargs).items()}


def ssl_vaegan_losses(told, log_q, labels, *, alpha, entropy_weight):
    """Sec. 3.3. `told(i, c)`: image i's per-image losses of `cvae_gan_terms` computed with label c
    (a dict of scalars); log_q (B, k) log Q(y|x); labels (B,), -1 where an image has none.
    A labelled image takes CVAE-GAN's losses with its label, and M2's classification term
    alpha * CrossEntropy(Q(y|x), y) in the encoder's (sec. 2.3, "in [10], they also add ..."). An
    unlabelled one averages every term that needs a label over Q(y|x):
        L_G,unobserved = L_KL + H(Q(y|x)) + sum_y Q(y|x) (L_llike^{Dis_l} + CE(D(Dec(z, y)), y)
                                                         + CE(D(Dec(Enc(x, y), y)), y))
        L_D            = sum_y Q(y|x) (CE(D(x), y) + CE(D(Dec(z, y)), y_fake) + CE(D(Dec(Enc(x, y), y)), y_fake))
    with L_KL = sum_y Q(y|x) KL(q(z|x, y) || N(0, I)) (as in U(x): q(z|x, y) depends on y) and H weighted
    by `entropy_weight`: +1 is L_G,unobserved as printed, -1 the sign of -U(x) = ... + H(Q(y|x)), a bound
    to maximise (M2's loss U(x) carries -H)."""
    totals = {"loss/encoder": 0.0, "loss/decoder": 0.0, "loss/discriminator": 0.0}
    k = log_q.shape[1]
    for i, label in enumerate(labels.tolist()):
        if label >= 0:
            for name, value in told(i, label).items():
                totals[name] = totals[name] + value
            totals["loss/encoder"] = totals["loss/encoder"] - alpha * log_q[i, label]
        else:
            for c in range(k):
                for name, value in told(i, c).items():
                    totals[name] = totals[name] + log_q[i, c].exp() * value
            totals["loss/encoder"] = totals["loss/encoder"] + entropy_weight * entropy(log_q[i:i + 1])[0]
    return {name: total / len(labels) for name, total in totals.items()}


# --- one trainer step against them ---------------------------------------------------------------

def step_once(model, x: Tensor, labels: Tensor | None = None, seed: int = 2):
    """One step of the one trainer on the batch (x, labels), torch's RNG at `seed`: the copy of the model
    before the step (the weights the written-out losses are taken at) and the model after it, whose
    parameters hold in .grad the gradient each group was stepped with."""
    before = copy.deepcopy(model)
    names = None if labels is None else [str(c) for c in range(int(labels.max()) + 1)]
    data = ImageDataset("batch", "train", (x * 255).round().to(torch.uint8), labels, names, "memory")
    trainer = Trainer(model, data, TrainConfig(steps=1, batch_size=len(x), log_every=1, precision="fp32", channels_last=False), progress=False)
    torch.manual_seed(seed)
    trainer.train_step(Batch(x, labels))
    return before, model


def assert_each_group_stepped_with(model, before, losses: dict[str, Tensor]) -> None:
    """Each optimiser group of `model` was stepped with the gradient of its own written-out loss (taken at
    the weights of `before`, with respect to that group's parameters only); the groups share no
    parameter and cover them all."""
    groups, groups_before = model.optim_groups(), before.optim_groups()
    assert set(groups) == set(losses)
    for name, params in groups_before.items():
        want = torch.autograd.grad(losses[name], params, retain_graph=True, allow_unused=True)
        for p, g in zip(groups[name], want):
            torch.testing.assert_close(p.grad, torch.zeros_like(p) if g is None else g, rtol=1e-4, atol=1e-5,
                                       msg=lambda m, name=name: f"{name}: {m}")
    every = [p for ps in groups.values() for p in ps]
    assert len({id(p) for p in every}) == len(every) == len(list(model.parameters()))
