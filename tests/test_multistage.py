"""Residual-VAE and the multi-stage VAE (Cai et al. 2017): where each loss's gradient goes, any
number of stages, upsampling refiners, any base model, and the command line showing the stages."""

import json

import pytest
import torch

from conftest import TINY
from vaekit.cli.main import main
from vaekit.config import TrainConfig
from vaekit.errors import ConfigError
from vaekit.models import Batch, build_model, model_config
from vaekit.train import Trainer

STAGE = {"blocks": 1, "channels": 4}


def build(settings, shape=(1, 16, 16)):
    torch.manual_seed(0)
    return build_model("msvae", model_config("msvae", {"base_settings": TINY, **settings}), shape)


def grads(loss, params):
    return [g for g in torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)]


def nonzero(gs):
    return any(g is not None and g.abs().sum() > 0 for g in gs)


def x16(n=4):
    return Batch(torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(0)))


def test_coarse_loss_reaches_only_the_first_stage():
    model = build({"stages": [{**STAGE, "loss": "l1"}]})
    model.refiners[0].out.weight.data.normal_()  # leave the identity start so every path is live
    terms = model.loss(x16())
    coarse = terms["recon"]
    assert not nonzero(grads(coarse, list(model.refiners.parameters())))
    assert nonzero(grads(coarse, list(model.base.decoder.parameters())))
    assert nonzero(grads(coarse, list(model.base.encoder.parameters())))


def test_refine_loss_reaches_both_stages_and_the_encoder():
    model = build({"stages": [{**STAGE, "loss": "l1"}]})
    model.refiners[0].out.weight.data.normal_()
    refine = model.loss(x16())["stage1/refine"]
    assert nonzero(grads(refine, list(model.refiners.parameters())))
    assert nonzero(grads(refine, list(model.base.decoder.parameters())))  # trained jointly (sec. 2.3)
    assert nonzero(grads(refine, list(model.base.encoder.parameters())))


def test_msvae_total_is_coarse_plus_kl_plus_refine():
    model = build({"stages": [{**STAGE, "loss": "l1", "weight": 2.0}]})
    torch.manual_seed(1)
    t = model.loss(x16())
    torch.testing.assert_close(t["loss"], t["recon"] + t["kl"] + 2.0 * t["stage1/refine"])


def test_residual_vae_has_one_likelihood_on_the_refined_output():
    torch.manual_seed(0)
    model = build_model("residual_vae", model_config("residual_vae", {"base_settings": TINY,
                                                                      "stages": [{**STAGE, "loss": "likelihood"}]}),
                        (1, 16, 16))
    model.refiners[0].out.weight.data.normal_()
    t = model.loss(x16())
    torch.testing.assert_close(t["loss"], t["stage1/refine"] + t["kl"])  # eq. 2.8: no coarse term
    torch.testing.assert_close(t["elbo"], -(t["stage1/refine"] + t["kl"]))
    assert not nonzero(grads(t["loss"] - t["stage1/refine"], list(model.base.decoder.parameters())))


def test_three_stage_config_builds_and_trains(tiny_data):
    model = build({"stages": [{**STAGE, "loss": "l1"}, {**STAGE, "loss": "l2", "weight": 0.5},
                              {**STAGE, "loss": "feature", "pixel_weight": 1.0}]})
    assert len(model.refiners) == 3
    trainer = Trainer(model, tiny_data, TrainConfig(steps=30, batch_size=32, lr=3e-3, eval_every=0), progress=False)
    first = {k: float(v) for k, v in trainer.train_step(trainer.batch_at(0)).items()}
    trainer.step = 1
    last = trainer.fit()
    assert {"stage1/refine", "stage2/refine", "stage3/refine", "stage3/l1"} <= set(last)
    assert last["loss"] < first["loss"]
    stages = model.eval().decode_stages(torch.randn(2, TINY["latent_dim"]))
    assert list(stages) == ["coarse", "refine1", "refine2", "refine3"]


def test_upsampling_refiner_gives_the_higher_resolution():
    model = build({"stages": [{**STAGE, "loss": "l1", "upsample": 2}]}, shape=(1, 32, 32))
    assert model.base_shape == (1, 16, 16)  # the VAE stage works at half the resolution
    model.eval()
    z = torch.randn(3, TINY["latent_dim"])
    stages = model.decode_stages(z)
    assert stages["coarse"].shape == (3, 1, 16, 16) and stages["refine1"].shape == (3, 1, 32, 32)
    assert model.sample(2).shape == (2, 1, 32, 32)
    x = torch.rand(2, 1, 32, 32)
    assert model.reconstruct(x).shape == x.shape
    t = model.train().loss(Batch(x))
    assert torch.isfinite(t["loss"])


def test_adversarial_stage_has_its_own_optimiser_and_detached_fakes():
    model = build({"stages": [{**STAGE, "loss": "adversarial", "pixel_weight": 1.0}]})
    groups = model.optim_groups()
    assert set(groups) == {"loss", "loss/discriminator"}
    critic = set(map(id, groups["loss/discriminator"]))
    assert not critic & set(map(id, groups["loss"]))
    t = model.loss(x16())
    # The discriminator's loss does not reach the generator (fakes are detached) ...
    assert not nonzero(grads(t["loss/discriminator"], groups["loss"]))
    # ... and the generator's adversarial term does reach it.
    assert nonzero(grads(t["stage1/refine"], list(model.refiners.parameters())))


def test_refine_stages_sit_on_any_base_model():
    torch.manual_seed(0)
    model = build_model("msvae", model_config("msvae", {"base": "ae", "base_settings": TINY,
                                                        "stages": [{**STAGE, "loss": "l1"}]}), (1, 16, 16))
    assert type(model.base).__name__ == "AE"
    assert torch.isfinite(model.loss(x16())["loss"])
    beta = build_model("msvae", model_config("msvae", {"base": "beta_vae", "base_settings": TINY}), (1, 16, 16))
    assert beta.base.config.beta == 4.0


@pytest.mark.parametrize("settings, message", [
    ({"base": "msvae"}, "single-stage"),
    ({"stages": [{"loss": "perceptual"}]}, "refine stage loss"),
    ({"stages": []}, "at least one"),
    ({"base_settings": {"latent_dimm": 3}}, "model.latent_dimm"),
    ({"stages": [{"upsample": 3}]}, "upsample"),
])
def test_bad_stage_settings_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        build(settings)


def test_cli_trains_msvae_and_shows_every_stage(tmp_path, capsys):
    out = tmp_path / "ms"
    stages = '[{loss = "l1", blocks = 1, channels = 8}, {loss = "l2", blocks = 1, channels = 8}]'
    argv = ["train", "msvae", "--data", "digits", "--steps", "6", "--out", str(out), "--quiet", "--iw-samples", "2",
            "--set", "model.base_settings={latent_dim = 4, base_channels = 8, max_channels = 16}",
            "--set", f"model.stages={stages}", "--set", "train.batch_size=32", "--set", "train.log_every=3"]
    assert main(argv) == 0
    saved = json.loads((out / "config.json").read_text())
    assert [s["loss"] for s in saved["model"]["stages"]] == ["l1", "l2"]
    capsys.readouterr()
    assert main(["reconstruct", str(out), "-n", "4", "-o", str(tmp_path / "r.png")]) == 0
    assert "rows: input, coarse, refine1, refine2" in capsys.readouterr().out
    assert main(["sample", str(out), "-n", "5", "--stages", "-o", str(tmp_path / "s.png")]) == 0
    assert "rows: coarse, refine1, refine2" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--json", "--iw-samples", "2", "--iw-images", "5"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "test/stage2/refine" in result and 0 < result["test/ssim"] <= 1
    # The saved TOML is a config that reproduces the run.
    assert main(["train", "msvae", "--config", str(out / "config.toml"), "--steps", "2", "--out", str(tmp_path / "again"),
                 "--quiet", "--iw-samples", "0"]) == 0
    assert json.loads((tmp_path / "again" / "config.json").read_text())["model"] == saved["model"]


@pytest.mark.parametrize("upsample", [1, 2])
def test_a_multistage_model_on_a_base_conditioned_on_an_image_part_completes_and_resumes(tmp_path, capsys, upsample):
    """msvae on a CVAE told the left half: the final evaluation completes the right half from the prior
    (the kept part given to the base at its own resolution), writes its report, and --resume goes on."""
    out = tmp_path / "ms"
    argv = ["train", "msvae", "--data", "digits", "--steps", "4", "--out", str(out), "--quiet", "--iw-samples", "2",
            "--set", "model.base=cvae", "--set", 'model.base_settings={condition = "left", latent_dim = 4, '
            'base_channels = 4, max_channels = 8}', "--set", f"model.stages=[{{blocks = 1, channels = 4, "
            f"upsample = {upsample}}}]", "--set", "train.batch_size=32", "--set", f"data.size={8 * upsample}"]
    assert main(argv) == 0
    result = json.loads((out / "evaluation.json").read_text())
    assert result["completion/left/method"] == "prior" and 0 < result["completion/left/nll"]
    assert result["iwae_of"] == "p(x|y)"
    assert (out / "report.md").exists() and (out / "completions.png").exists()
    assert main(["train", "msvae", "--out", str(out), "--resume", "--steps", "6", "--quiet", "--iw-samples", "2"]) == 0
    assert json.loads((out / "evaluation.json").read_text())["step"] == 6
    assert main(["complete", str(out), "--keep", "left", "-o", str(tmp_path / "c.png")]) == 0
