"""Side information y: what a conditional model is told besides the image (Sohn et al. 2015; "When
VAEs meet GANs", sec. 2.2 and 4.4).

    log p(x|y) >= E_q(z|x,y)[log p(x|y,z)] - KL(q(z|x,y) || p(z|y))        (the VAE/GAN survey, sec. 2.2)

y is a class label (one-hot) or a part of the image itself: the kept left / right / top / bottom
half, a half chosen at random per image ("half") so one model completes any of the four, or a random
mask of 1, 2 or 3 quadrants kept ("quadrants", Sohn et al.'s MNIST setting). As a
tensor, y is always float: a one-hot (B, k), or the kept pixels and their mask (B, C + 1, H, W), so
it can be interpolated and built by hand (`one_hot`, `kept_part`). y enters
- the encoder as extra input channels (one-hot planes, or the kept pixels and mask),
- the decoder and the prior network as a vector e(y): the one-hot itself, or a learned
  convolutional embedding of the kept part,
and the prior p(z|y) is N(0, I) or, with `prior = "learned"`, Sohn et al.'s conditional prior
network N(mu(y), diag sigma^2(y)); its KL to q(z|x,y) is closed-form (`DiagonalGaussian.kl`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import applies_when
from .distributions import DiagonalGaussian, StandardNormal
from .errors import ConfigError

HALVES = ("left", "right", "top", "bottom")
QUADRANTS = ("tl", "tr", "bl", "br")  # top-left, top-right, bottom-left, bottom-right
HALF_QUADRANTS = {"left": ("tl", "bl"), "right": ("tr", "br"), "top": ("tl", "tr"), "bottom": ("bl", "br")}
# "quadrants": a random mask per image, 1, 2 or 3 of the four quadrants kept (Sohn et al.'s / Pyro's setting)
CONDITIONS = ("none", "label", *HALVES, "half", "quadrants")
PRIORS = ("standard", "learned")


def is_image_part(condition: str) -> bool:
    """Whether a condition is a kept part of the image (a half, any half, quadrants), not none or a label:
    the one place that reads the condition's name this way (configs, SideInformation, Capabilities)."""
    return condition not in ("none", "label")


def _is_label(c) -> bool:
    return c.condition == "label"


def _is_conditional(c) -> bool:
    return c.condition != "none"


def _is_image_part(c) -> bool:
    return is_image_part(c.condition)


@dataclass(frozen=True)
class ConditionConfig:
    """The side-information settings of a model that can be conditional (VAE, VAE-GAN)."""

    condition: str = "none"  # none | label | left | right | top | bottom (the kept half) | half (any, at random)
    #                          | quadrants (1, 2 or 3 of the four quadrants kept, at random)
    classes: int = field(default=0, metadata=applies_when(_is_label, "model.condition = 'label'"))
    #   k, the number of classes; 0 = from the data, set by the run
    prior: str = field(default="standard", metadata=applies_when(_is_conditional, "model.condition is not 'none'"))
    #   standard: p(z|y) = N(0, I) | learned: Sohn et al.'s prior network N(mu(y), sigma(y))
    condition_features: int = field(default=64, metadata=applies_when(_is_image_part,
                                                                       "model.condition is an image part"))
    #   width of the learned embedding e(y) of the kept part

    def check_condition(self) -> None:
        if self.condition not in CONDITIONS:
            raise ConfigError(f"model.condition must be one of {', '.join(CONDITIONS)}, got {self.condition!r}")
        if self.prior not in PRIORS:
            raise ConfigError(f"model.prior must be one of {', '.join(PRIORS)}, got {self.prior!r}")
        if self.classes < 0 or self.condition_features < 1:
            raise ConfigError("model.classes must be >= 0 and model.condition_features >= 1")


def classes_from_data(config, classes: int):
    """`config` with `classes` filled from the data (a run's `settings_from_data`); a label-conditional
    model on data without labels, or with more classes than set, is refused."""
    if config.condition != "label":
        return config
    if classes == 0:
        raise ConfigError("model.condition = 'label' needs a dataset with class labels; this one has none "
                          "(condition on an image part instead, e.g. --set model.condition=left)")
    if config.classes == 0:
        return dataclasses.replace(config, classes=classes)
    if config.classes < classes:
        raise ConfigError(f"model.classes = {config.classes} but the data has {classes} classes")
    return config


def one_hot(labels: Tensor, classes: int) -> Tensor:
    """Integer labels (B,) -> float one-hot side information (B, classes)."""
    labels = torch.as_tensor(labels)
    # checked where they come from the host (a user's --label, a dataset's labels); on a GPU the check
    # would wait for the device every training step, and F.one_hot refuses bad labels there anyway
    if labels.device.type == "cpu" and labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ConfigError(f"labels must lie in [0, {classes - 1}], got {int(labels.min())}..{int(labels.max())}")
    return F.one_hot(labels.long(), classes).float()


def kept_quadrants(keep: str) -> tuple[str, ...]:
    """The quadrants a kept part covers: a half (left, right, top, bottom) or quadrants joined by '+'
    (tl, tr, bl, br: e.g. "tl", "tl+br", "tl+tr+bl"); at least one kept and one missing."""
    if keep in HALVES:
        return HALF_QUADRANTS[keep]
    parts = tuple(keep.split("+")) if isinstance(keep, str) else ()
    if not parts or any(p not in QUADRANTS for p in parts) or len(set(parts)) != len(parts) or len(parts) > 3:
        raise ConfigError(f"the kept part must be a half ({', '.join(HALVES)}) or 1-3 distinct quadrants joined by "
                          f"'+' ({', '.join(QUADRANTS)}: e.g. tl, tl+br, tl+tr+bl), got {keep!r}")
    return tuple(q for q in QUADRANTS if q in parts)


def quadrant_box(quadrant: str, height: int, width: int) -> tuple[slice, slice]:
    """The rows and columns of one quadrant (the top and left ones take the smaller half of an odd side)."""
    h, w = height // 2, width // 2
    rows = slice(0, h) if quadrant[0] == "t" else slice(h, height)
    return rows, (slice(0, w) if quadrant[1] == "l" else slice(w, width))


def keep_mask(keep: str, height: int, width: int, device=None) -> Tensor:
    """1 on the kept part of an image (a half or a set of quadrants, `kept_quadrants`), 0 on the
    missing one. (1, 1, H, W)"""
    m = torch.zeros(1, 1, height, width, device=device)
    for q in kept_quadrants(keep):
        rows, cols = quadrant_box(q, height, width)
        m[..., rows, cols] = 1
    return m


def kept_part(x: Tensor, mask: Tensor) -> Tensor:
    """Side information from an image: its kept pixels (the rest zero) and the mask. (B, C + 1, H, W)"""
    mask = mask.expand(x.shape[0], 1, *x.shape[-2:]).to(x)
    return torch.cat([x * mask, mask], 1)


def random_half_masks(n: int, height: int, width: int, device=None) -> Tensor:
    """One of the four halves per image, uniformly at random (torch's RNG). (n, 1, H, W)"""
    masks = torch.cat([keep_mask(k, height, width, device) for k in HALVES])  # (4, 1, H, W)
    return masks[torch.randint(len(HALVES), (n,), device=device)]


# every mask of the "quadrants" condition: 1, 2 or 3 of the four quadrants kept (14 in all)
QUADRANT_SETS = tuple("+".join(q for i, q in enumerate(QUADRANTS) if bits >> i & 1) for bits in range(1, 15))


def random_quadrant_masks(n: int, height: int, width: int, device=None) -> Tensor:
    """One of the 14 quadrant sets per image, uniformly at random (torch's RNG). (n, 1, H, W)"""
    masks = torch.cat([keep_mask(k, height, width, device) for k in QUADRANT_SETS])  # (14, 1, H, W)
    return masks[torch.randint(len(QUADRANT_SETS), (n,), device=device)]


class SideInformation(nn.Module):
    """y for one model: made from a batch, embedded for the decoder and prior, and the prior p(z|y).

    `encoder_channels` extra input channels the encoder takes, `width` the size of e(y)."""

    def __init__(self, config, image_shape: tuple[int, int, int]):
        super().__init__()
        from .nn import ConvEncoder

        c = config
        self.condition, self.latent_dim = getattr(c, "condition", "none"), c.latent_dim
        channels, height, width = image_shape
        self.image_shape = tuple(image_shape)
        if self.condition == "none":
            self.encoder_channels = self.width = 0
        elif self.condition == "label":
            if c.classes < 1:
                raise ConfigError("model.classes must be set for model.condition = 'label' (the run sets it "
                                  "from the data)")
            self.encoder_channels = self.width = c.classes
        else:
            self.encoder_channels = channels + 1
            self.width = c.condition_features
            self.embedding = ConvEncoder((channels + 1, height, width), c.condition_features, c.base_channels,
                                         c.max_channels, c.norm, downsamples=c.downsamples)
        self.prior_net = None
        if self.condition != "none" and c.prior == "learned":
            hidden = max(64, 2 * c.latent_dim)
            self.prior_net = nn.Sequential(nn.Linear(self.width, hidden), nn.LeakyReLU(0.2),
                                           nn.Linear(hidden, 2 * c.latent_dim))
            nn.init.zeros_(self.prior_net[-1].weight)  # starts as N(0, I)
            nn.init.zeros_(self.prior_net[-1].bias)

    @property
    def is_label(self) -> bool:
        return self.condition == "label"

    @property
    def is_image_part(self) -> bool:
        return is_image_part(self.condition)

    @property
    def classes(self) -> int:
        """k of a label-conditional model (the width of its one-hot y); 0 otherwise."""
        return self.width if self.is_label else 0

    def from_batch(self, x: Tensor, labels: Tensor | None) -> Tensor | None:
        """The side information of images x (B, C, H, W) with their labels (B,) or None."""
        if self.condition == "none":
            return None
        if self.condition == "label":
            if labels is None:
                raise ConfigError("this model is conditioned on class labels, and the images came without any")
            # a batch's labels are the data's, in range since the run matched classes to the data
            # (classes_from_data): no host-side check per training step; F.one_hot refuses bad ones
            return F.one_hot(labels.to(x.device).long(), self.width).float()
        h, w = x.shape[-2:]
        if self.condition == "half":
            mask = random_half_masks(len(x), h, w, x.device)
        elif self.condition == "quadrants":
            mask = random_quadrant_masks(len(x), h, w, x.device)
        else:
            mask = keep_mask(self.condition, h, w, x.device)
        return kept_part(x, mask)

    def check(self, y: Tensor | None, n: int) -> None:
        if self.condition == "none":
            return
        if y is None:
            raise ConfigError(f"this model is conditional ({self.condition}): give it side information y")
        expected = (n, self.width) if self.is_label else (n, self.encoder_channels, *self.image_shape[1:])
        if tuple(y.shape) != expected:
            raise ConfigError(f"side information y must have shape {expected}, got {tuple(y.shape)}")

    def encoder_input(self, x: Tensor, y: Tensor | None) -> Tensor:
        """x with y as extra channels (one-hot planes, or the kept pixels and mask)."""
        if self.condition == "none":
            return x
        self.check(y, len(x))
        if self.is_label:
            y = y[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        return torch.cat([x, y.to(x)], 1)

    def embed(self, y: Tensor) -> Tensor:
        """e(y), (B, width): what the decoder and the prior network read."""
        return y if self.is_label else self.embedding(y)

    def decoder_input(self, z: Tensor, y: Tensor | None) -> Tensor:
        if self.condition == "none":
            return z
        self.check(y, len(z))
        return torch.cat([z, self.embed(y).to(z)], 1)

    def prior(self, y: Tensor | None, n: int | None, device) -> DiagonalGaussian:
        """p(z|y) for a batch: N(0, I) (n codes, or one per y) or the prior network's Gaussian."""
        if self.prior_net is None:
            count = n if y is None else len(y)
            if count is None:
                raise ValueError("the prior needs a batch size n or side information y")
            return StandardNormal(count, self.latent_dim, device)
        self.check(y, len(y) if n is None else n)
        mu, logvar = self.prior_net(self.embed(y)).chunk(2, dim=1)
        return DiagonalGaussian(mu, logvar)


def side_information_for_samples(model, data, start: int, stop: int, seed: int = 0) -> Tensor | None:
    """y for samples number start..stop-1 of a fixed series: labels cycling through every class (the
    same number of samples per class), or the kept parts of a fixed uniform sample of `data`'s images.
    None for an unconditional model."""
    from .data import fixed_sample
    from .batch import Batch

    caps = model.capabilities
    if not caps.conditional:
        return None
    if caps.label_conditional:  # no images to read: y is the one-hot alone
        return one_hot(torch.arange(start, stop) % data_classes(data), model.classes).to(model.device)
    n = len(data)
    idx = fixed_sample(n, n, seed)[torch.arange(start, stop) % n]
    return model.side_information(Batch(data.batch(idx).to(model.device), None))


def data_classes(data) -> int:
    """The number of classes of a labelled dataset; 0 without labels."""
    if data.labels is None or len(data.labels) == 0:
        return 0
    return max(len(data.classes or ()), int(data.labels.max()) + 1)
