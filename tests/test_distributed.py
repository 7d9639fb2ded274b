"""Data-parallel training under torchrun with 2 CPU processes (gloo), against one process: the same
parameters from half the batch per rank, each optimiser group's gradient averaged on its own, one writer,
resume on another number of processes, and a killed rank stopping the other with a message."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).parent / "helpers" / "vaekit_worker.py"
TINY = ["--set", "model.norm=none", "--set", "model.latent_dim=4", "--set", "model.base_channels=4",
        "--set", "model.max_channels=8", "--set", "train.eval_every=0", "--set", "train.batch_size=16",
        "--set", "train.log_every=1", "--set", "train.precision=fp32", "--iw-samples", "0", "--quiet"]


def _env(**extra) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"), env.get("PYTHONPATH", "")])
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], processes: int = 2, timeout: int = 240, **env) -> subprocess.CompletedProcess:
    def once():
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
               "--master-port", str(_free_port()), str(WORKER), *args]
        return subprocess.run(cmd, env=_env(**env), capture_output=True, text=True, timeout=timeout)

    r = once()
    if "(SIGABRT)" in r.stderr:
        # Seen once in ~40 runs of these tests: a worker aborted by the gloo backend (cause not found; not
        # reproduced in 30 runs under load). Said out loud, then tried once more, so that the test judges the
        # behaviour it is about, not that rare abort.
        import warnings

        warnings.warn("a torchrun worker aborted (SIGABRT); retrying once:\n" + r.stderr[:3000])
        if "--out" in args:  # the aborted attempt's folder would refuse the retry as not empty
            import shutil

            shutil.rmtree(args[args.index("--out") + 1], ignore_errors=True)
        r = once()
    return r


def single(args: list[str], timeout: int = 240, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(WORKER), *args], env=_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def parameters(run: Path, step: int, model) -> dict[str, torch.Tensor]:
    """The model's parameters (not its buffers: running statistics are rank 0's) at a checkpoint."""
    saved = load_file(str(run / "checkpoints" / f"step-{step:08d}" / "model.safetensors"))
    names = {n for n, _ in model.named_parameters()}
    return {k: v for k, v in saved.items() if k in names}


def _model(run: Path):
    from vaekit.run import load_run

    return load_run(run)[1]


def _close(a: dict, b: dict, atol: float = 1e-5) -> None:
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-4, msg=k)


def test_two_ranks_of_half_the_batch_give_the_parameters_of_one_rank_of_the_whole(tmp_path):
    args = ["train", "ae", "--data", "digits", "--steps", "6", *TINY]
    r = torchrun([*args, "--out", str(tmp_path / "ddp")])
    assert r.returncode == 0, r.stderr[:3000]
    assert single([*args, "--out", str(tmp_path / "one")]).returncode == 0
    model = _model(tmp_path / "one")
    _close(parameters(tmp_path / "ddp", 6, model), parameters(tmp_path / "one", 6, model))
    # one writer: one metrics row per step, one evaluation, the process count recorded
    rows = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(1, 7))
    assert json.loads((tmp_path / "ddp" / "evaluation.json").read_text())["processes"] == 2
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == ["latest.json", "step-00000006"]
    assert r.stdout.count("run folder:") == 1  # rank 0 alone reports


def test_each_optimiser_group_is_averaged_on_its_own_as_in_one_process(tmp_path):
    """VAE-GAN's encoder, decoder and discriminator, each from its own loss: after a few steps on 2 ranks
    every group's parameters are the single process's (the draws made deterministic, so the cut of the
    batch cannot matter)."""
    args = ["train", "vaegan", "--data", "digits", "--steps", "4", *TINY, "--set", "model.discriminator_norm=none",
            "--set", "model.discriminator_channels=4"]
    r = torchrun([*args, "--out", str(tmp_path / "ddp")], VAEKIT_TEST_NO_NOISE="1")
    assert r.returncode == 0, r.stderr[:3000]
    assert single([*args, "--out", str(tmp_path / "one")], VAEKIT_TEST_NO_NOISE="1").returncode == 0
    model = _model(tmp_path / "one")
    a, b = parameters(tmp_path / "ddp", 4, model), parameters(tmp_path / "one", 4, model)
    for group, params in model.optim_groups().items():
        names = {n for n, p in model.named_parameters() if any(p is q for q in params)}
        _close({k: a[k] for k in names}, {k: b[k] for k in names})
    # and every group moved from its initial weights: the comparison is not of untrained ones
    from vaekit.models import build_model
    from vaekit.run import read_run_config

    cfg, saved = read_run_config(tmp_path / "one")
    torch.manual_seed(cfg.train.seed)
    initial = dict(build_model(cfg.model_name, cfg.model, saved["image_shape"]).named_parameters())
    for group, params in model.optim_groups().items():
        names = [n for n, p in model.named_parameters() if any(p is q for q in params)]
        assert any(not torch.allclose(a[n], initial[n].detach()) for n in names), group


def test_a_distributed_run_resumes_on_another_number_of_processes(tmp_path):
    args = ["train", "ae", "--data", "digits", *TINY]
    assert torchrun([*args, "--steps", "4", "--set", "train.checkpoint_every=4", "--out", str(tmp_path / "r")]
                    ).returncode == 0
    r = single([*args, "--steps", "8", "--resume", "--out", str(tmp_path / "r")])
    assert r.returncode == 0, r.stderr[:3000]
    assert single([*args, "--steps", "8", "--out", str(tmp_path / "straight")]).returncode == 0
    model = _model(tmp_path / "straight")
    _close(parameters(tmp_path / "r", 8, model), parameters(tmp_path / "straight", 8, model))


def test_a_batch_that_does_not_divide_among_the_ranks_is_refused_on_every_rank(tmp_path):
    r = torchrun(["train", "ae", "--data", "digits", "--steps", "2", *TINY, "--set", "train.batch_size=15",
                  "--out", str(tmp_path / "odd")])
    assert r.returncode != 0
    # each rank says it in one line (torchrun's agent then prints its own report of the failed workers)
    assert r.stderr.count("vaekit: error: train.batch_size=15 is the global batch") == 2
    assert "src/vaekit/" not in r.stderr  # no traceback through vaekit's code
    assert not (tmp_path / "odd").exists()


def test_a_killed_rank_stops_the_other_with_a_message_in_bounded_time(tmp_path):
    """Two processes started as torchrun starts them (its environment), without torchrun's agent, so the
    surviving rank must notice by itself; rank 1 is killed at step 3."""
    port = _free_port()
    out = tmp_path / "killed"
    procs = []
    t0 = time.monotonic()
    for rank in (0, 1):
        env = _env(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), VAEKIT_TEST_KILL="1:3", VAEKIT_DIST_TIMEOUT="60")
        procs.append(subprocess.Popen([sys.executable, str(WORKER), "train", "ae", "--data", "digits", "--steps",
                                       "50", *TINY, "--set", "train.checkpoint_every=2", "--out", str(out)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    _, err0 = procs[0].communicate(timeout=120)
    procs[1].wait(timeout=30)
    elapsed = time.monotonic() - t0
    assert procs[1].returncode == -9  # killed
    assert procs[0].returncode != 0
    assert "lost contact with the other ranks" in err0 and "Traceback" not in err0, err0[-2000:]
    assert elapsed < 100
    assert (out / "checkpoints" / "step-00000002").exists()  # the last good checkpoint kept
    assert not (out / "evaluation.json").exists()


def test_sync_batchnorm_normalises_over_the_global_batch_as_one_process_does(tmp_path):
    """A VAE with batch norm: with train.sync_batchnorm 2 ranks of B/2 give one process's parameters and
    running statistics (draws made deterministic); without it each rank normalises its own half, and
    they differ."""
    args = ["train", "vae", "--data", "digits", "--steps", "3", *TINY, "--set", "model.norm=batch"]
    r = torchrun([*args, "--set", "train.sync_batchnorm=true", "--out", str(tmp_path / "sync")],
                 VAEKIT_TEST_NO_NOISE="1")
    assert r.returncode == 0, r.stderr[:3000]
    assert torchrun([*args, "--out", str(tmp_path / "local")], VAEKIT_TEST_NO_NOISE="1").returncode == 0
    assert single([*args, "--out", str(tmp_path / "one")], VAEKIT_TEST_NO_NOISE="1").returncode == 0
    every = lambda run: load_file(str(run / "checkpoints" / "step-00000003" / "model.safetensors"))  # noqa: E731
    one, sync, local = every(tmp_path / "one"), every(tmp_path / "sync"), every(tmp_path / "local")
    assert any("running_mean" in k for k in one)
    for k in one:
        torch.testing.assert_close(sync[k].float(), one[k].float(), atol=1e-5, rtol=1e-4, msg=k)
    assert any(not torch.allclose(local[k].float(), one[k].float(), atol=1e-5) for k in one if "running" in k)


def test_beta_tcvae_estimates_its_terms_on_each_ranks_batch(tmp_path):
    """The stated choice (the README's torchrun paragraph): beta-TCVAE's minibatch estimators see the rank's
    B / W images, with N the whole training set. The 2-rank run's first logged tc/tc is then the mean of
    the estimates on the two halves of the global batch, not the estimate on the whole."""
    from vaekit.data import load_dataset
    from vaekit.distributions import DiagonalGaussian
    from vaekit.models import Batch, build_model
    from vaekit.run import read_run_config
    from vaekit.train.trainer import EpochSampler

    args = ["train", "btcvae", "--data", "digits", "--steps", "1", *TINY, "--set", "train.batch_size=64"]
    assert torchrun([*args, "--out", str(tmp_path / "ddp")], VAEKIT_TEST_NO_NOISE="1").returncode == 0
    row = json.loads((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()[0])
    cfg, saved = read_run_config(tmp_path / "ddp")
    data = load_dataset("digits", "train")
    idx = EpochSampler(len(data), 64, cfg.train.seed).indices(0)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model_name, cfg.model, saved["image_shape"]).train()
    original = DiagonalGaussian.sample
    DiagonalGaussian.sample = lambda self, n=None: self.mu
    try:
        with torch.no_grad():
            halves = [model.loss(Batch(data.batch(idx[r::2]))) for r in (0, 1)]
            whole = model.loss(Batch(data.batch(idx)))
    finally:
        DiagonalGaussian.sample = original
    for key in ("tc/mi", "tc/tc", "tc/dwkl"):
        assert row[key] == pytest.approx(float(halves[0][key] + halves[1][key]) / 2, rel=1e-4, abs=1e-6), key
    assert abs(row["tc/mi"] - float(whole["tc/mi"])) > 0.01 * abs(float(whole["tc/mi"]))  # not the whole batch's


def test_a_divergence_on_one_rank_stops_every_rank_with_the_same_message(tmp_path):
    r = torchrun(["train", "ae", "--data", "digits", "--steps", "10", *TINY, "--set", "train.checkpoint_every=2",
                  "--out", str(tmp_path / "nan")], VAEKIT_TEST_NAN="1:4")
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.startswith("vaekit: error:")]
    assert len(lines) == 2 and lines[0] == lines[1] and "diverged at step 5" in lines[0], r.stderr[-2000:]
    assert "step 4" in lines[0]  # the last good checkpoint, named alike on both ranks
    assert (tmp_path / "nan" / "checkpoints" / "step-00000004").exists()
