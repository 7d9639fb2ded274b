"""The trainer: gradient isolation between optimisers, falling loss, bit-identical resume,
divergence handling, atomic safetensors checkpoints."""

import dataclasses
import json

import pytest
import torch
from torch import nn

from conftest import TINY
from vaekit.config import TrainConfig
from vaekit.errors import CheckpointError, ConfigError, TrainingDiverged
from vaekit.models import GenerativeModel, build_model, model_config
from vaekit.train import Trainer, latest_checkpoint
from vaekit.train import checkpoint as ckpt_mod
from vaekit.train.checkpoint import load_model_weights


class TwoGroupToy(GenerativeModel):
    """Two parameter groups whose losses each depend on both groups (like an encoder/decoder pair
    with opposing objectives); isolation means each group sees only the gradient of its own loss."""

    config_class = dict

    def __init__(self, phases=None):
        super().__init__({}, (1, 16, 16))
        torch.manual_seed(0)
        self.a = nn.Linear(256, 3)
        self.b = nn.Linear(3, 256)
        self._phases = phases

    def optim_groups(self):
        return {"loss/a": list(self.a.parameters()), "loss/b": list(self.b.parameters())}

    def update_phases(self):
        return self._phases or super().update_phases()

    def losses(self, x):
        h = self.a(x.flatten(1))
        out = self.b(torch.tanh(h))
        la = (out - x.flatten(1)).pow(2).sum(1).mean() + h.pow(2).mean()
        lb = -(out.pow(2).mean()) + 0.1 * la  # opposes a's objective
        return la, lb

    def loss(self, batch, step=0, phase=0):
        la, lb = self.losses(batch.x)
        return {"loss/a": la, "loss/b": lb, "sum": la + lb}


def _cfg(**kw):
    # fp32 and NCHW: these tests compare gradients and parameters with ones computed here in float32 on
    # a model in the default layout
    return TrainConfig(**{"steps": 4, "batch_size": 32, "log_every": 2, "eval_every": 0, "checkpoint_every": 1000,
                          "seed": 0, "precision": "fp32", "channels_last": False, **kw})


@pytest.mark.parametrize("phases", [None, (("loss/a",), ("loss/b",))])
def test_each_optimiser_sees_exactly_its_own_gradient(phases, tiny_data):
    model = TwoGroupToy(phases)
    trainer = Trainer(model, tiny_data, _cfg(lr=1e-2), progress=False)
    batch = trainer.batch_at(0)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}

    # Reference: the gradients of each loss alone, by torch.autograd.grad on the weights as they are
    # when that group's gradient is taken.
    ref = TwoGroupToy(phases)
    ref.load_state_dict(before)
    la, lb = ref.losses(batch.x)
    ga = torch.autograd.grad(la, list(ref.a.parameters()), retain_graph=True)
    if phases is None:  # one phase: b's gradient is taken before a steps
        gb = torch.autograd.grad(lb, list(ref.b.parameters()))

    trainer.train_step(batch)
    for p, g in zip(model.a.parameters(), ga):
        torch.testing.assert_close(p.grad, g)
    if phases is not None:  # second phase: b's gradient is taken after a's step, with the new a
        ref.a.load_state_dict(model.a.state_dict())
        _, lb = ref.losses(batch.x)
        gb = torch.autograd.grad(lb, list(ref.b.parameters()))
    for p, g in zip(model.b.parameters(), gb):
        torch.testing.assert_close(p.grad, g)
    # And both groups did step.
    assert not torch.equal(model.a.weight, before["a.weight"])
    assert not torch.equal(model.b.weight, before["b.weight"])


def test_gradients_would_leak_without_isolation(tiny_data):
    """The failure this guards against (pythae): one backward of the sum mixes the groups."""
    model = TwoGroupToy()
    x = tiny_data.batch(torch.arange(32))
    la, lb = model.losses(x)
    leaked = torch.autograd.grad(la + lb, list(model.a.parameters()))
    own = torch.autograd.grad(model.losses(x)[0], list(model.a.parameters()))
    assert not torch.allclose(leaked[0], own[0])


def tiny_vae():
    torch.manual_seed(0)
    return build_model("vae", model_config("vae", TINY), (1, 16, 16))


def test_short_training_run_lowers_the_loss(tiny_data, tmp_path):
    trainer = Trainer(tiny_vae(), tiny_data, _cfg(steps=80, log_every=10, lr=3e-3), tmp_path, progress=False)
    trainer.fit()
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(10, 81, 10))
    assert rows[-1]["loss"] < 0.8 * rows[0]["loss"]
    assert all(r["images_per_s"] > 0 for r in rows)


def _eval_with_noise(model, step):
    assert not model.training  # evaluation runs in eval mode
    return {"noise": float(torch.rand(()))}  # consumes RNG: must not disturb training's stream


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_is_bit_identical(tiny_data, tmp_path, precision):
    cfg = _cfg(steps=12, checkpoint_every=3, eval_every=2, log_every=3, lr=3e-3, precision=precision)
    straight = Trainer(tiny_vae(), tiny_data, cfg, tmp_path / "a", evaluate=_eval_with_noise, progress=False)
    straight.fit()

    half = Trainer(tiny_vae(), tiny_data, dataclasses.replace(cfg, steps=6), tmp_path / "b",
                   evaluate=_eval_with_noise, progress=False)
    half.fit()
    torch.manual_seed(1234)  # a fresh process would not share the RNG state: the checkpoint must carry it
    resumed = Trainer(tiny_vae(), tiny_data, cfg, tmp_path / "b", evaluate=_eval_with_noise, progress=False)
    assert resumed.resume() == 6
    resumed.fit()

    sa, sb = straight.model.state_dict(), resumed.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    la = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    lb = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["loss"] for l in la] == [json.loads(l)["loss"] for l in lb]


class ExplodesAtStep3(GenerativeModel):
    config_class = dict

    def __init__(self):
        super().__init__({}, (1, 16, 16))
        self.w = nn.Parameter(torch.ones(()))

    def loss(self, batch, step=0, phase=0):
        kl = self.w * 0 + (float("nan") if step >= 3 else 1.0)
        return {"loss": self.w ** 2 + kl, "kl": kl}


def test_non_finite_loss_stops_with_step_and_term_and_keeps_last_checkpoint(tiny_data, tmp_path):
    trainer = Trainer(ExplodesAtStep3(), tiny_data, _cfg(steps=10, checkpoint_every=2), tmp_path, progress=False)
    with pytest.raises(TrainingDiverged) as err:
        trainer.fit()
    msg = str(err.value)
    assert "step 4" in msg and "'kl'" in msg and "step 2" in msg
    assert latest_checkpoint(tmp_path).name == "step-00000002"
    fresh = ExplodesAtStep3()
    load_model_weights(latest_checkpoint(tmp_path), fresh)  # intact and loadable


def test_checkpoint_write_failure_leaves_previous_checkpoint(tiny_data, tmp_path, monkeypatch):
    trainer = Trainer(tiny_vae(), tiny_data, _cfg(steps=2, checkpoint_every=1), tmp_path, progress=False)
    trainer.fit()
    assert latest_checkpoint(tmp_path).name == "step-00000002"
    real = ckpt_mod.save_file

    def failing(tensors, path, metadata=None):
        if path.endswith("trainer.safetensors"):
            raise OSError("disk full")
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(ckpt_mod, "save_file", failing)
    trainer.step = 3
    with pytest.raises(OSError):
        trainer.save()
    assert latest_checkpoint(tmp_path).name == "step-00000002"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest.json", "step-00000001",
                                                                              "step-00000002"]


def test_old_checkpoints_are_pruned(tiny_data, tmp_path):
    Trainer(tiny_vae(), tiny_data, _cfg(steps=5, checkpoint_every=1, keep_checkpoints=2), tmp_path,
            progress=False).fit()
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*"))
    assert names == ["step-00000004", "step-00000005"]


def test_pickled_checkpoint_is_refused(tmp_path):
    d = tmp_path / "ckpt"
    d.mkdir()
    torch.save({"weight": torch.ones(2)}, d / "model.safetensors")  # a pickle under the right name
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_model_weights(d, tiny_vae())
    (d / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_model_weights(d, tiny_vae())


def test_epochs_set_the_number_of_steps(tiny_data):
    trainer = Trainer(tiny_vae(), tiny_data, _cfg(epochs=2.5, batch_size=32), progress=False)
    assert trainer.total_steps == 20  # 256 // 32 = 8 steps per epoch


def test_sampler_visits_every_image_once_per_epoch(tiny_data):
    trainer = Trainer(tiny_vae(), tiny_data, _cfg(batch_size=32), progress=False)
    seen = torch.cat([trainer.sampler.indices(s) for s in range(8)])
    assert torch.equal(seen.sort().values, torch.arange(256))
    assert not torch.equal(trainer.sampler.indices(8), trainer.sampler.indices(0))  # new epoch, new order


def test_a_safetensors_file_whose_header_length_starts_like_a_pickle_is_read(tmp_path):
    """The header's 8-byte length leads a safetensors file; a low byte of 0x80 (or "PK") is a pickle's
    (zip's) magic, yet the file is safetensors and must load, while real pickles are still refused."""
    import pickle

    from safetensors.torch import save_file

    from vaekit.train.checkpoint import looks_like_pickle, read_safetensors

    path = tmp_path / "x.safetensors"
    for n in range(1, 400):
        save_file({"a" * n: torch.zeros(1)}, path)
        if path.read_bytes()[:1] == b"\x80":
            break
    assert path.read_bytes()[:1] == b"\x80" and not looks_like_pickle(path)
    assert list(read_safetensors(path)) == ["a" * n]
    (tmp_path / "p.pkl").write_bytes(pickle.dumps({"a": 1}))
    torch.save({"a": 1}, tmp_path / "t.pt")
    assert looks_like_pickle(tmp_path / "p.pkl") and looks_like_pickle(tmp_path / "t.pt")


def test_progress_shows_the_step_and_time_left_between_log_intervals():
    """A slow model logs every 50 steps, which can be minutes: a line with the step and eta comes every
    `every` seconds in between, and never more often."""
    import io
    import time

    from vaekit.train.progress import Progress

    stream = io.StringIO()
    progress = Progress(100, stream=stream, every=0.05)
    progress.tick(1)
    assert stream.getvalue() == ""  # too soon
    time.sleep(0.06)
    progress.tick(3)
    line = stream.getvalue()
    assert "3/100" in line and "eta" in line
    progress.tick(4)
    assert stream.getvalue() == line
    progress.update(5, {"loss": 1.5}, 10.0)
    assert "loss=1.5" in stream.getvalue().splitlines()[-1]


def test_keep_best_keeps_the_model_of_the_best_quick_evaluation(tmp_path, capsys):
    """train.keep_best: RUN/best holds the weights of the evaluation with the highest test ELBO (bit for bit
    the checkpoint of that step), loads with vaekit.load, and is named in the report."""
    import vaekit
    from safetensors.torch import load_file

    from vaekit.cli.main import main

    out = tmp_path / "run"
    assert main(["train", "vae", "--data", "digits", "--steps", "20", "--out", str(out), "--quiet", "--iw-samples", "0",
                 "--set", "model.latent_dim=4", "--set", "model.base_channels=8", "--set", "model.max_channels=16",
                 "--set", "train.eval_every=5", "--set", "train.checkpoint_every=5", "--set", "train.keep_checkpoints=9",
                 "--set", "train.lr=0.03", "--set", "train.keep_best=test/elbo"]) == 0
    capsys.readouterr()
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines() if "test/elbo" in line]
    best = max(evals[:-1], key=lambda e: e["test/elbo"])  # the quick ones; the last line is the final evaluation
    kept = json.loads((out / "best" / "best.json").read_text())
    assert kept == {"step": best["step"], "metric": "test/elbo", "value": best["test/elbo"]}
    weights = load_file(str(out / "best" / "model.safetensors"))
    at_step = load_file(str(out / "checkpoints" / f"step-{best['step']:08d}" / "model.safetensors"))
    assert all(torch.equal(weights[k], at_step[k]) for k in at_step)
    assert vaekit.load(out / "best").sample(2).shape == (2, 1, 8, 8)
    assert f"best checkpoint by test/elbo of the quick evaluations: step {best['step']}" in (out / "report.md").read_text()
    with pytest.raises(ConfigError, match="train.keep_best must be one of"):
        TrainConfig(keep_best="samples/fd")


def test_a_run_writes_a_tensorboard_log_that_reads_back(tmp_path, capsys):
    """Scalars of the logged rows and evaluations, the sample and reconstruction grids and the KL histogram;
    the log changes nothing of the training (same weights as a run without it)."""
    pytest.importorskip("tensorboard")
    from safetensors.torch import load_file
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vaekit.cli.main import main

    args = ["train", "vae", "--data", "digits", "--steps", "10", "--quiet", "--iw-samples", "0",
            "--set", "model.latent_dim=4", "--set", "model.base_channels=8", "--set", "model.max_channels=16",
            "--set", "train.eval_every=5", "--set", "train.log_every=2"]
    assert main([*args, "--out", str(tmp_path / "tb")]) == 0
    assert main([*args, "--out", str(tmp_path / "plain"), "--set", "train.tensorboard=false"]) == 0
    capsys.readouterr()
    assert not (tmp_path / "plain" / "tensorboard").exists()
    log = EventAccumulator(str(tmp_path / "tb" / "tensorboard"), size_guidance={"images": 0, "histograms": 0}).Reload()
    tags = log.Tags()
    assert [e.step for e in log.Scalars("train/loss")] == [2, 4, 6, 8, 10]
    assert [e.step for e in log.Scalars("eval/test/elbo")] == [5, 10]  # the quick one, then the final one
    assert {"samples", "reconstructions (image, then its reconstruction)"} <= set(tags["images"])
    assert tags["histograms"] == ["kl_per_dimension"]
    a = load_file(str(tmp_path / "tb" / "checkpoints" / "step-00000010" / "model.safetensors"))
    b = load_file(str(tmp_path / "plain" / "checkpoints" / "step-00000010" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
