"""Supervised disentanglement metrics: how well codes line up with known generative factors.

Each metric draws factor settings from a `FactorDataset`, renders them, encodes the images with a
user-supplied `encode` (typically the posterior mean) and compares codes with factors:

- MIG, mutual information gap: Chen et al. 2018, "Isolating Sources of Disentanglement in
  Variational Autoencoders". Two estimators: `mig`, disentanglement_lib's (posterior means,
  histogram-discretised, plug-in MI), and `mig_posterior`, the paper's own (sec. 5: MI from the full
  posterior q(z|x) over the empirical data distribution, every factor setting by default); it takes
  an `encode_posterior` returning (mu, logvar) instead of `encode`.
- beta-VAE score: Higgins et al. 2017, "beta-VAE: Learning Basic Visual Concepts with a
  Constrained Variational Framework".
- FactorVAE score: Kim & Mnih 2018, "Disentangling by Factorising".
- DCI disentanglement / completeness / informativeness: Eastwood & Williams 2018, "A Framework for
  the Quantitative Evaluation of Disentangled Representations".
- SAP, separated attribute predictability: Kumar et al. 2018, "Variational Inference of
  Disentangled Latent Concepts from Unlabeled Observations".

Default sample counts follow disentanglement_lib (Locatello et al. 2019, "Challenging Common
Assumptions in the Unsupervised Learning of Disentangled Representations"), mig_posterior's the
paper's code; where we depart from their choices (DCI's forest, SAP's classifier, FactorVAE's
pruning, mig_posterior's mean over every factor) the function's docstring says so.
Every function is deterministic under `seed` (a torch.Generator drives factor sampling, sklearn
models get `random_state=seed`) and returns a flat dict of floats, sample counts included.
Factors are always treated as discrete class labels (their value indices).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import torch

from ..data.factors import FactorDataset, all_factor_settings
from .mixture import BLOCK, log_mixture_1d

EncodeFn = Callable[[torch.Tensor], torch.Tensor]  # images (B, C, H, W) -> codes (B, D)
# images (B, C, H, W) -> (mu, logvar), each (B, D): a diagonal-Gaussian q(z|x)
EncodePosteriorFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

__all__ = ["EncodeFn", "EncodePosteriorFn", "mig", "mig_posterior", "posterior_mutual_info", "PosteriorMI",
           "beta_vae_score", "factor_vae_score", "dci", "sap", "all_disentanglement_metrics",
           "discrete_entropy", "discrete_mutual_info", "histogram_discretize"]

# Points (votes, feature vectors) whose factors are drawn at once: a constant, so batch_size never changes results.
_CHUNK = 256


# ---------------------------------------------------------------------------------------------
# Helpers

def discrete_entropy(labels: np.ndarray) -> float:
    """Plug-in entropy in nats of a 1-D array of discrete labels."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def discrete_mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in mutual information in nats between two 1-D arrays of discrete labels (same length)."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    if a.shape != b.shape:
        raise ValueError(f"label arrays differ in length: {a.shape} vs {b.shape}")
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    joint = np.zeros((ia.max() + 1, ib.max() + 1))
    np.add.at(joint, (ia, ib), 1.0)
    joint /= joint.sum()
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    nz = joint > 0
    return float(max((joint[nz] * np.log(joint[nz] / outer[nz])).sum(), 0.0))


def histogram_discretize(codes: np.ndarray, bins: int = 20) -> np.ndarray:
    """Each column of codes (N, D) into `bins` equal-width bins over its own range -> (N, D) int in [0, bins)."""
    out = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, j], bins=bins)
        out[:, j] = np.digitize(codes[:, j], edges[1:-1])
    return out


@torch.no_grad()
def _encode_factors(encode: EncodeFn, data: FactorDataset, factors: torch.Tensor, batch_size: int) -> np.ndarray:
    """Render factor settings (n, K) and encode them batch by batch -> codes (n, D) float64."""
    out = []
    for start in range(0, len(factors), batch_size):
        images = data.images_from_factors(factors[start:start + batch_size])
        codes = encode(images)
        if not isinstance(codes, torch.Tensor) or codes.ndim < 2 or codes.shape[0] != images.shape[0]:
            raise ValueError(f"encode must map images (B, C, H, W) to one code tensor (B, D); got "
                             f"{tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__}")
        out.append(codes.detach().reshape(codes.shape[0], -1).double().cpu().numpy())
    codes = np.concatenate(out)
    if not np.isfinite(codes).all():
        raise ValueError("encode returned non-finite codes")
    return codes


def _sample_codes(encode: EncodeFn, data: FactorDataset, n: int, generator: torch.Generator,
                  batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """n uniform factor settings and their codes -> (factors (n, K) int64, codes (n, D) float64)."""
    factors = data.sample_factors(n, generator)
    return factors.numpy(), _encode_factors(encode, data, factors, batch_size)


def _sample_groups_sharing_a_factor(data: FactorDataset, n_groups: int, size: int,
                                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random factor k per group and `size` factor settings per group that all share one value of k
    (the first setting's). -> (k (G,) int64, factors (G, size, K) int64)"""
    n_factors = len(data.factor_sizes)
    k = torch.randint(n_factors, (n_groups,), generator=generator)
    factors = data.sample_factors(n_groups * size, generator).reshape(n_groups, size, n_factors).clone()
    rows = torch.arange(n_groups)
    factors[rows, :, k] = factors[rows, 0, k].unsqueeze(1)
    return k, factors


def _binomial_se(accuracy: float, n: int) -> float:
    """Standard error of an accuracy over n independent held-out points (given the fitted classifier)."""
    return float(np.sqrt(accuracy * (1 - accuracy) / n))


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _chunks(n: int):
    for start in range(0, n, _CHUNK):
        yield min(_CHUNK, n - start)


# ---------------------------------------------------------------------------------------------
# MIG

def _normalised_gaps(mi: np.ndarray, entropy: np.ndarray) -> np.ndarray:
    """Per factor, (largest - second-largest I(z_j; v_k) over latents j) / H(v_k): mi (D, K) -> (K,).
    A factor with zero entropy is divided by 1 (its I are all 0)."""
    top = np.sort(mi, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros_like(top[0])
    return (top[0] - second) / np.where(entropy > 0, entropy, 1.0)


def _per_factor(prefix: str, data: FactorDataset, values: np.ndarray, counts: dict) -> dict:
    """{prefix: mean, prefix/<factor name>: value, prefix/<count>: count} as floats."""
    names = list(data.factor_names)
    if len(names) != len(values) or len(set(names)) != len(names) or set(names) & set(counts):
        raise ValueError(f"factor_names {names} must name each of the {len(values)} factors once and avoid "
                         f"the count keys {sorted(counts)}")
    return {prefix: float(values.mean()), **{f"{prefix}/{name}": float(v) for name, v in zip(names, values)},
            **{f"{prefix}/{key}": float(v) for key, v in counts.items()}}


def mig(encode: EncodeFn, data: FactorDataset, *, n: int = 10_000, bins: int = 20, batch_size: int = 256,
        seed: int = 0) -> dict:
    """Mutual information gap (Chen et al. 2018), as in disentanglement_lib.

    Codes of n uniform factor settings are discretised per latent into `bins` equal-width bins over
    that latent's observed range (histogram discretisation, 20 bins as in disentanglement_lib); the
    plug-in mutual information I(z_j; v_k) is computed for every latent j and factor k. For each
    factor, the gap between the largest and second-largest I over latents is divided by the factor's
    entropy H(v_k); MIG is the mean over factors, in [0, 1] (`mig/<factor name>`: each factor's gap).
    Plug-in estimates are biased upwards by about (bins - 1)(|v_k| - 1) / 2n nats, so unrelated codes
    score slightly above 0 at small n. See `mig_posterior` for the paper's own estimator.
    """
    factors, codes = _sample_codes(encode, data, n, _generator(seed), batch_size)
    binned = histogram_discretize(codes, bins)
    mi = np.array([[discrete_mutual_info(binned[:, j], factors[:, k]) for k in range(factors.shape[1])]
                   for j in range(binned.shape[1])])  # (D, K)
    entropy = np.array([discrete_entropy(factors[:, k]) for k in range(factors.shape[1])])
    return _per_factor("mig", data, _normalised_gaps(mi, entropy), {"n": n, "bins": bins})


# ---------------------------------------------------------------------------------------------
# MIG from the posterior (Chen et al. 2018, sec. 5)

class PosteriorMI(NamedTuple):
    """Estimates in nats, float64: mi (D, K) = entropy[:, None] - conditional_entropy (not clamped),
    entropy (D,) = H(z_j), conditional_entropy (D, K) = H(z_j | v_k)."""
    mi: torch.Tensor
    entropy: torch.Tensor
    conditional_entropy: torch.Tensor


def _mixture_entropy(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, chunk: int) -> torch.Tensor:
    """-(1/S) sum_s log q(z_sj) for each latent j, q(z_j) = (1/M) sum_n q(z_j|n): z (D, S) draws,
    mu and logvar (D, M) the mixture's components. -> (D,) float64"""
    return torch.stack([-log_mixture_1d(z[j], mu[j], logvar[j], chunk).mean() for j in range(len(mu))])


def posterior_mutual_info(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, factors: torch.Tensor, *,
                          samples: int = 10_000, generator: torch.Generator | None = None,
                          chunk: int = BLOCK) -> PosteriorMI:
    """I(z_j; v_k) = H(z_j) - H(z_j | v_k) for every latent j and factor k (Chen et al. 2018, sec. 5),
    over the empirical distribution of N datapoints with posteriors q(z|n) = N(mu_n, diag exp(logvar_n)).

    z, mu, logvar (N, D): z_n is one draw from q(z|n); factors (N, K) int64, the datapoints' values.
    H(z_j) = E_{p(n)} E_{q(z_j|n)} [-log q(z_j)], q(z_j) = (1/N) sum_n q(z_j|n), is estimated by the
    mean of -log q(z_nj) over `samples` datapoints drawn without replacement (all, if N <= samples),
    each log q by an exact logsumexp over all N components (`mixture.log_mixture_1d`).
    H(z_j | v_k) = sum_v p(v_k = v) H(z_j | v_k = v), p the empirical frequency and H(z_j | v_k = v)
    the same estimate on the datapoints with v_k = v only: mixture and draws from that subset
    (as in the authors' code). Returns PosteriorMI(mi (D, K), entropy (D,), conditional_entropy (D, K)).
    """
    n_points = len(mu)
    if not (z.shape == mu.shape == logvar.shape) or mu.ndim != 2 or factors.shape[0] != n_points:
        raise ValueError(f"z, mu, logvar must be (N, D) and factors (N, K); got {tuple(z.shape)}, "
                         f"{tuple(mu.shape)}, {tuple(logvar.shape)}, {tuple(factors.shape)}")
    g = generator if generator is not None else _generator(0)
    zt, mut, lvt = (t.double().T.contiguous() for t in (z, mu, logvar))  # (D, N): one latent per row

    def entropy(idx: torch.Tensor) -> torch.Tensor:  # of the mixture over datapoints idx -> (D,)
        picked = idx if len(idx) <= samples else idx[torch.randperm(len(idx), generator=g)[:samples]]
        return _mixture_entropy(zt[:, picked], mut[:, idx], lvt[:, idx], chunk)

    h = entropy(torch.arange(n_points))
    h_cond = torch.zeros(len(mut), factors.shape[1], dtype=torch.float64)
    for k in range(factors.shape[1]):
        for v in torch.unique(factors[:, k]):
            idx = torch.nonzero(factors[:, k] == v).squeeze(1)
            h_cond[:, k] += len(idx) / n_points * entropy(idx)
    return PosteriorMI(h[:, None] - h_cond, h, h_cond)


@torch.no_grad()
def _encode_posterior_factors(encode_posterior: EncodePosteriorFn, data: FactorDataset, factors: torch.Tensor,
                              batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Render factor settings (n, K) and encode them batch by batch -> mu, logvar (n, D) float64."""
    mus, logvars = [], []
    for start in range(0, len(factors), batch_size):
        images = data.images_from_factors(factors[start:start + batch_size])
        out = encode_posterior(images)
        if (not isinstance(out, (tuple, list)) or len(out) != 2 or not all(isinstance(t, torch.Tensor) for t in out)
                or out[0].shape != out[1].shape or out[0].ndim < 2 or out[0].shape[0] != images.shape[0]):
            raise ValueError("encode_posterior must map images (B, C, H, W) to a pair (mu, logvar) of tensors (B, D)")
        mus.append(out[0].detach().reshape(len(images), -1).double().cpu())
        logvars.append(out[1].detach().reshape(len(images), -1).double().cpu())
    mu, logvar = torch.cat(mus), torch.cat(logvars)
    if not (torch.isfinite(mu).all() and torch.isfinite(logvar).all()):
        raise ValueError("encode_posterior returned non-finite mu or logvar")
    return mu, logvar


def mig_posterior(encode_posterior: EncodePosteriorFn, data: FactorDataset, *, n: int | None = None,
                  samples: int = 10_000, batch_size: int = 256, seed: int = 0, chunk: int = BLOCK) -> dict:
    """Mutual information gap with the MI estimator of Chen et al. 2018, sec. 5 (their reported numbers).

    The empirical data distribution is every factor setting of `data` (n=None: all 737,280 for
    dSprites, as the paper) or n settings drawn uniformly (a cheaper approximation: the metric of that
    subsample; MI estimates tend to grow as n shrinks, since each datapoint's own component weighs
    more in the mixtures, so compare numbers at equal n). Each is rendered and encoded to q(z|x) =
    N(mu, diag exp(logvar)); one z per datapoint is drawn; I(z_j; v_k) = H(z_j) - H(z_j | v_k) with
    each entropy a Monte-Carlo average over `samples` of those draws of -log q, q the exact mixture
    of the posteriors (`posterior_mutual_info`). Per factor the gap between the two largest I over
    latents (each clamped at 0) is divided by the factor's empirical entropy H(v_k) (log |v_k| when
    every setting is used); `mig_posterior` is the mean over all factors, `mig_posterior/<factor>`
    each gap. Unlike `mig` (posterior means in 20 histogram bins, plug-in MI), this sees the posterior
    variances and needs no binning. The authors' dSprites code leaves shape out of the mean; here every
    factor counts, and the mean of the scale, orientation, pos_x and pos_y keys is their number.
    Time: about S x N x D log-densities per entropy, K + 1 entropies (float32 blocks of `chunk`).
    """
    g = _generator(seed)
    factors = all_factor_settings(data.factor_sizes) if n is None else data.sample_factors(n, g)
    mu, logvar = _encode_posterior_factors(encode_posterior, data, factors, batch_size)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g, dtype=torch.float64)  # (N, D)
    est = posterior_mutual_info(z, mu, logvar, factors, samples=samples, generator=g, chunk=chunk)
    entropy = np.array([discrete_entropy(factors[:, k].numpy()) for k in range(factors.shape[1])])
    gaps = _normalised_gaps(est.mi.clamp_min(0.0).numpy(), entropy)
    return _per_factor("mig_posterior", data, gaps, {"n": len(factors), "samples": samples})


# ---------------------------------------------------------------------------------------------
# beta-VAE score

def _beta_vae_features(encode, data, n_points, pairs, generator, batch_size):
    """n_points (label k, mean |z1 - z2| over `pairs` pairs that share factor k)."""
    labels, feats = [], []
    for m in _chunks(n_points):
        k = torch.randint(len(data.factor_sizes), (m,), generator=generator)
        first = data.sample_factors(m * pairs, generator).reshape(m, pairs, -1)
        second = data.sample_factors(m * pairs, generator).reshape(m, pairs, -1).clone()
        rows = torch.arange(m)
        second[rows, :, k] = first[rows, :, k]  # each pair shares its own value of k
        z1 = _encode_factors(encode, data, first.reshape(m * pairs, -1), batch_size)
        z2 = _encode_factors(encode, data, second.reshape(m * pairs, -1), batch_size)
        feats.append(np.abs(z1 - z2).reshape(m, pairs, -1).mean(1))
        labels.append(k.numpy())
    return np.concatenate(feats), np.concatenate(labels)


def beta_vae_score(encode: EncodeFn, data: FactorDataset, *, n_train: int = 10_000, n_eval: int = 5_000,
                   pairs: int = 64, batch_size: int = 256, seed: int = 0) -> dict:
    """beta-VAE disentanglement score (Higgins et al. 2017), as in disentanglement_lib.

    One training point: draw a factor k uniformly, then `pairs` pairs of factor settings (L in the
    paper, 64 by default) where both members share the value of k and all else is drawn
    independently; the feature is the mean over pairs of |z1 - z2| (D,), the label is k. A linear
    classifier (sklearn LogisticRegression after standardising the features; lbfgs, max_iter 2000)
    is fit on n_train points and scored on n_eval fresh points. Chance is 1/K.
    Encodes 2 * pairs * (n_train + n_eval) images (1.92M at the defaults).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    g = _generator(seed)
    x_train, y_train = _beta_vae_features(encode, data, n_train, pairs, g, batch_size)
    x_eval, y_eval = _beta_vae_features(encode, data, n_eval, pairs, g, batch_size)
    if len(np.unique(y_train)) < 2:  # a single factor (or tiny n_train): nothing to tell apart
        train_acc = eval_acc = float(np.mean(y_eval == y_train[0]))
    else:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
        model.fit(x_train, y_train)
        train_acc, eval_acc = model.score(x_train, y_train), model.score(x_eval, y_eval)
    return {"beta_vae/train_accuracy": float(train_acc), "beta_vae/eval_accuracy": float(eval_acc),
            "beta_vae/eval_accuracy_se": _binomial_se(eval_acc, n_eval),
            "beta_vae/n_train": float(n_train), "beta_vae/n_eval": float(n_eval), "beta_vae/pairs": float(pairs)}


# ---------------------------------------------------------------------------------------------
# FactorVAE score

def _factor_vae_votes(encode, data, n_votes, group_size, scale, active, generator, batch_size):
    """Vote counts (K, D_active): for each vote, the fixed factor k and the active latent whose
    variance (over a group sharing k, in units of its global variance) is lowest."""
    votes = np.zeros((len(data.factor_sizes), int(active.sum())), dtype=np.int64)
    for m in _chunks(n_votes):
        k, factors = _sample_groups_sharing_a_factor(data, m, group_size, generator)
        codes = _encode_factors(encode, data, factors.reshape(m * group_size, -1), batch_size)
        local = codes[:, active].reshape(m, group_size, -1) / scale[active]
        np.add.at(votes, (k.numpy(), local.var(axis=1, ddof=1).argmin(axis=1)), 1)
    return votes


def factor_vae_score(encode: EncodeFn, data: FactorDataset, *, n_train: int = 10_000, n_eval: int = 5_000,
                     n_var: int = 10_000, group_size: int = 64, prune: float = 0.05, batch_size: int = 256,
                     seed: int = 0) -> dict:
    """FactorVAE disentanglement score (Kim & Mnih 2018).

    Each latent is divided by its standard deviation over n_var uniform samples. Latents whose std is
    below `prune` x the largest latent std are dropped as collapsed (the paper prunes collapsed
    latents; a relative cut makes it independent of the code's scale, and for posterior means with
    informative latents at std ~1 it is close to an absolute 0.05 cut). One vote: draw a factor k,
    `group_size` settings (L, 64 by default) sharing one value of k; the vote is (k, the active latent
    with the lowest variance over the group). A majority-vote classifier maps each latent to the
    factor that got most of its n_train training votes; accuracies are the fraction of train / eval
    (n_eval fresh) votes it gets right. Chance is about 1/K; with no active latent the score is 0.
    """
    g = _generator(seed)
    _, codes = _sample_codes(encode, data, n_var, g, batch_size)
    scale = codes.std(axis=0, ddof=1)
    active = scale > prune * scale.max() if scale.max() > 0 else np.zeros_like(scale, dtype=bool)
    out = {"factor_vae/n_train": float(n_train), "factor_vae/n_eval": float(n_eval),
           "factor_vae/n_var": float(n_var), "factor_vae/group_size": float(group_size),
           "factor_vae/active_dims": float(active.sum())}
    if not active.any():
        return {"factor_vae/train_accuracy": 0.0, "factor_vae/eval_accuracy": 0.0, "factor_vae/eval_accuracy_se": 0.0,
                **out}
    train = _factor_vae_votes(encode, data, n_train, group_size, scale, active, g, batch_size)
    held = _factor_vae_votes(encode, data, n_eval, group_size, scale, active, g, batch_size)
    classifier = train.argmax(axis=0)  # (D_active,): the factor each latent votes for
    cols = np.arange(train.shape[1])
    eval_acc = float(held[classifier, cols].sum() / held.sum())
    return {"factor_vae/train_accuracy": float(train[classifier, cols].sum() / train.sum()),
            "factor_vae/eval_accuracy": eval_acc, "factor_vae/eval_accuracy_se": _binomial_se(eval_acc, n_eval), **out}


# ---------------------------------------------------------------------------------------------
# DCI

def _normalised_entropy_score(p: np.ndarray, base: int) -> np.ndarray:
    """1 - H(row) / log(base) for each row of nonnegative weights p (R, base); rows summing to 0 give 0."""
    if base < 2:
        return np.ones(len(p))
    total = p.sum(axis=1, keepdims=True)
    q = np.divide(p, total, out=np.full_like(p, 1.0 / base), where=total > 0)
    h = -(q * np.log(np.clip(q, 1e-300, None))).sum(axis=1) / np.log(base)
    return 1.0 - h


def dci(encode: EncodeFn, data: FactorDataset, *, n_train: int = 10_000, n_test: int = 5_000,
        n_estimators: int = 50, batch_size: int = 256, seed: int = 0) -> dict:
    """DCI disentanglement, completeness and informativeness (Eastwood & Williams 2018).

    For each factor k a classifier predicts v_k from the whole code; its impurity-based feature
    importances form column k of the importance matrix R (D, K). The classifier is an extremely
    randomised forest (sklearn ExtraTreesClassifier: n_estimators trees, every feature considered at
    each split, leaves of at least 0.5% of the training points but at most a quarter of a class),
    rather than disentanglement_lib's GradientBoostingClassifier, which needs minutes per factor at
    10k points; tree ensembles are what the paper uses, and the leaf floor keeps irrelevant latents
    from collecting importance by fitting noise.
    Disentanglement: sum_j rho_j (1 - H_K(R_j.)), rho_j = latent j's share of total importance.
    Completeness: sum_k rho_k (1 - H_D(R_.k)), rho_k = factor k's share of total importance
    (weighted as disentanglement_lib does). Informativeness: test accuracy of the per-factor
    classifiers on n_test fresh points, averaged over factors (higher is better).
    """
    from sklearn.ensemble import ExtraTreesClassifier

    g = _generator(seed)
    y_train, x_train = _sample_codes(encode, data, n_train, g, batch_size)
    y_test, x_test = _sample_codes(encode, data, n_test, g, batch_size)
    n_factors, n_codes = y_train.shape[1], x_train.shape[1]
    importance = np.zeros((n_codes, n_factors))
    train_acc, test_acc = [], []
    for k in range(n_factors):
        n_classes = len(np.unique(y_train[:, k]))
        leaf = max(1, min(round(0.005 * n_train), n_train // (4 * n_classes)))
        model = ExtraTreesClassifier(n_estimators=n_estimators, max_features=None, min_samples_leaf=leaf,
                                     random_state=seed)
        model.fit(x_train, y_train[:, k])
        importance[:, k] = np.abs(model.feature_importances_)
        train_acc.append(model.score(x_train, y_train[:, k]))
        test_acc.append(model.score(x_test, y_test[:, k]))
    total = importance.sum()
    if total > 0:
        d = float((_normalised_entropy_score(importance, n_factors) * importance.sum(1) / total).sum())
        c = float((_normalised_entropy_score(importance.T, n_codes) * importance.sum(0) / total).sum())
    else:  # no latent helps predict anything
        d = c = 0.0
    return {"dci/disentanglement": d, "dci/completeness": c,
            "dci/informativeness": float(np.mean(test_acc)), "dci/informativeness_train": float(np.mean(train_acc)),
            "dci/n_train": float(n_train), "dci/n_test": float(n_test)}


# ---------------------------------------------------------------------------------------------
# SAP

def sap(encode: EncodeFn, data: FactorDataset, *, n_train: int = 10_000, n_test: int = 5_000,
        batch_size: int = 256, seed: int = 0) -> dict:
    """Separated attribute predictability (Kumar et al. 2018), classification variant.

    Score matrix S (D, K): S[j, k] is the balanced test accuracy (as in the paper) of predicting the
    discrete factor v_k from latent j alone, with a 1-D threshold classifier: a decision tree on z_j
    with at most |v_k| leaves, i.e. up to |v_k| - 1 thresholds cutting the axis into intervals, one
    per value. (disentanglement_lib uses a one-vs-rest LinearSVC here, which in 1-D can only ever
    predict a few of the values, so even a perfect latent scores low on a factor with many values.)
    SAP is the mean over factors of the gap between the two largest entries of S[:, k], in [0, 1).
    A perfect code scores 1 - mean_k 1/|v_k| here, since an unrelated latent sits at chance 1/|v_k|.
    """
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.tree import DecisionTreeClassifier

    g = _generator(seed)
    y_train, x_train = _sample_codes(encode, data, n_train, g, batch_size)
    y_test, x_test = _sample_codes(encode, data, n_test, g, batch_size)
    score = np.zeros((x_train.shape[1], y_train.shape[1]))
    for k, size in enumerate(data.factor_sizes):
        for j in range(x_train.shape[1]):
            tree = DecisionTreeClassifier(max_leaf_nodes=max(2, int(size)), random_state=seed)
            tree.fit(x_train[:, j:j + 1], y_train[:, k])
            score[j, k] = balanced_accuracy_score(y_test[:, k], tree.predict(x_test[:, j:j + 1]))
    top = np.sort(score, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros_like(top[0])
    return {"sap": float((top[0] - second).mean()), "sap/n_train": float(n_train), "sap/n_test": float(n_test)}


# ---------------------------------------------------------------------------------------------

_FULL = {"mig": {"n": 10_000}, "beta_vae": {"n_train": 10_000, "n_eval": 5_000, "pairs": 64},
         "factor_vae": {"n_train": 10_000, "n_eval": 5_000, "n_var": 10_000, "group_size": 64},
         "dci": {"n_train": 10_000, "n_test": 5_000}, "sap": {"n_train": 10_000, "n_test": 5_000}}
_FAST = {"mig": {"n": 2_000}, "beta_vae": {"n_train": 500, "n_eval": 250, "pairs": 16},
         "factor_vae": {"n_train": 500, "n_eval": 250, "n_var": 2_000, "group_size": 32},
         "dci": {"n_train": 2_000, "n_test": 1_000}, "sap": {"n_train": 2_000, "n_test": 1_000}}


def all_disentanglement_metrics(encode: EncodeFn, data: FactorDataset, *, seed: int = 0, fast: bool = False,
                                batch_size: int = 256, after_each=None) -> dict:
    """MIG, beta-VAE, FactorVAE, DCI and SAP in one flat dict, each with its sample counts.

    Full settings are disentanglement_lib's sample counts (about 2.9M images encoded, mostly for the
    beta-VAE and FactorVAE scores); fast=True uses a few thousand points per metric and smaller
    groups (beta-VAE pairs 16, FactorVAE group 32, ~58k images) for quick checks during training.
    """
    cfg = _FAST if fast else _FULL
    out: dict[str, float] = {}
    for metric, key in ((mig, "mig"), (beta_vae_score, "beta_vae"), (factor_vae_score, "factor_vae"), (dci, "dci"),
                        (sap, "sap")):
        out.update(metric(encode, data, **cfg[key], batch_size=batch_size, seed=seed))
        if after_each is not None:  # progress: one metric done
            after_each()
    return out
