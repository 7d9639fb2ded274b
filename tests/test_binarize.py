"""data.binarize: thresholded or dynamically binarised images, a fixed binarised test split, and a
training run on them that resumes to the same weights."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import blob_images
from vaekit.cli.main import main
from vaekit.data import ImageDataset
from vaekit.data.binarize import binarized
from vaekit.errors import ConfigError
from vaekit.train.checkpoint import latest_checkpoint, read_safetensors


def _data(split="train"):
    return ImageDataset("blobs", split, blob_images(64, 8, 1, 0), torch.arange(64) % 4, list("abcd"), "memory")


def test_threshold_and_dynamic_binarisation():
    grey = _data()
    idx = torch.arange(64)
    t = binarized(grey, "threshold", "train")
    assert t.name == "blobs+threshold" and set(t.batch(idx).unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(t.batch(idx), (grey.batch(idx) >= 128 / 255).float())
    d = binarized(grey, "dynamic", "train")
    torch.manual_seed(0)
    a, b = d.batch(idx), d.batch(idx)
    assert set(a.unique().tolist()) <= {0.0, 1.0} and not torch.equal(a, b)  # drawn afresh on every read
    draws = torch.stack([d.batch(idx) for _ in range(200)]).mean(0)
    assert (draws - grey.batch(idx)).abs().mean() < 0.03  # x ~ Bernoulli(grey level)
    fixed = binarized(_data("test"), "dynamic", "test")
    assert torch.equal(fixed.batch(idx), fixed.batch(idx))
    assert torch.equal(fixed.batch(idx), binarized(_data("test"), "dynamic", "test").batch(idx))  # the same every load
    assert binarized(grey, "none", "train") is grey
    with pytest.raises(ConfigError, match="data.binarize"):
        binarized(grey, "sometimes", "train")


def test_a_run_on_dynamically_binarised_digits_resumes_to_the_same_weights(tmp_path, capsys):
    common = ["--data", "digits", "--set", "data.binarize=dynamic", "--set", "model.latent_dim=4",
              "--set", "model.base_channels=4", "--set", "model.max_channels=8", "--batch-size", "32",
              "--set", "train.eval_every=0", "--set", "train.checkpoint_every=2", "--quiet"]
    assert main(["train", "vae", *common, "--steps", "4", "--out", str(tmp_path / "straight")]) == 0
    assert main(["train", "vae", *common, "--steps", "2", "--out", str(tmp_path / "halves")]) == 0
    assert main(["train", "vae", *common, "--steps", "4", "--out", str(tmp_path / "halves"), "--resume"]) == 0
    a = read_safetensors(latest_checkpoint(tmp_path / "straight") / "model.safetensors")
    b = read_safetensors(latest_checkpoint(tmp_path / "halves") / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    saved = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert saved["data"]["binarize"] == "dynamic"
    assert main(["train", "vae", "--data", "dsprites", "--set", "data.binarize=threshold", "--steps", "1",
                 "--out", str(tmp_path / "d"), "--quiet"]) == 2
    assert "renders its own" in capsys.readouterr().err and not (tmp_path / "d").exists()
