"""Configuration: TOML and --set overrides, refusal of unknown keys and impossible values by name."""

import pytest

from vaekit.config import TrainConfig, from_dict, parse_value
from vaekit.errors import ConfigError
from vaekit.run import resolve_config


def test_overrides_are_applied_with_types():
    cfg = resolve_config("vae", overrides=["model.beta=4", "train.lr=3e-4", "train.grad_clip=1", "data.name=digits"])
    assert cfg.model.beta == 4.0 and isinstance(cfg.model.beta, float)
    assert cfg.train.lr == 3e-4 and cfg.train.grad_clip == 1.0
    assert cfg.data.name == "digits"


def test_precedence_preset_file_shortcut_set(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[model]\nbeta = 2.0\nlatent_dim = 8\n[train]\nsteps = 10\nlr = 0.01\n")
    cfg = resolve_config("beta_vae", str(f), ["train.lr=0.02"], {"train": {"steps": 20}})
    assert cfg.model.beta == 2.0 and cfg.model.latent_dim == 8
    assert cfg.train.steps == 20 and cfg.train.lr == 0.02
    assert resolve_config("beta_vae").model.beta == 4.0


@pytest.mark.parametrize("assignment, message", [
    ("model.betta=4", "model.betta"),
    ("train.lr=-1", "train.lr"),
    ("train.steps=1.5", "train.steps"),
    ("train.batch_size=0", "train.batch_size"),
    ("model.likelihood=poisson", "model.likelihood"),
    ("data.channels=2", "data.channels"),
    ("optim.lr=1", "optim"),
    ("lr=1", "section.key"),
    ("train.lr", "section.key=value"),
])
def test_bad_settings_are_refused_by_name(assignment, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        resolve_config("vae", overrides=[assignment])


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known models: .*vae"):
        resolve_config("gan")


def test_bad_toml_file_is_refused(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[train\nsteps = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve_config("vae", str(f))
    f.write_text("[optimizer]\nlr = 1\n")
    with pytest.raises(ConfigError, match="unknown section"):
        resolve_config("vae", str(f))


def test_parse_value():
    assert parse_value("3e-4") == 3e-4
    assert parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("hello") == "hello"
    assert parse_value("none") == "none"  # a string until a setting's type says otherwise


def test_none_switches_off_an_optional_setting_but_is_a_string_setting_value():
    """`--set train.grad_clip=none` turns clipping off; `--set model.norm=none` is the string "none"."""
    cfg = resolve_config("vae", overrides=["model.norm=none", "train.grad_clip=none", "train.epochs=null"])
    assert cfg.model.norm == "none" and cfg.train.grad_clip is None and cfg.train.epochs is None


def test_from_dict_coerces_lists_to_tuples():
    cfg = from_dict(TrainConfig, {"adam_betas": [0.5, 0.9]}, "train")
    assert cfg.adam_betas == (0.5, 0.9)
    with pytest.raises(ConfigError, match="adam_betas"):
        from_dict(TrainConfig, {"adam_betas": [0.5]}, "train")


def test_devices():
    import torch

    from vaekit.device import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.parametrize("name,setting", [("ae", "beta=50"), ("ae", "prior_term='tc'"), ("vae", "alpha=2.0"),
                                          ("vae", "tc_estimator='mws'"), ("vae", "scale=0.5"),
                                          ("vae", "mlp_widths=[10]"), ("introvae", "steps_per_epoch=3")])
def test_settings_a_model_does_not_use_are_refused_by_name(name, setting):
    from vaekit.run import resolve_config

    with pytest.raises(ConfigError, match=setting.split("=")[0]):
        resolve_config(name, overrides=[f"model.{setting}"])


def test_settings_that_apply_are_accepted():
    from vaekit.run import resolve_config

    cfg = resolve_config("btcvae", overrides=["model.alpha=2.0", "model.tc_estimator=mws"])
    assert cfg.model.alpha == 2.0
    cfg = resolve_config("vae", overrides=["model.likelihood=gaussian", "model.scale=0.5"])
    assert cfg.model.scale == 0.5
