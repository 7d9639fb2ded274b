"""The vector quantiser of VQ-VAE (van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation
Learning", sec. 3.1-3.2): each D-dimensional encoder output z_e is replaced by its nearest codebook entry,

    z_q(x) = e_k,   k = argmin_j ||z_e(x) - e_j||_2                          (eq. 1-2)

with the straight-through gradient (dL/dz_e := dL/dz_q), and the two terms of eq. 3 that do not involve the
decoder: the codebook term ||sg[z_e(x)] - e||^2 and the commitment term ||z_e(x) - sg[e]||^2.

Options beyond the gradient-trained codebook: the exponential-moving-average updates of the paper's appendix
A.1 (N_i <- g N_i + (1 - g) n_i, m_i <- g m_i + (1 - g) sum_j z_e_ij, e_i = m_i / N_i, the counts Laplace-smoothed
as in the authors' Sonnet code), which replace the codebook term, and restarts of dead codes (Dhariwal et al.
2020, Jukebox, sec. 3.2): an entry used on average by fewer than `dead_count` vectors per batch takes a
random encoder output of the batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .. import distributed

SMOOTHING = 1e-5  # Laplace smoothing of the EMA counts (Sonnet's epsilon): no entry divides by zero


class VectorQuantiser(nn.Module):
    def __init__(self, codes: int, dim: int, ema: bool = False, decay: float = 0.99, dead_count: float = 0.0):
        super().__init__()
        self.codes, self.dim, self.ema, self.decay, self.dead_count = codes, dim, ema, decay, dead_count
        # the gradient-trained codebook starts as Sonnet's uniform unit-scaling initialiser does
        bound = math.sqrt(3.0 / dim)
        self.codebook = nn.Parameter(torch.empty(codes, dim).uniform_(-bound, bound), requires_grad=not ema)
        self.register_buffer("usage", torch.zeros(codes))  # EMA of the vectors given each entry per batch
        if ema:
            # N_i and m_i start as if each entry had held itself once: an unused entry stays where it is
            self.register_buffer("cluster_size", torch.ones(codes))
            self.register_buffer("cluster_sum", self.codebook.detach().clone())

    def nearest(self, flat: Tensor) -> Tensor:
        """The index of the nearest entry for each row of `flat` (N, D). (N,)"""
        with torch.no_grad():
            e = self.codebook.float()
            distance = flat.float().pow(2).sum(1, keepdim=True) - 2 * flat.float() @ e.t() + e.pow(2).sum(1)
            return distance.argmin(1)

    def indices(self, z_e: Tensor) -> Tensor:
        """The grid of nearest-entry indices of a map z_e (B, D, H, W): the quantisation alone, without eq. 3's
        terms (encoding, decoding a code, the prior's training data). (B, H, W)"""
        b, d, h, w = z_e.shape
        return self.nearest(z_e.permute(0, 2, 3, 1).reshape(-1, d)).view(b, h, w)

    def lookup(self, indices: Tensor) -> Tensor:
        """The entries of a grid of indices (B, H, W) as a (B, D, H, W) map."""
        return self.codebook[indices].permute(0, 3, 1, 2)

    def forward(self, z_e: Tensor) -> dict[str, Tensor]:
        """z_e (B, D, H, W) -> the straight-through z_q (B, D, H, W), the indices (B, H, W), the codebook and
        commitment terms summed over the grid (B,) each, and the counts per entry (K,) of this batch."""
        indices = self.indices(z_e)
        e = self.lookup(indices).to(z_e.dtype)
        return {"z_q": z_e + (e - z_e).detach(),  # the straight-through estimator
                "indices": indices,
                "codebook": (z_e.detach() - e).pow(2).flatten(1).sum(1),
                "commitment": (z_e - e.detach()).pow(2).flatten(1).sum(1),
                "counts": torch.bincount(indices.flatten(), minlength=self.codes).float()}

    @torch.no_grad()
    def update(self, z_e: Tensor, indices: Tensor, counts: Tensor) -> None:
        """After a training step's forward: the EMA codebook update and the dead-code restarts, from the batch's
        encoder outputs z_e (B, D, H, W) and their indices (B, H, W); across ranks the sums are the global batch's."""
        flat = z_e.detach().permute(0, 2, 3, 1).reshape(-1, self.dim).float()
        counts = distributed.sum_tensor(counts.clone())
        keep = 1.0 - self.decay
        self.usage.lerp_(counts, keep)
        if self.ema:
            sums = torch.zeros(self.codes, self.dim, device=flat.device).index_add_(0, indices.flatten(), flat)
            sums = distributed.sum_tensor(sums)
            self.cluster_size.lerp_(counts, keep)
            self.cluster_sum.lerp_(sums, keep)
            total = self.cluster_size.sum()
            smoothed = (self.cluster_size + SMOOTHING) / (total + self.codes * SMOOTHING) * total
            self.codebook.copy_(self.cluster_sum / smoothed.unsqueeze(1))
        if self.dead_count > 0:
            dead = self.usage < self.dead_count
            if bool(dead.any()):
                picks = flat[torch.randint(len(flat), (int(dead.sum()),), device=flat.device)]
                picks = distributed.broadcast_tensor(picks)  # every rank restarts them alike
                self.codebook[dead] = picks.to(self.codebook.dtype)
                # a restarted entry starts at an average entry's use, so it is not restarted again at once
                self.usage[dead] = counts.sum() / self.codes
                if self.ema:
                    self.cluster_size[dead] = 1.0
                    self.cluster_sum[dead] = picks

    @staticmethod
    def perplexity(counts: Tensor) -> Tensor:
        """exp of the entropy of the entries' use in a batch: K when all are used evenly, 1 for one entry."""
        p = counts / counts.sum().clamp_min(1)
        return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())
