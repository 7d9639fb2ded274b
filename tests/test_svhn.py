"""SVHN from the user's own Format 2 .mat files: written here with scipy.io.savemat, read back."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from vaekit.cli.main import main
from vaekit.data import clear_cache, describe_datasets, load_dataset
from vaekit.errors import DataError


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    clear_cache()
    yield
    clear_cache()


def svhn_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """X uint8 (32, 32, 3, n) and y (n, 1) float64 labels 1-10, as in the real files; 10 is always there."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = rng.integers(1, 11, (n, 1)).astype(np.float64)
    y[0, 0] = 10
    return x, y


def write_svhn(folder: Path, n_train: int = 20, n_test: int = 8, **compression) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train": svhn_arrays(n_train, 0), "test": svhn_arrays(n_test, 1)}
    for split, (x, y) in arrays.items():
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y}, **compression)
    return arrays


def one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("compressed", [False, True])
def test_reads_train_and_test(tmp_path, compressed):
    arrays = write_svhn(tmp_path, do_compression=compressed)
    for split, n in (("train", 20), ("test", 8)):
        x, y = arrays[split]
        ds = load_dataset("svhn", split, root=str(tmp_path))
        assert ds.name == "svhn" and ds.split == split and len(ds) == n
        assert ds.images.shape == (n, 3, 32, 32) and ds.images.dtype == torch.uint8
        assert ds.images.is_contiguous()
        assert ds.labels.dtype == torch.int64 and ds.labels.shape == (n,)
        assert ds.classes == [str(d) for d in range(10)]
        assert ds.source == str(tmp_path / f"{split}_32x32.mat")
        expected = y[:, 0].astype(np.int64)
        expected[expected == 10] = 0
        assert ds.labels.tolist() == expected.tolist() and ds.labels[0] == 0
        assert set(ds.labels.tolist()) <= set(range(10))
        # X[h, w, c, n] -> images[n, c, h, w], at a position where h != w and every axis differs
        assert ds.images[3, 2, 5, 17] == x[5, 17, 2, 3]
        assert torch.equal(ds.images, torch.from_numpy(x).permute(3, 2, 0, 1))


def test_size_and_channels(tmp_path):
    write_svhn(tmp_path)
    ds = load_dataset("svhn", "train", root=str(tmp_path), size=16, channels=1)
    assert ds.images.shape == (20, 1, 16, 16) and ds.images.dtype == torch.uint8
    assert load_dataset("svhn", "test", root=str(tmp_path), size=16).images.shape == (8, 3, 16, 16)
    assert load_dataset("svhn", "test", root=str(tmp_path), channels=1).images.shape == (8, 1, 32, 32)


def test_vaekit_data_lookup_and_listing(tmp_path, monkeypatch):
    write_svhn(tmp_path / "svhn")
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path))
    ds = load_dataset("svhn", "test")
    assert len(ds) == 8 and ds.source == str(tmp_path / "svhn" / "test_32x32.mat")
    row = next(r for r in describe_datasets() if r["name"] == "svhn")
    assert row["available"] and row["location"] == str(tmp_path / "svhn")


def test_missing_files_say_where_and_how(tmp_path, monkeypatch):
    with pytest.raises(DataError) as e:
        load_dataset("svhn")
    message = one_line(e)
    assert "VAEKIT_DATA is not set" in message and "ufldl.stanford.edu/housenumbers" in message
    assert "train_32x32.mat" in message

    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path))
    with pytest.raises(DataError) as e:
        load_dataset("svhn")
    assert str(tmp_path / "svhn") in one_line(e)
    row = next(r for r in describe_datasets() if r["name"] == "svhn")
    assert not row["available"] and "ufldl.stanford.edu/housenumbers" in row["note"]

    x, y = svhn_arrays(4, 0)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": x, "y": y})
    with pytest.raises(DataError) as e:  # the test file alone: train is missing
        load_dataset("svhn", "train", root=str(tmp_path))
    message = one_line(e)
    assert str(tmp_path) in message and "train_32x32.mat" in message


def refused(tmp_path, split="train") -> str:
    with pytest.raises(DataError) as e:
        load_dataset("svhn", split, root=str(tmp_path))
    message = one_line(e)
    assert str(tmp_path / f"{split}_32x32.mat") in message
    return message


@pytest.mark.parametrize("content", [b"", b"MATLAB", b"not a mat file at all\n" * 20, b"\0" * 3])
def test_garbage_file(tmp_path, content):
    (tmp_path / "train_32x32.mat").write_bytes(content)
    refused(tmp_path)


@pytest.mark.parametrize("compressed", [False, True])
def test_truncated_file(tmp_path, compressed):
    write_svhn(tmp_path, do_compression=compressed)
    path = tmp_path / "train_32x32.mat"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    refused(tmp_path)


def test_v73_file(tmp_path):
    write_svhn(tmp_path)
    path = tmp_path / "train_32x32.mat"
    header = bytearray(path.read_bytes()[:128])
    header[124:126] = b"\x00\x02"  # the version MATLAB writes for -v7.3 (HDF5) files
    path.write_bytes(bytes(header) + b"\0" * 512)
    assert "v7.3 (HDF5) files are not supported" in refused(tmp_path)


def test_corrupt_type_code_is_refused_not_a_crash(tmp_path):
    """scipy indexes a table with a numeric element's type code unchecked: loadmat would segfault on
    this file. Read in a child process, so that a regression fails this test, not the whole run."""
    write_svhn(tmp_path)
    path = tmp_path / "train_32x32.mat"
    data = bytearray(path.read_bytes())
    # X is the first variable: its tag (8), flags (16), dims (8 + 16), name "X" (8, small element),
    # then the data tag at 128 + 56, whose type code (2, uint8) gets a high byte.
    assert data[128 + 56] == 2
    data[128 + 57] = 0x75
    path.write_bytes(bytes(data))
    code = ("import sys; from vaekit.data.svhn import read_svhn_mat; from vaekit.errors import DataError\n"
            "try: read_svhn_mat(__import__('pathlib').Path(sys.argv[1]), 'train')\n"
            "except DataError as e: print(e)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-500:]}"
    assert str(path) in proc.stdout and "unknown type code" in proc.stdout


@pytest.mark.parametrize("variables, needle", [
    ({"y": np.ones((4, 1))}, "no X"),
    ({"X": np.zeros((32, 32, 3, 4), np.uint8)}, "no y"),
    ({"X": np.zeros((32, 32, 3, 4), np.float64), "y": np.ones((4, 1))}, "uint8"),
    ({"X": np.zeros((28, 28, 1, 4), np.uint8), "y": np.ones((4, 1))}, "32x32x3xN"),
    ({"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.ones((5, 1))}, "4 images"),
    ({"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.array([[1], [0], [3], [4]])}, "label 0 at position 1"),
    ({"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.array([[1], [11], [3], [4]])}, "label 11"),
    ({"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.array([[1], [2.5], [3], [4]])}, "label 2.5"),
    ({"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.array([[1], [np.nan], [3], [4]])}, "label nan"),
    ({"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.array(["abcd"])}, "numeric labels"),
    ({"X": np.zeros((32, 32, 3, 4), np.uint8), "y": {"a": 1}}, "struct"),
    ({"X": np.zeros((32, 32, 3, 0), np.uint8), "y": np.ones((0, 1))}, "no images"),
])
def test_bad_contents(tmp_path, variables, needle):
    scipy.io.savemat(tmp_path / "train_32x32.mat", variables)
    assert needle in refused(tmp_path)


def test_a_folder_in_place_of_the_file(tmp_path):
    (tmp_path / "train_32x32.mat").mkdir()
    assert "is a folder" in refused(tmp_path)


def test_cli_lists_svhn(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "svhn" in out and "73,257 train / 26,032 test" in out


def test_cli_trains_on_svhn(tmp_path, capsys):
    write_svhn(tmp_path)
    code = main(["train", "vae", "--data", "svhn", "--set", f"data.root={tmp_path}", "--steps", "2",
                 "--batch-size", "4", "--out", str(tmp_path / "run"), "--quiet", "--iw-samples", "0",
                 "--set", "model.latent_dim=4", "--set", "model.base_channels=4", "--set", "model.max_channels=8",
                 "--set", "train.eval_every=0", "--set", "train.eval_images=8", "--set", "train.final_eval_images=8"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "config.json").is_file()
