"""Disentanglement metrics on synthetic codes whose answer is known.

The toy dataset's "images" are its factor values themselves, (n, K, 1, 1) in [0, 1], so an encoder can
return the factors exactly (perfectly disentangled), pure noise (no information), or a rotation of the
standardised factors (all information, but spread over latents). For `mig_posterior` the encoders also
give a log-variance; its estimator is checked against a brute-force double loop on a tiny case.
"""

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from vaekit.data.factors import FactorDataset, all_factor_settings
from vaekit.metrics import mixture
from vaekit.metrics.disentanglement import (all_disentanglement_metrics, beta_vae_score, dci, discrete_entropy,
                                            discrete_mutual_info, factor_vae_score, histogram_discretize, mig,
                                            mig_posterior, posterior_mutual_info, sap)

SIZES = [3, 5, 8, 8]
CHANCE = float(np.mean([1 / s for s in SIZES]))  # mean chance accuracy of predicting a factor: 0.196
PERFECT_SAP = 1 - CHANCE  # best latent exact, runner-up at chance


class ToyFactors:
    factor_names = ["shape", "size", "pos_x", "pos_y"]
    factor_sizes = SIZES

    def sample_factors(self, n, generator):
        return torch.stack([torch.randint(s, (n,), generator=generator) for s in self.factor_sizes], 1)

    def images_from_factors(self, factors):
        return (factors.float() / (torch.tensor(self.factor_sizes) - 1)).reshape(len(factors), -1, 1, 1)


DATA = ToyFactors()
_SIZES = torch.tensor(SIZES, dtype=torch.float32)
_STD = torch.sqrt((_SIZES**2 - 1) / 12) / (_SIZES - 1)  # std of a uniform factor scaled to [0, 1]


def identity(x):
    """The true factors plus two constant nuisance latents."""
    f = x.flatten(1)
    return torch.cat([f, torch.zeros(len(f), 2)], 1)


def make_noise(seed=123):
    """Codes independent of the input, 6 latents."""
    g = torch.Generator().manual_seed(seed)
    return lambda x: torch.randn(len(x), len(SIZES) + 2, generator=g)


def make_rotation(kind):
    if kind == "random":  # a random orthogonal matrix (fixed draw)
        q = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(0)))[0]
    else:  # 30 degrees in the (0, 1) and (2, 3) planes: each factor mostly in one latent, partly in another
        c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
        q = torch.tensor([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, c, -s], [0, 0, s, c]])
    return lambda x: ((x.flatten(1) - 0.5) / _STD) @ q


SMALL = {mig: {"n": 2000},
         beta_vae_score: {"n_train": 300, "n_eval": 200, "pairs": 32},
         factor_vae_score: {"n_train": 300, "n_eval": 200, "n_var": 2000},
         dci: {"n_train": 1000, "n_test": 500},
         sap: {"n_train": 2000, "n_test": 2000}}


def small_metrics(encode, seed=0, batch_size=256):
    out = {}
    for fn, kw in SMALL.items():
        out.update(fn(encode, DATA, **kw, batch_size=batch_size, seed=seed))
    return out


@pytest.fixture(scope="module")
def scores():
    return {"identity": small_metrics(identity), "noise": small_metrics(make_noise()),
            "random_rotation": small_metrics(make_rotation("random")),
            "plane_rotation": small_metrics(make_rotation("plane"))}


def test_toy_dataset_follows_the_protocol():
    assert isinstance(DATA, FactorDataset)


# --- helpers --------------------------------------------------------------------------------------

def test_discrete_mutual_info_against_hand_computed_values():
    # joint p(0,0) = 1/4, p(0,1) = 1/2, p(1,1) = 1/4; marginals (3/4, 1/4) and (1/4, 3/4):
    # I = 1/4 log(4/3) + 1/2 log(8/9) + 1/4 log(4/3) = 1/2 log(32/27)
    assert discrete_mutual_info([0, 0, 0, 1], [0, 1, 1, 1]) == pytest.approx(0.5 * math.log(32 / 27), abs=1e-12)
    # only the labels' pattern matters, not their values
    assert discrete_mutual_info([0, 0, 1, 1], [5, 5, 9, 9]) == pytest.approx(math.log(2), abs=1e-12)
    assert discrete_mutual_info([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-12)  # independent
    assert discrete_entropy([0, 1, 2, 3]) == pytest.approx(math.log(4))
    assert discrete_mutual_info([0, 1, 2, 3], [0, 1, 2, 3]) == pytest.approx(discrete_entropy([0, 1, 2, 3]))


def test_discrete_mutual_info_matches_scikit_learn():
    from sklearn.metrics import mutual_info_score

    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, 500)
    b = (a + rng.integers(0, 3, 500)) % 4
    assert discrete_mutual_info(a, b) == pytest.approx(mutual_info_score(a, b), abs=1e-12)


def test_histogram_discretize_uses_equal_width_bins_over_each_column():
    x = np.r_[0.0, (np.arange(20) + 0.5) / 20, 1.0]  # the range's ends and every bin's centre
    codes = np.stack([x, 20 * x - 5, np.full_like(x, 3.0)], 1)
    binned = histogram_discretize(codes, bins=20)
    expected = np.r_[0, np.arange(20), 19]  # the maximum goes into the last bin
    assert (binned[:, 0] == expected).all() and (binned[:, 1] == expected).all()
    assert len(np.unique(binned[:, 2])) == 1  # a constant column stays in one bin


# --- known answers -----------------------------------------------------------------------------------

def test_true_factors_score_near_the_maximum(scores):
    s = scores["identity"]
    assert s["mig"] > 0.95
    assert s["beta_vae/eval_accuracy"] > 0.95
    assert s["factor_vae/eval_accuracy"] > 0.95
    assert s["factor_vae/active_dims"] == 4  # the two constant latents are pruned
    assert s["dci/disentanglement"] > 0.9 and s["dci/completeness"] > 0.9
    assert s["dci/informativeness"] > 0.95
    assert s["sap"] > PERFECT_SAP - 0.08


def test_noise_scores_near_the_minimum(scores):
    s = scores["noise"]
    assert s["mig"] < 0.03
    assert s["beta_vae/eval_accuracy"] < 0.25 + 0.15  # chance 1/K = 0.25
    assert s["factor_vae/eval_accuracy"] < 0.25 + 0.15
    assert s["dci/disentanglement"] < 0.1 and s["dci/completeness"] < 0.1
    assert s["dci/informativeness"] < CHANCE + 0.1
    assert s["sap"] < 0.03


@pytest.mark.parametrize("kind", ["random_rotation", "plane_rotation"])
def test_rotated_factors_score_in_between(scores, kind):
    lo, mid, hi = scores["noise"], scores[kind], scores["identity"]
    for key, margin in [("mig", 0.04), ("dci/disentanglement", 0.05), ("dci/completeness", 0.05), ("sap", 0.025)]:
        assert lo[key] + margin < mid[key] < hi[key] - 0.2, key
    assert mid["dci/informativeness"] > 0.8  # a rotation loses no information
    assert mid["beta_vae/eval_accuracy"] > lo["beta_vae/eval_accuracy"] + 0.2


def test_scores_lie_in_their_ranges(scores):
    for s in scores.values():
        for key in ["mig", "sap", "dci/disentanglement", "dci/completeness", "dci/informativeness",
                    "beta_vae/eval_accuracy", "factor_vae/eval_accuracy"]:
            assert 0.0 <= s[key] <= 1.0 + 1e-9, key


# --- determinism and bookkeeping ---------------------------------------------------------------------

def test_deterministic_under_seed_and_independent_of_batch_size(scores):
    rotation = make_rotation("random")
    again = small_metrics(rotation)
    assert again == scores["random_rotation"]
    assert small_metrics(make_noise()) == scores["noise"]
    assert small_metrics(identity, batch_size=37) == scores["identity"]
    other = small_metrics(rotation, seed=1)
    assert other["mig"] != again["mig"] and other["dci/disentanglement"] != again["dci/disentanglement"]


def test_results_state_their_sample_counts(scores):
    s = scores["identity"]
    assert s["mig/n"] == 2000 and s["mig/bins"] == 20
    assert (s["beta_vae/n_train"], s["beta_vae/n_eval"], s["beta_vae/pairs"]) == (300, 200, 32)
    assert (s["factor_vae/n_train"], s["factor_vae/n_eval"], s["factor_vae/n_var"]) == (300, 200, 2000)
    assert (s["dci/n_train"], s["dci/n_test"], s["sap/n_train"], s["sap/n_test"]) == (1000, 500, 2000, 2000)
    assert all(type(v) is float for v in s.values())


def test_all_metrics_fast_gives_one_flat_dict():
    out = all_disentanglement_metrics(identity, DATA, seed=0, fast=True)
    for key in ["mig", "mig/n", "beta_vae/eval_accuracy", "beta_vae/n_train", "factor_vae/eval_accuracy",
                "factor_vae/n_train", "dci/disentanglement", "dci/completeness", "dci/informativeness",
                "dci/n_train", "sap", "sap/n_train"]:
        assert key in out, key
    assert all(type(v) is float for v in out.values())
    assert out["mig"] > 0.95 and out["dci/disentanglement"] > 0.9


def test_collapsed_codes_do_not_crash():
    constant = lambda x: torch.zeros(len(x), 3)  # noqa: E731
    assert factor_vae_score(constant, DATA, n_train=20, n_eval=10, n_var=100)["factor_vae/eval_accuracy"] == 0.0
    assert mig(constant, DATA, n=200)["mig"] == 0.0
    d = dci(constant, DATA, n_train=200, n_test=100)
    assert d["dci/disentanglement"] == 0.0 and d["dci/completeness"] == 0.0
    assert sap(constant, DATA, n_train=200, n_test=100)["sap"] == 0.0


def test_encoders_must_return_one_finite_code_tensor():
    with pytest.raises(ValueError, match="one code tensor"):
        mig(lambda x: (x.flatten(1), x.flatten(1)), DATA, n=10)
    with pytest.raises(ValueError, match="non-finite"):
        mig(lambda x: torch.full((len(x), 2), float("nan")), DATA, n=10)


def test_mig_reports_each_factor_and_their_mean(scores):
    s = scores["plane_rotation"]
    per_factor = [s[f"mig/{name}"] for name in DATA.factor_names]
    assert s["mig"] == pytest.approx(np.mean(per_factor), abs=1e-12)
    # measured: the turned (shape, size) plane keeps a gap for shape, the (pos_x, pos_y) plane almost none
    assert per_factor[0] > 0.1 and per_factor[2] < 0.05


# --- MIG from the posterior (Chen et al. 2018, sec. 5) ---------------------------------------------------

def test_all_factor_settings_is_row_major_and_complete():
    settings = all_factor_settings([2, 3, 4])
    assert settings.shape == (24, 3) and settings.dtype == torch.int64
    assert settings[:5].tolist() == [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 0, 3], [0, 1, 0]]  # last factor fastest
    assert settings[-1].tolist() == [1, 2, 3]
    assert len({tuple(r) for r in settings.tolist()}) == 24
    with pytest.raises(ValueError, match="subsample"):
        all_factor_settings([1000, 1000, 6])


def brute_force_entropies(z, mu, logvar, factors, picked=None):
    """H(z_j) and H(z_j | v_k) of the estimator written out: for every draw s and component n, the
    Gaussian log-density, a logsumexp per draw, the mean over draws; conditional entropies weight each
    value's subset by its frequency. `picked`: the draws used for H(z_j) (all by default)."""
    n_points, dims = mu.shape

    def entropy(draws, components, j):
        total = 0.0
        for s in draws:
            log_terms = [-0.5 * ((z[s, j] - mu[n, j]) ** 2 / math.exp(logvar[n, j]) + logvar[n, j]
                                 + math.log(2 * math.pi)) for n in components]
            total -= logsumexp(log_terms) - math.log(len(components))
        return total / len(draws)

    everyone = list(range(n_points))
    h = np.array([entropy(everyone if picked is None else picked, everyone, j) for j in range(dims)])
    h_cond = np.zeros((dims, factors.shape[1]))
    for k in range(factors.shape[1]):
        for v in np.unique(factors[:, k]):
            subset = list(np.flatnonzero(factors[:, k] == v))
            for j in range(dims):
                h_cond[j, k] += len(subset) / n_points * entropy(subset, subset, j)
    return h, h_cond


def tiny_posterior(seed=0):
    """50 of the 60 settings of factors with sizes 3, 4, 5 (so values have unequal frequencies) and
    5 latents: 0 sharp (std ~1e-6, where float32 z - mu needs care) and informative about factor 0;
    1 unrelated; 2 with log-variances 150 apart (some rows then go through the float64 redo); 3 with
    log-variances below -160 (float64 throughout); 4 an ordinary one, informative about factor 1."""
    g = torch.Generator().manual_seed(seed)
    factors = all_factor_settings([3, 4, 5])[torch.randperm(60, generator=g)[:50]]
    n = len(factors)
    noise = lambda: torch.randn(n, generator=g, dtype=torch.float64)  # noqa: E731
    uniform = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)  # noqa: E731
    f = factors.double()
    mu = torch.stack([f[:, 0] + 0.3 * noise(), noise(), 0.1 * f[:, 1] + noise(), f[:, 2] + 0.01 * noise(),
                      0.5 * f[:, 1] + noise()], 1)
    logvar = torch.stack([uniform(-30, -26), torch.zeros(n, dtype=torch.float64),
                          torch.where(torch.arange(n) % 7 == 0, -150.0, 0.0).double(),
                          torch.where(torch.arange(n) % 2 == 0, -170.0, -1.0).double(), uniform(-3, 0)], 1)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(n, 5, generator=g, dtype=torch.float64)
    return z, mu, logvar, factors


def test_posterior_mutual_info_matches_brute_force(monkeypatch):
    z, mu, logvar, factors = tiny_posterior()
    redone = []
    exact = mixture._exact_log_mixture
    monkeypatch.setattr(mixture, "_exact_log_mixture", lambda zz, *a: redone.append(len(zz)) or exact(zz, *a))
    est = posterior_mutual_info(z, mu, logvar, factors, samples=len(z))
    assert redone  # the far-below-the-shift rows of latent 2 went through the float64 redo
    h, h_cond = brute_force_entropies(z.numpy(), mu.numpy(), logvar.numpy(), factors.numpy())
    np.testing.assert_allclose(est.entropy.numpy(), h, rtol=0, atol=2e-6)
    np.testing.assert_allclose(est.conditional_entropy.numpy(), h_cond, rtol=0, atol=2e-6)
    np.testing.assert_allclose(est.mi.numpy(), h[:, None] - h_cond, rtol=0, atol=4e-6)
    assert est.mi[0, 0] > 0.5 and est.mi[3, 2] > 0.5 and est.mi[4, 1] > 0.1  # the informative latents are seen
    # Blocks of any size give the same numbers: here one component per block.
    again = posterior_mutual_info(z, mu, logvar, factors, samples=len(z), chunk=1)
    np.testing.assert_allclose(again.mi.numpy(), est.mi.numpy(), rtol=0, atol=1e-6)


def test_posterior_mutual_info_subsamples_draws_but_not_components():
    z, mu, logvar, factors = tiny_posterior(seed=1)
    # As many draws as the largest conditional subset: each H(z_j | v_k = v) uses all of its subset,
    # H(z_j) a random `samples` of the 50 (the generator's first randperm); every mixture keeps all
    # of its components.
    samples = max(int(torch.unique(factors[:, k], return_counts=True)[1].max()) for k in range(3))
    assert samples < len(z)
    est = posterior_mutual_info(z, mu, logvar, factors, samples=samples, generator=torch.Generator().manual_seed(5))
    picked = torch.randperm(len(z), generator=torch.Generator().manual_seed(5))[:samples].tolist()
    h, h_cond = brute_force_entropies(z.numpy(), mu.numpy(), logvar.numpy(), factors.numpy(), picked)
    np.testing.assert_allclose(est.entropy.numpy(), h, rtol=0, atol=2e-6)
    np.testing.assert_allclose(est.conditional_entropy.numpy(), h_cond, rtol=0, atol=2e-6)


def with_logvar(encode, logvar, extra_prior_dims=0):
    """An encode_posterior: `encode`'s codes as means, a fixed log-variance, plus latents equal to the prior."""
    def encode_posterior(x):
        mu = encode(x)
        prior = torch.zeros(len(mu), extra_prior_dims)
        return torch.cat([mu, prior], 1), torch.cat([torch.full_like(mu, logvar), prior], 1)
    return encode_posterior


SHARP = math.log(1e-4)  # posterior std 0.01: the factor values (>= 0.4 apart once standardised) never overlap


@pytest.fixture(scope="module")
def posterior_scores():
    standardised = lambda x: (x.flatten(1) - 0.5) / _STD  # noqa: E731
    return {"identity": mig_posterior(with_logvar(standardised, SHARP, 2), DATA),
            "noise": mig_posterior(with_logvar(make_noise(), 0.0), DATA),
            "plane_rotation": mig_posterior(with_logvar(make_rotation("plane"), SHARP), DATA)}


def test_mig_posterior_of_true_factors_is_one(posterior_scores):
    # Every setting (960), every draw: the latent of factor k takes |v_k| separate values, so
    # I(z_k; v_k) = log |v_k| = H(v_k), and the other latents (the other factors, the prior-noise
    # latents) have exactly the same mixture in every subset v_k = v, so I = 0: each gap is 1.
    s = posterior_scores["identity"]
    assert s["mig_posterior/n"] == 960 and s["mig_posterior/samples"] == 10_000
    for name in DATA.factor_names:
        assert s[f"mig_posterior/{name}"] == pytest.approx(1.0, abs=1e-3), name
    assert s["mig_posterior"] == pytest.approx(1.0, abs=1e-3)


def test_mig_posterior_of_unrelated_codes_is_near_zero(posterior_scores):
    assert 0.0 <= posterior_scores["noise"]["mig_posterior"] < 0.01


def test_mig_posterior_of_rotated_factors_lies_in_between(posterior_scores):
    lo, mid, hi = (posterior_scores[k]["mig_posterior"] for k in ("noise", "plane_rotation", "identity"))
    assert lo + 0.1 < mid < hi - 0.3
    # With posteriors this sharp, c v_x + s v_y takes a distinct value for each of the 64 position
    # pairs, so both latents of the turned plane identify both positions: their gaps close.
    assert posterior_scores["plane_rotation"]["mig_posterior/pos_x"] < 0.05


def test_mig_posterior_subsample_is_deterministic_and_states_its_counts():
    encode = with_logvar(make_rotation("plane"), math.log(0.05))
    a = mig_posterior(encode, DATA, n=400, samples=100, seed=3)
    assert a == mig_posterior(encode, DATA, n=400, samples=100, seed=3, batch_size=37)
    assert a["mig_posterior/n"] == 400 and a["mig_posterior/samples"] == 100
    assert a["mig_posterior"] != mig_posterior(encode, DATA, n=400, samples=100, seed=4)["mig_posterior"]
    assert set(a) == {"mig_posterior", "mig_posterior/n", "mig_posterior/samples",
                      *(f"mig_posterior/{name}" for name in DATA.factor_names)}
    assert all(type(v) is float for v in a.values())


def test_mig_posterior_needs_a_finite_mean_and_log_variance_pair():
    with pytest.raises(ValueError, match="pair"):
        mig_posterior(lambda x: x.flatten(1), DATA, n=10)
    with pytest.raises(ValueError, match="non-finite"):
        mig_posterior(lambda x: (x.flatten(1), torch.full((len(x), 4), float("nan"))), DATA, n=10)


def test_held_out_accuracies_carry_their_binomial_standard_error(scores):
    for s in scores.values():
        for metric, n in (("beta_vae", s["beta_vae/n_eval"]), ("factor_vae", s["factor_vae/n_eval"])):
            p = s[f"{metric}/eval_accuracy"]
            assert s[f"{metric}/eval_accuracy_se"] == pytest.approx((p * (1 - p) / n) ** 0.5, abs=1e-12)
