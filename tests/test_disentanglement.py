"""Disentanglement metrics on synthetic codes whose answer is known.

The toy dataset's "images" are its factor values themselves, (n, K, 1, 1) in [0, 1], so an encoder can
return the factors exactly (perfectly disentangled), pure noise (no information), or a rotation of the
standardised factors (all information, but spread over latents).
"""

import math

import numpy as np
import pytest
import torch

from vaekit.data.factors import FactorDataset
from vaekit.metrics.disentanglement import (all_disentanglement_metrics, beta_vae_score, dci, discrete_entropy,
                                            discrete_mutual_info, factor_vae_score, histogram_discretize, mig, sap)

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
