"""The networks of M2 (Kingma et al. 2014) and of the VAE/GAN survey's semi-supervised models (its sec. 4.5):
q(y|x), q(z|x, y) and p(x|y, z), with the trunk computed once per image so that every class can be
tried in one batched pass (the unlabelled bound enumerates them).

    mlp  (Kingma et al.)   q(y|x): x -> 500 -> k;  q(z|x,y): [x, y] -> 500 -> (mu, logvar);
                           p(x|y,z): [z, y] -> 500 -> image; softplus, no batch norm
    fc   (survey, FC)        h1 = x -> FC-1024 -> FC-1024;  logvar(x), logits(x) from h1;
                           mu(x, y) = [h1, y] -> FC-1024 -> FC-D;  p: [z, y] -> 1024 -> 1024 -> image;
                           batch norm + softplus in every hidden layer
    conv (survey, conv)      h1 = x -> conv5-20 -> pool -> conv5-50 -> pool -> FC-1024;  heads as fc;
                           p: z -> FC-500 -> FC-(H/4 x W/4 x 50) -> up -> deconv5-20 -> up -> deconv5-C,
                           then [that, y] -> FC-512 -> image; batch norm + ReLU except the outputs

the VAE/GAN survey's logvar depends on x only (its Sigma(x)); Kingma et al.'s MLP reads y for both. Every hidden
width is multiplied by `width_factor`. The decoder emits the likelihood's raw parameters.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

SSL_ARCHITECTURES = ("conv", "fc", "mlp")


def _w(width: int, factor: float) -> int:
    return max(1, round(width * factor))


def _dense(n_in: int, n_out: int, act: type[nn.Module], norm: bool) -> list[nn.Module]:
    return [nn.Linear(n_in, n_out, bias=not norm), *([nn.BatchNorm1d(n_out)] if norm else []), act()]


class SemiSupervisedNetworks(nn.Module):
    """trunk(x) -> h; logits(h) -> (B, k); posterior(h, y) -> (mu, logvar); decode(z, y) -> raw."""

    def __init__(self, architecture: str, image_shape: tuple[int, int, int], classes: int, latent_dim: int,
                 width_factor: float = 1.0):
        super().__init__()
        c, h, w = image_shape
        self.architecture, self.image_shape, self.classes = architecture, tuple(image_shape), classes
        pixels, f, D, k = math.prod(image_shape), width_factor, latent_dim, classes
        if architecture == "mlp":
            hidden = _w(500, f)
            self.trunk = nn.Flatten()
            self.classifier = nn.Sequential(*_dense(pixels, hidden, nn.Softplus, False), nn.Linear(hidden, k))
            self.posterior_net = nn.Sequential(*_dense(pixels + k, hidden, nn.Softplus, False),
                                               nn.Linear(hidden, 2 * D))
            self.decoder_body = nn.Sequential(*_dense(D + k, hidden, nn.Softplus, False), nn.Linear(hidden, pixels))
            return
        wide = _w(1024, f)
        if architecture == "fc":
            self.trunk = nn.Sequential(nn.Flatten(), *_dense(pixels, wide, nn.Softplus, True),
                                       *_dense(wide, wide, nn.Softplus, True))
            act = nn.Softplus
            self.decoder_body = nn.Sequential(*_dense(D + k, wide, act, True), *_dense(wide, wide, act, True),
                                              nn.Linear(wide, pixels))
        elif architecture == "conv":
            c1, c2 = _w(20, f), _w(50, f)
            self.sizes = [(h, w), (h // 2, w // 2), (h // 4, w // 4)]  # after each 2x2 max pool (floor)
            h4, w4 = self.sizes[2]
            self.trunk = nn.Sequential(
                nn.Conv2d(c, c1, 5, padding=2, bias=False), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(c1, c2, 5, padding=2, bias=False), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), *_dense(c2 * h4 * w4, wide, nn.ReLU, True))
            act = nn.ReLU
            self.decoder_body = nn.Sequential(
                *_dense(D, _w(500, f), act, True), *_dense(_w(500, f), c2 * h4 * w4, act, True),
                nn.Unflatten(1, (c2, h4, w4)), nn.Upsample(size=self.sizes[1]),
                nn.ConvTranspose2d(c2, c1, 5, padding=2, bias=False), nn.BatchNorm2d(c1), act(),
                nn.Upsample(size=self.sizes[0]), nn.ConvTranspose2d(c1, c, 5, padding=2, bias=False),
                nn.BatchNorm2d(c), act(), nn.Flatten())
            self.decoder_head = nn.Sequential(*_dense(pixels + k, _w(512, f), act, True),
                                              nn.Linear(_w(512, f), pixels))
        else:
            raise ValueError(f"unknown semi-supervised architecture {architecture!r}")
        self.classifier = nn.Linear(wide, k)
        self.logvar_head = nn.Linear(wide, D)
        self.mu_net = nn.Sequential(*_dense(wide + k, wide, act, True), nn.Linear(wide, D))

    def logits(self, h: Tensor) -> Tensor:
        """Unnormalised log q(y|x) from the trunk's features h of images x. (B, k)"""
        return self.classifier(h)

    def posterior(self, h: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """mu and logvar of q(z|x, y) from the trunk's features h (B, H) and one-hots y (B, k)."""
        hy = torch.cat([h, y.to(h)], 1)
        if self.architecture == "mlp":
            return self.posterior_net(hy).chunk(2, dim=1)
        return self.mu_net(hy), self.logvar_head(h)

    def decode(self, z: Tensor, y: Tensor) -> Tensor:
        """The likelihood's raw parameters of p(x|y, z). (B, C, H, W)"""
        y = y.to(z)
        if self.architecture == "conv":  # y joins after the deconvolutions (the VAE/GAN survey's P network)
            out = self.decoder_head(torch.cat([self.decoder_body(z), y], 1))
        else:
            out = self.decoder_body(torch.cat([z, y], 1))
        return out.view(-1, *self.image_shape)
