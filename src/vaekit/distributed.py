"""Data-parallel training on PyTorch's own engine (torch.distributed, launched by `torchrun`): gloo on
CPUs, NCCL on GPUs. A process started by torchrun (RANK, WORLD_SIZE, LOCAL_RANK in its environment)
joins the group; any other process is a world of one and nothing here costs it anything.

What the trainer relies on:
- `train.batch_size` is the global batch; each rank takes every W-th index of the global batch of a
  step (the sampler stays a function of (seed, step) alone), so resuming on another number of
  processes continues the same data order;
- each parameter group's gradient is averaged across ranks on its own, once, right after that group's
  backward (`average_gradients`), so groups never mix and each is the gradient of the global batch
  mean of its own loss;
- the logged terms are averaged across ranks in one all-reduce per phase (`mean_terms`); a non-finite
  term on any rank is then non-finite everywhere, so every rank stops with the same message;
- only rank 0 writes (checkpoints, logs, pictures, report, evaluation); a failure before training
  starts on rank 0 is told to every rank (`agree`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

from .errors import VaekitError

# How long a collective waits for a rank that is alive but silent (e.g. rank 0 evaluating); a rank that
# died is noticed at once through its closed connection.
TIMEOUT_S = int(os.environ.get("VAEKIT_DIST_TIMEOUT", "1800"))


class DistributedError(VaekitError):
    """A rank failed or lost contact with the others."""


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place, from torchrun's environment; a world of one without it."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


def init(device: torch.device) -> World:
    """Join the process group (once) with the backend for `device`; a GPU rank takes its local GPU."""
    w = world()
    if w.distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(w.local_rank)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=TIMEOUT_S))
    return w


def device_for(device: torch.device) -> torch.device:
    """A GPU rank's own device (cuda:LOCAL_RANK); other devices unchanged."""
    w = world()
    if w.distributed and device.type == "cuda" and device.index is None:
        return torch.device("cuda", w.local_rank)
    return device


def _collective(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except (RuntimeError, dist.DistBackendError) as e:  # a peer died or timed out
        raise DistributedError(f"rank {world().rank} lost contact with the other ranks ({str(e).splitlines()[0][:160]}); "
                               "every rank stops, the last good checkpoint is kept") from None


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average the gradients of one parameter group across ranks, in one all-reduce. A parameter
    without a gradient takes zeros, so that every rank sends the same layout."""
    if not dist.is_initialized() or not params:
        return
    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    flat = torch.cat([g.reshape(-1) for g in grads])
    _collective(dist.all_reduce, flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def mean_terms(terms: dict[str, Tensor]) -> dict[str, Tensor]:
    """The ranks' mean of every (detached, scalar) term, in one all-reduce; a term non-finite on any
    rank is non-finite in the mean."""
    if not dist.is_initialized():
        return terms
    keys = list(terms)
    values = torch.stack([terms[k].detach().float().reshape(()) for k in keys])
    _collective(dist.all_reduce, values, op=dist.ReduceOp.SUM)
    values /= dist.get_world_size()
    return dict(zip(keys, values.unbind()))


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (the same seed builds the same model; this makes it so)."""
    if not dist.is_initialized():
        return
    for t in module.state_dict().values():
        if isinstance(t, Tensor) and t.numel():
            _collective(dist.broadcast, t, 0)


_MESSAGE_BYTES = 2048


def agree(error: VaekitError | None) -> None:
    """Rank 0's verdict on every rank: its error (a VaekitError, or None for "go on") raised alike, with
    its message and exit code."""
    if not dist.is_initialized():
        if error is not None:
            raise error
        return
    buffer = torch.zeros(_MESSAGE_BYTES + 1, dtype=torch.uint8)
    if world().main and error is not None:
        data = str(error).encode()[:_MESSAGE_BYTES]
        buffer[0] = 1 + error.exit_code
        buffer[1:1 + len(data)] = torch.tensor(list(data), dtype=torch.uint8)
    _collective(dist.broadcast, buffer, 0)
    if buffer[0]:
        if error is not None:
            raise error
        told = VaekitError(bytes(buffer[1:].tolist()).rstrip(b"\0").decode(errors="replace"))
        told.exit_code = int(buffer[0]) - 1
        raise told


def barrier() -> None:
    if dist.is_initialized():
        _collective(dist.barrier)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
