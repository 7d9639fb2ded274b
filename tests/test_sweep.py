"""`vaekit sweep`: a grid of settings times seeds, checked before any run, resumable, ending with the
grouped table, sweep.md and a plot per metric."""

import json

from vaekit.cli.main import main

SHARED = ["--data", "digits", "--steps", "3", "--batch-size", "32", "--iw-samples", "2", "--set", "model.norm=none",
          "--set", "model.base_channels=4", "--set", "model.max_channels=8", "--set", "train.eval_every=0"]


def test_a_sweep_trains_every_point_and_seed_then_tables_them(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "vae", *SHARED, "--grid", "model.latent_dim=3,5", "--seeds", "0", "1", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr()
    names = sorted(p.name for p in out.iterdir() if p.name.startswith("latent_dim"))
    assert names == ["latent_dim=3-seed=0", "latent_dim=3-seed=1", "latent_dim=5-seed=0", "latent_dim=5-seed=1"]
    for name in names:
        saved = json.loads((out / name / "config.json").read_text())
        assert saved["model"]["latent_dim"] == int(name[11]) and saved["train"]["seed"] == int(name[-1])
        assert json.loads((out / name / "evaluation.json").read_text())["step"] == 3
    assert printed.out.count(" ± ") >= 2 and "seeds" in printed.out  # two rows of two seeds each
    assert "![" in (out / "sweep.md").read_text() and (out / "sweep_test_elbo.png").exists()
    # the same command again: every run is done, nothing is trained
    assert main(argv) == 0
    assert "4 runs (4 done already)" in capsys.readouterr().err


def test_print_commands_and_a_bad_value_refused_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "vae", *SHARED, "--grid", "model.beta=1,4", "--out", str(out), "--print-commands"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("vaekit train vae --data digits") for line in lines)
    assert "--set model.beta=4" in lines[1] and not out.exists()
    assert main(["sweep", "vae", *SHARED, "--grid", "model.beta=1,-2", "--out", str(out)]) == 2
    assert "model.beta must be >= 0" in capsys.readouterr().err and not out.exists()
