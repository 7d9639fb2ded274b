"""Metrics: SSIM against scikit-image, the IWAE bound against the ELBO, evaluation in eval mode and on a
uniform sample."""

import numpy as np
import math

import pytest
import torch

from conftest import TINY, blob_images
from vaekit.data import ImageDataset
from vaekit.metrics import dataset_mean_image, evaluate_model, iwae_bound, iwae_nll, log_importance_weights, ssim_per_image
from vaekit.metrics.image_quality import mse_per_image
from vaekit.models import Batch, build_model, model_config


def _pairs(n=4, size=28, channels=1):
    x = blob_images(n, size, channels).float() / 255
    g = torch.Generator().manual_seed(0)
    y = (x + 0.15 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, y


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_scikit_image(channels):
    from skimage.metrics import structural_similarity

    x, y = _pairs(channels=channels)
    ours = ssim_per_image(y, x)
    for i in range(len(x)):
        ref = structural_similarity(x[i].permute(1, 2, 0).numpy().astype(np.float64),
                                    y[i].permute(1, 2, 0).numpy().astype(np.float64),
                                    data_range=1.0, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, channel_axis=2)
        assert float(ours[i]) == pytest.approx(ref, abs=2e-3)


def test_ssim_is_one_for_identical_images_and_lower_for_noise():
    x, y = _pairs()
    assert torch.allclose(ssim_per_image(x, x), torch.ones(len(x)), atol=1e-5)
    assert (ssim_per_image(y, x) < 0.9).all()
    torch.testing.assert_close(mse_per_image(y, x), (y - x).pow(2).mean((1, 2, 3)))


def _vae(**over):
    torch.manual_seed(0)
    return build_model("vae", model_config("vae", {**TINY, **over}), (1, 16, 16)).eval()


def test_iwae_with_one_sample_is_the_elbo_in_expectation():
    model = _vae()
    x = blob_images(3, 16).float() / 255
    torch.manual_seed(0)
    with torch.no_grad():
        k1 = torch.stack([iwae_bound(log_importance_weights(model, x, 1)) for _ in range(3000)]).mean(0)
        # The ELBO with the analytic KL and a Monte-Carlo reconstruction term, averaged over draws:
        elbo = torch.stack([torch.stack([model.loss(Batch(x[i:i + 1]))["elbo"] for _ in range(3000)]).mean()
                            for i in range(3)])
    torch.testing.assert_close(k1, elbo, rtol=0, atol=0.15)


def test_iwae_with_k_1_equals_the_monte_carlo_elbo_exactly():
    model = _vae()
    x = blob_images(4, 16).float() / 255
    torch.manual_seed(3)
    log_w = log_importance_weights(model, x, 1)  # (1, B)
    torch.manual_seed(3)
    q = model.encode(x)
    z = q.sample()
    from vaekit.distributions import standard_normal_log_prob
    mc_elbo = model.log_likelihood(x, z) + standard_normal_log_prob(z) - q.log_prob(z)
    torch.testing.assert_close(iwae_bound(log_w), mc_elbo.detach())


@pytest.fixture(scope="module")
def trained_vae():
    """A tiny VAE trained briefly on blobs, so its posterior is informative (an untrained one's
    weights are all alike and the bound barely moves)."""
    from vaekit.config import TrainConfig
    from vaekit.train import Trainer

    data = ImageDataset("blobs", "train", blob_images(512, 16), None, None, "memory")
    model = _vae().train()
    Trainer(model, data, TrainConfig(steps=150, batch_size=64, lr=3e-3, eval_every=0), progress=False).fit()
    return model.eval()


def test_iwae_tightens_as_k_grows(trained_vae):
    x = blob_images(16, 16, seed=7).float() / 255
    torch.manual_seed(0)
    nll = {k: float(torch.stack([iwae_nll(trained_vae, x, k).mean() for _ in range(5)]).mean()) for k in (1, 10, 100)}
    assert nll[1] > nll[10] > nll[100]
    assert not iwae_nll(trained_vae, x, 5).requires_grad


def test_evaluation_runs_in_eval_mode_and_restores_the_mode(tiny_test_data):
    model = _vae()
    model.loss(Batch(blob_images(8, 16).float() / 255))  # move batch-norm statistics
    model.train()
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    result = evaluate_model(model, tiny_test_data, seed=0)
    assert model.training  # restored
    for k, v in model.state_dict().items():
        if "running" in k:
            assert torch.equal(v, stats[k]), f"{k} changed: evaluation ran in training mode"
    model.eval()
    assert evaluate_model(model, tiny_test_data, seed=0) == result  # same numbers as an explicit eval()


def test_evaluate_reports_baseline_and_counts(tiny_data, tiny_test_data):
    model = _vae()
    result = evaluate_model(model, tiny_test_data, train_mean=dataset_mean_image(tiny_data), iw_samples=4,
                            iw_images=10)
    assert result["images"] == len(tiny_test_data)
    assert result["iwae_samples"] == 4 and result["iwae_images"] == 10
    assert 0 < result["baseline/mean_image/ssim"] < 1
    for key in ("test/loss", "test/recon", "test/kl", "test/elbo", "test/ssim", "test/mse", "test/iwae_nll"):
        assert np.isfinite(result[key]), key
    assert result["test/iwae_nll"] <= -result["test/elbo"] + 5.0  # a bound at least as tight, up to noise
    # PSNR is per image, then averaged: by Jensen at least the PSNR of the mean MSE, equal only if all are alike
    for prefix in ("test/", "baseline/mean_image/"):
        assert result[prefix + "psnr"] > 10 * math.log10(1 / result[prefix + "mse"]), prefix
    assert result["test/psnr_se"] > 0


def test_evaluation_on_part_of_a_split_reads_a_uniform_sample_not_its_first_images():
    # A split stored class by class (as dSprites by factor, an image folder by class): 64 blank images, then 64 blobs.
    images = torch.cat([torch.zeros(64, 1, 16, 16, dtype=torch.uint8), blob_images(64, 16)])
    data = ImageDataset("sorted", "test", images, None, None, "memory")
    blank = torch.zeros(1, 16, 16)
    model = _vae()
    full = evaluate_model(model, data, train_mean=blank)["baseline/mean_image/mse"]
    part = evaluate_model(model, data, train_mean=blank, max_images=32)
    assert part["images"] == 32
    # the first 32 would all be blank (MSE 0 against a blank mean); a uniform sample is about half blobs
    assert 0.5 * full < part["baseline/mean_image/mse"] < 1.5 * full
    assert evaluate_model(model, data, train_mean=blank, max_images=32) == part  # the same sample every time


def test_sharpness_measures_fall_with_blur():
    from vaekit.metrics.image_quality import gradient_energy, laplacian_variance

    x = blob_images(4, 28).float() / 255
    x = (x > 0.5).float()  # hard edges
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)
    assert (laplacian_variance(blurred) < laplacian_variance(x)).all()
    assert (gradient_energy(blurred) < gradient_energy(x)).all()
    assert torch.allclose(laplacian_variance(torch.full((2, 1, 8, 8), 0.3)), torch.zeros(2))


def test_iwae_decodes_at_most_images_per_call_whatever_k_and_the_batch():
    """Peak memory of the bound is set by images_per_call, never by K or the number of images."""
    model = _vae()
    seen = []
    original = model.log_likelihood
    model.log_likelihood = lambda x, z, *rest, **kw: (seen.append(len(x)), original(x, z, *rest, **kw))[1]
    x = blob_images(7, 16).float() / 255
    log_w = log_importance_weights(model, x, 50, images_per_call=12)
    assert log_w.shape == (50, 7) and torch.isfinite(log_w).all()
    assert max(seen) <= 12 and sum(seen) == 50 * 7


def test_evaluation_batches_are_even_and_small_tc_batches_report_no_minibatch_terms():
    from vaekit.metrics.evaluate import even_batches

    assert sorted(b - a for a, b in even_batches(501, 500)) == [250, 251]
    assert [b - a for a, b in even_batches(1, 500)] == [1]
    data = ImageDataset("blobs", "test", blob_images(5), None, None, "memory")
    torch.manual_seed(0)
    model = build_model("btcvae", model_config("btcvae", {**TINY, "dataset_size": 100}), (1, 16, 16))
    small = evaluate_model(model, data, max_images=1)  # the estimators need >= 2 images; none are reported
    assert "test/recon" in small and not any(k.startswith(("test/tc/", "test/loss")) for k in small)
    big = ImageDataset("blobs", "test", blob_images(129), None, None, "memory")
    full = evaluate_model(model, big, batch_size=128)  # two batches of 65 and 64, not 128 + 1
    assert "test/tc/tc" in full and "test/loss" in full


def test_the_iwae_bound_uses_the_models_own_importance_weights_and_prior():
    """The model owns the weights (a model with another posterior supplies its own) and its prior: a
    CVAE's bound is on log p(x|y), with p(z|y) from its prior network."""
    from conftest import tiny_settings
    from vaekit.models import Batch

    torch.manual_seed(0)
    model = build_model("cvae", model_config("cvae", tiny_settings("cvae", {"prior": "learned"})), (1, 16, 16))
    torch.nn.init.normal_(model.side.prior_net[-1].weight)  # a prior far from N(0, I)
    data = ImageDataset("blobs", "test", blob_images(6), torch.arange(6) % 4, list("abcd"), "memory")
    x = data.batch(torch.arange(6))
    model.eval()
    y = model.side_information(Batch(x, data.labels))
    torch.manual_seed(1)
    log_w = log_importance_weights(model, x, 1, y)  # (1, B)
    torch.manual_seed(1)
    q = model.encode(x, y)
    z = q.sample(1)[0]
    prior = model.prior(y, 6)
    by_hand = model.log_likelihood(x, z, y) + prior.log_prob(z) - q.log_prob(z)
    torch.testing.assert_close(log_w[0], by_hand)
    standard = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(1)
    assert not torch.allclose(prior.log_prob(z), standard)  # the learned prior, not N(0, I), is in the weights

    model.log_importance_weights = lambda x, k, y=None, **kw: torch.full((k, len(x)), -7.0)
    result = evaluate_model(model, data, iw_samples=3)
    assert result["test/iwae_nll"] == pytest.approx(7.0)


@pytest.mark.parametrize("condition", ["half", "quadrants"])
def test_every_term_of_an_image_is_scored_on_one_draw_of_its_kept_part(condition, tiny_test_data):
    """A model conditioned on a random kept part: the loss terms, the reconstruction and the IWAE bound of
    an evaluation batch all see the same y (one mask per image), so per-image ELBO and IWAE agree on y."""
    model = build_model("vae", model_config("vae", {**TINY, "condition": condition}), tiny_test_data.image_shape)
    seen: dict[bytes, set] = {}  # image -> every y it was scored on
    calls = []
    encode = model.encode

    def recording_encode(x, y=None):
        calls.append(len(x))
        for xi, yi in zip(x, y):
            seen.setdefault(xi.numpy().tobytes(), set()).add(yi.numpy().tobytes())
        return encode(x, y)

    model.encode = recording_encode
    evaluate_model(model, tiny_test_data, iw_samples=3, batch_size=500)
    assert len(calls) >= 3 and len(seen) == min(500, len(tiny_test_data))
    assert all(len(ys) == 1 for ys in seen.values())


def test_the_conditional_likelihood_is_refused_for_a_model_not_conditioned_on_an_image_part(tiny_test_data):
    from vaekit.metrics.likelihood import conditional_nll

    x = tiny_test_data.batch(torch.arange(4))
    for over in ({}, {"condition": "label", "classes": 4}):
        model = build_model("vae", model_config("vae", {**TINY, **over}), tiny_test_data.image_shape)
        with pytest.raises(ValueError, match="conditioned on an image part"):
            conditional_nll(model, x, "left", 2)
    model = build_model("vae", model_config("vae", {**TINY, "condition": "left"}), tiny_test_data.image_shape)
    assert conditional_nll(model, x, "left", 2).shape == (4,)


# ---------------------------------------------------------------------------------------------
# The evaluation's faster paths against the straightforward computations they replace

def _torchmetrics_ssim(x_hat, x):
    """ssim_per_image as it was: torchmetrics' padded SSIM map, averaged over the valid positions."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    h, w = x.shape[-2:]
    kernel = min(11, h - (1 - h % 2), w - (1 - w % 2))
    sigma = 1.5 if kernel == 11 else (kernel - 1) / 7
    _, ssim_map = structural_similarity_index_measure(x_hat.float().clamp(0, 1), x.float(), data_range=1.0,
                                                      kernel_size=kernel, sigma=sigma, reduction="none",
                                                      return_full_image=True)
    pad = (kernel - 1) // 2
    return ssim_map[..., pad:h - pad, pad:w - pad].flatten(1).mean(1)


@pytest.mark.parametrize("shape", [(6, 1, 28, 28), (3, 3, 16, 16), (4, 1, 8, 8), (5, 1, 28, 14), (2, 3, 13, 9),
                                   (2, 1, 64, 64)])
def test_ssim_equals_torchmetrics_on_the_valid_positions(shape):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.rand(shape, generator=g)
    y = x + 0.3 * torch.randn(shape, generator=g)  # partly outside [0, 1]: x_hat is clamped
    torch.testing.assert_close(ssim_per_image(y, x), _torchmetrics_ssim(y, x), rtol=0, atol=2e-6)
    torch.testing.assert_close(ssim_per_image(x.roll(1, -1), x), _torchmetrics_ssim(x.roll(1, -1), x), rtol=0,
                               atol=2e-6)


def test_evaluation_means_and_standard_errors_against_the_per_image_values(tiny_data, tiny_test_data):
    from vaekit.data.dataset import fixed_sample
    from vaekit.metrics.evaluate import batch_means_se

    model = _vae()
    train_mean = dataset_mean_image(tiny_data)
    result = evaluate_model(model, tiny_test_data, train_mean=train_mean, iw_samples=3, iw_images=9, batch_size=7,
                            seed=1)
    # the images and batches evaluate_model uses (a fixed uniform sample, even batches of <= 7)
    n = len(tiny_test_data)
    x = tiny_test_data.batch(fixed_sample(n, n))
    with torch.no_grad():
        ssim, mse = ssim_per_image(model.reconstruct(x), x).double(), mse_per_image(model.reconstruct(x), x).double()
    base = ssim_per_image(train_mean.expand_as(x), x).double()
    assert result["test/ssim"] == pytest.approx(float(ssim.mean()), abs=1e-6)
    assert result["test/ssim_se"] == pytest.approx(float(ssim.std() / math.sqrt(n)), rel=1e-4)
    assert result["test/mse_se"] == pytest.approx(float(mse.std() / math.sqrt(n)), rel=1e-4)
    assert result["baseline/mean_image/ssim_se"] == pytest.approx(float(base.std() / math.sqrt(n)), rel=1e-4)
    assert result["test/iwae_nll_se"] > 0 and result["test/loss_se"] > 0
    # batch-means standard error written out: equal batches give sd(batch means) / sqrt(B)
    assert batch_means_se([1.0, 2.0, 4.0], [5, 5, 5]) == pytest.approx(float(torch.tensor([1.0, 2, 4]).std()) / math.sqrt(3))
    # unequal batches: sum_b n_b^2 (m_b - m)^2 / n^2 * B / (B - 1)
    m = (1 * 2 + 3 * 6) / 8
    want = math.sqrt((2**2 * (1 - m) ** 2 + 6**2 * (3 - m) ** 2) / 8**2 * 2)
    assert batch_means_se([1.0, 3.0], [2, 6]) == pytest.approx(want)
    assert math.isnan(batch_means_se([1.0], [4]))


def test_ranks_sharing_the_test_pass_get_the_numbers_of_one_process(tiny_test_data):
    """evaluate_model cut into tasks among two ranks (simulated: rank 1's results handed to rank 0) gives
    what one process gives, IWAE bound included; each task ran on exactly one rank."""
    from vaekit.distributed import Share

    torch.manual_seed(0)
    model = build_model("vae", model_config("vae", TINY), tiny_test_data.image_shape)
    options = dict(iw_samples=4, iw_images=70, max_images=150, batch_size=40, seed=3,
                   train_mean=dataset_mean_image(tiny_test_data))
    alone = evaluate_model(model, tiny_test_data, **options)
    of_rank_1 = {}

    class Handed(Exception):
        pass

    def hand_over(mine):
        of_rank_1.update(mine)
        raise Handed

    with pytest.raises(Handed):
        evaluate_model(model, tiny_test_data, **options, share=Share(1, 2, hand_over))

    def merge(mine):
        assert of_rank_1 and not set(mine) & set(of_rank_1)
        return {**of_rank_1, **mine}

    shared = evaluate_model(model, tiny_test_data, **options, share=Share(0, 2, merge))
    assert shared == alone


def test_a_share_gives_each_task_to_one_rank_and_balances_the_cost():
    from vaekit.distributed import Share

    costs = [500, 500, 500, 100, 100, 100, 100, 100, 40, 40]
    plans = [Share(r, 3).mine(costs) for r in range(3)]
    assert sorted(i for p in plans for i in p) == list(range(len(costs)))
    loads = [sum(costs[i] for i in p) for p in plans]
    assert max(loads) - min(loads) <= max(costs) / 2
