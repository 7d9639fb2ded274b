"""data.binarize: thresholded, dynamically or fixed binarised images, a fixed binarised test split, and
training runs on them (one resumes to the same weights)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from conftest import blob_images
from vaekit.cli.main import main
from vaekit.data import ImageDataset
from vaekit.config import DataConfig
from vaekit.data.binarize import FIXED_SEED, SPLIT_SEED, binarized
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


def _sha(images: torch.Tensor) -> str:
    return hashlib.sha256(images.numpy().tobytes()).hexdigest()[:16]


def test_fixed_binarisation_of_every_split():
    grey = {split: _data(split) for split in ("train", "test")}  # the same grey images in both splits
    fixed = {split: binarized(grey[split], "fixed", split) for split in grey}
    for split, data in fixed.items():
        assert data.name == "blobs+fixed" and type(data) is type(grey[split])  # drawn once, not per read
        assert set(data.images.unique().tolist()) <= {0, 255} and data.images.dtype == torch.uint8
        assert torch.equal(data.images, binarized(_data(split), "fixed", split).images)  # same bits every load
        assert torch.equal(data.batch(torch.arange(64)), data.batch(torch.arange(64)))
        assert not torch.equal(data.images, binarized(grey[split], "threshold", split).images)
        assert abs(data.images.float().mean() - grey[split].images.float().mean()) / 255 < 0.02  # E[x] = grey
        assert torch.equal(data.labels, grey[split].labels)
        assert "Larochelle" in data.source and data.source.startswith("memory")
    assert (fixed["train"].images != fixed["test"].images).float().mean() > 0.05  # the splits' draws differ
    # the test split is the very one `dynamic` scores, so test numbers of both modes are on the same images
    assert torch.equal(fixed["test"].images, binarized(grey["test"], "dynamic", "test").images)
    assert SPLIT_SEED == {"test": FIXED_SEED, "train": FIXED_SEED + 1} and FIXED_SEED == 0
    # stored bits at seed 0 (torch's CPU generator): a change of generator or recipe shows here
    assert (_sha(fixed["train"].images), _sha(fixed["test"].images)) == ("c0b45a67f742d326", "a7d8c337fabc6751")
    assert DataConfig(binarize="fixed").binarize == "fixed"
    with pytest.raises(ConfigError, match="fixed"):
        DataConfig(binarize="static")


def test_a_run_on_fixed_binarised_digits_says_whose_binarisation_it_is(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "vae", "--data", "digits", "--set", "data.binarize=fixed", "--set", "model.latent_dim=4",
                 "--set", "model.base_channels=4", "--set", "model.max_channels=8", "--batch-size", "32",
                 "--set", "train.eval_every=0", "--set", "train.processes=1", "--iw-samples", "2", "--steps", "2",
                 "--out", str(out), "--quiet"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["data"]["binarize"] == "fixed" and "Larochelle" in saved["data_source"]
    assert "NOT Larochelle" in (out / "report.md").read_text()  # beside every number of the report


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
