"""Crash safety: a training process killed at any moment (mid-step, mid-checkpoint) resumes to the
same parameters as a run that was never interrupted; damaged checkpoints are skipped by name; one
trainer per run folder, and a killed one's lock does not block the next."""

import functools
import gzip
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY, blob_images
from vaekit.cli.main import main
from vaekit.config import TrainConfig
from vaekit.errors import CheckpointError
from vaekit.models import build_model, model_config
from vaekit.train import RunFolderBusy, RunLock, Trainer, latest_checkpoint

STEPS = 60
SIGKILLED = -signal.SIGKILL


@pytest.fixture(scope="module")
def idx_root(tmp_path_factory):
    """A tiny MNIST-format dataset: the subprocesses start faster than with scikit-learn's digits."""
    root = tmp_path_factory.mktemp("idx")
    for prefix, n, seed in (("train", 256, 0), ("t10k", 64, 1)):
        images = blob_images(n, 8, seed=seed)[:, 0]
        with gzip.open(root / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 0x803, n, 8, 8) + images.numpy().tobytes())
    return root


def _argv(idx_root, out, *extra):
    return ["train", "vae", "--data", "idx", "--set", f"data.root={idx_root}", "--steps", str(STEPS),
            "--batch-size", "16", "--set", "model.latent_dim=4", "--set", "model.base_channels=4",
            "--set", "model.max_channels=8", "--set", "train.checkpoint_every=10", "--set", "train.log_every=5",
            "--set", "train.eval_every=0", "--set", "train.final_eval_images=50", "--iw-samples", "2", "--quiet",
            "--out", str(out), *extra]


def _start(idx_root, out, *extra, fault=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread: 2 shared cores, and the same sums in every run
    env.pop("VAEKIT_FAULT", None)
    if fault:
        env["VAEKIT_FAULT"] = fault
    return subprocess.Popen([sys.executable, "-m", "vaekit.cli.main", *_argv(idx_root, out, *extra)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _train(idx_root, out, *extra, fault=None):
    p = _start(idx_root, out, *extra, fault=fault)
    _, err = p.communicate(timeout=120)
    return p.returncode, err


def _logged_steps(out):
    path = out / "metrics.jsonl"
    steps = []
    for line in (path.read_text().splitlines() if path.exists() else []):
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:  # a row being written
            pass
    return steps


def _stop_when_logged(p, out, step):
    """SIGSTOP `p` as soon as metrics.jsonl shows `step` (or later): a moment the test does not choose.
    False if it ended before."""
    deadline = time.monotonic() + 120
    while p.poll() is None and time.monotonic() < deadline:
        if any(s >= step for s in _logged_steps(out)):
            p.send_signal(signal.SIGSTOP)
            return True
        time.sleep(0.002)
    return False


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _rows(out):
    """The logged training terms, without the throughput (which depends on the machine's load)."""
    return [{k: v for k, v in json.loads(line).items() if k != "images_per_s"}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


def _model_tensors(out, step=STEPS):
    return load_file(str(out / "checkpoints" / f"step-{step:08d}" / "model.safetensors"))


def _assert_same_tensors(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """As in the subprocesses: on 2 shared cores, a second thread only makes each step slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(idx_root, tmp_path_factory):
    """The uninterrupted run, stopped once its last checkpoint is saved (before the final evaluation).
    A function that waits for it: it runs alongside the first test's processes."""
    out = tmp_path_factory.mktemp("ref") / "run"
    p = _start(idx_root, out, fault=f"checkpoint-saved:{STEPS}")

    @functools.cache
    def finished():
        _, err = p.communicate(timeout=120)
        assert p.returncode == SIGKILLED, err
        assert not (out / "evaluation.json").exists()
        return out

    yield finished
    if p.poll() is None:
        p.kill()
        p.communicate()


def test_killed_at_several_moments_resumes_bit_identical_and_one_trainer_at_a_time(idx_root, reference, tmp_path,
                                                                                    capsys):
    out = tmp_path / "run"
    # 1. killed inside the write of checkpoint 20: model.safetensors written, the rest not, nothing renamed
    code, err = _train(idx_root, out, fault="checkpoint-write:20")
    assert code == SIGKILLED, err
    assert [p.name for p in (out / "checkpoints").glob(".step-00000020.*.tmp")]
    assert latest_checkpoint(out).name == "step-00000010"
    assert (out / ".lock").exists()  # left behind by the killed process, lock and all

    # 2. killed between renaming checkpoint 30 into place and updating latest.json
    code, err = _train(idx_root, out, "--resume", fault="checkpoint-rename:30")
    assert code == SIGKILLED, err  # not refused: the dead process's lock does not block
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["dir"] == "step-00000020"
    assert latest_checkpoint(out).name == "step-00000030"  # the newest complete checkpoint wins
    assert not list((out / "checkpoints").glob(".*.tmp"))  # the first crash's leftovers are gone
    assert capsys.readouterr().err == ""  # a complete checkpoint ahead of latest.json is no damage

    # 3. stopped at a moment the test does not choose, some steps after checkpoint 30; meanwhile a second
    #    trainer into the folder is refused and changes nothing; then killed there
    first = _start(idx_root, out, "--resume")
    try:
        assert _stop_when_logged(first, out, 35), first.communicate()[1]
        before = _snapshot(out)
        for extra in ((), ("--resume",)):
            assert main(_argv(idx_root, out, *extra)) == 2
            err = capsys.readouterr().err
            assert len(err.strip().splitlines()) == 1 and "being trained by another process" in err, err
            assert f"pid {first.pid}" in err
        assert _snapshot(out) == before
        with pytest.raises(RunFolderBusy):
            RunLock(out).acquire()
    finally:
        first.kill()  # SIGKILL works on a stopped process too
        first.communicate(timeout=60)
    assert first.returncode == SIGKILLED
    assert not (out / "evaluation.json").exists()
    lock = RunLock(out)
    assert lock.acquire(create=False)  # the kernel released the dead process's lock
    lock.release()

    # 4. resumed to the end (stopped before the final evaluation, like the reference)
    code, err = _train(idx_root, out, "--resume", fault=f"checkpoint-saved:{STEPS}")
    assert code == SIGKILLED, err
    _assert_same_tensors(_model_tensors(out), _model_tensors(reference()))
    assert _rows(out) == _rows(reference())  # no row twice, none lost, the same losses
    assert not list(out.glob("**/*.tmp"))


def test_killed_before_the_final_evaluation_resume_finishes_it(reference, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(reference(), out)
    argv = ["train", "vae", "--out", str(out), "--resume", "--quiet", "--iw-samples", "2"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 0, err
    assert json.loads((out / "evaluation.json").read_text())["step"] == STEPS
    assert (out / "report.md").exists() and (out / "samples.png").exists()
    _assert_same_tensors(_model_tensors(out), _model_tensors(reference()))  # evaluated, not trained further
    assert _rows(out) == _rows(reference())
    assert main(argv) == 2  # once evaluated, asking for the same step count is refused as before
    assert f"already at step {STEPS}" in capsys.readouterr().err


class _Stopped(Exception):
    pass


@pytest.fixture
def stop_after_training(monkeypatch):
    """In-process runs end with their training: the final evaluation is not what these tests look at."""
    fit = Trainer.fit

    def fit_then_stop(self):
        fit(self)
        raise _Stopped

    monkeypatch.setattr(Trainer, "fit", fit_then_stop)


def test_resume_skips_a_damaged_newest_checkpoint_with_one_line(reference, tmp_path, capsys, stop_after_training):
    out = tmp_path / "run"
    shutil.copytree(reference(), out)
    _truncate(out / "checkpoints" / f"step-{STEPS:08d}" / "model.safetensors")
    with pytest.raises(_Stopped):
        main(["train", "vae", "--out", str(out), "--resume", "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines  # looked up once
    assert f"step-{STEPS:08d}" in lines[0] and "truncated" in lines[0] and f"using step-{STEPS - 10:08d}" in lines[0]
    _assert_same_tensors(_model_tensors(out), _model_tensors(reference()))  # retrained from there, identically
    assert _rows(out) == _rows(reference())


def test_resume_before_the_first_checkpoint_starts_over_identically(reference, tmp_path, capsys, stop_after_training):
    out = tmp_path / "run"
    shutil.copytree(reference(), out)
    shutil.rmtree(out / "checkpoints")  # killed after logging some steps, before checkpoint 10
    with pytest.raises(_Stopped):
        main(["train", "vae", "--out", str(out), "--resume", "--quiet"])
    assert capsys.readouterr().err == ""
    _assert_same_tensors(_model_tensors(out), _model_tensors(reference()))
    assert _rows(out) == _rows(reference())  # the dead run's rows are not kept twice


def test_refused_fresh_runs_leave_no_folder_and_a_lock_alone_is_an_empty_folder(idx_root, tmp_path, capsys):
    new = tmp_path / "never"
    assert main(_argv(idx_root, new, "--set", "train.batch_size=100000")) == 2  # refused inside train_run
    assert "batch_size" in capsys.readouterr().err and not new.exists()
    held = tmp_path / "held"
    held.mkdir()
    lock = RunLock(held)
    lock.acquire()  # another process between its folder check and its first write
    try:
        assert main(_argv(idx_root, held)) == 2
        assert "being trained by another process" in capsys.readouterr().err
        assert [p.name for p in held.iterdir()] == [".lock"]
    finally:
        lock.release()


# --- damaged checkpoints, in process --------------------------------------------------------

def _cfg(**kw):
    return TrainConfig(**{"steps": 4, "batch_size": 32, "log_every": 2, "eval_every": 0, "checkpoint_every": 2,
                          "seed": 0, **kw})


def _tiny_vae(latent_dim=4):
    torch.manual_seed(0)
    return build_model("vae", model_config("vae", {**TINY, "latent_dim": latent_dim}), (1, 16, 16))


@pytest.fixture
def two_checkpoints(tiny_data, tmp_path):
    Trainer(_tiny_vae(), tiny_data, _cfg(), tmp_path, progress=False).fit()
    ckpts = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("step-*")) == ["step-00000002", "step-00000004"]
    return tmp_path


def _flip_middle_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage, file, reason", [
    (_truncate, "model.safetensors", "model.safetensors is truncated"),
    (_flip_middle_byte, "model.safetensors", "model.safetensors is corrupt"),
    (_flip_middle_byte, "trainer.safetensors", "trainer.safetensors is corrupt"),
    (lambda p: p.write_text(p.read_text().replace('"lr": 0.001', '"lr": 0.003')), "state.json",
     "state.json is corrupt"),
    (lambda p: p.unlink(), "trainer.safetensors", "trainer.safetensors is missing"),
])
def test_damaged_newest_checkpoint_is_skipped_with_one_line(two_checkpoints, tiny_data, capsys, damage, file, reason):
    run = two_checkpoints
    damage(run / "checkpoints" / "step-00000004" / file)
    trainer = Trainer(_tiny_vae(), tiny_data, _cfg(steps=6), run, progress=False)
    assert trainer.resume() == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "step-00000004" in lines[0] and reason in lines[0] and "using step-00000002" in lines[0], lines[0]


def test_when_no_complete_checkpoint_is_left_it_is_one_error(two_checkpoints, capsys):
    for step in (2, 4):
        _truncate(two_checkpoints / "checkpoints" / f"step-{step:08d}" / "model.safetensors")
    with pytest.raises(CheckpointError, match="no complete checkpoint") as err:
        latest_checkpoint(two_checkpoints)
    assert "step-00000002" in str(err.value) and "step-00000004" in str(err.value) and "\n" not in str(err.value)
    assert capsys.readouterr().err == ""  # the error says it all, no warnings before it


@pytest.mark.parametrize("pointer, note", [
    ({"step": 6, "dir": "step-00000006"}, "points at step-00000006, which does not exist"),
    ("{not json", "is corrupt"),
])
def test_latest_json_pointing_nowhere_or_corrupt_falls_back_to_the_folders(two_checkpoints, capsys, pointer, note):
    latest = two_checkpoints / "checkpoints" / "latest.json"
    latest.write_text(pointer if isinstance(pointer, str) else json.dumps(pointer))
    assert latest_checkpoint(two_checkpoints).name == "step-00000004"
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "latest.json" in lines[0] and note in lines[0], lines
    for p in (two_checkpoints / "checkpoints").glob("step-*"):
        shutil.rmtree(p)
    with pytest.raises(CheckpointError, match="latest.json"):
        latest_checkpoint(two_checkpoints)


def test_checkpoint_without_recorded_hashes_still_loads(two_checkpoints, tiny_data, capsys):
    for step in (2, 4):  # as the previous version wrote them
        state_path = two_checkpoints / "checkpoints" / f"step-{step:08d}" / "state.json"
        state = json.loads(state_path.read_text())
        del state["files"], state["sha256"]
        state_path.write_text(json.dumps(state, indent=2))
    trainer = Trainer(_tiny_vae(), tiny_data, _cfg(steps=6), two_checkpoints, progress=False)
    assert trainer.resume() == 4 and capsys.readouterr().err == ""
    _truncate(two_checkpoints / "checkpoints" / "step-00000004" / "model.safetensors")  # what can be checked, is
    assert latest_checkpoint(two_checkpoints).name == "step-00000002"
    assert "not a valid safetensors file" in capsys.readouterr().err


def test_checkpoint_of_another_model_is_an_error_not_a_fallback(two_checkpoints, tiny_data, capsys):
    trainer = Trainer(_tiny_vae(latent_dim=3), tiny_data, _cfg(steps=6), two_checkpoints, progress=False)
    with pytest.raises(CheckpointError, match="step-00000004/model.safetensors does not fit this model"):
        trainer.resume()
    assert capsys.readouterr().err == ""


def test_commands_reading_a_run_skip_a_damaged_checkpoint(reference, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(reference(), run)
    _flip_middle_byte(run / "checkpoints" / f"step-{STEPS:08d}" / "model.safetensors")
    assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png")]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"step-{STEPS:08d}" in lines[0] and "corrupt" in lines[0], lines
    for p in (run / "checkpoints").glob("step-*"):
        _truncate(p / "model.safetensors")
    assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no complete checkpoint" in err


def test_resume_past_a_damaged_checkpoint_drops_it_and_a_cut_off_log_row(two_checkpoints, tiny_data, capsys):
    run = two_checkpoints
    _flip_middle_byte(run / "checkpoints" / "step-00000004" / "model.safetensors")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "lo')  # a row the crash cut off
    trainer = Trainer(_tiny_vae(), tiny_data, _cfg(steps=3, checkpoint_every=1), run, progress=False)
    assert trainer.resume() == 2
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [2]
    trainer.fit()
    # step 4 belonged to the timeline that crashed: gone at the next save, not left to be warned about again
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-00000002", "step-00000003"]
    capsys.readouterr()
    assert latest_checkpoint(run).name == "step-00000003" and capsys.readouterr().err == ""
