"""Sample quality: Fréchet distance, improved precision and recall, and MS-SSIM diversity.

- Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, "GANs Trained
  by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium"):
      d² = ||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1 S2)^{1/2}).
  With Inception-v3 pool3 features (inception.py) this is FID; with the toolkit's own per-dataset
  classifier (feature_net.py) we call it FD, comparable only between runs using the same network.
- Precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for
  Assessing Generative Models", eqs. 1-3): each set's manifold is the union of balls around its
  points, radius the distance to the k-th nearest neighbour in the same set; precision is the
  fraction of fake points inside the real manifold, recall the fraction of real points inside the
  fake manifold.
- MS-SSIM (Wang, Simoncelli & Bovik 2003, "Multi-Scale Structural Similarity for Image Quality
  Assessment", eq. 7), and its mean over random pairs of samples as a diversity measure (Odena et
  al. 2017; PGGAN, Karras et al. 2018; IntroVAE, Huang et al. 2018): lower = more diverse.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .image_quality import gaussian_window_1d, ssim_and_cs, ssim_window

__all__ = [
    "MS_SSIM_WEIGHTS",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_features",
    "kernel_distance",
    "knn_radii",
    "ms_ssim_diversity",
    "ms_ssim_per_pair",
    "ms_ssim_scales",
    "ms_ssim_window",
    "precision_recall",
    "sample_quality",
]

# Pairwise distances held at once by precision_recall: 2**23 float64 = 64 MiB, whatever the set sizes.
_MAX_DISTANCES = 2**23


def _float64(a) -> Tensor:
    a = a.detach() if torch.is_tensor(a) else torch.as_tensor(np.asarray(a))
    return a.to(torch.float64)


# ---------------------------------------------------------------------------------------------
# Fréchet distance

def feature_statistics(features) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance (np.cov(rowvar=False), as pytorch-fid) of (N, D) features, in
    float64. -> (D,), (D, D)"""
    f = _float64(features)
    if f.dim() != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got {tuple(f.shape)}")
    return f.mean(0), torch.cov(f.T, correction=1)


def _psd_sqrt(s: Tensor) -> Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix (round-off negatives -> 0)."""
    vals, vecs = torch.linalg.eigh((s + s.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1 S2)^{1/2}) (Heusel et al. 2017, after Dowson & Landau 1982), in float64.

    Tr (S1 S2)^{1/2} = Tr (S1^{1/2} S2 S1^{1/2})^{1/2}: the matrices are similar, and the right one
    is symmetric PSD, so its eigenvalues come from eigh, stay real and are clamped at 0. Unlike
    scipy.linalg.sqrtm of the non-symmetric S1 S2 (pytorch-fid), this needs no epsilon for
    singular covariances (fewer samples than feature dimensions, dead units)."""
    mu1, mu2, sigma1, sigma2 = map(_float64, (mu1, mu2, sigma1, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.numel(), mu1.numel()):
        raise ValueError(f"shapes do not match: mu {tuple(mu1.shape)}, {tuple(mu2.shape)}; "
                         f"sigma {tuple(sigma1.shape)}, {tuple(sigma2.shape)}")
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1  # (D, D), symmetric PSD
    tr_covmean = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    d2 = (mu1 - mu2).square().sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2 * tr_covmean
    return max(float(d2), 0.0)  # a set against itself can land a round-off below 0


def frechet_distance_features(a, b) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (N, D) and b (M, D)."""
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


# ---------------------------------------------------------------------------------------------
# Improved precision and recall

def _row_chunk(n_cols: int) -> int:
    return max(1, _MAX_DISTANCES // max(1, n_cols))


def knn_radii(x, k: int) -> Tensor:
    """Distance from each point to its k-th nearest neighbour in x, itself excluded, in float64. (N,)"""
    x = _float64(x)
    radii = torch.empty(len(x), dtype=x.dtype, device=x.device)
    step = _row_chunk(len(x))
    for start in range(0, len(x), step):
        d = torch.cdist(x[start:start + step], x)  # (b, N)
        nearest = d.topk(k + 1, dim=1, largest=False).values  # (b, k + 1); much faster than kthvalue
        radii[start:start + step] = nearest[:, k]  # the 0th is the point itself
    return radii


def _inside_manifold(points: Tensor, centres: Tensor, radii: Tensor) -> Tensor:
    """Whether each point lies in some ball (centre_i, radius_i) (eq. 1, Kynkäänniemi et al.). (N,)"""
    inside = torch.empty(len(points), dtype=torch.bool, device=points.device)
    step = _row_chunk(len(centres))
    for start in range(0, len(points), step):
        d = torch.cdist(points[start:start + step], centres)  # (b, M)
        inside[start:start + step] = (d <= radii).any(1)
    return inside


def precision_recall(real_features, fake_features, k: int = 3, real_radii: Tensor | None = None) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, eqs. 2-3) with k-NN radii.

    Distances are float64 and computed in row chunks (at most 2**23 at once), so 10k x 10k sets
    fit in bounded memory; the features' device is used. `real_radii`: the real set's k-NN radii
    when already known (`knn_radii(real_features, k)`; the test split's are cached, metrics/reference.py)."""
    real = _float64(real_features)
    fake = _float64(fake_features).to(real.device)
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be (N, D) and (M, D), got {tuple(real.shape)} and {tuple(fake.shape)}")
    if not 1 <= k < min(len(real), len(fake)):
        raise ValueError(f"k must be in [1, {min(len(real), len(fake)) - 1}] for sets of {len(real)} and "
                         f"{len(fake)} points, got {k}")
    if real_radii is None:
        real_radii = knn_radii(real, k)
    elif real_radii.shape != (len(real),):
        raise ValueError(f"real_radii must be ({len(real)},), got {tuple(real_radii.shape)}")
    precision = _inside_manifold(fake, real, _float64(real_radii).to(real.device)).double().mean()
    recall = _inside_manifold(real, fake, knn_radii(fake, k)).double().mean()
    return {"precision": float(precision), "recall": float(recall)}


KID_BLOCK = 1000  # points of each set per block of the KID estimate (Bińkowski et al.'s subset size)


def kernel_distance(real_features, fake_features, block: int = KID_BLOCK, seed: int = 0) -> tuple[float, float]:
    """Kernel (Inception) distance, KID (Bińkowski et al. 2018, sec. 3): the unbiased estimate of MMD^2
    with the cubic polynomial kernel k(a, b) = (a.b / D + 1)^3, averaged over disjoint blocks of `block`
    points of each set (randomly assigned from `seed`), and its standard error from the blocks' spread
    (independent blocks; nan for one). Blocks keep memory at block^2 whatever the set sizes. -> (kid, se)"""
    real, fake = _float64(real_features), _float64(fake_features)
    real, fake = real.to(fake.device), fake
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be (N, D) and (M, D), got {tuple(real.shape)} and {tuple(fake.shape)}")
    m = min(block, len(real), len(fake))
    if m < 2:
        raise ValueError(f"KID needs at least 2 points in each set, got {len(real)} and {len(fake)}")
    blocks = min(len(real), len(fake)) // m
    g = torch.Generator().manual_seed(seed)
    real_order, fake_order = torch.randperm(len(real), generator=g), torch.randperm(len(fake), generator=g)
    d = real.shape[1]
    values = []
    for b in range(blocks):
        r = real[real_order[b * m:(b + 1) * m].to(real.device)]
        f = fake[fake_order[b * m:(b + 1) * m].to(fake.device)]
        k_rr, k_ff, k_rf = ((r @ r.T) / d + 1) ** 3, ((f @ f.T) / d + 1) ** 3, ((r @ f.T) / d + 1) ** 3
        within = (k_rr.sum() - k_rr.diagonal().sum() + k_ff.sum() - k_ff.diagonal().sum()) / (m * (m - 1))
        values.append(float(within - 2 * k_rf.mean()))
    v = torch.tensor(values, dtype=torch.float64)
    return float(v.mean()), (float(v.std() / math.sqrt(len(v))) if len(v) > 1 else math.nan)


def sample_quality(real_features, fake_features, k: int = 3, real_radii: Tensor | None = None) -> dict[str, float]:
    """Fréchet distance, kernel distance (KID) and k-NN precision/recall between two feature sets (N, D)
    and (M, D), with the standard errors of KID (over disjoint blocks) and of precision and recall
    (binomial: fractions of M and N points, given the radii)."""
    pr = precision_recall(real_features, fake_features, k=k, real_radii=real_radii)
    kid, kid_se = kernel_distance(real_features, fake_features)
    out = {"fd": frechet_distance_features(real_features, fake_features), "kid": kid, **pr,
           "precision_se": math.sqrt(pr["precision"] * (1 - pr["precision"]) / len(fake_features)),
           "recall_se": math.sqrt(pr["recall"] * (1 - pr["recall"]) / len(real_features))}
    if math.isfinite(kid_se):
        out["kid_se"] = kid_se
    return out


# ---------------------------------------------------------------------------------------------
# MS-SSIM

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # exponents beta_j = gamma_j, fine to coarse (Wang 2003)


def ms_ssim_window(h: int, w: int) -> tuple[int, float]:
    """The Gaussian window (size, sigma) of ssim_per_image: 11 and 1.5, or the largest odd size that fits."""
    return ssim_window(h, w)


def ms_ssim_scales(h: int, w: int) -> int:
    """How many of the 5 scales fit: the coarsest (after s-1 halvings) must still hold the window.

    192x192 or more: 5; 160: 4; 64: 3; 28 (Fashion-MNIST): 2; under 22: 1 (plain SSIM)."""
    size, _ = ms_ssim_window(h, w)
    n = 1
    while n < len(MS_SSIM_WEIGHTS) and min(h, w) // 2**n >= size:
        n += 1
    return n


def ms_ssim_per_pair(a: Tensor, b: Tensor) -> Tensor:
    """MS-SSIM of each image pair (eq. 7, Wang et al. 2003), images (B, C, H, W) in [0, 1] (or uint8). (B,)

    Standard settings: 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1, 2x2
    average pooling between scales; contrast-structure at each scale, luminance at the coarsest
    only (there the mean of the full SSIM map). Windows lie inside the image (no padding), as in
    Wang et al.'s code and ssim_per_image; channels are averaged at each scale.

    Small images cannot hold five scales: we use the `ms_ssim_scales(h, w)` finest ones and
    renormalise their weights to sum to 1 (28x28: 2 scales; under 22 pixels: 1 scale, which is
    plain SSIM). Scores are therefore comparable only between images of the same size. Negative
    per-scale means are clamped to 0 before the fractional power (torchmetrics' "relu").
    Computed in the inputs' dtype, at least float32."""
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"need two image batches (B, C, H, W) of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if not a.is_floating_point():  # uint8 images
        a, b = a.float() / 255, b.float() / 255
    dtype = torch.promote_types(a.dtype, torch.float32)
    a, b = a.to(dtype), b.to(dtype)
    h, w = a.shape[-2:]
    n_scales = ms_ssim_scales(h, w)
    g = gaussian_window_1d(*ssim_window(h, w), dtype=dtype, device=a.device)
    weights = torch.tensor(MS_SSIM_WEIGHTS[:n_scales], dtype=dtype, device=a.device)
    weights = weights / weights.sum()
    score = torch.ones(len(a), dtype=dtype, device=a.device)
    for j in range(n_scales):
        ssim, cs = ssim_and_cs(a, b, g)
        term = ssim if j == n_scales - 1 else cs
        score = score * term.clamp(min=0).pow(weights[j])
        if j < n_scales - 1:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return score


def _take(images, idx: Tensor) -> Tensor:
    """Images at idx as float (B, C, H, W) in [0, 1], from a tensor or an ImageDataset."""
    if torch.is_tensor(images):
        x = images[idx.to(images.device)]
        return x.float().div(255) if x.dtype == torch.uint8 else x
    return images.batch(idx)


@torch.no_grad()
def ms_ssim_diversity(images, pairs: int = 10_000, seed: int = 0, batch_size: int = 500, on_batch=None,
                      return_se: bool = False):
    """Mean MS-SSIM over `pairs` random pairs of distinct images (lower = more diverse); with
    `return_se`, (mean, its standard error sd / sqrt(pairs) over the pairs).

    `images` is a tensor (N, C, H, W) (float in [0, 1] or uint8) or an ImageDataset. Pairs are
    drawn with replacement from a torch.Generator seeded with `seed`, so the value does not depend
    on batch_size or on the global RNG."""
    n = len(images)
    if n < 2 or pairs < 1:
        raise ValueError(f"MS-SSIM diversity needs at least 2 images and 1 pair, got {n} and {pairs}")
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(n, (pairs,), generator=g)
    j = torch.randint(n - 1, (pairs,), generator=g)
    j = j + (j >= i).long()  # uniform over the other n - 1 images
    total, squares = 0.0, 0.0
    for start in range(0, pairs, batch_size):
        a, b = _take(images, i[start:start + batch_size]), _take(images, j[start:start + batch_size])
        score = ms_ssim_per_pair(a, b).double()
        total += float(score.sum())
        squares += float(score.square().sum())
        if on_batch is not None:  # progress: pairs done
            on_batch(len(a))
    mean = total / pairs
    if not return_se:
        return mean
    var = max(squares - pairs * mean * mean, 0.0) / (pairs - 1) if pairs > 1 else math.nan
    return mean, math.sqrt(var / pairs)
