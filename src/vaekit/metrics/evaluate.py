"""`vaekit evaluate`: every test-set number of a trained model, in eval mode, in one dict.

Per image: ELBO terms (the model's own `loss` terms, in nats), the IWAE bound on -log p(x) with K
samples, SSIM, MSE and PSNR of reconstructions (posterior mean decoded), and the same for the mean-image
baseline. The counts of images and samples used are part of the output.
"""

from __future__ import annotations

import math
import sys

import torch

from ..data.dataset import fixed_sample
from ..conditioning import data_classes, side_information_for_samples
from ..batch import Batch
from ..models.base import eval_mode
from .image_quality import dataset_mean_image, mse_per_image, psnr_from_mse, ssim_per_image
from ..progress import TaskProgress
from .elbo_decomposition import posterior_encoder
from .likelihood import IMAGES_PER_CALL, iwae_nll
from ..distributed import Share


def even_batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, stop) bounds cutting n items into ceil(n / batch_size) batches whose sizes differ by at
    most one: no one-image leftover batch (beta-TCVAE's minibatch estimators need two or more, and
    are badly biased on a few)."""
    k = max(1, math.ceil(n / batch_size))
    bounds = [round(i * n / k) for i in range(k + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


@torch.no_grad()
def evaluate_model(model, test_data, *, train_mean: torch.Tensor | None = None, iw_samples: int = 0,
                   iw_images: int | None = None, max_images: int | None = None, batch_size: int = IMAGES_PER_CALL,
                   seed: int = 0, progress: bool = False, share: Share = Share()) -> dict:
    """Evaluate `model` on `test_data`, or on a fixed uniform sample of `max_images` of it (the same
    images for every run; the IWAE bound on the first `iw_images` of that sample, itself uniform).
    Runs in eval mode always; one network call holds at most `IMAGES_PER_CALL` images. The work is cut
    into tasks, each with its own seed, so that ranks sharing it (`share`) get the numbers one process gets."""
    if iw_samples < 0:
        raise ValueError(f"iw_samples must be >= 0, got {iw_samples}")
    with eval_mode(model), torch.random.fork_rng(devices=[]):
        return _evaluate(model, test_data, train_mean, iw_samples, iw_images, max_images,
                         max(1, min(batch_size, IMAGES_PER_CALL)), seed, progress, share)


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    """Mean of per-item values and its standard error sd / sqrt(n) (nan for n < 2), in float64."""
    v = values.double()
    return float(v.mean()), (float(v.std() / math.sqrt(len(v))) if len(v) > 1 else math.nan)


def batch_means_se(means: list[float], sizes: list[int]) -> float:
    """Standard error of the size-weighted mean of batch means, from their spread: the batches are
    disjoint parts of one uniform sample, so sum_b n_b^2 (m_b - m)^2 / n^2 * B / (B - 1) estimates the
    variance of the mean. nan for one batch."""
    if len(means) < 2:
        return math.nan
    m, n = torch.tensor(means, dtype=torch.float64), torch.tensor(sizes, dtype=torch.float64)
    mean = (m * n).sum() / n.sum()
    return float(((n * (m - mean)).square().sum() / n.sum() ** 2 * len(m) / (len(m) - 1)).sqrt())


IWAE_IMAGES_PER_TASK = 25  # IWAE images per task: small enough to balance ranks, K x 25 draws fill a call


def _evaluate(model, data, train_mean, iw_samples, iw_images, max_images, batch_size, seed, progress, share) -> dict:
    n = len(data) if max_images is None else min(max_images, len(data))
    device = next(model.parameters()).device
    if train_mean is not None:
        train_mean = train_mean.to(device)
    n_iw = 0 if iw_samples <= 0 or model.capabilities.bound is None else (n if iw_images is None else min(iw_images, n))
    order = fixed_sample(len(data), n)  # never "the first n": a split may be stored by class or factor
    # Tasks: each batch's terms and reconstruction (2 decodes an image), and each group of the batch's IWAE
    # images (K decodes each). Each task draws from its own seed, so that its numbers do not depend on who ran
    # the others; a batch's side information (a model's random kept part) is drawn first from the batch's
    # seed, so that the ELBO terms and the IWAE bound of an image see the same y.
    batches = even_batches(n, batch_size)
    tasks = [("terms", j, a, b) for j, (a, b) in enumerate(batches)]
    for j, (a, b) in enumerate(batches):
        if a < n_iw:
            tasks += [("iwae", j, a + c, a + d) for c, d in even_batches(min(b, n_iw) - a, IWAE_IMAGES_PER_TASK)]
    costs = [(2 if kind == "terms" else iw_samples) * (b - a) for kind, _, a, b in tasks]
    mine = share.mine(costs)
    shown = TaskProgress("test-set evaluation" + (f" (rank 0's share of {share.size})" if share.size > 1 else ""),
                         sum(costs[i] for i in mine), "decoded images", enabled=progress and share.main)
    done = {}
    with shown:
        for i in mine:
            kind, j, a, b = tasks[i]
            first, last = batches[j]
            torch.manual_seed(seed * 1_000_003 + j)
            idx = order[first:last]
            x = data.batch(idx).to(device)
            labels = data.labels[idx].to(device) if data.labels is not None else None
            y = model.side_information(Batch(x, labels))  # None for an unconditional model
            if kind == "iwae":
                torch.manual_seed(seed * 1_000_003 + len(batches) + i)
                x, y = x[a - first:b - first], None if y is None else y[a - first:b - first]
                done[i] = {"iwae_nll": iwae_nll(model, x, iw_samples, y, on_chunk=shown.advance).cpu()}
                continue
            terms = model.loss(Batch(x, labels, side=y), 0)  # every term of an image on the same y
            x_hat = model.reconstruct(x, y)
            out = {"terms": {k: float(v) for k, v in terms.items()},
                   "ssim": ssim_per_image(x_hat, x).cpu(), "mse": mse_per_image(x_hat, x).cpu()}
            out["psnr"] = psnr_from_mse(out["mse"])
            if train_mean is not None:
                out["base_ssim"] = ssim_per_image(train_mean.expand_as(x), x).cpu()
                out["base_mse"] = mse_per_image(train_mean.expand_as(x), x).cpu()
                out["base_psnr"] = psnr_from_mse(out["base_mse"])
            done[i] = out
            shown.advance(2 * len(idx))
    done = share.merged(done)
    batch_terms: dict[str, list[float]] = {}  # each term's batch means and their sizes: a term a model
    batch_sizes: dict[str, list[int]] = {}    # reports only for some batches is averaged over those
    per_image: dict[str, list[torch.Tensor]] = {k: [] for k in ("ssim", "mse", "psnr", "iwae_nll", "base_ssim",
                                                                  "base_mse", "base_psnr")}
    for i, (kind, _, a, b) in enumerate(tasks):
        for k, v in done[i].get("terms", {}).items():
            batch_terms.setdefault(k, []).append(v)
            batch_sizes.setdefault(k, []).append(b - a)
        for k in per_image:
            if k in done[i]:
                per_image[k].append(done[i][k])
    result = {}
    for k, means in batch_terms.items():
        sizes = batch_sizes[k]
        result[f"test/{k}"] = sum(m * b for m, b in zip(means, sizes)) / sum(sizes)
    for key, name in (("ssim", "test/ssim"), ("mse", "test/mse"), ("psnr", "test/psnr")):
        result[name], _ = mean_and_se(torch.cat(per_image[key]))
    if n_iw:
        result["test/iwae_nll"], _ = mean_and_se(torch.cat(per_image["iwae_nll"]))
        result["iwae_of"] = model.capabilities.bound  # p(x), or p(x|y) for a conditional model
        result["iwae_samples"] = iw_samples
        result["iwae_images"] = n_iw
    if train_mean is not None:  # the (blurry) training mean image as every reconstruction
        result["baseline/mean_image/ssim"], _ = mean_and_se(torch.cat(per_image["base_ssim"]))
        result["baseline/mean_image/mse"], _ = mean_and_se(torch.cat(per_image["base_mse"]))
        result["baseline/mean_image/psnr"], _ = mean_and_se(torch.cat(per_image["base_psnr"]))
    result["images"] = n
    # Standard errors over the scored test images (a uniform sample of the split; over the whole split
    # they say how far another split of this size could move the number): per image where the value
    # is per image, from the spread of the batch means for the model's own terms.
    se = {f"test/{k}": batch_means_se(means, batch_sizes[k]) for k, means in batch_terms.items()}
    for key, name in (("ssim", "test/ssim"), ("mse", "test/mse"), ("psnr", "test/psnr"), ("iwae_nll", "test/iwae_nll"),
                      ("base_ssim", "baseline/mean_image/ssim"), ("base_mse", "baseline/mean_image/mse"),
                      ("base_psnr", "baseline/mean_image/psnr")):
        if per_image[key]:
            se[name] = mean_and_se(torch.cat(per_image[key]))[1]
    result.update({f"{k}_se": v for k, v in se.items() if math.isfinite(v)})
    return result


__all__ = ["evaluate_model", "evaluate_disentanglement", "evaluate_kl_decomposition", "evaluate_samples",
           "dataset_mean_image", "posterior_encoder"]


@torch.no_grad()
def evaluate_disentanglement(model, factor_data, mode: str = "fast", seed: int = 0, progress: bool = False) -> dict:
    """MIG, beta-VAE, FactorVAE, DCI and SAP of the posterior means, and MIG from the whole posterior
    (`mig_posterior`, Chen et al. 2018 sec. 5), on a dataset with known factors (dSprites).
    mode "full": disentanglement_lib's counts (~2.9M images encoded) and the paper's MIG estimate
    (every factor setting, 737,280 on dSprites, 10,000 samples per entropy: ~3.7M encoded in all).
    mode "fast": ~58k images for the mean-based metrics and
    `mig_posterior` on 10,000 uniformly drawn settings with 2,000 samples per entropy (~68k images
    encoded in all; its cost grows as n x samples x latent dimensions). Empty when
    the data has no factors or the model no posterior (or no factorised one: DRAW). Keys: disentanglement/<metric>[/<detail>]."""
    from ..data.factors import FactorDataset
    from .disentanglement import all_disentanglement_metrics, mig_posterior

    caps = model.capabilities
    if mode == "off" or not isinstance(factor_data, FactorDataset) or not caps.factorised \
            or caps.label_conditional:  # factor images come without labels
        return {}
    device = next(model.parameters()).device

    def encode(x):
        x = x.to(device)
        return model.latent_code(x, model.side_information(Batch(x, None))).flatten(1).cpu()

    posterior = {"n": None, "samples": 10_000} if mode == "full" else {"n": 10_000, "samples": 2_000}
    with eval_mode(model), TaskProgress(f"disentanglement ({mode})", 6, "metrics", enabled=progress) as shown:
        result = all_disentanglement_metrics(encode, factor_data, seed=seed, fast=mode == "fast",
                                             after_each=shown.advance)
        result.update(mig_posterior(posterior_encoder(model), factor_data, **posterior, seed=seed))
        shown.advance()
    return {f"disentanglement/{k}": v for k, v in result.items()}


@torch.no_grad()
def evaluate_kl_decomposition(model, train_data, mode: str = "fast", seed: int = 0, progress: bool = False) -> dict:
    """The KL term split into index-code MI, total correlation and dimension-wise KL over the training
    set (`elbo_decomposition`, Chen et al. 2018 eq. 2): mode "full" every training image and 10,000
    draws scored (minutes for dSprites' 737,280), "fast" 10,000 images and 2,000 draws (seconds; MI is
    then at most log 10,000). Keys decomposition/{mi,tc,dwkl,kl,n,samples} and
    each term's standard error over the scored draws, decomposition/<term>_se; empty for "off", a model
    without a factorised posterior or one whose prior is not N(0, I)."""
    from .elbo_decomposition import dataset_elbo_decomposition

    declared = model.capabilities
    if mode == "off" or not declared.factorised or declared.conditional or declared.prior != "gaussian":
        return {}  # q(z) of a conditional model mixes q(z|x, y) and its KL is to p(z|y); a mixture prior's KL
        #            is not to N(0, I): not this decomposition
    settings = {"n": None, "samples": 10_000} if mode == "full" else {"n": 10_000, "samples": 2_000}
    out = dataset_elbo_decomposition(model, train_data, **settings, seed=seed, progress=progress)
    keys = ("mi", "tc", "dwkl", "kl", "n", "samples", "mi_se", "tc_se", "dwkl_se", "kl_se")
    return {f"decomposition/{k}": out[k] for k in keys if not (isinstance(out[k], float) and math.isnan(out[k]))}


def reference_train_images(train_data, n: int, seed: int, batch_size: int = IMAGES_PER_CALL) -> torch.Tensor:
    """A fixed uniform sample of n training images, the same pixels every time: a dynamically binarised
    split draws its pixels when read, so they are drawn from `seed` (else the sample-quality floor
    would move between evaluations and its cache, keyed by these images, never be read)."""
    idx = fixed_sample(len(train_data), n, seed).sort().values
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.cat([train_data.batch(idx[s:s + batch_size]) for s in range(0, n, batch_size)])


def evaluate_samples(model, train_data, test_data, *, samples: int = 10_000, pairs: int = 10_000,
                     feature_net_path=None, inception_path=None, seed: int = 0, batch_size: int = IMAGES_PER_CALL,
                     progress: bool = False) -> dict:
    """Sample quality of `model` against the test split, every number with its counts.

    - FD: the Frechet distance (Heusel et al. 2017) between `samples` model samples and the whole
      test split in the features of the toolkit's own classifier for the dataset (trained with a
      fixed recipe on first use and cached; Inception weights cannot be downloaded offline), and
      precision / recall in the same features (Kynkaenniemi et al. 2019, k = 3).
    - The same numbers for an equal number of *training* images against the test split: the floor
      a perfect model would reach with this many samples (FD is biased upwards for finite n).
    - MS-SSIM diversity: mean MS-SSIM of `pairs` random pairs of samples (IntroVAE's Table 2; lower
      is more diverse), beside the test images' own.
    - FID, when `inception_path` names local FID-Inception weights (safetensors).
    Samples are drawn in eval mode under `seed`. (Not under no_grad as a whole: a feature network
    trained on first use needs gradients.) FD and the test images' MS-SSIM need two or more test images."""
    from . import reference
    from .feature_net import extract_features, get_feature_net
    from .sample_quality import frechet_distance_features, ms_ssim_diversity, sample_quality

    batch_size = max(1, min(batch_size, IMAGES_PER_CALL))
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else None
    with eval_mode(model), torch.random.fork_rng(devices=[]), \
            TaskProgress("sampling", samples, "samples", enabled=progress) as shown:
        torch.manual_seed(seed)
        fake = []
        for s in range(0, samples, batch_size):
            stop = min(samples, s + batch_size)  # labels cycling through the classes, or kept parts of train images
            y = side_information_for_samples(model, train_data, s, stop, seed)
            fake.append(model.sample(stop - s, y).float().cpu())
            shown.advance(len(fake[-1]))
        fake = torch.cat(fake)  # (N, C, H, W) in [0, 1]
    real_train = reference_train_images(train_data, min(samples, len(train_data)), seed, batch_size)
    result: dict = {"samples/count": samples, "samples/test_images": len(test_data), "samples/pairs": pairs}
    enough_test = len(test_data) >= 2
    if train_data.labels is not None and test_data.labels is not None and enough_test:
        net, info = get_feature_net(train_data, test_data, feature_net_path, say, device=device_of(model))
        # the test split's features and radii and the training images' floor do not depend on the model:
        # computed once per feature net and data, then read from the cache (metrics/reference.py)
        with TaskProgress("sample-quality features", len(test_data) + len(fake) + len(real_train),
                          enabled=progress) as shown:
            f_test, radii, floor = reference.sample_reference(net, test_data, real_train, pairs=pairs, seed=seed,
                                                              batch_size=batch_size, shown=shown)
            f_fake = extract_features(net, fake, batch_size)
            shown.advance(len(fake))
        q = sample_quality(f_test, f_fake, real_radii=radii)
        result.update({f"samples/{k}": v for k, v in q.items()})
        result.update(floor)
        result["feature_net/test_accuracy"] = info["test_accuracy"]
        if model.capabilities.label_conditional:  # samples drawn for labels cycling through the data's classes
            result.update(class_conditional_quality(net, fake, f_fake, f_test, test_data.labels,
                                                    data_classes(train_data), batch_size))
    with TaskProgress("MS-SSIM diversity", pairs, "pairs", enabled=progress) as shown:
        result["samples/ms_ssim"], result["samples/ms_ssim_se"] = ms_ssim_diversity(
            fake, pairs, seed, batch_size, on_batch=shown.advance, return_se=True)
    if enough_test and "reference/test_ms_ssim" not in result:  # no labels, so no feature net and no cache
        result["reference/test_ms_ssim"], result["reference/test_ms_ssim_se"] = ms_ssim_diversity(
            test_data, pairs, seed, batch_size, return_se=True)
    if inception_path is not None and enough_test:
        from .inception import inception_features, load_fid_inception

        inception = load_fid_inception(inception_path).to(device_of(model))
        f_test = inception_features(inception, test_data)
        result["samples/fid"] = frechet_distance_features(f_test, inception_features(inception, fake))
        result["reference/train_fid"] = frechet_distance_features(f_test, inception_features(inception, real_train))
    return result


@torch.no_grad()
def class_conditional_quality(net, fake: torch.Tensor, f_fake: torch.Tensor, f_test: torch.Tensor,
                              test_labels: torch.Tensor, classes: int, batch_size: int = IMAGES_PER_CALL) -> dict:
    """Samples drawn for labels 0, 1, ..., k-1, 0, 1, ... (sample i for label i mod k, k = `classes`, the
    number of classes they were generated for, `side_information_for_samples`): the feature
    classifier's accuracy on them (label accuracy of samples, overall and per class) and the FD of
    each class's samples against that class's test images, with its mean over classes."""
    from .sample_quality import frechet_distance_features

    net.eval()
    intended = torch.arange(len(fake)) % classes
    device = next(net.parameters()).device
    predicted = torch.cat([net(fake[s:s + batch_size].to(device)).argmax(1).cpu()
                           for s in range(0, len(fake), batch_size)])
    correct = (predicted == intended).float()
    out = {"conditional/label_accuracy": float(correct.mean())}
    fds = []
    for c in range(classes):
        mine, real = intended == c, test_labels == c
        out[f"conditional/label_accuracy/{c}"] = float(correct[mine].mean())
        if int(mine.sum()) >= 2 and int(real.sum()) >= 2:
            fds.append(frechet_distance_features(f_test[real], f_fake[mine]))
            out[f"conditional/fd/{c}"] = fds[-1]
    if fds:
        out["conditional/fd_mean_over_classes"] = sum(fds) / len(fds)
    out["conditional/chance_accuracy"] = 1.0 / classes
    return out


def device_of(model) -> torch.device:
    return next(model.parameters()).device
