"""The KL term of the ELBO split over a whole data set: index-code mutual information, total
correlation and dimension-wise KL (Chen et al. 2018, eq. 2; the overview paper's sec. V.A), measured
on a trained model rather than on a minibatch.

With q(z) = (1/N) sum_n q(z|x_n) the aggregate posterior of N datapoints and q(z_d) its marginals,

    E_{p(n) q(z|n)} [log q(z|n) - log p(z)] =  E[log q(z|n) - log q(z)]          MI  (index-code)
                                             + E[log q(z) - sum_d log q(z_d)]     TC  (total correlation)
                                             + E[sum_d log q(z_d) - log p(z_d)]   DWKL

One draw z_n ~ q(z|x_n) per datapoint; each expectation is the mean over `samples` of those draws, and
log q(z), log q(z_d) are exact logsumexps over all N components (`metrics.mixture`), the way the
authors' own evaluation does it (not the minibatch estimators training uses, which are biased once
posteriors are sharp: with a batch of B << N, log q(z) is mostly the sample's own component, so the
logged `tc/mi` sits near log N and `tc/tc` can come out negative). The three terms add up to the
Monte-Carlo KL of the same draws; MI <= log N.
"""

from __future__ import annotations

import math

import torch

from ..distributions import LOG_2PI, DiagonalGaussian
from ..batch import Batch
from ..models.base import eval_mode
from .mixture import log_mixture_1d, log_mixture_joint


def posterior_encoder(model):
    """images (B, C, H, W) -> (mu, logvar), each (B, D) on the CPU: the model's q(z|x) in the form the
    posterior-based metrics take (`mig_posterior`, `dataset_elbo_decomposition`). Call it in eval mode.
    A conditional model is told each image's side information from the image (an image part); the
    callers skip label-conditional models."""
    device = next(model.parameters()).device

    def encode_posterior(x):
        x = x.to(device)
        q = model.encode(x, model.side_information(Batch(x, None)))
        return q.mu.flatten(1).cpu(), q.logvar.flatten(1).cpu()

    return encode_posterior


def elbo_decomposition(mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, *, samples: int = 10_000,
                       generator: torch.Generator | None = None) -> dict:
    """MI, TC and DWKL in nats of the N posteriors N(mu_n, diag exp(logvar_n)), mu/logvar/z (N, D),
    z_n a draw from the n-th posterior; `samples` of the draws (all if N <= samples) are scored.
    Returns {"mi", "tc", "dwkl", "kl" (their sum), "dwkl/<d>" per latent, "<term>_se" (standard error over
    the scored draws), "n", "samples"}."""
    if not (mu.shape == logvar.shape == z.shape) or mu.ndim != 2:
        raise ValueError(f"mu, logvar and z must all be (N, D); got {tuple(mu.shape)}, {tuple(logvar.shape)}, "
                         f"{tuple(z.shape)}")
    mu, logvar, z = mu.double(), logvar.double(), z.double()
    n = len(mu)
    pick = torch.arange(n) if n <= samples else torch.randperm(n, generator=generator)[:samples]
    zs = z[pick]  # (S, D)
    log_qz_x = DiagonalGaussian(mu[pick], logvar[pick]).log_prob(zs)  # (S,) each draw under its own posterior
    log_qz = log_mixture_joint(zs, mu, logvar)  # (S,)
    log_qz_d = torch.stack([log_mixture_1d(zs[:, d], mu[:, d], logvar[:, d]) for d in range(mu.shape[1])], 1)
    log_pz_d = -0.5 * (zs.square() + LOG_2PI)  # (S, D)
    mi, tc = (log_qz_x - log_qz).mean(), (log_qz - log_qz_d.sum(1)).mean()
    dwkl_d = (log_qz_d - log_pz_d).mean(0)  # (D,)
    out = {"mi": float(mi), "tc": float(tc), "dwkl": float(dwkl_d.sum()), "kl": float(mi + tc + dwkl_d.sum())}
    out.update({f"dwkl/{d}": float(v) for d, v in enumerate(dwkl_d)})
    # Standard errors over the scored draws (given the N posteriors): each term is a mean of per-draw values.
    per_draw = {"mi": log_qz_x - log_qz, "tc": log_qz - log_qz_d.sum(1), "dwkl": (log_qz_d - log_pz_d).sum(1),
                "kl": log_qz_x - log_pz_d.sum(1)}
    se = {f"{k}_se": (float(v.std() / math.sqrt(len(v))) if len(v) > 1 else math.nan) for k, v in per_draw.items()}
    return {**out, **se, "n": n, "samples": len(pick), "log_n": math.log(n)}


def dataset_elbo_decomposition(model, data, *, n: int | None = None, samples: int = 10_000, seed: int = 0,
                               batch_size: int = 500, progress: bool = False) -> dict:
    """`elbo_decomposition` of a trained model (run in eval mode) over `data` (any dataset with
    `batch(indices)`): every image (n=None; 737,280 for dSprites, as the authors do) or n drawn
    uniformly without replacement (then MI <= log n, so compare values at equal n)."""
    from ..progress import TaskProgress

    g = torch.Generator().manual_seed(seed)
    total = len(data)
    idx = torch.arange(total) if n is None or n >= total else torch.randperm(total, generator=g)[:n].sort().values
    mus, logvars = [], []
    with eval_mode(model), TaskProgress("KL decomposition: encoding", len(idx), enabled=progress) as shown:
        encode_posterior = posterior_encoder(model)
        for start in range(0, len(idx), batch_size):
            mu, logvar = encode_posterior(data.batch(idx[start:start + batch_size]))
            mus.append(mu.double())
            logvars.append(logvar.double())
            shown.advance(len(mu))
    mu, logvar = torch.cat(mus), torch.cat(logvars)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g, dtype=torch.float64)
    return elbo_decomposition(mu, logvar, z, samples=samples, generator=g)
