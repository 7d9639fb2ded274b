"""The GPU path's promise, checked on the CPU: between two reads of the divergence checks
(train.check_every) vaekit's code in a training step reads no value back to the host — no .item(),
bool(), float(), int() or .tolist() of a tensor — so on a GPU it queues its work without waiting for
it. (torch's Adam reads its step counters, which live on the CPU unless capturable: no device sync.)"""

from __future__ import annotations

import os
import sys

import pytest
import torch

from conftest import blob_images, tiny_settings
from vaekit.config import TrainConfig
from vaekit.data import ImageDataset
from vaekit.models import build_model, model_config
from vaekit.train.trainer import Trainer

READS = ("item", "__bool__", "__float__", "__int__", "tolist", "__index__")


@pytest.fixture
def count_reads(monkeypatch):
    counts = {"n": 0}
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if f"{os.sep}vaekit{os.sep}" in caller and f"{os.sep}tests{os.sep}" not in caller:
                counts["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


@pytest.mark.parametrize("name", ["vae", "cvae", "vaegan", "btcvae", "draw"])
def test_a_step_between_checks_reads_nothing_back_and_a_check_step_does(name, count_reads):
    torch.manual_seed(0)
    model = build_model(name, model_config(name, tiny_settings(name)), (1, 16, 16))
    data = ImageDataset("blobs", "train", blob_images(64), torch.arange(64) % 4, list("abcd"), "memory")
    trainer = Trainer(model, data, TrainConfig(steps=8, batch_size=8, log_every=100, check_every=4), progress=False)
    batches = [trainer.batch_at(s) for s in range(4)]  # the sampler reads indices on the host: not the step's
    reads = []
    for batch in batches:
        count_reads["n"] = 0
        trainer.train_step(batch)
        trainer.step += 1
        reads.append(count_reads["n"])
    assert reads[:3] == [0, 0, 0], reads
    assert reads[3] > 0  # the check step reads the flag (and the exploding check its totals)


def test_a_divergence_between_checks_is_caught_at_the_next_check(monkeypatch):
    from vaekit.errors import TrainingDiverged

    torch.manual_seed(0)
    model = build_model("vae", model_config("vae", tiny_settings("vae")), (1, 16, 16))
    data = ImageDataset("blobs", "train", blob_images(64), None, None, "memory")
    trainer = Trainer(model, data, TrainConfig(steps=8, batch_size=8, check_every=3), progress=False)
    original = model.loss
    monkeypatch.setattr(model, "loss", lambda b, step=0, phase=0: {**original(b, step, phase),
                                                                   "recon": torch.tensor(float("nan"))}
                        if step == 0 else original(b, step, phase))
    trainer.train_step(trainer.batch_at(0))  # non-finite here, not read yet
    trainer.step += 1
    trainer.train_step(trainer.batch_at(1))
    trainer.step += 1
    with pytest.raises(TrainingDiverged, match="between steps 1 and 3"):
        trainer.train_step(trainer.batch_at(2))


@pytest.mark.slow
def test_train_compile_trains_as_the_eager_model_does():
    """train.compile = true: the same parameters after a few steps as without, to float tolerance (on a
    CPU torch.compile builds C++ kernels first: about half a minute)."""
    def run(compile_: bool):
        torch.manual_seed(0)
        model = build_model("ae", model_config("ae", {**tiny_settings("ae"), "norm": "none"}), (1, 16, 16))
        data = ImageDataset("blobs", "train", blob_images(64), None, None, "memory")
        trainer = Trainer(model, data, TrainConfig(steps=3, batch_size=8, compile=compile_), progress=False)
        trainer.fit()
        return dict(model.named_parameters())

    eager, compiled = run(False), run(True)
    for k in eager:
        torch.testing.assert_close(compiled[k], eager[k], atol=1e-4, rtol=1e-3, msg=k)
