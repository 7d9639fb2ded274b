"""Log-densities of Gaussian mixtures with very many components: the aggregate posterior
q(z) = (1/N) sum_n q(z|x_n) of a whole data set, at sample points. One home for the estimators that
evaluate it: Chen et al.'s MIG (`metrics.disentanglement.mig_posterior`, one latent at a time) and the
ELBO decomposition over the whole data set (`metrics.elbo_decomposition`, joint and per latent).
"""

from __future__ import annotations

import math

import torch

# Log-densities made at once by the mixture estimator (elements of one block): 2^19 float32 is 2 MB,
# which stays in cache across the block's seven passes (measured fastest on 2 cores); for a large
# mixture that is 512 samples x 1024 components.
BLOCK = 2**19
_TILE_ROWS = 512  # samples per block at least (fewer only when there are fewer)
# Floor on shifted log-densities before exp: e^-87 is just above float32's smallest normal (~1.2e-38),
# so no denormals (~100x slower on x86) reach exp or the sums; e^-700 does the same for float64.
_FLOOR = {torch.float32: -87.0, torch.float64: -700.0}
_FLOAT32_MIN_LOGVAR = -160.0  # below this exp(-logvar / 2) nears float32's range: that latent goes float64


def _exact_log_mixture(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log (1/M) sum_n N(z_s; mu_n, exp(logvar_n)) for 1-D z (S,), mu and logvar (M,): plain float64
    logsumexp, a few rows at a time. -> (S,) float64"""
    rows = max(1, BLOCK // max(1, len(mu)))
    out = [torch.logsumexp(-0.5 * ((z[r:r + rows, None] - mu) ** 2 * torch.exp(-logvar) + logvar), 1)
           for r in range(0, len(z), rows)]
    return torch.cat(out) - 0.5 * math.log(2 * math.pi) - math.log(len(mu))


def _split(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """x (float64) = hi + lo with hi = x rounded to dtype, lo the rest in dtype (None when x is exact)."""
    hi = x.to(dtype)
    lo = (x - hi.double()).to(dtype)
    return hi, (lo if bool(lo.any()) else None)


def log_mixture_1d(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, chunk: int = BLOCK) -> torch.Tensor:
    """log q(z_s) = log (1/M) sum_n N(z_s; mu_n, exp(logvar_n)): a 1-D Gaussian mixture with M
    components at S points, z (S,), mu and logvar (M,) float64 -> (S,) float64.

    The (S, M) log-densities are made in float32 blocks of about `chunk` elements. z_s - mu_n keeps
    float32's relative precision however sharp the posteriors: z and mu are each split into a float32
    value and a float32 remainder (hi + lo), hi_z - hi_mu is exact when the two are close (Sterbenz),
    and the remainders are added after. The logsumexp uses one shift for every row,
    U = max_n -logvar_n / 2 (>= each log-density + log sqrt(2 pi)), so blocks need no running max and
    their sums simply add (in float64); shifted log-densities are floored at e^-87 before exp, which
    adds at most M e^-87 to a row's sum. Rows whose sum is so small that this could exceed e^-20 of it
    (possible only when one latent's log-variances span more than about 100) are redone in plain
    float64, and so is a latent with a log-variance below -160. Error: ~1e-7 nats per log q.
    """
    n_comp = len(mu)
    dtype = torch.float32 if float(logvar.min()) >= _FLOAT32_MIN_LOGVAR else torch.float64
    floor = _FLOOR[dtype]
    log_inv_std = -0.5 * logvar  # (M,)
    shift = float(log_inv_std.max())  # U
    offset = (log_inv_std - shift).to(dtype)  # (M,) <= 0
    scale = (torch.exp(log_inv_std) * math.sqrt(0.5)).to(dtype)  # (M,): ((z - mu) * scale)^2 = (z - mu)^2 / 2 var
    z_hi, z_lo = _split(z, dtype)
    mu_hi, mu_lo = _split(mu, dtype)
    rows = min(len(z), max(_TILE_ROWS, chunk // n_comp))
    cols = min(n_comp, max(1, chunk // rows))
    total = torch.empty(len(z), dtype=torch.float64)
    buf = torch.empty(rows, cols, dtype=dtype)
    for r in range(0, len(z), rows):
        zh = z_hi[r:r + rows, None]  # (R, 1)
        acc = torch.zeros(len(zh), dtype=torch.float64)
        for c in range(0, n_comp, cols):
            sl = slice(c, c + cols)
            b = buf[:len(zh), :len(mu_hi[sl])]  # (R, C)
            torch.sub(zh, mu_hi[sl], out=b)
            if z_lo is not None:
                b.add_(z_lo[r:r + rows, None])
            if mu_lo is not None:
                b.sub_(mu_lo[sl])
            b.mul_(scale[sl])
            torch.addcmul(offset[sl], b, b, value=-1.0, out=b)  # log N(z_s; mu_n, var_n) + log sqrt(2 pi) - U
            acc += b.clamp_min_(floor).exp_().sum(1)
        total[r:r + rows] = acc
    out = torch.log(total) + (shift - 0.5 * math.log(2 * math.pi) - math.log(n_comp))
    redo = ~(total >= n_comp * math.exp(floor + 20.0))  # the floor's excess could exceed e^-20 of the sum
    if redo.any():
        out[redo] = _exact_log_mixture(z[redo], mu, logvar)
    return out


def log_mixture_joint(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, rows: int = 256,
                      cols: int = 16_384) -> torch.Tensor:
    """log q(z_s) = log (1/M) sum_n N(z_s; mu_n, diag exp(logvar_n)): a D-dimensional diagonal-Gaussian
    mixture with M components at S points, z (S, D), mu and logvar (M, D) -> (S,) float64.

    The squared distances come from matrix products in float64 after centring on the components'
    mean, sum_d (z - mu)^2 / var = z^2 . (1/var) - 2 z . (mu/var) + sum_d mu^2 / var, and the logsumexp
    over components runs block by block with a running maximum (an (rows, cols) block at a time).
    Cancellation in that expansion is ~1e-16 of its terms, so latents with log-variances below -30
    (variances under 1e-13) are computed from explicit differences instead.
    """
    z, mu, logvar = z.double(), mu.double(), logvar.double()
    if z.ndim != 2 or mu.shape != logvar.shape or mu.ndim != 2 or z.shape[1] != mu.shape[1]:
        raise ValueError(f"z must be (S, D), mu and logvar (M, D); got {tuple(z.shape)}, {tuple(mu.shape)}, "
                         f"{tuple(logvar.shape)}")
    centre = mu.mean(0)
    z, mu = z - centre, mu - centre
    prec = torch.exp(-logvar)  # (M, D)
    explicit = float(logvar.min()) < -30.0
    if not explicit:
        scaled_mu = mu * prec  # (M, D)
        const = (mu * scaled_mu).sum(1) + logvar.sum(1)  # (M,)
    out = torch.empty(len(z), dtype=torch.float64)
    for r in range(0, len(z), rows):
        zr = z[r:r + rows]  # (R, D)
        top = torch.full((len(zr),), -math.inf, dtype=torch.float64)
        total = torch.zeros(len(zr), dtype=torch.float64)
        for c in range(0, len(mu), cols):
            sl = slice(c, c + cols)
            if explicit:
                sq = ((zr[:, None, :] - mu[None, sl]).square() * prec[None, sl]).sum(2)
                log_d = -0.5 * (sq + logvar[sl].sum(1))
            else:  # -1/2 [z^2 . prec - 2 z . mu prec + mu^2 . prec + sum logvar]
                log_d = (zr.square() @ prec[sl].T).sub_(2.0 * (zr @ scaled_mu[sl].T)).add_(const[sl]).mul_(-0.5)
            new_top = torch.maximum(top, log_d.max(1).values)
            total = total * torch.exp(top - new_top) + torch.exp(log_d - new_top[:, None]).sum(1)
            top = new_top
        out[r:r + rows] = top + torch.log(total)
    return out - 0.5 * z.shape[1] * math.log(2 * math.pi) - math.log(len(mu))
