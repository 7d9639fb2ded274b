"""Scheduled settings (vaekit.schedules): their values, their table in the config and the run folder,
refusals in one line, and a run whose model uses the value of each step (KL warm-up)."""

import dataclasses
import json
import math

import pytest

from vaekit.cli.main import main
from vaekit.errors import ConfigError
from vaekit.run import resolve_config
from vaekit.schedules import Scheduled, at_step


def test_linear_cosine_and_cyclical_values():
    linear = Scheduled.from_table({"schedule": "linear", "start": 0, "end": 4, "steps": 100}, "model.beta")
    assert [linear.at(s) for s in (0, 50, 100, 1000)] == [0.0, 2.0, 4.0, 4.0] and float(linear) == 0.0
    cosine = Scheduled.from_table({"schedule": "cosine", "start": 1, "end": 0, "steps": 10}, "w")
    assert cosine.at(0) == 1.0 and cosine.at(5) == pytest.approx(0.5) and cosine.at(10) == pytest.approx(0.0)
    assert cosine.at(2) > 1 - 2 / 10  # slow at first
    cyclical = Scheduled.from_table({"schedule": "cyclical", "start": 0, "end": 1, "steps": 10, "ratio": 0.5,
                                     "cycles": 2}, "w")
    assert [cyclical.at(s) for s in (0, 2, 5, 9, 10, 12, 19, 20, 25)] == [0, 0.4, 1, 1, 0, 0.4, 1, 1, 1]


@pytest.mark.parametrize("table, message", [
    ({"schedule": "exponential", "start": 0, "end": 1, "steps": 5}, "must be one of"),
    ({"schedule": "linear", "start": 0, "end": 1}, "needs steps"),
    ({"schedule": "linear", "start": 0, "end": 1, "steps": 0}, "integer >= 1"),
    ({"schedule": "linear", "start": 0, "end": math.inf, "steps": 5}, "finite number"),
    ({"schedule": "linear", "start": 0, "end": 1, "steps": 5, "ratio": 0.5}, "has no 'ratio'"),
    ({"schedule": "linear", "start": 0, "end": -1, "steps": 5}, "at the end of its schedule, model.beta must be >= 0"),
])
def test_a_bad_schedule_is_refused_with_its_setting_named(table, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config("vae", overrides=[f"model.beta={_inline(table)}"])


def _inline(table: dict) -> str:
    return "{" + ", ".join(f"{k} = {json.dumps(v) if not isinstance(v, float) or math.isfinite(v) else 'inf'}"
                           for k, v in table.items()) + "}"


def test_kl_warm_up_through_the_command_line_and_resume(tmp_path, capsys):
    """The logged loss is recon + beta * KL with the beta of each step; the run folder keeps the schedule,
    and a resumed run continues it."""
    warm_up = '{schedule = "linear", start = 0, end = 2, steps = 10}'
    args = ["train", "vae", "--data", "digits", "--set", f"model.beta={warm_up}", "--set", "model.latent_dim=4",
            "--set", "model.base_channels=8", "--set", "model.max_channels=16", "--set", "train.log_every=1",
            "--set", "train.eval_every=0", "--set", "train.precision=fp32", "--iw-samples", "0", "--quiet",
            "--out", str(tmp_path / "run")]
    assert main([*args, "--steps", "6", "--set", "train.checkpoint_every=6"]) == 0
    assert main([*args, "--steps", "14", "--resume"]) == 0
    capsys.readouterr()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 15))
    for r in rows:  # logged after step r["step"], which trained with the value at step r["step"] - 1
        beta = min(1.0, (r["step"] - 1) / 10) * 2
        assert r["schedule/beta"] == pytest.approx(beta)
        assert r["loss"] == pytest.approx(r["recon"] + beta * r["kl"], rel=1e-4)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["beta"] == {"schedule": "linear", "start": 0.0, "end": 2.0, "steps": 10}
    cfg = resolve_config("vae", overrides=[f"model.beta={warm_up}"])
    assert float(at_step(cfg.model, 5).beta) == 1.0 and type(at_step(cfg.model, 5).beta) is float


def test_a_learning_rate_with_warm_up_then_cosine_reaches_the_optimiser_at_every_step():
    import torch

    from vaekit.data import load_dataset
    from vaekit.models import build_model, model_config
    from vaekit.train import Trainer

    lr = '{schedule = "cosine", start = 0.01, end = 0.001, steps = 8, warmup = 4}'
    cfg = resolve_config("vae", overrides=[f"train.lr={lr}", "train.batch_size=16", "train.log_every=1",
                                           "train.eval_every=0", "train.steps=14", "model.latent_dim=4",
                                           "model.base_channels=8", "model.max_channels=16"])
    schedule = cfg.train.lr
    assert [schedule.at(s) for s in (0, 2, 4, 8, 12, 20)] == pytest.approx([0, 0.005, 0.01, 0.0055, 0.001, 0.001])
    data = load_dataset("digits", "train")
    model = build_model("vae", cfg.model, data.image_shape)
    trainer = Trainer(model, data, cfg.train, None, progress=False)
    seen = []
    step = trainer.train_step

    def recording_step(batch):
        out = step(batch)
        seen.append((trainer.step, trainer.optimizers["loss"].param_groups[0]["lr"], float(out["schedule/lr"])))
        return out

    trainer.train_step = recording_step
    trainer.fit()
    assert [(s, pytest.approx(lr), pytest.approx(logged)) for s, lr, logged in seen] == \
        [(s, pytest.approx(schedule.at(s)), pytest.approx(schedule.at(s))) for s in range(14)]


def test_beta_vae_b_pulls_each_images_kl_towards_the_capacity_of_the_step():
    """Burgess et al. 2018: loss = E[-log p(x|z)] + gamma |KL(q(z|x) || p(z)) - C|, per image, C rising linearly
    (the preset: gamma = 1000, C from 0 to 25 nats over 100,000 steps)."""
    import torch

    from vaekit.models import MODELS, build_model
    from vaekit.models.base import Batch

    preset = MODELS["beta_vae_b"].preset
    assert preset.beta == 1000.0 and preset.capacity.at(50_000) == pytest.approx(12.5)
    config = at_step(dataclasses.replace(preset, latent_dim=4, base_channels=8, max_channels=16), 40_000)
    model = build_model("beta_vae_b", config, (1, 8, 8)).train()
    x = torch.rand(6, 1, 8, 8)
    torch.manual_seed(0)
    loss = model.loss(Batch(x, None), 40_000)["loss"]
    torch.manual_seed(0)
    q = model.encode(x)
    z = q.sample()
    recon = -model.likelihood.log_prob(model.raw_decode(z), x)
    kl = q.kl(model.prior(None, len(z)))
    assert float(loss) == pytest.approx(float((recon + 1000.0 * (kl - 10.0).abs()).mean()), rel=1e-5)
    with pytest.raises(ConfigError, match="model.capacity"):
        resolve_config("vae", overrides=["model.capacity=-1"])


@pytest.mark.parametrize("setting, extra", [("model.scale", ["--set", "model.likelihood=gaussian"]),
                                            ("model.scale", ["--set", "model.likelihood=gaussian",
                                                             "--set", "model.learn_scale=true"])])
def test_a_setting_read_when_the_model_is_built_is_refused_before_the_run_folder(tmp_path, capsys, setting, extra):
    """A likelihood's scale is built into the model (fixed: a buffer; learned: its initial value): a schedule
    of it would keep its first value silently, so the run is refused, by name, before anything is written."""
    schedule = '{schedule = "linear", start = 0.5, end = 0.1, steps = 10}'
    args = ["train", "vae", "--data", "digits", "--set", f"{setting}={schedule}", *extra, "--steps", "2",
            "--quiet", "--out", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "model.scale is read when the model is built" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
    # a loss weight is not: the same check lets it through
    from vaekit.models.registry import refuse_built_schedules
    cfg = resolve_config("vae", overrides=[f"model.beta={schedule}"])
    refuse_built_schedules("vae", cfg.model, (1, 8, 8))


def test_step_decay_and_a_groups_own_schedule_reach_their_optimisers():
    """`step`: start times factor every `steps` steps, never past end. A group_lr table schedules that group
    alone: the VAE-GAN's discriminator decays by steps while its encoder and decoder keep train.lr."""
    import torch

    from vaekit.data import load_dataset
    from vaekit.models import build_model
    from vaekit.train import Trainer

    step = Scheduled.from_table({"schedule": "step", "start": 1e-2, "end": 2e-4, "steps": 3, "factor": 0.1}, "lr")
    assert [step.at(s) for s in (0, 2, 3, 5, 6, 9, 30)] == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3, 2e-4, 2e-4, 2e-4])
    with pytest.raises(ConfigError, match="factor must be > 0 and not 1"):
        Scheduled.from_table({"schedule": "step", "start": 1, "end": 0, "steps": 3, "factor": 1}, "lr")
    with pytest.raises(ConfigError, match="has no 'factor'"):
        Scheduled.from_table({"schedule": "linear", "start": 1, "end": 0, "steps": 3, "factor": 0.5}, "lr")
    table = '{"loss/discriminator" = {schedule = "step", start = 0.01, end = 0.0002, steps = 3, factor = 0.1}}'
    cfg = resolve_config("vaegan", overrides=[f"train.group_lr={table}", "train.lr=0.005", "train.batch_size=8",
                                              "train.log_every=1", "train.eval_every=0", "train.steps=7",
                                              "model.latent_dim=4", "model.base_channels=4", "model.max_channels=8",
                                              "model.discriminator_channels=4"])
    assert cfg.train.group_lr["loss/discriminator"].to_table()["factor"] == 0.1
    data = load_dataset("digits", "train")
    trainer = Trainer(build_model("vaegan", cfg.model, data.image_shape), data, cfg.train, None, progress=False)
    seen, train_step = [], trainer.train_step

    def recording_step(batch):
        out = train_step(batch)
        seen.append((trainer.optimizers["loss/discriminator"].param_groups[0]["lr"],
                     trainer.optimizers["loss/encoder"].param_groups[0]["lr"],
                     float(out["schedule/lr/loss/discriminator"])))
        return out

    trainer.train_step = recording_step
    trainer.fit()
    assert seen == [(pytest.approx(step.at(s)), 0.005, pytest.approx(step.at(s))) for s in range(7)]


def test_the_rate_falls_on_a_plateau_of_the_quick_evaluations_and_resume_keeps_it(tmp_path):
    """train.lr_plateau: `patience` quick evaluations in a row without a better metric multiply every group's
    rate by `factor`; the state (best, waited, factor) is in the checkpoint, so a resumed run goes on alike."""
    from vaekit.data import load_dataset
    from vaekit.models import build_model
    from vaekit.train import Trainer

    plateau = '{metric = "test/loss", factor = 0.5, patience = 2}'
    overrides = [f"train.lr_plateau={plateau}", "train.lr=0.004", "train.batch_size=8", "train.log_every=1",
                 "train.eval_every=1", "train.checkpoint_every=4", "model.latent_dim=4", "model.base_channels=4",
                 "model.max_channels=8"]
    losses = iter([5.0, 4.0, 4.5, 4.2, 3.0, 3.5, 3.2, 3.1, 9.0, 9.0])  # test/loss after steps 1, 2, ...

    def run(steps, resume=False):
        cfg = resolve_config("vae", overrides=[*overrides, f"train.steps={steps}"])
        data = load_dataset("digits", "train")
        trainer = Trainer(build_model("vae", cfg.model, data.image_shape), data, cfg.train, tmp_path / "run",
                          evaluate=lambda m, step: {"test/loss": next(losses)}, progress=False)
        if resume:
            trainer.resume()
        seen, train_step = [], trainer.train_step
        trainer.train_step = lambda batch: (out := train_step(batch), seen.append(
            trainer.optimizers["loss"].param_groups[0]["lr"]))[0]
        trainer.fit()
        return trainer, seen

    trainer, seen = run(8)
    # evaluations after steps 1..7: 5, 4 (best), 4.5, 4.2 (2nd without: x0.5), 3 (best), 3.5, 3.2 (x0.5 again)
    assert seen == pytest.approx([0.004, 0.004, 0.004, 0.004, 0.002, 0.002, 0.002, 0.001])
    assert trainer.plateau == {"best": 3.0, "waited": 0, "scale": 0.25}
    with pytest.raises(ConfigError, match="lr_plateau.factor"):
        resolve_config("vae", overrides=["train.lr_plateau={factor = 2.0}"])
    with pytest.raises(ConfigError, match="eval_every > 0"):
        resolve_config("vae", overrides=["train.lr_plateau={patience = 2}", "train.eval_every=0"])

    losses = iter([3.1, 9.0, 9.0])  # steps 5.. again from the checkpoint of step 4 (best 4.0, factor 0.5 there)
    import shutil
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step-00000008", ignore_errors=True)
    again, seen_again = run(8, resume=True)
    assert again.step == 8 and seen_again == pytest.approx(seen[4:])
