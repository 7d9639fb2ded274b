"""Contract tests run against every registered model at a tiny size, plus VAE-specific maths."""

import pytest
import torch

from conftest import case_id, model_cases, tiny_settings
from vaekit.distributions import DiagonalGaussian
from vaekit.models import MODELS, Batch, build_model, model_config
from vaekit.models.multistage import MultiStageVAE
from vaekit.train.checkpoint import load_model_weights, save_checkpoint

SHAPE = (1, 16, 16)


CASES = model_cases()


def tiny(name, **over):
    torch.manual_seed(0)
    return build_model(name, model_config(name, {**tiny_settings(name, over), **over}), SHAPE)


def tiny_case(case):
    name, over = case
    return tiny(name, **over)


def batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(n, *SHAPE, generator=g), torch.arange(n) % 3)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_terms_are_finite_scalars_and_groups_have_their_loss(case):
    model = tiny_case(case)
    b = batch()
    seen = set()
    for index, phase in enumerate(model.update_phases()):
        assert set(phase) <= set(model.optim_groups())
        terms = model.loss(b, 0, index)  # the phases of one iteration share `b` (and its memo)
        for key, value in terms.items():
            assert value.dim() == 0 and torch.isfinite(value), key
        assert set(phase) <= set(terms)
        seen |= set(phase)
    groups = model.optim_groups()
    assert seen == set(groups) and all(len(params) > 0 for params in groups.values())


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_every_trainable_parameter_is_in_exactly_one_group(case):
    model = tiny_case(case)
    grouped = [id(p) for params in model.optim_groups().values() for p in params]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in model.parameters() if p.requires_grad}


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_shapes_of_the_contract(case):
    model = tiny_case(case).eval()
    b = batch()
    x, y = b.x, model.side_information(b)
    assert (y is None) == (not model.capabilities.conditional)
    assert model.reconstruct(x, y).shape == x.shape
    assert model.sample(6, y).shape == (6, *SHAPE)
    z = model.latent_code(x, y)
    assert model.decode(z, y).shape == x.shape
    prior = model.prior(y, 6)
    assert isinstance(prior, DiagonalGaussian) and prior.mu.shape == z.shape
    assert model.prior_sample(6, y).shape == z.shape
    stages = model.decode_stages(z, y)  # single-stage: {"output"}; multi-stage: coarse, refine1, ..., one per stage
    if isinstance(model, MultiStageVAE):
        names = ["coarse", *(f"refine{i + 1}" for i in range(len(model.config.stages)))]
    elif model.capabilities.output == "canvas":  # DRAW: the canvas at evenly spaced glimpses
        names = [f"t={t}" for t in model.stage_times()]
    else:
        names = ["output"]
    assert list(stages) == names
    assert torch.equal(stages[names[-1]], model.decode(z, y))  # the last stage is the model's output
    for image in stages.values():
        assert image.shape[:2] == x.shape[:2] and image.min() >= 0 and image.max() <= 1
    out = model.sample(6, y)
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in ("cvae", "cvae_gan", "conditional_draw")
                                  or c[1].get("condition")],
                         ids=case_id)
def test_side_information_reaches_encoder_decoder_and_learned_prior(case):
    model = tiny_case(case)
    terms = model.loss(batch())
    sum(terms[k] for k in model.optim_groups()).backward()  # one step away from the prior net's N(0, I) start
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.eval()
    b1, b2 = batch(), batch(seed=1)
    b2 = Batch(b2.x, (b1.y + 1) % 3)  # other labels, other pixels
    y1, y2 = model.side_information(b1), model.side_information(Batch(b2.x, b2.y))
    z = model.prior_sample(6, y1)
    assert not torch.allclose(model.decode(z, y1), model.decode(z, y2))
    assert not torch.allclose(model.latent_code(b1.x, y1), model.latent_code(b1.x, y2))
    prior1, prior2 = model.prior(y1, 6), model.prior(y2, 6)
    if model.config.prior == "learned":  # trained one step away from its N(0, I) start
        assert not torch.allclose(prior1.mu, prior2.mu)
    else:
        assert torch.equal(prior1.mu, torch.zeros_like(prior1.mu))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_save_load_gives_identical_outputs(case, tmp_path):
    model = tiny_case(case)
    model.loss(batch())  # move batch-norm running statistics away from their initial values
    model.eval()
    save_checkpoint(tmp_path, 1, model, {})
    other = tiny_case(case)
    load_model_weights(tmp_path / "checkpoints" / "step-00000001", other)
    other.eval()
    b = batch(seed=3)
    y = model.side_information(b)
    assert torch.equal(model.reconstruct(b.x, y), other.reconstruct(b.x, y))
    torch.manual_seed(5)
    a = model.sample(3, None if y is None else y[:3])
    torch.manual_seed(5)
    assert torch.equal(a, other.sample(3, None if y is None else y[:3]))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_determinism_under_a_seed(case):
    torch.manual_seed(0)
    t1 = tiny_case(case).loss(batch())
    torch.manual_seed(0)
    t2 = tiny_case(case).loss(batch())
    for k in t1:
        assert torch.equal(t1[k], t2[k]), k


def test_vae_loss_is_recon_plus_beta_kl_summed_not_averaged():
    x = batch().x
    for beta in (1.0, 4.0):
        model = tiny("vae", beta=beta)
        torch.manual_seed(1)
        terms = model.loss(Batch(x))
        torch.testing.assert_close(terms["loss"], terms["recon"] + beta * terms["kl"])
        torch.testing.assert_close(terms["elbo"], -(terms["recon"] + terms["kl"]))
    # Per-image sum over 256 pixels: a fresh model's Bernoulli recon is near 256 * log 2, not log 2.
    assert terms["recon"] > 100


def test_beta_vae_preset_is_the_vae_with_beta_4():
    assert MODELS["beta_vae"].model_class is MODELS["vae"].model_class
    assert model_config("beta_vae").beta == 4.0
    assert model_config("beta_vae", {"beta": 6}).beta == 6.0


def test_golden_losses_at_seed_0():
    """Stored numbers so that a silent change of the maths or the architecture shows up."""
    golden = {"vae": 180.9516, "ae": 181.2201, "beta_vae": 183.4746, "msvae": 247.6933, "residual_vae": 180.9516,
              "btcvae": 181.5793}
    golden.update({"introvae": 144.6042, "vaegan": 45.6261, "cvae_gan": 44.6454})  # their loss/encoder
    golden.update({"cvae": 184.8198, "m2": 185.3168, "ssl_vaegan": 41.1540})
    for name, value in golden.items():
        model = tiny(name)
        torch.manual_seed(0)
        terms = model.loss(batch())
        got = float(terms.get("loss", terms.get("loss/encoder")).detach())
        assert got == pytest.approx(value, abs=1e-3), (name, got)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_sample_and_reconstruct_run_in_eval_mode_whatever_the_mode(case):
    model = tiny_case(case)
    model.loss(batch())  # batch-norm statistics away from their initial values
    b = batch(seed=4, n=4)
    x = b.x
    model.eval()
    torch.manual_seed(3)
    y = model.side_information(b)
    torch.manual_seed(2)
    ref_sample, ref_recon = model.sample(4, y), model.reconstruct(x, y)
    model.train()
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(2)
    assert torch.equal(model.sample(4, y), ref_sample)
    assert torch.equal(model.reconstruct(x, y), ref_recon)
    assert model.training  # the mode is restored
    for k, v in model.state_dict().items():
        assert torch.equal(v, stats[k]), f"{k} changed by inference"


@pytest.mark.parametrize("alpha, beta, gamma", [(1.0, 1.0, 1.0), (1.0, 6.0, 1.0), (0.5, 2.0, 3.0)])
def test_beta_tcvae_weights_each_term_of_the_decomposition(alpha, beta, gamma):
    model = tiny("btcvae", alpha=alpha, beta=beta, gamma=gamma)
    t = model.loss(batch(n=8))
    prior = t["loss"] - t["recon"]
    expected = alpha * t["tc/mi"] + beta * t["tc/tc"] + gamma * t["tc/dwkl"]
    torch.testing.assert_close(prior, expected, atol=1e-3, rtol=1e-4)  # loss - recon cancels ~180 in float32
    assert {"tc/mi", "tc/tc", "tc/dwkl", "kl", "elbo"} <= set(t)


def test_beta_tcvae_needs_the_dataset_size():
    from vaekit.errors import ConfigError

    model = tiny("btcvae", dataset_size=0)
    with pytest.raises(ConfigError, match="dataset_size"):
        model.loss(batch())
