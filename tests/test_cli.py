"""The command line as a user meets it: round trips on real (bundled) data, and refusals of bad
input with one line and exit code 2, never a traceback or a half-written run."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import needs_fashion
from vaekit.cli.main import main

TINY_SETS = ["--set", "model.latent_dim=4", "--set", "model.base_channels=8", "--set", "model.max_channels=16",
             "--set", "train.batch_size=64", "--set", "train.log_every=5", "--set", "train.eval_every=10",
             "--set", "train.checkpoint_every=10", "--iw-samples", "4", "--quiet"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "d1"
    assert main(["train", "vae", "--data", "digits", "--steps", "20", "--seed", "0", "--out", str(out), *TINY_SETS]) == 0
    return out


def test_train_leaves_a_readable_run_folder(digits_run):
    names = {p.name for p in digits_run.iterdir()}
    for expected in ("config.json", "config.toml", "metrics.jsonl", "eval.jsonl", "evaluation.json", "report.md",
                     "loss_curves.png", "reconstructions.png", "samples.png", "interpolations.png", "latent_map.png",
                     "interpolations.gif", "traversals.gif", "checkpoints"):
        assert expected in names, expected
    cfg = json.loads((digits_run / "config.json").read_text())
    assert cfg["model_name"] == "vae" and cfg["data"]["name"] == "digits" and cfg["image_shape"] == [1, 8, 8]
    evaluation = json.loads((digits_run / "evaluation.json").read_text())
    assert evaluation["step"] == 20 and evaluation["images"] == 355
    assert "baseline/mean_image/ssim" in evaluation
    assert "![latent map](latent_map.png)" in (digits_run / "report.md").read_text()
    from PIL import Image

    with Image.open(digits_run / "traversals.gif") as gif:  # 9 steps forth, 7 back
        assert gif.n_frames == 16 and gif.size[1] > gif.size[0] / 4  # a row of 4 dimensions (latent_dim 4)
    assert not list(digits_run.glob("**/*.tmp"))


def test_evaluate_json_is_one_object(digits_run, capsys):
    code, out, _ = run(capsys, "evaluate", str(digits_run), "--json", "--iw-samples", "8", "--iw-images", "20")
    assert code == 0
    result = json.loads(out)
    assert result["model"] == "vae" and result["iwae_samples"] == 8 and result["iwae_images"] == 20
    assert result["test/iwae_nll"] > 0 and 0 < result["test/ssim"] <= 1


def test_evaluate_reports_sample_quality_with_its_counts(digits_run, capsys):
    code, out, err = run(capsys, "evaluate", str(digits_run), "--json", "--iw-samples", "0", "--samples", "300",
                         "--pairs", "200")
    assert code == 0
    result = json.loads(out)
    assert result["samples/count"] == 300 and result["samples/pairs"] == 200 and result["samples/test_images"] == 355
    for key in ("samples/fd", "samples/precision", "samples/recall", "samples/ms_ssim", "reference/train_fd",
                "reference/test_ms_ssim", "feature_net/test_accuracy"):
        assert key in result, key
    assert result["feature_net/test_accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert result["reference/train_fd"] < result["samples/fd"]  # real images beat a 20-step model
    code, _, err = run(capsys, "evaluate", str(digits_run), "--samples", "1")
    assert code == 2 and "--samples" in err


def test_reconstruct_and_interpolate_show_the_run_folders_images_by_default(digits_run, capsys, tmp_path):
    assert run(capsys, "reconstruct", str(digits_run), "-n", "16", "-o", str(tmp_path / "r.png"))[0] == 0
    assert (tmp_path / "r.png").read_bytes() == (digits_run / "reconstructions.png").read_bytes()
    assert run(capsys, "reconstruct", str(digits_run), "-n", "16", "--random", "-o", str(tmp_path / "q.png"))[0] == 0
    assert (tmp_path / "q.png").read_bytes() != (digits_run / "reconstructions.png").read_bytes()
    assert run(capsys, "interpolate", str(digits_run), "-o", str(tmp_path / "i.png"))[0] == 0
    assert (tmp_path / "i.png").read_bytes() == (digits_run / "interpolations.png").read_bytes()


def test_pictures(digits_run, capsys, tmp_path):
    assert run(capsys, "sample", str(digits_run), "-n", "16", "-o", str(tmp_path / "s.png"))[0] == 0
    code, out, _ = run(capsys, "reconstruct", str(digits_run), "-n", "5", "-o", str(tmp_path / "r.png"))
    assert code == 0 and "rows: input, output" in out
    assert run(capsys, "interpolate", str(digits_run), "-o", str(tmp_path / "i.png"), "--pairs", "3")[0] == 0
    sample = Image.open(tmp_path / "s.png")
    recon = Image.open(tmp_path / "r.png")
    interp = Image.open(tmp_path / "i.png")
    scale = 64 // 8  # small images are enlarged
    assert sample.size == (4 * (8 + 2) * scale + 2 * scale,) * 2
    assert recon.size == ((5 * 10 + 2) * scale, (2 * 10 + 2) * scale)
    assert interp.size == ((12 * 10 + 2) * scale, (3 * 10 + 2) * scale)


def test_sample_is_deterministic_under_seed(digits_run, capsys, tmp_path):
    for name in ("a", "b"):
        run(capsys, "sample", str(digits_run), "-n", "4", "--seed", "3", "-o", str(tmp_path / f"{name}.png"))
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_samples_as_a_folder_of_pngs_or_one_array_for_external_tools(digits_run, capsys, tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    from vaekit import importance

    monkeypatch.setattr(importance, "IMAGES_PER_CALL", 4)  # several network calls: the pieces join up in order
    code, out, err = run(capsys, "sample", str(digits_run), "-n", "10", "--format", "npz", "-o", str(tmp_path / "s.npz"))
    assert code == 0, err
    with np.load(tmp_path / "s.npz", allow_pickle=False) as f:
        images = f["images"]
    assert images.shape == (10, 8, 8, 1) and images.dtype == np.uint8 and images.max() > images.min()
    code, _, err = run(capsys, "sample", str(digits_run), "-n", "10", "--format", "folder", "-o", str(tmp_path / "s"))
    assert code == 0, err
    files = sorted((tmp_path / "s").iterdir())
    assert [f.name for f in files] == [f"sample_{i}.png" for i in range(10)]
    assert np.array_equal(np.stack([np.asarray(Image.open(f)) for f in files])[..., None], images)  # same seed
    assert not (tmp_path / "s.partial").exists()
    # refused in one line, nothing written: a folder that is not empty, an npz without its suffix
    code, _, err = run(capsys, "sample", str(digits_run), "-n", "2", "--format", "folder", "-o", str(tmp_path / "s"))
    assert code == 2 and "not an empty folder" in err
    code, _, err = run(capsys, "sample", str(digits_run), "-n", "2", "--format", "npz", "-o", str(tmp_path / "t.png"))
    assert code == 2 and ".npz" in err and not (tmp_path / "t.png").exists()


def test_reconstructions_as_one_array_with_their_inputs_and_positions(digits_run, capsys, tmp_path):
    import numpy as np

    from vaekit.run import load_run, load_split

    code, _, err = run(capsys, "reconstruct", str(digits_run), "-n", "20", "--format", "npz", "-o", str(tmp_path / "r.npz"))
    assert code == 0, err
    with np.load(tmp_path / "r.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    assert set(arrays) == {"reconstructions", "images", "positions", "labels"}
    assert arrays["reconstructions"].shape == arrays["images"].shape == (20, 8, 8, 1)
    cfg, model, _ = load_run(digits_run)
    test = load_split(cfg, "test")
    positions = torch.from_numpy(arrays["positions"])
    assert np.array_equal(arrays["labels"], test.labels[positions].numpy())
    with torch.no_grad():
        expected = (model.reconstruct(test.batch(positions)).clamp(0, 1) * 255).round().to(torch.uint8)
    assert np.abs(arrays["reconstructions"][..., 0].astype(int) - expected[:, 0].numpy().astype(int)).max() <= 1


def test_encode_writes_the_posterior_of_a_split_with_its_labels(digits_run, capsys, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from vaekit.run import load_run, load_split

    code, out, err = run(capsys, "encode", str(digits_run), "--images", "30", "-o", str(tmp_path / "c.safetensors"))
    assert code == 0, err
    codes = load_file(str(tmp_path / "c.safetensors"))
    assert set(codes) == {"mu", "logvar", "positions", "labels"}
    assert codes["mu"].shape == codes["logvar"].shape == (30, 4)
    cfg, model, _ = load_run(digits_run)
    test = load_split(cfg, "test")
    assert torch.equal(codes["labels"], test.labels[codes["positions"]])
    assert len(set(codes["positions"].tolist())) == 30 and codes["positions"].max() > 30  # a uniform sample
    with torch.no_grad():
        q = model.eval().encode(test.batch(codes["positions"]))
    torch.testing.assert_close(codes["mu"], q.mu, rtol=1e-4, atol=1e-5)
    with safe_open(str(tmp_path / "c.safetensors"), "pt") as f:
        assert f.metadata()["split"] == "test" and f.metadata()["model"] == "vae"
    code, _, err = run(capsys, "encode", str(digits_run), "-o", str(tmp_path / "c.pt"))
    assert code == 2 and ".safetensors" in err


def test_an_exported_model_loads_without_its_run_folder(digits_run, capsys, tmp_path):
    import shutil

    import vaekit

    run_copy = tmp_path / "run"
    shutil.copytree(digits_run, run_copy)
    code, out, err = run(capsys, "export", str(run_copy), "-o", str(tmp_path / "exported"))
    assert code == 0, err
    assert {p.name for p in (tmp_path / "exported").iterdir()} == {"config.json", "model.safetensors",
                                                                    "evaluation.json", "README.md"}
    card = (tmp_path / "exported" / "README.md").read_text()
    assert "test SSIM" in card and "vaekit.load" in card
    from_run = vaekit.load(run_copy)
    shutil.rmtree(run_copy)  # the export stands alone
    model = vaekit.load(tmp_path / "exported")
    assert not model.training and model.facts["image_shape"] == [1, 8, 8] and model.run_config.model_name == "vae"
    z = torch.randn(3, 4)
    with torch.no_grad():
        assert torch.equal(model.decode(z), from_run.decode(z))
        assert model.sample(2).shape == (2, 1, 8, 8)
    code, _, err = run(capsys, "export", str(digits_run), "-o", str(tmp_path / "exported"))
    assert code == 2 and "not an empty folder" in err


def test_resume_continues_to_the_new_step_count(digits_run, capsys, tmp_path):
    import shutil

    copy = tmp_path / "d2"
    shutil.copytree(digits_run, copy)
    code, _, err = run(capsys, "train", "vae", "--data", "digits", "--steps", "30", "--out", str(copy), "--resume",
                       "--quiet", "--iw-samples", "2")
    assert code == 0, err
    assert json.loads((copy / "evaluation.json").read_text())["step"] == 30
    steps = [json.loads(l)["step"] for l in (copy / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 30 and len(steps) == len(set(steps))
    # Asking for a step count the run has already reached is refused.
    code, _, err = run(capsys, "train", "vae", "--steps", "30", "--out", str(copy), "--resume")
    assert code == 2 and "already at step 30" in err


def test_resume_refuses_to_change_the_model(digits_run, capsys):
    code, _, err = run(capsys, "train", "vae", "--steps", "40", "--out", str(digits_run), "--resume",
                       "--set", "model.beta=3")
    assert code == 2 and "cannot change the model settings" in err


def _write_idx(folder, prefix, images, labels):
    import gzip
    import struct

    n, h, w = images.shape
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, h, w) + images.numpy().tobytes())
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + labels.numpy().astype("uint8").tobytes())


def test_mnist_is_found_under_vaekit_data(capsys, tmp_path, monkeypatch):
    from conftest import blob_images

    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    _write_idx(folder, "train", blob_images(128, 28)[:, 0], torch.arange(128) % 10)
    _write_idx(folder, "t10k", blob_images(32, 28, seed=1)[:, 0], torch.arange(32) % 10)
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "data"))
    out = tmp_path / "m1"
    code, _, err = run(capsys, "train", "vae", "--data", "mnist", "--steps", "3", "--out", str(out), *TINY_SETS)
    assert code == 0, err
    saved = json.loads((out / "config.json").read_text())
    assert saved["train_images"] == 128 and saved["test_images"] == 32 and str(folder) in saved["data_source"]


def test_image_folder_with_resize(capsys, tmp_path):
    root = tmp_path / "imgs"
    for split, n in (("train", 70), ("test", 10)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (48 + i % 3, 40), color=(i * 3, 100, 200 - i)).save(root / split / f"{i:03d}.jpg")
    out = tmp_path / "f1"
    code, _, err = run(capsys, "train", "vae", "--data", "image-folder", "--set", f"data.root={root}",
                       "--set", "data.size=32", "--steps", "2", "--out", str(out), *TINY_SETS)
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["image_shape"] == [3, 32, 32]
    code, _, _ = run(capsys, "sample", str(out), "-n", "4", "-o", str(tmp_path / "s.png"))
    assert code == 0 and Image.open(tmp_path / "s.png").mode == "RGB"


def test_models_and_datasets_list(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0 and "vae" in out and "beta_vae" in out and "paper:" in out
    code, out, _ = run(capsys, "datasets")
    assert code == 0 and "fashion-mnist" in out and "digits" in out and "image-folder" in out


@pytest.mark.parametrize("argv, needle", [
    (["train", "nosuchmodel", "--data", "digits"], "unknown model"),
    (["train", "vae", "--data", "nosuchdata"], "nosuchdata"),
    (["train", "vae", "--data", "digits", "--set", "model.betta=2"], "model.betta"),
    (["train", "vae", "--data", "digits", "--set", "train.lr=0"], "train.lr"),
    (["train", "vae", "--data", "image-folder", "--set", "data.root=/nonexistent/images"], "/nonexistent/images"),
    (["train", "vae", "--data", "digits", "--set", "train.batch_size=100000"], "batch_size"),
    (["train", "vae", "--data", "digits", "--device", "nosuchdevice"], "unknown device"),
    (["train", "vae", "--data", ""], "data.name must name a dataset"),
])
def test_bad_train_input_is_one_line_exit_2_and_no_run_folder(argv, needle, capsys, tmp_path):
    out = tmp_path / "never"
    code, _, err = run(capsys, *argv, "--out", str(out), "--quiet")
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_existing_run_folder_is_not_overwritten(digits_run, capsys):
    code, _, err = run(capsys, "train", "vae", "--data", "digits", "--out", str(digits_run))
    assert code == 2 and "--resume" in err


def test_corrupt_image_folder_is_refused(capsys, tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(12):
        Image.new("L", (16, 16), color=i * 10).save(root / f"{i:02d}.png")
    (root / "05.png").write_bytes(os.urandom(200))
    code, _, err = run(capsys, "train", "vae", "--data", "image-folder", "--set", f"data.root={root}",
                       "--out", str(tmp_path / "r"), "--quiet")
    assert code == 2 and "05.png" in err and not (tmp_path / "r").exists()


def test_pickled_checkpoint_is_refused_by_the_cli(digits_run, capsys, tmp_path):
    """A pickle in place of the newest weights is skipped, never unpickled; with none left, refused."""
    import shutil

    copy = tmp_path / "evil"
    shutil.copytree(digits_run, copy)
    ckpts = sorted((copy / "checkpoints").glob("step-*"))
    torch.save({"anything": torch.zeros(1)}, ckpts[-1] / "model.safetensors")
    if len(ckpts) > 1:  # the previous checkpoint is used, with one line saying why
        code, _, err = run(capsys, "sample", str(copy), "-o", str(tmp_path / "y.png"))
        assert code == 0 and "never unpickles" in err and ckpts[-2].name in err
    for ckpt in ckpts:
        torch.save({"anything": torch.zeros(1)}, ckpt / "model.safetensors")
    for argv in (["evaluate", str(copy)], ["sample", str(copy), "-o", str(tmp_path / "x.png")]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and "never unpickles" in err
    assert not (tmp_path / "x.png").exists()


def test_missing_run_folder(capsys, tmp_path):
    code, _, err = run(capsys, "evaluate", str(tmp_path / "nope"))
    assert code == 2 and "not found" in err


def test_console_script_prints_one_line_on_error(tmp_path):
    """The installed `vaekit` command (or python -m) exits 2 with a single line, no traceback."""
    cmd = [sys.executable, "-m", "vaekit.cli.main", "train", "vae", "--data", "digits", "--set", "model.nope=1",
           "--out", str(tmp_path / "x")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("vaekit: error:") and len(proc.stderr.strip().splitlines()) == 1


@needs_fashion
def test_fashion_mnist_short_run_learns(tmp_path, capsys):
    out = tmp_path / "f"
    code, _, err = run(capsys, "train", "vae", "--data", "fashion-mnist", "--steps", "60", "--out", str(out),
                       "--set", "train.log_every=20", "--set", "train.eval_every=0", "--set", "model.base_channels=16",
                       "--iw-samples", "0", "--quiet")
    assert code == 0, err
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] < rows[0]["loss"]
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["images"] == 10000
    assert ev["test/ssim"] > ev["baseline/mean_image/ssim"] + 0.2


def test_traverse_orders_rows_by_kl(digits_run, capsys, tmp_path):
    code, out, err = run(capsys, "traverse", str(digits_run), "-o", str(tmp_path / "t.png"), "--steps", "5")
    assert code == 0, err
    kls = [float(part.split("(")[1].rstrip(")")) for part in out.strip().split(": ", 2)[2].split(", ")]
    assert len(kls) == 4 and kls == sorted(kls, reverse=True)
    scale = 64 // 8
    assert Image.open(tmp_path / "t.png").size == ((5 * 10 + 2) * scale, (4 * 10 + 2) * scale)
    code, _, err = run(capsys, "traverse", str(digits_run), "-o", str(tmp_path / "u.png"), "--image", "100000")
    assert code == 2 and "--image must lie in [0, " in err and not (tmp_path / "u.png").exists()


def test_btcvae_on_dsprites_reports_disentanglement(capsys, tmp_path):
    out = tmp_path / "tc"
    code, _, err = run(capsys, "train", "btcvae", "--data", "dsprites", "--steps", "4", "--out", str(out),
                       "--set", "model.latent_dim=4", "--set", "model.base_channels=4", "--set", "model.max_channels=8",
                       "--set", "train.batch_size=64", "--set", "train.log_every=2", "--set", "train.eval_every=0",
                       "--set", "train.final_eval_images=500",
                       "--iw-samples", "0", "--quiet")
    assert code == 0, err
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["dataset_size"] == 737_280  # the estimators' N, filled in from the data
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"tc/mi", "tc/tc", "tc/dwkl"} <= set(rows[-1])
    ev = json.loads((out / "evaluation.json").read_text())
    for key in ("disentanglement/mig", "disentanglement/beta_vae/eval_accuracy", "disentanglement/factor_vae/eval_accuracy",
                "disentanglement/dci/disentanglement", "disentanglement/sap"):
        assert 0 <= ev[key] <= 1, key
    assert ev["decomposition/n"] == 10_000 and ev["decomposition/mi"] <= math.log(10_000)  # whole-data-set MI, TC, DWKL
    assert ev["decomposition/kl"] == pytest.approx(ev["decomposition/mi"] + ev["decomposition/tc"] + ev["decomposition/dwkl"])
    report = (out / "report.md").read_text()
    assert "## Disentanglement" in report and "| pos_x |" in report and "![traversals](traversals.png)" in report
    assert "## KL decomposition" in report and f"| total correlation | {ev['decomposition/tc']:.4f} |" in report
    assert "| decomposition/tc |" not in report  # in its own section, not among the per-image terms
    assert (out / "traversals.png").exists()
    code, _, err = run(capsys, "traverse", str(out), "-o", str(tmp_path / "t.png"))
    assert code == 0, err


def test_introvae_run_folder_has_its_kl_curves_and_margin_advice(tmp_path, capsys):
    out = tmp_path / "intro"
    assert main(["train", "introvae", "--data", "digits", "--steps", "20", "--out", str(out), *TINY_SETS,
                 "--set", "model.pretrain_epochs=0.5", "--set", "model.margin=3"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["steps_per_epoch"] == 1437 // 64  # filled in from the data
    assert (out / "training_curves.png").exists() and (out / "samples.png").exists()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"kl/real", "kl/rec", "kl/sample", "recon", "loss/encoder", "loss/generator"} <= set(rows[-1])
    report = (out / "report.md").read_text()
    assert "KL(real) at the end of VAE pre-training (11 steps)" in report and "training_curves.png" in report
    # resuming keeps the derived steps_per_epoch without calling it a change of model settings
    assert main(["train", "introvae", "--data", "digits", "--steps", "25", "--out", str(out), "--resume", *TINY_SETS,
                 "--set", "model.pretrain_epochs=0.5", "--set", "model.margin=3"]) == 0


def test_vaegan_trains_from_the_command_line_with_a_group_learning_rate(tmp_path, capsys):
    out = tmp_path / "gan"
    assert main(["train", "vaegan", "--data", "digits", "--steps", "10", "--out", str(out), *TINY_SETS,
                 "--set", 'train.group_lr={"loss/discriminator" = 2e-4}']) == 0
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert 0 < evaluation["test/ssim"] <= 1 and "test/llike" in evaluation
    code, _, err = run(capsys, "train", "vaegan", "--data", "digits", "--steps", "10", "--out", str(tmp_path / "g2"),
                       *TINY_SETS, "--set", 'train.group_lr={"loss/generator" = 2e-4}')
    assert code == 2 and "loss/generator" in err and not (tmp_path / "g2").exists()


def test_evaluate_with_local_inception_weights_adds_fid(digits_run, capsys, monkeypatch, tmp_path):
    """The wiring of --inception (the real network is tested in test_inception.py; a 299x299 pass over
    the test split is too slow for the suite): features stand in for Inception's, FID is their FD."""
    import vaekit.metrics.inception as inception

    monkeypatch.setattr(inception, "load_fid_inception", lambda path: torch.nn.Identity())
    monkeypatch.setattr(inception, "inception_features",
                        lambda net, images, batch_size=50: (images.batch(torch.arange(len(images))) if hasattr(images, "batch")
                                                            else images).flatten(1).double())
    weights = tmp_path / "fid.safetensors"
    weights.write_bytes(b"stand-in")
    code, out, _ = run(capsys, "evaluate", str(digits_run), "--json", "--iw-samples", "0", "--samples", "100",
                       "--pairs", "50", "--inception", str(weights))
    assert code == 0
    result = json.loads(out)
    assert result["samples/fid"] > result["reference/train_fid"] >= 0
    code, _, err = run(capsys, "evaluate", str(digits_run), "--samples", "0", "--inception", str(weights))
    assert code == 2 and "--inception" in err


def test_evaluate_refuses_a_negative_k_and_a_feature_net_that_is_not_there(digits_run, capsys, tmp_path):
    missing = tmp_path / "net.safetensors"
    for argv in (["evaluate", str(digits_run), "--iw-samples", "-1"],
                 ["evaluate", str(digits_run), "--feature-net", str(missing)]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not missing.exists()  # refused, not trained and written there
    code, _, err = run(capsys, "train", "vae", "--data", "digits", "--iw-samples", "-1", "--out", str(tmp_path / "r"))
    assert code == 2 and "--iw-samples" in err and not (tmp_path / "r").exists()


@pytest.mark.parametrize("extra, needle", [
    (["sample", "-o", "{tmp}"], "is a folder"),
    (["sample", "-o", "{tmp}/nowhere/x.png"], "does not exist"),
    (["sample", "-o", "{tmp}/x.png", "--nrow", "0"], "--nrow must be >= 1"),
    (["generate", "--label", "1", "-o", "{tmp}/x.png", "--nrow", "0"], "--nrow must be >= 1"),
    (["traverse", "-o", "{tmp}/x.png", "--span", "nan"], "--span must be a finite number"),
    (["traverse", "-o", "{tmp}/x.png", "--span", "inf"], "--span must be a finite number"),
    (["traverse", "-o", "{tmp}/x.png", "--dims", "0"], "--dims must be >= 1"),
])
def test_picture_commands_refuse_bad_outputs_and_counts_in_one_line(extra, needle, digits_run, capsys, tmp_path):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    code, _, err = run(capsys, argv[0], str(digits_run), *argv[1:])
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
