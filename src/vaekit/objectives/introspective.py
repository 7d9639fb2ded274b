"""IntroVAE's adversarial terms (Huang et al. 2018): the encoder's KL margin hinge, eq. (5) / (11).

The encoder acts as the discriminator through the KL of its posterior: low on real images, pushed
above the margin m on generated ones, [m - KL(q(z|x_s) || p(z))]^+ for x_s in {X_r, X_p}. The paper's
eq. (9) sums the KL over latent dimensions *and* the N images of the batch inside the hinge; with
the toolkit's mean-over-batch reduction m is a per-image margin, as the paper's values (m = 90..120
nats with 256-512 latent dimensions) and its official code read it.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

HINGES = ("batch", "sample")


def kl_margin_hinge(kl: Tensor, margin: float, hinge: str = "batch") -> Tensor:
    """[m - KL]^+ for per-image KLs (B,) -> scalar.

    hinge="batch": [m - mean_i KL_i]^+, eq. (11) as written (one hinge on the batch's KL);
    hinge="sample": mean_i [m - KL_i]^+, each generated image pushed past the margin on its own
    (Soft-IntroVAE's reading), stricter when a few samples already sit far above m."""
    if hinge == "batch":
        return F.relu(margin - kl.mean())
    return F.relu(margin - kl).mean()
