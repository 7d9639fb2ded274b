"""`vaekit train` starting its own data-parallel worker processes on a multi-core CPU (train.processes):
when auto starts them, that a run of them resumes bit-identically, and that a refusal is told once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vaekit.distributed import MIN_IMAGES_PER_WORKER_RUN, worker_plan
from vaekit.errors import ConfigError

CPU, GPU = torch.device("cpu"), torch.device("cuda")
TINY = ["--set", "model.norm=none", "--set", "model.latent_dim=4", "--set", "model.base_channels=4",
        "--set", "model.max_channels=8", "--set", "train.eval_every=0", "--set", "train.batch_size=16",
        "--set", "train.log_every=1", "--set", "train.precision=fp32", "--iw-samples", "0", "--quiet"]


def test_auto_starts_one_process_per_core_for_a_long_cpu_run():
    long = MIN_IMAGES_PER_WORKER_RUN
    assert worker_plan("auto", CPU, 128, long, cores=2).processes == 2
    assert worker_plan("auto", CPU, 128, long, cores=2).threads == 1
    assert worker_plan("auto", CPU, 128, None, cores=4).processes == 4  # an epochs run counts as long
    assert worker_plan("auto", CPU, 96, long, cores=4).processes == 3  # the batch must divide
    assert worker_plan("auto", CPU, 64, long, cores=8).processes == 2  # shares of >= 32 images


@pytest.mark.parametrize("why, plan", [
    ("short", lambda: worker_plan("auto", CPU, 128, MIN_IMAGES_PER_WORKER_RUN - 1, cores=2)),
    ("one core", lambda: worker_plan("auto", CPU, 128, None, cores=1)),
    ("gpu", lambda: worker_plan("auto", GPU, 128, None, cores=16)),
    ("thin batch", lambda: worker_plan("auto", CPU, 48, None, cores=2)),
    ("asked", lambda: worker_plan(1, CPU, 128, None, cores=2)),
])
def test_auto_stays_in_one_process_where_workers_would_not_pay(why, plan):
    assert plan().processes == 1, why


def test_under_torchrun_no_process_starts_more(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert worker_plan(2, CPU, 128, None, cores=2).processes == 1


def test_an_explicit_count_is_checked():
    assert worker_plan(2, CPU, 16, 10, cores=2).processes == 2  # asked for, however short the run
    with pytest.raises(ConfigError, match="must divide among the 3 processes"):
        worker_plan(3, CPU, 16, None, cores=2)
    with pytest.raises(ConfigError, match="torchrun"):
        worker_plan(2, GPU, 16, None, cores=2)


def _vaekit(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    return subprocess.run([sys.executable, "-m", "vaekit", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def _parameters(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"step-{step:08d}" / "model.safetensors"))


def test_a_run_of_two_worker_processes_resumes_bit_identically(tmp_path):
    args = ["train", "vae", "--data", "digits", *TINY, "--set", "train.processes=2", "--set", "model.norm=batch"]
    straight = _vaekit([*args, "--steps", "6", "--iw-samples", "4", "--out", str(tmp_path / "straight")])
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert straight.stdout.count("run folder:") == 1  # rank 0 alone reports
    final = json.loads((tmp_path / "straight" / "evaluation.json").read_text())
    assert final["processes"] == 2
    # the two workers shared the final test-set pass: one process scoring the same weights agrees
    alone = _vaekit(["evaluate", str(tmp_path / "straight"), "--iw-samples", "4", "--samples", "0", "--json", "--quiet"])
    assert alone.returncode == 0, alone.stderr[-3000:]
    alone = json.loads(alone.stdout)
    for key in ("test/elbo", "test/ssim", "test/iwae_nll", "test/elbo_se"):
        assert final[key] == pytest.approx(alone[key], rel=1e-3, abs=1e-5), key  # threads and layout differ
    first = _vaekit([*args, "--steps", "3", "--set", "train.checkpoint_every=3", "--out", str(tmp_path / "r")])
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = _vaekit([*args, "--steps", "6", "--resume", "--out", str(tmp_path / "r")])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = _parameters(tmp_path / "straight", 6), _parameters(tmp_path / "r", 6)
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


def test_a_refusal_every_worker_agrees_on_is_said_once(tmp_path):
    r = _vaekit(["train", "ae", "--data", "digits", "--steps", "2", *TINY, "--set", "train.processes=2",
                 "--set", "data.root=" + str(tmp_path / "nowhere"), "--data", "mnist", "--out", str(tmp_path / "x")])
    assert r.returncode == 2
    assert r.stderr.count("vaekit: error:") == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()
