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

`vaekit train` starts such a group by itself on a multi-core CPU (`train.processes`, `worker_plan`,
`run_workers`): one single-threaded process per core, because a step of vaekit's small networks gains
little from a second intra-op thread and almost 2x from a second process (benchmarks/results/speed.md).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

from .errors import ConfigError, VaekitError

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


@dataclass(frozen=True)
class Share:
    """One rank's part in work that every rank of a group does together (a run's final evaluation):
    the tasks it takes (`mine`) and how their results reach every rank (`gather`). Share() is a world
    of one; `Share.of_group()` is this process's place in its process group."""

    rank: int = 0
    size: int = 1
    gather: object = None  # {task: result} of this rank -> every rank's, merged; None = this rank's alone

    @classmethod
    def of_group(cls) -> "Share":
        w = world()
        return cls(w.rank, w.size, gather_results) if dist.is_initialized() and w.size > 1 else cls()

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mine(self, costs: list[float]) -> list[int]:
        """The tasks (indices into `costs`) this rank does: each task, costliest first, to the rank with
        the least work so far (ties to the lower rank) — the same plan on every rank."""
        load, owner = [0.0] * self.size, {}
        for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
            r = min(range(self.size), key=lambda r: (load[r], r))
            owner[i], load[r] = r, load[r] + costs[i]
        return [i for i in range(len(costs)) if owner[i] == self.rank]

    def merged(self, mine: dict) -> dict:
        return mine if self.gather is None else self.gather(mine)


def gather_results(mine: dict) -> dict:
    """Every rank's {task: result} merged, on every rank (results are moved to the CPU by their makers)."""
    parts = [None] * dist.get_world_size()
    _collective(dist.all_gather_object, parts, mine)
    return {k: v for part in parts for k, v in part.items()}


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


def from_main(value: float) -> float:
    """Rank 0's number on every rank (itself without a process group)."""
    if not dist.is_initialized():
        return value
    buffer = torch.tensor([value], dtype=torch.float64)
    _collective(dist.broadcast, buffer, 0)
    return float(buffer[0])


def barrier() -> None:
    if dist.is_initialized():
        _collective(dist.barrier)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


# --- processes that `vaekit train` starts by itself --------------------------------------------

MIN_IMAGES_PER_WORKER_RUN = 50_000  # below this many training images, starting workers (~3 s) does not pay
MIN_BATCH_PER_PROCESS = 32  # smaller shares per rank make each step's matrices too thin to be worth it


def local_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@dataclass(frozen=True)
class WorkerPlan:
    processes: int
    threads: int  # intra-op threads of each
    why: str


def worker_plan(processes, device: torch.device, batch_size: int, images: int | None, cores: int | None = None) -> WorkerPlan:
    """How many worker processes `vaekit train` starts for `train.processes` (an int, or "auto"). Auto:
    on a CPU with 2 or more cores, for a run of at least MIN_IMAGES_PER_WORKER_RUN training images
    (`images`; None = unknown, an epochs run, taken as long enough), the largest number of processes
    <= the cores that divides the batch into shares of at least MIN_BATCH_PER_PROCESS; else one. A
    process already under torchrun starts none."""
    cores = cores or local_cores()
    if world().distributed:
        return WorkerPlan(1, 0, "already one of a torchrun group")
    if processes != "auto":
        n = int(processes)
        if n > 1 and device.type != "cpu":
            raise ConfigError(f"train.processes={n} starts CPU worker processes; on {device.type} use torchrun "
                              "(one process per GPU) and leave train.processes at auto")
        if n > 1 and batch_size % n:
            raise ConfigError(f"train.batch_size={batch_size} is the global batch and must divide among the "
                              f"{n} processes of train.processes; choose a multiple of {n}")
        return WorkerPlan(n, max(1, cores // n), "train.processes")
    if device.type != "cpu" or cores < 2:
        return WorkerPlan(1, 0, "one process: " + ("not a CPU run" if device.type != "cpu" else "one core"))
    if images is not None and images < MIN_IMAGES_PER_WORKER_RUN:
        return WorkerPlan(1, 0, f"one process: {images:,} training images do not repay starting workers")
    for n in range(min(cores, batch_size // MIN_BATCH_PER_PROCESS), 1, -1):
        if batch_size % n == 0:
            return WorkerPlan(n, max(1, cores // n), f"{n} processes, one per core")
    return WorkerPlan(1, 0, f"one process: batch {batch_size} does not divide into shares of {MIN_BATCH_PER_PROCESS}+")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_workers(cmd: list[str], plan: WorkerPlan) -> int:
    """Run command `cmd` as `plan.processes` ranks of one gloo group on this machine, as torchrun
    would; return rank 0's exit code (or, when rank 0 succeeded, the first failing rank's).
    Rank 0 talks to the terminal; the other ranks' output is shown only if one of them failed alone,
    so a refusal that every rank agreed on is printed once."""
    port = _free_port()
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
            "WORLD_SIZE": str(plan.processes), "LOCAL_WORLD_SIZE": str(plan.processes),
            "OMP_NUM_THREADS": str(plan.threads), "VAEKIT_ALL_THREADS": str(local_cores())}
    procs, logs = [], []
    try:
        for rank in range(plan.processes):
            env = {**base, "RANK": str(rank), "LOCAL_RANK": str(rank), "GROUP_RANK": "0"}
            if rank == 0:  # its progress display on stderr; the caller reports the result
                procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL))
            else:
                log = tempfile.TemporaryFile()
                logs.append(log)
                procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log))
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:  # a terminal's Ctrl-C reached them too; a kill of this process alone did not
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if codes[0] == 0 and any(codes[1:]):
        for code, log in zip(codes[1:], logs):
            if code:
                log.seek(0)
                sys.stderr.write(log.read().decode(errors="replace"))
                return code
    for log in logs:
        log.close()
    return codes[0]


@contextlib.contextmanager
def all_cores():
    """While rank 0 works alone (evaluating, checkpointing, drawing) and the other local ranks wait in a
    collective, rank 0 uses their cores' threads too. Nothing changes in a world of one or on a GPU."""
    if not dist.is_initialized() or dist.get_backend() != "gloo":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("VAEKIT_ALL_THREADS", local_cores())))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def sum_tensor(t: Tensor) -> Tensor:
    """The sum of `t` over the ranks, in place (itself without a process group)."""
    if dist.is_initialized():
        _collective(dist.all_reduce, t, op=dist.ReduceOp.SUM)
    return t


def broadcast_tensor(t: Tensor) -> Tensor:
    """Rank 0's `t` on every rank, in place; the shape must agree (itself without a process group)."""
    if dist.is_initialized():
        _collective(dist.broadcast, t, 0)
    return t
