"""Bad input, as a hostile user gives it: broken data files (IDX headers, bodies, labels, gzip; image
folders with corrupt, mixed-size or non-image files), impossible settings of every type, malformed
`--set` and TOML, absent devices, and damaged run folders.

Each is refused with exit code 2 and exactly one line on stderr, `vaekit: error: ...`, that names what
to change; never a traceback. A refused `train` leaves no new run folder behind, and never changes a
byte of an existing run (`.lock`, the pid of the last process to lock the folder, aside).

Run-folder cases damage copies of runs with a single checkpoint (checkpoint_every = steps,
keep_checkpoints = 1): with no older valid checkpoint to fall back to, exit 2 is the right answer.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit.cli.main import main
from vaekit.data import load_dataset

TINY = ["--set", "model.latent_dim=2", "--set", "model.base_channels=4", "--set", "model.max_channels=8",
        "--steps", "2", "--set", "train.eval_every=0", "--set", "train.checkpoint_every=2",
        "--set", "train.keep_checkpoints=1", "--iw-samples", "2", "--quiet"]
DIGITS = ["--data", "digits", *TINY]
HAVE_CUDA = torch.cuda.is_available()
SRC = Path(__file__).parents[1] / "src"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code, err, *needles):
    """Exit 2, one line `vaekit: error: ...` containing every needle, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit code {code}, stderr: {err!r}"
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err!r}"
    assert lines[0].startswith("vaekit: error: "), lines[0]
    for needle in needles:
        assert str(needle) in lines[0], f"{needle!r} not in {lines[0]!r}"


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (and the list of folders), `.lock`'s pid aside."""
    digest = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_dir():
            digest[rel + "/"] = "dir"
        elif p.name != ".lock":
            digest[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return digest


def refused_train(capsys, tmp_path, *argv, needles=()):
    out = tmp_path / "never"
    code, _, err = run(capsys, "train", *argv, "--out", out)
    assert_refused(code, err, *needles)
    assert not out.exists(), "a refused train left a run folder"


# ================================================================== settings


SETTINGS = [
    # every type given the wrong kind of value
    (["--set", "train.steps=abc"], ["train.steps", "integer"]),  # int given a string
    (["--set", "train.steps=2.5"], ["train.steps", "integer"]),
    (["--set", "train.steps=inf"], ["train.steps", "integer"]),  # int given inf (was an OverflowError)
    (["--set", "train.steps=nan"], ["train.steps", "integer"]),
    (["--set", "train.steps=1e30"], ["train.steps"]),  # beyond 64 bits
    (["--set", "train.lr=[1, 2]"], ["train.lr", "number"]),  # float given a list
    (["--set", "train.lr=nan"], ["train.lr", "finite"]),
    (["--set", "train.lr=inf"], ["train.lr", "finite"]),  # trained into a NaN loss before
    (["--lr", "inf"], ["train.lr", "finite"]),
    (["--set", "train.lr="], ["train.lr"]),  # empty value
    (["--set", "train.lr=1\nsteps = 3"], ["train.lr"]),  # a second TOML line smuggled into a value
    (["--set", "model.beta=nan"], ["model.beta", "finite"]),
    (["--set", "model.beta=1e400"], ["model.beta", "finite"]),  # TOML reads it as inf
    (["--set", "train.grad_clip=inf"], ["train.grad_clip", "finite"]),
    (["--set", "train.explode_factor=inf"], ["train.explode_factor", "finite"]),
    (["--set", "train.group_lr={loss = inf}"], ["group_lr", "finite"]),
    (["--set", "train.group_lr={loss = true}"], ["group_lr"]),
    (["--set", "train.adam_betas=[0.9, nan]"], ["train.adam_betas"]),
    (["--set", "train.group_adam_betas={loss = [0.9, 1.5]}"], ["train.group_adam_betas"]),
    (["--set", "model.learn_scale=yes"], ["model.learn_scale", "true or false"]),  # bool given "yes"
    (["--set", "model.learn_scale=1"], ["model.learn_scale", "true or false"]),
    (["--set", "train.adam_betas=[0.9]"], ["train.adam_betas", "2 entries"]),  # tuple of the wrong length
    (["--set", "train.adam_betas=0.9"], ["train.adam_betas", "list"]),
    (["--set", "train.device=5"], ["train.device", "string"]),
    (["--set", "train.group_lr=3"], ["train.group_lr", "table"]),
    # counts that are zero or negative, and other impossible values
    (["--batch-size", "0"], ["train.batch_size", ">= 1"]),
    (["--steps", "-1"], ["train.steps", ">= 1"]),
    (["--epochs", "0"], ["train.epochs", "> 0"]),
    (["--epochs", "inf"], ["train.epochs", "finite"]),  # was an OverflowError
    (["--set", "train.keep_checkpoints=0"], ["train.keep_checkpoints"]),
    (["--set", "train.eval_every=-1"], ["train.eval_every"]),
    (["--set", "model.latent_dim=0"], ["model.latent_dim"]),
    (["--set", "train.seed=-1"], ["train.seed"]),
    (["--set", "train.seed=100000000000000000"], ["train.seed"]),  # overflowed torch's seed
    (["--set", "train.precision=fp16"], ["train.precision"]),
    (["--set", "train.batch_size=100000"], ["batch_size", "1442"]),
    (["--set", "data.size=7"], ["data.size"]),
    (["--set", "data.channels=2"], ["data.channels"]),
    (["--set", "data.root="], ["data.root"]),  # '' was the current folder
    (["--set", "data.name="], ["data.name"]),
    # unknown names and malformed --set
    (["--set", "train.nope=1"], ["unknown setting train.nope"]),
    (["--set", "model.betta=2"], ["model.betta"]),
    (["--set", "optim.lr=1"], ["unknown section", "optim"]),
    (["--set", "trainlr"], ["section.key=value"]),  # no '='
    (["--set", "a.b.c=1"], ["section.key"]),
    (["--set", "model.=3"], ["section.key"]),
    (["--set", "=3"], ["section.key"]),
    (["--set", "model_name.x=vae"], ["unknown section"]),
    # devices
    (["--device", "tpu"], ["tpu", "cpu, cuda"]),
    (["--device", "cpu:1"], ["cpu:1"]),
    (["--device", "meta"], ["meta"]),
    pytest.param(["--device", "cuda"], ["cuda", "cpu"],
                 marks=pytest.mark.skipif(HAVE_CUDA, reason="this machine has CUDA")),
    pytest.param(["--device", "mps"], ["mps", "cpu"],
                 marks=pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")),
    # data names
    (["--data", "nosuchdata"], ["unknown dataset", "nosuchdata", "digits"]),
    (["--data", "idx"], ["data.root"]),
    (["--data", "image-folder", "--set", "data.root=/nonexistent/images"], ["/nonexistent/images"]),
]


@pytest.mark.parametrize("extra, needles", SETTINGS)
def test_bad_setting_is_refused_before_any_run_folder(extra, needles, capsys, tmp_path):
    refused_train(capsys, tmp_path, "vae", *DIGITS, *extra, needles=needles)


def test_unknown_model_name(capsys, tmp_path):
    refused_train(capsys, tmp_path, "transformer", *DIGITS, needles=["unknown model", "transformer", "vae"])


def _toml_cases():
    """name -> (file content, needles); FILE stands for the file's path (file-level faults name it)."""
    return {
        "syntax_error": (b"[train\nsteps = 3\n", [FILE, "not valid TOML"]),
        "non_table_section": (b"model = 3\n", [FILE, "model must be a table"]),
        "array_of_tables": (b"[[train]]\nsteps = 3\n", [FILE, "train must be a table"]),
        "binary_garbage": (bytes(range(256)) * 4, [FILE, "not valid TOML"]),
        "utf16_text": ("[train]\nsteps = 3\n".encode("utf-16"), [FILE, "not valid TOML"]),
        "unknown_section": (b"[optimizer]\nlr = 1\n", [FILE, "unknown section [optimizer]"]),
        "model_name_not_a_string": (b"model_name = 5\n", [FILE, "model_name"]),
        "another_model": (b'model_name = "vaegan"\n', [FILE, "another model"]),
        "bad_value": (b'[train]\nlr = "fast"\n', ["train.lr"]),
        "nan_value": (b"[model]\nbeta = nan\n", ["model.beta", "finite"]),
        "unknown_key": (b"[data]\nsize_px = 32\n", ["data.size_px"]),
    }


FILE = object()


@pytest.mark.parametrize("case", sorted(_toml_cases()))
def test_bad_config_file(case, capsys, tmp_path):
    content, needles = _toml_cases()[case]
    f = tmp_path / "c.toml"
    f.write_bytes(content)
    refused_train(capsys, tmp_path, "vae", *DIGITS, "--config", f, needles=[f if n is FILE else n for n in needles])


def test_config_file_that_is_missing_or_a_folder(capsys, tmp_path):
    refused_train(capsys, tmp_path, "vae", *DIGITS, "--config", tmp_path / "nope.toml", needles=["not found"])
    folder = tmp_path / "conf.toml"
    folder.mkdir()
    refused_train(capsys, tmp_path, "vae", *DIGITS, "--config", folder, needles=[folder, "folder"])


def test_argument_of_the_wrong_type_is_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["train", "vae", "--data", "digits", "--steps", "abc", "--out", str(tmp_path / "never")])
    _, err = capsys.readouterr()
    assert_refused(e.value.code, err, "--steps")


# ================================================================== IDX files


def idx_bytes(array: np.ndarray, magic: int, dims=None) -> bytes:
    dims = array.shape if dims is None else dims
    return magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in dims) + \
        array.astype(np.uint8).tobytes()


def write_idx_folder(folder: Path, *, n_train=24, n_test=12, size=8, classes=10) -> dict[str, Path]:
    """A valid IDX folder (plain files); returns {"train-images": path, ...}."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, size, size))
        labels = np.arange(n) % classes
        paths[f"{split}-images"] = folder / f"{prefix}-images-idx3-ubyte"
        paths[f"{split}-labels"] = folder / f"{prefix}-labels-idx1-ubyte"
        paths[f"{split}-images"].write_bytes(idx_bytes(images, 0x803))
        paths[f"{split}-labels"].write_bytes(idx_bytes(labels, 0x801))
    return paths


def _gzipped(path: Path) -> Path:
    gz = path.with_name(path.name + ".gz")
    gz.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    return gz


def _idx_damage():
    """name -> damage(paths) returning (the file the message must name, other needles)."""
    rng = np.random.default_rng(1)

    def wrong_magic(p):
        p["train-images"].write_bytes(b"\x12\x34\x56\x78" + p["train-images"].read_bytes()[4:])
        return p["train-images"], ["not an IDX file"]

    def wrong_dtype(p):  # 0x0D: float32, not unsigned byte
        p["train-images"].write_bytes(b"\x00\x00\x0d\x03" + p["train-images"].read_bytes()[4:])
        return p["train-images"], ["unsigned byte"]

    def wrong_ndim(p):
        p["train-labels"].write_bytes(b"\x00\x00\x08\x03" + p["train-labels"].read_bytes()[4:])
        return p["train-labels"], ["dimension"]

    def body_too_short(p):
        p["train-images"].write_bytes(p["train-images"].read_bytes()[:-5])
        return p["train-images"], ["truncated"]

    def body_too_long(p):
        p["test-images"].write_bytes(p["test-images"].read_bytes() + b"junk")
        return p["test-images"], ["trailing"]

    def dims_too_many(p):  # header says 25 images, the body holds 24
        data = p["train-images"].read_bytes()
        p["train-images"].write_bytes(data[:4] + (25).to_bytes(4, "big") + data[8:])
        return p["train-images"], ["truncated", "25x8x8"]

    def forged_huge_dims(p):  # (2^32-1)^3 bytes: must not wrap around a 64-bit product
        p["train-images"].write_bytes(idx_bytes(np.zeros(0), 0x803, (2**32 - 1,) * 3))
        return p["train-images"], ["truncated", str((2**32 - 1) ** 3)]

    def zero_images(p):
        p["train-images"].write_bytes(idx_bytes(np.zeros((0, 8, 8)), 0x803))
        p["train-labels"].write_bytes(idx_bytes(np.zeros(0), 0x801))
        return p["train-images"], ["no images"]

    def zero_height(p):
        p["train-images"].write_bytes(idx_bytes(np.zeros((24, 0, 8)), 0x803))
        return p["train-images"], ["0x8"]

    def header_cut(p):
        p["test-images"].write_bytes(p["test-images"].read_bytes()[:9])
        return p["test-images"], ["truncated"]

    def empty_file(p):
        p["train-images"].write_bytes(b"")
        return p["train-images"], ["0 bytes"]

    def label_count(p):
        p["train-labels"].write_bytes(idx_bytes(np.zeros(23), 0x801))
        return p["train-labels"], ["23 labels", "24 images"]

    def test_label_beyond_train(p):  # a class the feature network (trained on train labels) cannot score
        p["test-labels"].write_bytes(idx_bytes(np.full(12, 200), 0x801))
        return p["test-labels"], ["200", "0-9"]

    def splits_of_two_sizes(p):
        p["test-images"].write_bytes(idx_bytes(rng.integers(0, 256, (12, 10, 10)), 0x803))
        return p["train-images"], ["10x10", "data.size"]

    def corrupt_gzip(p):
        gz = _gzipped(p["train-images"])
        data = bytearray(gz.read_bytes())
        data[len(data) // 2:] = bytes(len(data) - len(data) // 2)
        gz.write_bytes(bytes(data))
        return gz, ["gzip"]

    def truncated_gzip(p):
        gz = _gzipped(p["train-labels"])
        gz.write_bytes(gz.read_bytes()[:20])
        return gz, ["gzip"]

    def gzip_of_garbage(p):
        gz = p["train-images"].with_name(p["train-images"].name + ".gz")
        p["train-images"].unlink()
        gz.write_bytes(gzip.compress(rng.integers(0, 256, 500).astype(np.uint8).tobytes()))
        return gz, ["not an IDX file"]

    def gz_name_not_gzip(p):  # named .gz, neither gzip nor IDX
        gz = p["train-images"].with_name(p["train-images"].name + ".gz")
        p["train-images"].unlink()
        gz.write_bytes(b"hello, this is a text file\n")
        return gz, ["gzip"]

    def folder_instead_of_images(p):
        p["train-images"].unlink()
        p["train-images"].mkdir()
        return p["train-images"], ["folder"]

    def folder_instead_of_labels(p):  # silently trained without labels before
        p["test-labels"].unlink()
        p["test-labels"].mkdir()
        return p["test-labels"], ["folder"]

    def no_test_split(p):
        p["test-images"].unlink()
        return p["test-images"].parent, ["t10k-images"]

    return {f.__name__: f for f in (
        wrong_magic, wrong_dtype, wrong_ndim, body_too_short, body_too_long, dims_too_many, forged_huge_dims,
        zero_images, zero_height, header_cut, empty_file, label_count, test_label_beyond_train,
        splits_of_two_sizes, corrupt_gzip, truncated_gzip, gzip_of_garbage, gz_name_not_gzip,
        folder_instead_of_images, folder_instead_of_labels, no_test_split)}


@pytest.mark.parametrize("case", sorted(_idx_damage()))
def test_bad_idx_folder(case, capsys, tmp_path):
    root = tmp_path / "idx"
    bad, needles = _idx_damage()[case](write_idx_folder(root))
    refused_train(capsys, tmp_path, "vae", "--data", "idx", "--set", f"data.root={root}", "--batch-size", "4",
                  *TINY, needles=[bad, *needles])


def test_mnist_label_out_of_range(capsys, tmp_path):
    root = tmp_path / "mnist"
    p = write_idx_folder(root)
    p["train-labels"].write_bytes(idx_bytes(np.arange(24) % 11, 0x801))  # label 10 of classes 0-9
    refused_train(capsys, tmp_path, "vae", "--data", "mnist", "--set", f"data.root={root}", "--batch-size", "4",
                  *TINY, needles=[p["train-labels"], "label 10", "0-9"])


def test_valid_idx_folders_still_load(tmp_path):
    """The controls: the undamaged folder, its .gz form, a plain file named .gz, and splits of two sizes
    brought to one by data.size all load."""
    p = write_idx_folder(tmp_path / "plain")
    assert load_dataset("idx", "train", root=str(tmp_path / "plain")).images.shape == (24, 1, 8, 8)
    p = write_idx_folder(tmp_path / "gz")
    for path in p.values():
        _gzipped(path)
    assert load_dataset("idx", "test", root=str(tmp_path / "gz")).labels.tolist() == list(np.arange(12) % 10)
    p = write_idx_folder(tmp_path / "named")
    p["train-images"].rename(p["train-images"].with_name(p["train-images"].name + ".gz"))
    assert len(load_dataset("idx", "train", root=str(tmp_path / "named"))) == 24
    p = write_idx_folder(tmp_path / "sizes")
    p["test-images"].write_bytes(idx_bytes(np.zeros((12, 10, 10)), 0x803))
    assert load_dataset("idx", "test", root=str(tmp_path / "sizes"), size=8).images.shape == (12, 1, 8, 8)


# ================================================================== image folders


def save_png(path: Path, value: int, w: int = 12, h: int = 12) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w), value, dtype=np.uint8)).save(path)
    return path


def write_image_folder(root: Path, n: int = 30, sub: str = "") -> Path:
    for i in range(n):
        save_png(root / sub / f"{i:03d}.png", i * 8)
    return root


def _folder_damage():
    """name -> damage(root) returning the needles of the message (the root is a folder of 30 images)."""

    def garbage_png(root):
        bad = root / "007.png"
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, 400).astype(np.uint8).tobytes())
        return [bad, "remove or replace"]

    def zero_byte_jpg(root):
        (root / "empty.jpg").write_bytes(b"")
        return [root / "empty.jpg"]

    def text_named_png(root):
        (root / "notes.png").write_text("this is not a picture\n")
        return [root / "notes.png"]

    def truncated_png(root):
        data = (root / "003.png").read_bytes()
        (root / "003.png").write_bytes(data[: len(data) // 2])
        return [root / "003.png"]

    def jpeg_header_then_garbage(root):
        (root / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(300))
        return [root / "x.jpg"]

    def undecodable_file_name(root):  # a name that is not UTF-8 used to crash the split hash
        os.close(os.open(os.fsencode(root) + b"/bad\xff.png", os.O_CREAT | os.O_WRONLY, 0o644))
        return ["bad", ".png"]

    def mixed_sizes(root):
        save_png(root / "big.png", 0, 20, 16)
        return [root / "big.png", "20x16", "data.size"]

    def no_images(root):
        for p in root.iterdir():
            p.unlink()
        (root / "readme.txt").write_text("no pictures here")
        (root / "sub").mkdir()
        return [root, "no PNG or JPEG"]

    def only_train_subfolder(root):  # was silently hash-split with every image of class "train"
        for p in list(root.glob("*.png")):
            (root / "train").mkdir(exist_ok=True)
            p.rename(root / "train" / p.name)
        return [root, "test"]

    def only_test_subfolder(root):
        for p in list(root.glob("*.png")):
            (root / "test").mkdir(exist_ok=True)
            p.rename(root / "test" / p.name)
        return [root, "train"]

    def empty_test_subfolder(root):
        (root / "train").mkdir()
        (root / "test").mkdir()
        for p in list(root.glob("*.png")):
            p.rename(root / "train" / p.name)
        return [root / "test", "add"]

    return {f.__name__: f for f in (
        garbage_png, zero_byte_jpg, text_named_png, truncated_png, jpeg_header_then_garbage,
        undecodable_file_name, mixed_sizes, no_images, only_train_subfolder, only_test_subfolder,
        empty_test_subfolder)}


@pytest.mark.parametrize("case", sorted(_folder_damage()))
def test_bad_image_folder(case, capsys, tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    needles = _folder_damage()[case](root)
    refused_train(capsys, tmp_path, "vae", "--data", "image-folder", "--set", f"data.root={root}",
                  "--batch-size", "4", *TINY, needles=needles)


def test_image_folder_root_that_is_a_file(capsys, tmp_path):
    f = save_png(tmp_path / "one.png", 3)
    refused_train(capsys, tmp_path, "vae", "--data", "image-folder", "--set", f"data.root={f}", *TINY,
                  needles=[f, "not a folder"])


def test_valid_image_folders_still_load(tmp_path):
    """Controls: the undamaged folder, and mixed sizes with data.size, load."""
    root = write_image_folder(tmp_path / "ok")
    train, test = load_dataset("image-folder", "train", root=str(root)), load_dataset("image-folder", "test", root=str(root))
    assert len(train) + len(test) == 30 and train.image_shape == (1, 12, 12)
    save_png(root / "big.png", 0, 20, 16)
    assert load_dataset("image-folder", "train", root=str(root), size=8).image_shape == (1, 8, 8)
    # 16-bit gray beside a colour image: scaled to 8 bits, not clipped to white
    deep = tmp_path / "deep"
    for i in range(20):
        Image.fromarray(np.full((12, 12), 257 * (100 + i), dtype=np.uint16)).save(save_png(deep / f"{i:02d}.png", 0))
    Image.new("RGB", (12, 12), (255, 0, 0)).save(deep / "red.png")
    both = [load_dataset("image-folder", s, root=str(deep)) for s in ("train", "test")]
    values = sorted(int(v) for ds in both for v in ds.images[:, 0, 0, 0])
    assert both[0].image_shape == (3, 12, 12) and values == sorted([*range(100, 120), 255])


def test_image_folder_with_a_one_image_test_split(capsys, tmp_path):
    root = write_image_folder(tmp_path / "imgs", sub="train")
    save_png(root / "test" / "only.png", 5)
    refused_train(capsys, tmp_path, "vae", "--data", "image-folder", "--set", f"data.root={root}",
                  "--batch-size", "4", *TINY, needles=[root / "test"])


def test_image_folder_of_very_elongated_images(capsys, tmp_path):
    root = tmp_path / "wide"
    for i in range(30):
        save_png(root / f"{i:03d}.png", i, 200, 8)
    refused_train(capsys, tmp_path, "vae", "--data", "image-folder", "--set", f"data.root={root}",
                  "--batch-size", "4", *TINY, needles=["8"])


# ================================================================== run folders


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny digits runs with one checkpoint each, of different latent sizes."""
    base = tmp_path_factory.mktemp("bad-input-runs")
    for name, latent in (("a", 2), ("b", 3)):
        code = main(["train", "vae", "--out", str(base / name), *DIGITS, "--set", f"model.latent_dim={latent}"])
        assert code == 0
        assert len(list((base / name / "checkpoints").glob("step-*"))) == 1
    return base


def _ckpt(run: Path) -> Path:
    (step,) = (run / "checkpoints").glob("step-*")
    return step


def _edit_config(run: Path, change) -> None:
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(change(cfg)))




def _run_damage():
    """name -> (damage(run, other_run), needles, marks)."""

    def pickle_renamed(run, other):
        (_ckpt(run) / "model.safetensors").write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))

    def torch_save_renamed(run, other):
        torch.save({"weight": torch.zeros(3)}, _ckpt(run) / "model.safetensors")

    def latest_points_nowhere(run, other):
        shutil.rmtree(_ckpt(run))
        (run / "checkpoints" / "latest.json").write_text('{"step": 2, "dir": "step-00000099"}')

    def other_models_checkpoint(run, other):  # the whole checkpoint folder, so its own records agree
        step = _ckpt(run)
        shutil.rmtree(step)
        shutil.copytree(_ckpt(other), step)

    def other_models_weights(run, other):
        shutil.copy(_ckpt(other) / "model.safetensors", _ckpt(run) / "model.safetensors")

    cases = {
        "config_corrupt_json": (lambda r, o: (r / "config.json").write_text('{"model_name": "vae", '),
                                ["config.json"], ()),
        "config_a_list": (lambda r, o: (r / "config.json").write_text("[1, 2, 3]"), ["config.json"], ()),
        "config_unknown_model": (lambda r, o: _edit_config(r, lambda c: {**c, "model_name": "gpt"}),
                                 ["unknown model", "gpt"], ()),
        "config_bad_value": (lambda r, o: _edit_config(r, lambda c: {**c, "train": {**c["train"], "lr": "x"}}),
                             ["train.lr"], ()),
        "config_binary": (lambda r, o: (r / "config.json").write_bytes(bytes(range(128, 256))), ["config.json"],
                          ()),
        "config_missing_keys": (lambda r, o: (r / "config.json").write_text('{"model_name": "vae"}'),
                                ["config.json"],
                                ()),
        "config_bad_image_shape": (lambda r, o: _edit_config(r, lambda c: {**c, "image_shape": [1, 8]}),
                                   ["image_shape"],
                                   ()),
        "config_model_not_a_table": (lambda r, o: _edit_config(r, lambda c: {**c, "model": "x"}), ["model"],
                                     ()),
        "config_model_name_not_a_string": (lambda r, o: _edit_config(r, lambda c: {**c, "model_name": 5}),
                                           ["model_name"],
                                           ()),
        "config_a_folder": (lambda r, o: ((r / "config.json").unlink(), (r / "config.json").mkdir()),
                            ["config.json"], ()),
        "config_absent": (lambda r, o: (r / "config.json").unlink(), ["config.json"], ()),
        "weights_truncated": (lambda r, o: (_ckpt(r) / "model.safetensors").write_bytes(
            (_ckpt(r) / "model.safetensors").read_bytes()[:200]), ["model.safetensors"], ()),
        "weights_tail_cut": (lambda r, o: (_ckpt(r) / "model.safetensors").write_bytes(
            (_ckpt(r) / "model.safetensors").read_bytes()[:-8]), ["model.safetensors"], ()),
        "weights_empty": (lambda r, o: (_ckpt(r) / "model.safetensors").write_bytes(b""), ["model.safetensors"], ()),
        "weights_missing": (lambda r, o: (_ckpt(r) / "model.safetensors").unlink(), ["model.safetensors"], ()),
        "pickle_renamed": (pickle_renamed, ["model.safetensors"], ()),
        "torch_save_renamed": (torch_save_renamed, ["model.safetensors"], ()),
        "state_json_corrupt": (lambda r, o: (_ckpt(r) / "state.json").write_text("{"), ["state.json"], ()),
        "other_models_checkpoint": (other_models_checkpoint, ["does not fit"], ()),
        "other_models_weights": (other_models_weights, ["model.safetensors"], ()),
        "latest_points_nowhere": (latest_points_nowhere, ["latest.json", "step-00000099"], ()),
        # (--resume of a run with no checkpoint starts it from step 0: not a refusal, see RESUMABLE)
        "no_checkpoints": (lambda r, o: shutil.rmtree(r / "checkpoints"), ["no checkpoint"], ()),
    }
    return cases


RESUMABLE = {"no_checkpoints"}  # a run that crashed before its first checkpoint: --resume starts it afresh

COMMANDS = {
    "evaluate": lambda run, tmp: ["evaluate", run, "--samples", "0", "--iw-samples", "2"],
    "sample": lambda run, tmp: ["sample", run, "-n", "2", "-o", tmp / "out.png"],
    "reconstruct": lambda run, tmp: ["reconstruct", run, "-n", "2", "-o", tmp / "out.png"],
}


@pytest.mark.parametrize("case", [pytest.param(name, marks=marks)
                                  for name, (_, _, marks) in sorted(_run_damage().items())])
def test_damaged_run_folder(case, runs, capsys, tmp_path):
    damage, needles, _ = _run_damage()[case]
    run_dir = tmp_path / "run"
    shutil.copytree(runs / "a", run_dir)
    damage(run_dir, runs / "b")
    before = tree_digest(run_dir)
    for command, argv in COMMANDS.items():
        code, _, err = run(capsys, *argv(run_dir, tmp_path))
        assert_refused(code, err, *needles)
        assert not (tmp_path / "out.png").exists(), f"{command} wrote its picture anyway"
    assert tree_digest(run_dir) == before, "reading a run folder changed it"
    if case in RESUMABLE:
        return
    # --resume of the damaged run is refused and changes nothing in it
    code, _, err = run(capsys, "train", "vae", "--out", run_dir, "--resume", "--steps", "4", "--quiet")
    assert_refused(code, err)
    assert tree_digest(run_dir) == before


@pytest.mark.parametrize("path", ["missing", "a_file"])
def test_run_path_that_is_not_a_run_folder(path, runs, capsys, tmp_path):
    target = tmp_path / "nope" if path == "missing" else runs / "a" / "config.json"
    for argv in COMMANDS.values():
        code, _, err = run(capsys, *argv(target, tmp_path))
        assert_refused(code, err, target)
    assert not (tmp_path / "out.png").exists()


@pytest.mark.skipif(HAVE_CUDA, reason="this machine has CUDA")
def test_evaluate_on_an_absent_device(runs, capsys):
    code, _, err = run(capsys, "evaluate", runs / "a", "--device", "cuda", "--samples", "0")
    assert_refused(code, err, "cuda")


# ================================================================== refused train into an existing run


EXISTING = {
    "no_resume": (["--steps", "4"], ["--resume"]),
    "already_at_step": (["--resume"], ["already at step 2"]),
    "change_model": (["--resume", "--steps", "4", "--set", "model.latent_dim=3"], ["model settings"]),
    "change_data": (["--resume", "--steps", "4", "--data", "image-folder"], ["data settings"]),
    "bad_lr": (["--resume", "--steps", "4", "--set", "train.lr=nan"], ["train.lr"]),
    "bad_batch": (["--resume", "--steps", "4", "--batch-size", "100000"], ["batch_size"]),
    "bad_seed": (["--resume", "--steps", "4", "--seed", "-5"], ["train.seed"]),
    "cpu_1": (["--resume", "--steps", "4", "--device", "cpu:1"], ["cpu:1"]),
    "other_model": (["--resume", "--steps", "4", "--model-override"], ["'vae'"]),
}


@pytest.mark.parametrize("case", sorted(EXISTING))
def test_refused_train_leaves_an_existing_run_byte_identical(case, runs, capsys, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(runs / "a", run_dir)
    before = tree_digest(run_dir)
    extra, needles = EXISTING[case]
    model = "vae"
    if "--model-override" in extra:
        extra, model = [a for a in extra if a != "--model-override"], "beta_vae"
    code, _, err = run(capsys, "train", model, "--out", run_dir, *(extra if "--resume" in extra else [*DIGITS, *extra]))
    assert_refused(code, err, *needles)
    assert tree_digest(run_dir) == before


@pytest.mark.parametrize("where", ["the_file", "under_the_file"])
def test_train_out_that_is_a_file(where, capsys, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    out = f if where == "the_file" else f / "run"
    code, _, err = run(capsys, "train", "vae", "--out", out, *DIGITS)
    assert_refused(code, err, f)
    assert f.read_text() == "mine"


# ================================================================== the real command


def _vaekit(*argv, cwd):
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "vaekit.cli.main", *map(str, argv)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=180)


def test_the_console_command_prints_one_line_and_no_traceback(runs, tmp_path):
    """Real processes: what reaches a user's terminal, warnings included: a setting, a data file, a run folder."""
    root = tmp_path / "idx"
    p = write_idx_folder(root)
    p["train-images"].write_bytes(p["train-images"].read_bytes()[:-3])
    broken = tmp_path / "run"
    shutil.copytree(runs / "a", broken)
    (_ckpt(broken) / "model.safetensors").write_bytes(b"\x80\x04garbage")
    out = tmp_path / "never"
    cases = [
        (["train", "vae", *DIGITS, "--set", "train.lr=nan", "--out", out], "train.lr"),
        (["train", "vae", "--data", "idx", "--set", f"data.root={root}", *TINY, "--out", out], "truncated"),
        (["sample", broken, "-o", tmp_path / "s.png"], "model.safetensors"),
    ]
    for argv, needle in cases:
        proc = _vaekit(*argv, cwd=tmp_path)
        assert_refused(proc.returncode, proc.stderr, needle)
        assert proc.stdout == ""
    assert not out.exists() and not (tmp_path / "s.png").exists()
