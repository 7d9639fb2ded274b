"""The configuration space: every registered model (and the conditional VARIANTS of conftest), and
every model as the base of each multi-stage model, on every image shape the toolkit supports, through the front door a user takes: `train_run`
(settings resolved by name, settings from the data, two steps, checkpoint, final evaluation, pictures,
report), then `load_run` + `evaluate_run` (what `vaekit evaluate` runs) at awkward image counts.
A new model joins by being registered."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from conftest import DERIVED, VARIANTS, tiny_settings
from vaekit.config import to_dict
from vaekit.errors import ConfigError
from vaekit.models import MODELS
from vaekit.models.multistage import MultiStageVAE
from vaekit.conditioning import side_information_for_samples
from vaekit.run import EvaluationOptions, evaluate_run, load_run, load_split, resolve_config, train_run

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (1, 64, 64)]
EVAL_BATCH = 4
COUNTS = (1, 3, EVAL_BATCH + 1)  # one image, a few, a batch plus one
MULTISTAGE = [n for n, e in MODELS.items() if e.model_class is MultiStageVAE]
SINGLE = [n for n, e in MODELS.items() if e.model_class is not MultiStageVAE]


def _refusal(multistage: str, base: str) -> str | None:
    """Why `multistage` cannot build on `base`, from what the base declares: refine stages build on a decoded
    image of the base's own loss pass (`refinable`); a 'likelihood' refine loss needs the base's p(x|z)."""
    from vaekit.models import build_model, model_config

    declared = build_model(base, model_config(base, tiny_settings(base)), (1, 8, 8)).capabilities
    if not declared.refinable:
        return "refine stages"
    if any(s.loss == "likelihood" for s in MODELS[multistage].preset.stages) and not declared.likelihood:
        return "needs a base with a likelihood"
    return None


CASES = [(name, None, {}) for name in MODELS] + [(name, None, over) for name, over in VARIANTS.values()] \
    + [(ms, base, {}) for ms in MULTISTAGE for base in SINGLE]


@pytest.fixture(scope="module")
def image_roots(tmp_path_factory):
    """An image folder per shape: train/ 24 and test/ 9 smooth random images (PNG) in two class folders."""
    from conftest import blob_images

    roots = {}
    for c, h, w in SHAPES:
        root = tmp_path_factory.mktemp(f"images{c}x{h}")
        for split, n, seed in (("train", 24, 0), ("test", 9, 1)):
            for label in ("a", "b"):
                (root / split / label).mkdir(parents=True)
            images = blob_images(n, h, c, seed)
            for i, img in enumerate(images):
                array = img.permute(1, 2, 0).squeeze(-1).numpy()
                Image.fromarray(array, "L" if c == 1 else "RGB").save(root / split / "ab"[i % 2] / f"{i:03d}.png")
        roots[(c, h, w)] = root
    return roots


def _settings(name: str, base: str | None, over: dict | None = None) -> dict:
    if base is None:
        return tiny_settings(name, over)
    settings = tiny_settings(name)
    base_tiny = {k: v for k, v in tiny_settings(base).items() if k not in DERIVED}
    return {**settings, "base": base, "base_settings": base_tiny}


def _config(name, base, shape, root, over=None):
    model = {k: v for k, v in _settings(name, base, over).items()}
    for derived in DERIVED:  # the run fills what the model takes from the data
        model.pop(derived, None)
    tree = {"model": model,
            "data": {"name": "image-folder", "root": str(root), "size": shape[1], "channels": shape[0]},
            "train": {"steps": 2, "batch_size": 4, "eval_every": 0, "checkpoint_every": 2, "log_every": 1}}
    return resolve_config(name, base={"model": tree["model"], "data": tree["data"], "train": tree["train"]})


def _finite_numbers(result: dict) -> dict:
    return {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name,base,over", CASES, ids=lambda v: str(v))
def test_every_model_trains_evaluates_and_reloads_on_every_shape(name, base, over, shape, image_roots, tmp_path):
    refusal = None if base is None else _refusal(name, base)
    if refusal:  # declared, not discovered at run time: refused by name
        with pytest.raises(ConfigError, match=refusal):
            train_run(_config(name, base, shape, image_roots[shape]), tmp_path / "run", progress=False)
        assert not (tmp_path / "run").exists()
        return
    cfg = _config(name, base, shape, image_roots[shape], over)
    out = tmp_path / "run"
    result = train_run(cfg, out, progress=False, final_iw_samples=2, final_iw_images=3)
    for key in ("report.md", "evaluation.json", "config.json", "samples.png", "reconstructions.png"):
        assert (out / key).exists(), key
    assert result["images"] == 9 and result["step"] == 2

    # save -> load: the final evaluation again, with the same options, on the reloaded model is identical
    saved_cfg, model, _ = load_run(out)
    train, test = load_split(saved_cfg, "train"), load_split(saved_cfg, "test")
    again = evaluate_run(model, train, test, EvaluationOptions(iw_samples=2, iw_images=3, seed=cfg.train.seed,
                                                               samples=0, progress=False))
    for key, value in _finite_numbers(again).items():
        assert value == result[key], key
    assert set(_finite_numbers(again)) <= set(result)
    torch.manual_seed(0)
    y = side_information_for_samples(model, test, 0, 3)
    z = model.prior_sample(3, y)
    _, other, _ = load_run(out)
    torch.testing.assert_close(model.decode(z, y), other.decode(z, y), rtol=0, atol=0)
    caps = model.capabilities
    if caps.output == "canvas":  # DRAW: the canvas over time
        assert (out / "canvas" / "samples.gif").exists() and (out / "canvas" / "reconstruction-0.png").exists()
    if caps.label_conditional:
        assert (out / "classes.png").exists() and (out / "style_transfer.png").exists()
    elif caps.image_conditional:  # a multi-stage model on a conditional base completes as its base does
        keep = caps.default_completion
        assert (out / "completions.png").exists() and f"completion/{keep}/mse" in result
        if caps.likelihood:
            assert f"completion/{keep}/nll" in result

    # awkward image counts through vaekit evaluate's path, sample quality included
    for count in COUNTS:
        options = EvaluationOptions(iw_samples=3, iw_images=None, images=count, batch_size=EVAL_BATCH,
                                    samples=4, pairs=3, disentanglement="off", progress=False)
        metrics = evaluate_run(model, train, test, options)
        assert metrics["images"] == count
        for key, value in _finite_numbers(metrics).items():
            assert math.isfinite(value), (count, key)
        assert "test/recon" in metrics and "test/ssim" in metrics and "samples/ms_ssim" in metrics
        if caps.bound is not None:
            assert metrics["iwae_images"] == count and metrics["iwae_of"] == caps.bound


def test_the_run_fills_data_settings_of_a_multistage_base(tmp_path, image_roots):
    """msvae on a btcvae base: N of its estimators comes from the data, inside base_settings."""
    shape = (1, 8, 8)
    cfg = _config("msvae", "btcvae", shape, image_roots[shape])
    train_run(cfg, tmp_path / "run", progress=False, final_iw_samples=1, final_iw_images=1)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["base_settings"]["dataset_size"] == 24
    assert to_dict(cfg.model)["base_settings"].get("dataset_size") is None
