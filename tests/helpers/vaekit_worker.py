"""The vaekit command for the distributed tests, run by torchrun (or by hand with its environment), with
two test-only switches: VAEKIT_TEST_NO_NOISE=1 makes every Gaussian draw its mean, so that a run's
numbers do not depend on how the batch is cut among ranks; VAEKIT_TEST_KILL=RANK:STEP kills that rank
(SIGKILL, no clean-up) as it starts that step; VAEKIT_TEST_NAN=RANK:STEP makes that rank's loss
non-finite at that step."""

import os
import signal
import sys

if os.environ.get("VAEKIT_TEST_NO_NOISE"):
    from vaekit.distributions import DiagonalGaussian

    DiagonalGaussian.sample = lambda self, n=None: self.mu if n is None else self.mu.expand(n, *self.mu.shape)

if os.environ.get("VAEKIT_TEST_KILL"):
    from vaekit.train.trainer import Trainer

    rank, step = map(int, os.environ["VAEKIT_TEST_KILL"].split(":"))
    original = Trainer.train_step

    def train_step(self, batch):
        if self.world.rank == rank and self.step == step:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, batch)

    Trainer.train_step = train_step

if os.environ.get("VAEKIT_TEST_NAN"):
    import torch

    nan_rank, nan_step = map(int, os.environ["VAEKIT_TEST_NAN"].split(":"))
    from vaekit.models.vae import AE

    original_loss = AE.loss_and_output

    def loss_and_output(self, batch, step=0):
        terms, out = original_loss(self, batch, step)
        if self.training and int(os.environ.get("RANK", "0")) == nan_rank and step == nan_step:
            terms = {**terms, "loss": terms["loss"] * torch.tensor(float("nan"))}
        return terms, out

    AE.loss_and_output = loss_and_output

from vaekit.cli.main import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
