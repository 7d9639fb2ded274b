"""Sample-quality metrics against references: FD vs scipy's sqrtm (as pytorch-fid), precision/recall
on point sets with known answers, MS-SSIM vs a numpy/scipy implementation and vs torchmetrics."""

import math
import numpy as np
import pytest
import torch
from conftest import blob_images
from scipy import linalg, signal

from vaekit.metrics.image_quality import ssim_per_image
from vaekit.metrics.sample_quality import (
    kernel_distance,
    MS_SSIM_WEIGHTS,
    feature_statistics,
    frechet_distance,
    frechet_distance_features,
    ms_ssim_diversity,
    ms_ssim_per_pair,
    ms_ssim_scales,
    precision_recall,
    sample_quality,
)


def _correlated(n, d, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mix + rng.normal(size=d) * 0.3 + shift


def _scipy_fd(a, b):
    """pytorch-fid's calculate_frechet_distance (scipy.linalg.sqrtm of S1 S2)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


# ---------------------------------------------------------------------------------------------
# Fréchet distance

@pytest.mark.parametrize("n, m, d", [(500, 400, 16), (300, 350, 64)])
def test_fd_matches_scipy_sqrtm(n, m, d):
    a, b = _correlated(n, d, seed=1), _correlated(m, d, seed=2, shift=0.2)
    ref = _scipy_fd(a, b)
    assert frechet_distance_features(a, b) == pytest.approx(ref, rel=1e-5)
    assert frechet_distance_features(torch.tensor(a, dtype=torch.float32), b) == pytest.approx(ref, rel=1e-4)


def test_fd_of_a_set_with_itself_is_zero():
    a = _correlated(300, 64, seed=3)
    scale = float(np.trace(np.cov(a, rowvar=False)))
    assert frechet_distance_features(a, a) <= 1e-6 * scale


def test_fd_of_shifted_means_is_the_squared_shift():
    mu, sigma = feature_statistics(_correlated(200, 8, seed=4))
    shift = torch.linspace(-1, 1, 8, dtype=torch.float64)
    assert frechet_distance(mu, sigma, mu + shift, sigma) == pytest.approx(float(shift.square().sum()), rel=1e-8)


def test_fd_with_singular_covariances_matches_the_gaussian_formula():
    # Fewer samples than dimensions: both covariances are singular; scipy's sqrtm needs an epsilon here.
    a, b = _correlated(20, 64, seed=5), _correlated(30, 64, seed=6)
    fd = frechet_distance_features(a, b)
    assert np.isfinite(fd) and fd > 0
    # 1-D check by hand: N(0, 4) vs N(1, 1): 1 + 4 + 1 - 2 * 2 = 2
    assert frechet_distance([0.0], [[4.0]], [1.0], [[1.0]]) == pytest.approx(2.0)
    # rank-one covariances: the distance between two degenerate Gaussians along the same line
    assert frechet_distance([0.0, 0.0], [[1.0, 0.0], [0.0, 0.0]], [0.0, 0.0], [[4.0, 0.0], [0.0, 0.0]]) == \
        pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# Precision and recall

def _modes(centres, per_mode, seed):
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor(centres, dtype=torch.float64)
    return (centres.repeat_interleave(per_mode, 0) + 0.1 * torch.randn(len(centres) * per_mode, centres.shape[1],
                                                                      generator=g, dtype=torch.float64))


def test_precision_recall_identical_and_disjoint_sets():
    real = _modes([[0, 0], [10, 0], [0, 10], [10, 10]], 50, seed=0)
    assert precision_recall(real, real) == {"precision": 1.0, "recall": 1.0}
    assert precision_recall(real, real + 100) == {"precision": 0.0, "recall": 0.0}


def test_precision_recall_when_fakes_cover_half_the_modes():
    real = _modes([[0, 0], [10, 0], [0, 10], [10, 10]], 50, seed=0)
    fake = _modes([[0, 0], [10, 0]], 100, seed=1)  # good samples, two modes missed
    pr = precision_recall(real, fake)
    assert pr["precision"] > 0.95
    assert pr["recall"] == pytest.approx(0.5, abs=0.05)
    # and the reverse: fakes spread over all modes plus a bad cluster -> precision drops, recall stays
    fake = torch.cat([_modes([[0, 0], [10, 0], [0, 10], [10, 10]], 50, seed=2), _modes([[50, 50]], 200, seed=3)])
    pr = precision_recall(real, fake)
    assert pr["precision"] == pytest.approx(0.5, abs=0.05) and pr["recall"] > 0.95


def test_precision_recall_by_hand_in_one_dimension():
    # real {0, 1, 3}, k=1: radii 1, 1, 2 -> manifold [-1, 5]. fake {2, 6, 10}: radii 4, 4, 4 -> [-2, 14].
    real = torch.tensor([[0.0], [1.0], [3.0]])
    fake = torch.tensor([[2.0], [6.0], [10.0]])
    pr = precision_recall(real, fake, k=1)
    assert pr["precision"] == pytest.approx(1 / 3)  # 2 in, 6 and 10 out (6 is 3 from 3, radius 2)
    assert pr["recall"] == 1.0
    # k=2: real radii 3, 2, 3 -> [-3, 6] holds 2 and 6 (boundary counts as inside)
    assert precision_recall(real, fake, k=2)["precision"] == pytest.approx(2 / 3)


def test_precision_recall_chunking_gives_the_same_answer(monkeypatch):
    from vaekit.metrics import sample_quality as sq

    real, fake = torch.randn(300, 5, generator=torch.Generator().manual_seed(0)), \
        torch.randn(200, 5, generator=torch.Generator().manual_seed(1)) + 0.5
    whole = precision_recall(real, fake)
    monkeypatch.setattr(sq, "_MAX_DISTANCES", 1000)  # 3-5 rows per chunk
    assert precision_recall(real, fake) == whole
    q = sample_quality(real, fake)
    assert set(q) == {"fd", "kid", "precision", "recall", "precision_se", "recall_se"}  # one KID block: no kid_se
    # binomial standard errors: precision is a fraction of the 200 fakes, recall of the 300 reals
    assert q["precision_se"] == pytest.approx(math.sqrt(whole["precision"] * (1 - whole["precision"]) / 200))
    assert q["recall_se"] == pytest.approx(math.sqrt(whole["recall"] * (1 - whole["recall"]) / 300))


# ---------------------------------------------------------------------------------------------
# MS-SSIM

def _natural_pairs(n=3, size=192, channels=3, noise=0.1, dtype=torch.float64):
    x = blob_images(n, size, channels).to(dtype) / 255
    x = (x + blob_images(n, size, channels, seed=7).to(dtype) / 510).clamp(0, 1)  # two blobs each
    g = torch.Generator().manual_seed(0)
    y = (x + noise * torch.randn(x.shape, generator=g, dtype=dtype)).clamp(0, 1)
    return x, y


def _numpy_ms_ssim(a, b, n_scales):
    """Wang et al.'s MS-SSIM written out: valid Gaussian filtering, 2x2 block means between scales."""
    t = np.arange(11) - 5.0
    g = np.exp(-t**2 / (2 * 1.5**2))
    win = np.outer(g, g) / g.sum() ** 2
    c1, c2 = 0.01**2, 0.03**2
    weights = np.array(MS_SSIM_WEIGHTS[:n_scales]) / sum(MS_SSIM_WEIGHTS[:n_scales])
    score = 1.0
    for j in range(n_scales):
        ssims, css = [], []
        for ca, cb in zip(a, b):  # channels
            f = lambda img: signal.correlate2d(img, win, mode="valid")
            mu_a, mu_b = f(ca), f(cb)
            va, vb, cov = f(ca * ca) - mu_a**2, f(cb * cb) - mu_b**2, f(ca * cb) - mu_a * mu_b
            cs = (2 * cov + c2) / (va + vb + c2)
            lum = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
            ssims.append(lum * cs)
            css.append(cs)
        value = np.mean(ssims) if j == n_scales - 1 else np.mean(css)
        score *= max(value, 0.0) ** weights[j]
        h, w = a.shape[1] // 2 * 2, a.shape[2] // 2 * 2
        a = a[:, :h, :w].reshape(a.shape[0], h // 2, 2, w // 2, 2).mean((2, 4))
        b = b[:, :h, :w].reshape(b.shape[0], h // 2, 2, w // 2, 2).mean((2, 4))
    return score


@pytest.mark.parametrize("size, channels", [(192, 3), (64, 1), (28, 1)])
def test_ms_ssim_matches_numpy_reference(size, channels):
    x, y = _natural_pairs(size=size, channels=channels)
    ours = ms_ssim_per_pair(y, x)
    n_scales = ms_ssim_scales(size, size)
    assert n_scales == {192: 5, 64: 3, 28: 2}[size]
    for i in range(len(x)):
        assert float(ours[i]) == pytest.approx(_numpy_ms_ssim(y[i].numpy(), x[i].numpy(), n_scales), abs=1e-6)


def test_ms_ssim_matches_torchmetrics_up_to_its_padded_last_scale():
    """torchmetrics reflect-pads; its contrast-structure means use only valid positions (as ours), but
    its last-scale SSIM mean includes the padded border (at 192x192 the last scale is 12x12, where
    the 11x11 window has 2x2 valid positions), so it differs from Wang et al.'s valid-only mean by
    ~0.04 here. Swapping that one factor for the valid-only SSIM must give exactly our value."""
    from torchmetrics.functional.image import (
        multiscale_structural_similarity_index_measure as tm_ms_ssim,
    )
    from torchmetrics.functional.image import (
        structural_similarity_index_measure as tm_ssim,
    )

    x, y = _natural_pairs(n=2, size=192, channels=3, dtype=torch.float32)
    theirs = tm_ms_ssim(y, x, data_range=1.0, reduction="none")
    xs, ys = x, y
    for _ in range(4):
        xs, ys = torch.nn.functional.avg_pool2d(xs, 2), torch.nn.functional.avg_pool2d(ys, 2)  # (B, C, 12, 12)
    padded_last = tm_ssim(ys, xs, data_range=1.0, reduction="none")
    valid_last = ssim_per_image(ys, xs)
    beta = MS_SSIM_WEIGHTS[-1]
    torch.testing.assert_close(ms_ssim_per_pair(y, x), theirs * (valid_last / padded_last) ** beta,
                               atol=1e-3, rtol=0)


def test_ms_ssim_single_scale_is_ssim_and_identity_and_noise_cases():
    x, y = _natural_pairs(n=4, size=16, channels=1, dtype=torch.float32)
    assert ms_ssim_scales(16, 16) == 1 and ms_ssim_scales(8, 8) == 1
    torch.testing.assert_close(ms_ssim_per_pair(y, x), ssim_per_image(y, x).clamp(min=0), atol=1e-5, rtol=0)
    x8, y8 = _natural_pairs(n=2, size=8, channels=1, dtype=torch.float32)  # 7x7 window, as ssim_per_image
    torch.testing.assert_close(ms_ssim_per_pair(y8, x8), ssim_per_image(y8, x8).clamp(min=0), atol=5e-5, rtol=0)

    x, _ = _natural_pairs(n=2, size=64, channels=3)
    torch.testing.assert_close(ms_ssim_per_pair(x, x), torch.ones(2, dtype=torch.float64))
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert (ms_ssim_per_pair(x, noise) < 0.1).all()


def test_ms_ssim_diversity():
    same = blob_images(1, 32, 1).expand(20, -1, -1, -1)  # uint8 works too
    assert ms_ssim_diversity(same, pairs=50) == pytest.approx(1.0, abs=1e-5)
    noise = torch.rand(40, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    div = ms_ssim_diversity(noise, pairs=200, seed=3, batch_size=64)
    assert abs(div) < 0.05
    assert ms_ssim_diversity(noise, pairs=200, seed=3, batch_size=50) == pytest.approx(div, abs=1e-6)
    assert ms_ssim_diversity(noise, pairs=200, seed=4) != div
    blobs = blob_images(40, 32, 1)
    assert ms_ssim_diversity(blobs, pairs=200) > div  # smooth blobs resemble each other more than noise


def test_ms_ssim_diversity_standard_error_is_that_of_the_mean_over_the_pairs_written_out():
    # the pairs drawn as ms_ssim_diversity documents them, each scored on its own
    images = torch.rand(12, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    pairs, seed = 40, 5
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(12, (pairs,), generator=g)
    j = torch.randint(11, (pairs,), generator=g)
    j = j + (j >= i).long()
    scores = torch.stack([ms_ssim_per_pair(images[a:a + 1], images[b:b + 1])[0] for a, b in zip(i, j)]).double()
    mean, se = ms_ssim_diversity(images, pairs, seed, batch_size=7, return_se=True)
    assert mean == pytest.approx(float(scores.mean()), abs=1e-6)
    assert se == pytest.approx(float(scores.std() / math.sqrt(pairs)), rel=1e-4)
    assert ms_ssim_diversity(images, pairs, seed, batch_size=7) == pytest.approx(mean, abs=1e-12)


# --- KID ----------------------------------------------------------------------------------------

def _mmd2_unbiased_by_loops(a: np.ndarray, b: np.ndarray) -> float:
    """Bińkowski et al.'s unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, written out with loops."""
    d, m = a.shape[1], len(a)
    k = lambda x, y: (x @ y / d + 1) ** 3  # noqa: E731
    aa = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    bb = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    ab = sum(k(a[i], b[j]) for i in range(m) for j in range(m)) / (m * m)
    return aa + bb - 2 * ab


def test_kid_of_one_block_is_the_unbiased_mmd_written_out():
    g = np.random.default_rng(0)
    a, b = g.normal(size=(12, 3)), g.normal(0.5, 1.0, size=(12, 3))
    kid, se = kernel_distance(torch.tensor(a), torch.tensor(b), block=12)
    assert kid == pytest.approx(_mmd2_unbiased_by_loops(a, b), rel=1e-10)
    assert math.isnan(se)  # one block: no spread to judge it by
    # blocks are random halves of each set: the mean of the two blocks' estimates
    kid2, se2 = kernel_distance(torch.tensor(a), torch.tensor(b), block=6)
    assert math.isfinite(se2) and kid2 != kid


def test_kid_is_near_zero_for_one_distribution_and_far_from_it_for_two():
    g = torch.Generator().manual_seed(1)
    real, same, shifted = (torch.randn(4000, 8, generator=g) for _ in range(3))
    shifted += 0.5
    kid_same, se_same = kernel_distance(real, same)
    kid_far, se_far = kernel_distance(real, shifted)
    assert abs(kid_same) < 4 * se_same  # unbiased: zero up to its noise
    assert kid_far > 10 * se_far and kid_far > 20 * abs(kid_same)
    q = sample_quality(real, shifted)
    assert q["kid"] == kid_far and q["kid_se"] == se_far


def test_psnr_from_mse():
    from vaekit.metrics.image_quality import psnr_from_mse

    assert psnr_from_mse(torch.tensor([0.01, 1.0, 0.0])).tolist() == pytest.approx([20.0, 0.0, 100.0])


def test_kid_of_one_block_is_torchmetrics_polynomial_mmd():
    """The same estimator as torchmetrics' KernelInceptionDistance applies to each of its subsets."""
    from torchmetrics.image.kid import poly_mmd

    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(300, 16, generator=g, dtype=torch.float64), torch.randn(300, 16, generator=g,
                                                                                      dtype=torch.float64) * 1.2
    kid, _ = kernel_distance(real, fake, block=300)
    assert kid == pytest.approx(float(poly_mmd(real, fake)), rel=1e-9)
