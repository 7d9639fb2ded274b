"""The beta-TCVAE decomposition of the KL term into index-code MI, total correlation and
dimension-wise KL, with the minibatch estimators of the aggregate posterior q(z).

Chen, Li, Grosse & Duvenaud (2018), "Isolating Sources of Disentanglement in Variational
Autoencoders" (NeurIPS), sec. 3, eq. (2); the overview in /work/shared/papers/vae-overview-beta-tcvae.md,
sec. V.A. For one datapoint n and one draw z ~ q(z|n) the Monte-Carlo KL splits exactly as

    log q(z|n) - log p(z) =  [log q(z|n) - log q(z)]                  index-code MI   (i)
                           + [log q(z) - sum_d log q(z_d)]             total correlation (ii)
                           + [sum_d log q(z_d) - sum_d log p(z_d)]     dimension-wise KL (iii)

whose expectations over p(n) q(z|n) are the three KL terms of eq. (2). beta-TCVAE weighs them with
alpha, beta, gamma (sec. 3.2, eq. (4); overview sec. V.A): penalty = alpha (i) + beta (ii) + gamma (iii).

q(z) = (1/N) sum_n q(z|n) is a mixture over the whole training set of size N and is estimated from
the minibatch; the marginals q(z_d) likewise, one latent dimension at a time:

* "mws" — minibatch-weighted sampling (sec. 3.1 "Training with minibatch-weighted sampling", eq. (3);
  derivation in the appendix): q(z_i) ~ 1/(N M) sum_j q(z_i|n_j), M the batch size. It is the
  paper's importance-sampled lower bound: the weights sum to 1/N, not 1, so each log-density comes
  out about log N low. With the batch being the whole data set (M = N) it is exactly
  log q(z) - log N, and the TC estimate is exactly the true TC plus (D - 1) log N. Such offsets
  are constants — no effect on gradients — but MWS values of mi / tc / dwkl are not the true terms.
* "mss" — minibatch stratified sampling (appendix, "Minibatch stratified sampling"): importance
  weights that sum to 1 and give an unbiased estimate of q(z) (not of log q(z)) when the batch is
  a uniformly drawn, randomly ordered subset of the data set. Weights in `_log_mss_weights`.

Everything is per sample, shape (B,), summed over latent dimensions, in nats (the toolkit's
reduction); the model averages over the batch. Densities come from `vaekit.distributions`.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from ..distributions import LOG_2PI, DiagonalGaussian, standard_normal_log_prob
from ..errors import ConfigError

ESTIMATORS = ("mws", "mss")


def _flat(q: DiagonalGaussian, z: Tensor) -> tuple[DiagonalGaussian, Tensor]:
    """q and z as (B, D): latents of any shape (B, ...) are flattened after the batch axis."""
    if z.dim() < 2 or q.mu.shape != z.shape or q.logvar.shape != z.shape:
        raise ValueError(
            f"z must be (B, D) (or (B, ...)) with q.mu and q.logvar of the same shape; "
            f"got z {tuple(z.shape)}, mu {tuple(q.mu.shape)}, logvar {tuple(q.logvar.shape)}"
        )
    if z.dim() == 2:
        return q, z
    return DiagonalGaussian(q.mu.flatten(1), q.logvar.flatten(1)), z.flatten(1)


def _check_settings(batch_size: int, dataset_size: int, estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ConfigError(f"unknown q(z) estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    if isinstance(dataset_size, bool) or not isinstance(dataset_size, numbers.Integral):
        raise ConfigError(f"dataset_size must be an integer (the training-set size N), got {dataset_size!r}")
    if dataset_size < batch_size:
        raise ConfigError(
            f"dataset_size ({dataset_size}) is smaller than the batch ({batch_size}): the q(z) estimators "
            "need N, the size of the whole training set, which is at least the batch size"
        )
    if estimator == "mss" and batch_size < 2:
        raise ConfigError("the 'mss' estimator needs a batch of at least 2 samples")


def log_q_z_matrix(q: DiagonalGaussian, z: Tensor) -> Tensor:
    """log q(z_id | x_j) for every sample i and datapoint j of the batch and every latent dim d.

    q: the batch's posteriors, mu/logvar (B, D); z: one draw per datapoint, (B, D) (z_i ~ q(z|x_i)).
    Returns (B, B, D): [i, j, d] = log N(z_id; mu_jd, exp(logvar_jd)), i = sample, j = datapoint.
    Summing over d gives log q(z_i|x_j); the diagonal i = j is q.log_prob(z) per dimension.
    The (B*D) coordinates of the batch are 1-D Gaussians; their densities come from
    DiagonalGaussian.log_prob, evaluated at every sample in one broadcast.
    """
    q, z = _flat(q, z)
    b, d = z.shape
    coords = DiagonalGaussian(q.mu.reshape(b * d, 1), q.logvar.reshape(b * d, 1))  # one 1-D Gaussian per (j, d)
    z_rep = z.unsqueeze(1).expand(b, b, d).reshape(b, b * d, 1)  # [i, j*D + d] = z_id
    return coords.log_prob(z_rep).view(b, b, d)


def _log_mss_weights(batch_size: int, dataset_size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """log w_ij of minibatch stratified sampling (Chen et al. 2018, appendix, "Minibatch stratified
    sampling"), (B, B): log q(z_i) ~ logsumexp_j [log w_ij + log q(z_i|x_j)].

    In the paper's notation the batch holds the sample's own datapoint n* plus M = B - 1 others.
    Split the data set into M strata of N/M points each; n* lies in one of them. Then
        q(z) = (1/N) q(z|n*)                                 n* itself, exactly
             + (N - M)/(N M) * q(z|n_s)                      one draw standing for the N/M - 1 other
                                                             points of n*'s stratum
             + (1/M) * sum of q(z|n_m) over the M - 1 others  one draw per remaining stratum (N/M each)
    in expectation over the draws. Row weights: 1/N + (N - M)/(N M) + (M - 1)/M = 1.

    Here sample i's own datapoint is column i (weight 1/N); the designated stratum-mate is its cyclic
    successor j = (i + 1) mod B (weight (N - M)/(N M)); every other column gets 1/M. With B the batch
    size: 1/N, (N - B + 1)/(N (B - 1)) and 1/(B - 1). Unbiasedness needs only that, given n*, the
    designated column is a uniform draw among the others — true for a uniformly drawn batch in random
    order: each other point n != n* then gets expected weight (B-1)/(N-1) * [(N-B+1)/(N(B-1)^2)
    + (B-2)/(B-1)^2] = 1/N, so E[q_hat(z)] = q(z). (The authors' code, rtqichen/beta-tcvae, builds
    this matrix with strides that put 1/N in column 0 rather than on the diagonal — its PR #1; the
    cyclic successor here is what that code intends.) It does not make one batch exact: with B = N
    the weights are 1/N, 1/(N(N-1)) and 1/(N-1), exact only on average over orderings.
    """
    n, m = float(dataset_size), float(batch_size - 1)
    log_w = torch.full((batch_size, batch_size), -math.log(m), dtype=dtype, device=device)
    rows = torch.arange(batch_size, device=device)
    log_w[rows, rows] = -math.log(n)
    log_w[rows, (rows + 1) % batch_size] = math.log((n - m) / (n * m))  # n - m >= 1 since N >= B
    return log_w


class _MixtureLogDensities(torch.autograd.Function):
    """log q(z_i) and log q(z_id) for a batch mixture, without materialising the (B, B, D) matrix.

    Forward: L_id = logsumexp_j [log w_ij + l_ijd] and LQ_i = logsumexp_j [log w_ij + sum_d l_ijd],
    l_ijd = log N(z_id; mu_jd, exp(logvar_jd)). Rows i are processed in blocks (~1 MB on a CPU, so every
    intermediate stays in cache); the backward pass recomputes l from (z, mu, logvar) and uses the
    softmax responsibilities p_ijd = exp(log w_ij + l_ijd - L_id) (and P_ij for the joint):
        dL/dz_id = -sum_j A_ijd (z_id - mu_jd) / var_jd,   dL/dmu_jd = sum_i A_ijd (z_id - mu_jd) / var_jd,
        dL/dlogvar_jd = 1/2 sum_i A_ijd ((z_id - mu_jd)^2 / var_jd - 1),
    with A_ijd = g_id p_ijd + g_i P_ij for upstream gradients g. The weights log w get no gradient.
    Equal (to float rounding) to the reference built on `log_q_z_matrix`, which autograd differentiates
    through a (B, B, D) graph, several times slower and far larger in memory (tests compare both).
    Not twice differentiable.
    """

    @staticmethod
    def _block_rows(b: int, d: int, device: torch.device) -> int:
        # (rows, D, B) floats: ~1 MB on a CPU (stays in cache; measured fastest on 2 cores), ~64 MB on a
        # GPU (few, large kernels)
        elements = 1 << 18 if device.type == "cpu" else 1 << 24
        return max(1, elements // max(1, b * d))

    @staticmethod
    def _columns(mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(D, B) tables over datapoints j: mu_jd, -1/(2 var_jd), -(logvar_jd + log 2 pi)/2."""
        logvar_t = logvar.t().contiguous()
        return mu.t().contiguous(), -0.5 * torch.exp(-logvar_t), -0.5 * (logvar_t + LOG_2PI)

    @staticmethod
    def _log_densities(z_rows: Tensor, mu_t: Tensor, half_prec_t: Tensor, const_t: Tensor) -> tuple[Tensor, Tensor]:
        """For rows i of z: (z_id - mu_jd, log N(z_id; mu_jd, var_jd)), each (r, D, B)."""
        diff = z_rows.unsqueeze(2) - mu_t
        return diff, diff.square().mul_(half_prec_t).add_(const_t)

    @staticmethod
    def forward(ctx, z: Tensor, mu: Tensor, logvar: Tensor, log_w: Tensor):
        b, d = z.shape
        mu_t, half_prec_t, const_t = _MixtureLogDensities._columns(mu, logvar)
        log_qz, log_qz_dims = z.new_empty(b), z.new_empty(b, d)
        rows = _MixtureLogDensities._block_rows(b, d, z.device)
        for s in range(0, b, rows):
            e = min(s + rows, b)
            _, l = _MixtureLogDensities._log_densities(z[s:e], mu_t, half_prec_t, const_t)  # (r, D, B)
            w = log_w[s:e]  # (r, B)
            log_qz[s:e] = torch.logsumexp(l.sum(1).add_(w), dim=1)
            log_qz_dims[s:e] = torch.logsumexp(l.add_(w.unsqueeze(1)), dim=2)
        ctx.save_for_backward(z, mu, logvar, log_w, log_qz, log_qz_dims)
        return log_qz, log_qz_dims

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_qz: Tensor | None, g_dims: Tensor | None):
        z, mu, logvar, log_w, log_qz, log_qz_dims = ctx.saved_tensors
        b, d = z.shape
        mu_t, half_prec_t, const_t = _MixtureLogDensities._columns(mu, logvar)
        grad_z = torch.empty_like(z)
        grad_mu_t, grad_logvar_t = torch.zeros_like(mu_t), torch.zeros_like(mu_t)
        rows = _MixtureLogDensities._block_rows(b, d, z.device)
        for s in range(0, b, rows):
            e = min(s + rows, b)
            diff, l = _MixtureLogDensities._log_densities(z[s:e], mu_t, half_prec_t, const_t)
            w = log_w[s:e]
            l_joint = l.sum(1)  # (r, B)
            a = l.add_(w.unsqueeze(1)).sub_(log_qz_dims[s:e].unsqueeze(2)).exp_()  # (r, D, B): p_ijd
            if g_dims is not None:
                a.mul_(g_dims[s:e].unsqueeze(2))
            else:
                a.zero_()
            if g_qz is not None:  # + g_i P_ij, the same for every d
                a.add_(l_joint.add_(w).sub_(log_qz[s:e].unsqueeze(1)).exp_().mul_(g_qz[s:e].unsqueeze(1)).unsqueeze(1))
            a_sum = a.sum(0)  # (D, B)
            a.mul_(diff).mul_(half_prec_t)  # -A_ijd (z_id - mu_jd) / (2 var_jd)
            grad_z[s:e] = a.sum(2).mul_(2.0)
            grad_mu_t.sub_(a.sum(0), alpha=2.0)
            grad_logvar_t.sub_(a.mul_(diff).sum(0)).sub_(a_sum, alpha=0.5)
        return grad_z, grad_mu_t.t(), grad_logvar_t.t(), None


def _log_weights(batch_size: int, dataset_size: int, estimator: str, dtype, device) -> Tensor:
    """log w_ij of the estimator, (B, B): log q(z_i) ~ logsumexp_j [log w_ij + log q(z_i|x_j)]."""
    if estimator == "mws":  # sec. 3.1, eq. (3): 1/(N M) for every batch element
        return torch.full((batch_size, batch_size), -math.log(dataset_size) - math.log(batch_size),
                          dtype=dtype, device=device)
    return _log_mss_weights(batch_size, dataset_size, dtype, device)


def log_qz_estimates(
    q: DiagonalGaussian, z: Tensor, dataset_size: int, estimator: str = "mws", fused: bool = True
) -> tuple[Tensor, Tensor]:
    """Minibatch estimates of log q(z_i) and sum_d log q(z_id) for each sample i, each (B,).

    q(z) = (1/N) sum_n q(z|n) is the aggregate posterior over the training set of size N =
    `dataset_size`; q(z_d) its marginals. estimator "mws": weights 1/(N M) on every batch element
    (Chen et al. 2018, sec. 3.1, eq. (3)); "mss": the stratified weights of the paper's appendix (see
    `_log_mss_weights`). Both are logsumexp over the batch of log w_ij + log q(z_i|x_j), per
    dimension for the marginals, so they stay finite when densities underflow.
    fused=True computes them blockwise with a hand-written backward (`_MixtureLogDensities`);
    fused=False through the full (B, B, D) matrix of `log_q_z_matrix` and autograd — the reference.
    Raises ConfigError for an unknown estimator or dataset_size < batch size (or "mss" with B < 2).
    """
    q, z = _flat(q, z)
    b = z.shape[0]
    _check_settings(b, dataset_size, estimator)
    log_w = _log_weights(b, dataset_size, estimator, z.dtype, z.device)
    if fused:
        log_qz, log_qz_dims = _MixtureLogDensities.apply(z, q.mu, q.logvar, log_w)
        return log_qz, log_qz_dims.sum(1)
    mat = log_q_z_matrix(q, z)  # (B, B, D)
    log_qz = torch.logsumexp(log_w + mat.sum(2), dim=1)
    log_qz_prod = torch.logsumexp(log_w.unsqueeze(2) + mat, dim=1).sum(1)
    return log_qz, log_qz_prod


def tc_decomposition(q: DiagonalGaussian, z: Tensor, dataset_size: int, estimator: str = "mws") -> dict[str, Tensor]:
    """The three terms of Chen et al. (2018) eq. (2) for each sample (overview sec. V.A), each (B,):

    "mi"   = log q(z|x) - log q(z)               index-code mutual information
    "tc"   = log q(z) - sum_d log q(z_d)         total correlation
    "dwkl" = sum_d log q(z_d) - log p(z_d)       dimension-wise KL, p = N(0, I)

    so mi + tc + dwkl = log q(z|x) - log p(z), the single-sample Monte-Carlo KL, for either estimator
    (up to float rounding). z must be drawn from q (one draw per datapoint); log q(z) and
    log q(z_d) are estimated by `log_qz_estimates` with the given estimator and dataset size N.
    """
    q, z = _flat(q, z)
    log_qz, log_qz_prod = log_qz_estimates(q, z, dataset_size, estimator)
    log_qz_x = q.log_prob(z)
    log_pz = standard_normal_log_prob(z)
    return {"mi": log_qz_x - log_qz, "tc": log_qz - log_qz_prod, "dwkl": log_qz_prod - log_pz}


def beta_tc_penalty(
    q: DiagonalGaussian,
    z: Tensor,
    dataset_size: int,
    alpha: float = 1.0,
    beta: float = 1.0,
    gamma: float = 1.0,
    estimator: str = "mws",
) -> dict[str, Tensor]:
    """The beta-TCVAE regulariser per sample (Chen et al. 2018, sec. 3.2, eq. (4); overview sec. V.A):

        penalty = alpha * mi + beta * tc + gamma * dwkl,   each (B,),

    to be subtracted from E[log p(x|z)] in place of the KL. alpha = beta = gamma = 1 gives the
    Monte-Carlo KL (the plain VAE); the paper recommends alpha = gamma = 1, beta > 1.
    Returns {"penalty", "mi", "tc", "dwkl"}; see `tc_decomposition` for the terms.
    """
    for name, weight in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if isinstance(weight, numbers.Real) and not math.isfinite(weight):
            raise ConfigError(f"beta-TCVAE weight {name} must be finite, got {weight!r}")
    terms = tc_decomposition(q, z, dataset_size, estimator)
    penalty = alpha * terms["mi"] + beta * terms["tc"] + gamma * terms["dwkl"]
    return {"penalty": penalty, **terms}
