"""The model-agnostic training loop: one or several optimisers per iteration.

The model says which parameter groups exist (`optim_groups`) and in which phases they are stepped
(`update_phases`); the trainer guarantees isolation: within a phase, every group's gradient is
computed from its own loss alone (`backward(inputs=group)`), all before any parameter changes, then
each group's optimiser steps. A later phase calls `model.loss` again on the updated weights. This
is the fix for pythae's trainer, whose later losses leaked into earlier optimisers' gradients.

Determinism: the data order is a function of (seed, step) alone and the RNG state is checkpointed,
so N steps straight and N/2 + resume + N/2 give bit-identical parameters on CPU.

Under torchrun (vaekit.distributed) `train.batch_size` is the global batch: each rank takes every W-th
image of the step's batch, each group's gradient is averaged across ranks right after its own
backward, the logged terms are the ranks' mean, and only rank 0 writes. Every rank's random draws at
step t come from (seed, rank, t), so a distributed run resumed on the same number of processes is
bit-identical to the run straight through. While rank 0 evaluates, writes and draws alone, it uses the
cores of every waiting local rank (`distributed.all_cores`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from .. import distributed
from ..config import KEEP_BEST, TrainConfig
from ..data.labelled import UNLABELLED, labelled_positions
from ..device import resolve_device
from ..errors import ConfigError, TrainingDiverged
from ..batch import Batch
from ..models.base import GenerativeModel, eval_mode
from ..layout import resolve_channels_last
from ..precision import autocast, resolve_precision
from ..schedules import Scheduled, at_step, scheduled_fields
from ..files import write_text_atomic
from .checkpoint import latest_checkpoint, load_checkpoint, read_best, save_best, save_checkpoint
from .progress import Progress

EvalFn = Callable[[GenerativeModel, int], dict]


class EpochSampler:
    """Batches of indices: a fresh permutation each epoch, seeded by (seed, epoch); the last
    incomplete batch of an epoch is dropped so every step sees `batch_size` images."""

    def __init__(self, n: int, batch_size: int, seed: int):
        if batch_size > n:
            raise ConfigError(f"train.batch_size={batch_size} exceeds the {n} training images")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.steps_per_epoch = n // batch_size
        self._epoch, self._perm = -1, None

    def indices(self, step: int) -> Tensor:
        epoch, k = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g)
        return self._perm[k * self.batch_size:(k + 1) * self.batch_size]


class MixedSampler:
    """Batches of a partly labelled split: `labelled_per_batch` indices from the labelled images and the
    rest from the unlabelled ones, each part walking through its own seeded permutations (epochs of
    that part), so the order is still a function of (seed, step) alone. `steps_per_epoch` counts
    passes over the whole split, as EpochSampler's."""

    def __init__(self, labelled: Tensor, unlabelled: Tensor, batch_size: int, fraction: float, seed: int):
        n_l = min(batch_size - 1, max(1, round(batch_size * fraction)))
        if batch_size < 2:
            raise ConfigError("train.batch_size must be >= 2 to hold labelled and unlabelled images")
        if n_l > len(labelled):
            raise ConfigError(f"{n_l} labelled images per batch (data.labelled_fraction x train.batch_size) exceed "
                              f"the {len(labelled)} labelled images; lower data.labelled_fraction or train.batch_size")
        if batch_size - n_l > len(unlabelled):
            raise ConfigError(f"{batch_size - n_l} unlabelled images per batch exceed the {len(unlabelled)} "
                              "unlabelled images; raise data.labelled_fraction or lower train.batch_size")
        self.batch_size, self.labelled_per_batch = batch_size, n_l
        self.steps_per_epoch = (len(labelled) + len(unlabelled)) // batch_size
        self.parts = [EpochSampler(len(labelled), n_l, seed), EpochSampler(len(unlabelled), batch_size - n_l,
                                                                            seed + 7_919)]
        self.positions = [labelled, unlabelled]

    def indices(self, step: int) -> Tensor:
        return torch.cat([pos[part.indices(step)] for pos, part in zip(self.positions, self.parts)])


def _rng_devices(device: torch.device) -> list:
    """CUDA generators that evaluation must fork so it does not disturb training's random stream."""
    return [device.index or 0] if device.type == "cuda" else []


def _append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def truncate_jsonl(path: Path, max_step: int) -> None:
    """On resume, drop log rows written after the checkpoint (a crash can leave some, the last one cut
    off mid-line); atomically, so a crash now does not lose the rows kept."""
    if not path.exists():
        return
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and row.get("step", 0) <= max_step:
            rows.append(line)
    write_text_atomic(path, "".join(r + "\n" for r in rows))


EVENTS = ("on_fit_end", "on_log", "on_evaluation")


class Trainer:
    def __init__(self, model: GenerativeModel, train_data, config: TrainConfig, run_dir: str | Path | None = None,
                 evaluate: EvalFn | None = None, progress: bool = True, labelled_fraction: float = 0.5):
        self.model, self.data, self.config = model, train_data, config
        self.device = distributed.device_for(resolve_device(config.device))
        autocast(self.device, config.precision)  # refuses bf16 where the device lacks it, before any folder exists
        self.precision = resolve_precision(config.precision, self.device)  # what "auto" is here
        self.world = distributed.init(self.device)
        if config.batch_size % self.world.size:
            raise ConfigError(f"train.batch_size={config.batch_size} is the global batch and must divide among the "
                              f"{self.world.size} processes; choose a multiple of {self.world.size}")
        if config.sync_batchnorm and self.world.distributed:
            from ..nn.batchnorm import globalise_batch_norm

            globalise_batch_norm(model)
        model.to(self.device)
        self.channels_last = resolve_channels_last(config.channels_last, self.device, model)  # what "auto" is here
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        distributed.broadcast_parameters(model)
        # a GPU keeps the training images when they fit in a quarter of its free memory: no copy per step
        self.data_on_device = False
        if self.device.type == "cuda" and getattr(train_data, "images", None) is not None and \
                train_data.images.numel() < torch.cuda.mem_get_info(self.device)[0] // 4:
            import dataclasses

            train_data = dataclasses.replace(train_data, images=train_data.images.to(self.device))
            self.data_on_device = True
        self.data = train_data
        self.check_every = config.check_every or (config.log_every if self.device.type == "cuda" else 1)
        self._finite = torch.ones((), dtype=torch.bool, device=self.device)  # no term non-finite since the last read
        # scheduled model settings: the model is given their values at every step (vaekit.schedules)
        self._base_model_config = getattr(model, "config", None)
        self.scheduled = scheduled_fields(self._base_model_config)
        if self.scheduled and config.compile:
            raise ConfigError(f"train.compile would recompile the loss at every step of a scheduled setting "
                              f"(model.{next(iter(self.scheduled))}); drop one of them")
        self._compiled_loss = torch.compile(model.loss) if config.compile else None
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.writes = self.world.main  # only rank 0 writes into the run folder
        self.evaluate_fn = evaluate
        self.show_progress = progress and self.world.main
        self.groups = model.optim_groups()
        self.phases = model.update_phases()
        for phase in self.phases:
            for name in phase:
                if name not in self.groups:
                    raise ConfigError(f"{type(model).__name__}: phase names unknown parameter group {name!r}")
        for setting in ("group_lr", "group_adam_betas"):
            unknown = sorted(set(getattr(config, setting)) - set(self.groups))
            if unknown:
                raise ConfigError(f"train.{setting} names {', '.join(map(repr, unknown))}; {type(model).__name__}'s "
                                  f"parameter groups are {', '.join(map(repr, self.groups))}")
        self.optimizers = {
            name: torch.optim.Adam(params, lr=float(config.group_lr.get(name, config.lr)),
                                   betas=config.group_adam_betas.get(name, config.adam_betas),
                                   weight_decay=config.weight_decay)
            for name, params in self.groups.items()
        }
        # a scheduled train.lr: the groups without a group_lr of their own take its value at every step
        # and a group whose group_lr is a schedule takes that
        self.lr_schedules = {name: config.group_lr.get(name, config.lr) for name in self.groups
                             if isinstance(config.group_lr.get(name, config.lr), Scheduled)}
        self._levels: dict[str, tuple[float, int]] = {}  # (running mean |loss|, count) per optimised total
        labelled = labelled_positions(train_data.labels)  # None unless some images lack their label
        if labelled is None:
            self.sampler = EpochSampler(len(train_data), config.batch_size, config.seed)
        else:
            unlabelled = torch.nonzero(train_data.labels == UNLABELLED).flatten()
            self.sampler = MixedSampler(labelled, unlabelled, config.batch_size, labelled_fraction, config.seed)
        if self.run_dir is not None and self.writes:  # only once every setting has been accepted
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.step = 0
        self.last_checkpoint_step: int | None = None
        self.train_seconds = 0.0  # of this session's fit
        self._best: float | None = None  # the best quick evaluation so far by train.keep_best
        # train.lr_plateau: the best metric so far, evaluations since it, the factor on every group's rate
        self.plateau = {"best": None, "waited": 0, "scale": 1.0}
        self.callbacks: dict[str, list] = {event: [] for event in EVENTS}

    # --- callbacks (minGPT's): what a run does around the loop, which knows nothing of it ----------
    def add_callback(self, event: str, callback) -> None:
        """Call `callback(trainer)` at `event`: "on_fit_end", after the last step (a run's final
        evaluation, pictures, report): on rank 0 alone with every local core, the other ranks waiting at
        one barrier, or on every rank for a callback whose `every_rank` is true (work they share).
        "on_log" and "on_evaluation" call `callback(trainer, row)` on rank 0 with each logged row of
        metrics.jsonl and each quick evaluation (a run's TensorBoard log); they must not draw from the
        training's random streams (fork them)."""
        if event not in EVENTS:
            raise ValueError(f"unknown trainer event {event!r}; events are {', '.join(EVENTS)}")
        self.callbacks[event].append(callback)

    def notify(self, event: str, row: dict) -> None:
        if self.writes:
            for callback in self.callbacks[event]:
                callback(self, row)

    def trigger(self, event: str) -> None:
        for callback in self.callbacks[event]:
            if getattr(callback, "every_rank", False):
                callback(self)
            elif self.writes:
                with distributed.all_cores():
                    callback(self)
        distributed.barrier()  # no rank leaves the group while another still holds its connections

    @property
    def total_steps(self) -> int:
        return self.config.total_steps(self.sampler.steps_per_epoch)

    def batch_at(self, step: int) -> Batch:
        idx = self.sampler.indices(step)[self.world.rank::self.world.size]  # this rank's share of the global batch
        y = self.data.labels[idx].to(self.device, non_blocking=True) if self.data.labels is not None else None
        if self.data_on_device:
            idx = idx.to(self.device, non_blocking=True)
        x = self.data.batch(idx).to(self.device, non_blocking=True)
        return Batch(x, y)

    # --- one iteration ---------------------------------------------------------------------
    def train_step(self, batch: Batch) -> dict[str, Tensor]:
        """Run every phase once; return the detached terms of the first phase (for logging)."""
        logged: dict[str, Tensor] = {}
        clip = self.config.grad_clip
        if self.scheduled:
            self.model.config = at_step(self._base_model_config, self.step)
        for name, lr in self.lr_schedules.items():
            for group in self.optimizers[name].param_groups:
                group["lr"] = lr.at(self.step)
        if self.config.lr_plateau:
            self._apply_plateau()
        for phase_index, phase in enumerate(self.phases):
            with autocast(self.device, self.precision):  # the forward pass only; backward follows the dtypes it recorded
                terms = (self._compiled_loss or self.model.loss)(batch, self.step, phase_index)
            shared = distributed.mean_terms(terms)  # every rank's mean: every rank checks the same numbers
            # on the device: the host reads the flag only every check_every steps
            self._finite &= torch.isfinite(torch.stack([t.detach().float().reshape(()) for t in shared.values()])).all()
            if (self.step + 1) % self.check_every == 0:
                self._check_finite(shared)
                self._check_exploding(shared)
            stepped = [name for name in phase if name in terms]  # a group without its total rests this step
            for i, name in enumerate(stepped):
                params = self.groups[name]
                for p in params:
                    p.grad = None
                # Isolation: this group's gradient comes from its own loss only.
                terms[name].backward(inputs=params, retain_graph=i + 1 < len(stepped))
                distributed.average_gradients(params)  # this group's alone, once
                if clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, clip)
            for name in stepped:  # step only after every gradient of the phase is computed
                self.optimizers[name].step()
            if phase_index == 0:
                logged = {k: v.detach() for k, v in shared.items()}
            else:
                logged.update({k: v.detach() for k, v in shared.items() if k in phase})
        for name in self.scheduled:  # the value this step used
            logged[f"schedule/{name}"] = torch.tensor(float(getattr(self.model.config, name)), device=self.device)
        if self.config.lr_plateau:
            logged["schedule/lr_plateau"] = torch.tensor(self.plateau["scale"], device=self.device)
        for name, lr in self.lr_schedules.items():  # train.lr's value, or a group's own
            key = f"schedule/lr/{name}" if name in self.config.group_lr else "schedule/lr"
            logged[key] = torch.tensor(lr.at(self.step), device=self.device)
        return logged

    def _check_finite(self, terms: dict[str, Tensor]) -> None:
        if bool(self._finite):  # the host reads it here, every check_every steps
            return
        bad = [k for k, t in terms.items() if not torch.isfinite(t.detach()).all()]
        if not bad:  # non-finite at a step between two reads, finite again now
            raise TrainingDiverged(f"training diverged between steps {self.step + 2 - self.check_every} and "
                                   f"{self.step + 1}: a term was non-finite{self._checkpoint_note()}. "
                                   "Try a lower train.lr or set train.grad_clip.")
        parts = [k for k in bad if k not in self.groups] or bad  # name the culprit before the totals it spoils
        first = parts[0]
        value = float(terms[first].detach().reshape(-1)[0])
        also = [k for k in bad if k != first]
        since = "" if self.check_every == 1 else f" (checked every {self.check_every} steps)"
        raise TrainingDiverged(f"training diverged at step {self.step + 1}{since}: term {first!r} is {value}"
                               f"{' (also ' + ', '.join(map(repr, also)) + ')' if also else ''}"
                               f"{self._checkpoint_note()}. "
                               "Try a lower train.lr or set train.grad_clip.")

    def _checkpoint_note(self) -> str:
        if self.run_dir is None:
            return ""
        if self.last_checkpoint_step is None:
            return "; no checkpoint had been written yet"
        return f"; the last good checkpoint (step {self.last_checkpoint_step}) in {self.run_dir}/checkpoints is intact"

    def _check_exploding(self, terms: dict[str, Tensor]) -> None:
        """Stop when an optimised total jumps far above its running level: adversarial training that
        blows up usually does so over a few steps before anything turns non-finite. Warm-up: for the
        first 50 steps losses fall fastest and the level is still forming, so only a jump of factor**2
        stops the run there. A loss that is already absurd at its first step has no level to compare
        with; IntroVAE's report flags that case from its logged KLs."""
        factor = self.config.explode_factor
        if not factor:
            return
        for k in self.groups:
            if k not in terms:
                continue
            v = abs(float(terms[k].detach()))
            level, count = self._levels.get(k, (v, 0))
            limit = factor if count >= 50 else factor * factor
            if count >= 1 and v > limit * (level + 1.0):
                raise TrainingDiverged(
                    f"training diverged at step {self.step + 1}: {k!r} = {float(terms[k].detach()):.4g} is over "
                    f"{limit:g} times its running level {level:.4g}{self._checkpoint_note()}. Lower train.lr (or "
                    "train.group_lr for the adversarial group), set train.grad_clip, or raise "
                    "train.explode_factor if this growth is expected.")
            rate = 1.0 / min(count + 1, 100)  # running mean over the first 100 steps, then an EMA
            self._levels[k] = (level + rate * (v - level), count + 1)

    # --- the loop ------------------------------------------------------------------------
    def resume(self) -> int:
        """Restore the newest complete checkpoint of the run folder; return its step (0 if none)."""
        if self.run_dir is None:
            raise ConfigError("resume needs a run folder")
        return self.restore(latest_checkpoint(self.run_dir))

    def restore(self, ckpt: Path | None) -> int:
        """Restore checkpoint folder `ckpt` (None: start from step 0) and drop the log rows written
        after it by a run that went on and crashed; return its step."""
        if ckpt is not None:
            state = load_checkpoint(ckpt, self.model, self.optimizers)
            self.step = self.last_checkpoint_step = int(state["step"])
            if self.config.lr_plateau and "lr_plateau" in state:
                self.plateau = dict(state["lr_plateau"])
        best = read_best(self.run_dir) if self.run_dir is not None else None
        if best is not None and best.get("metric") == self.config.keep_best and best.get("step", 1 << 62) <= self.step:
            self._best = float(best["value"])  # a best from after the checkpoint is found again on the way
        if self.run_dir is not None and self.writes:
            for name in ("metrics.jsonl", "eval.jsonl"):
                truncate_jsonl(self.run_dir / name, self.step)
        return self.step

    def _rank_seed(self) -> int:
        return self.config.seed + 7_919 * self.world.rank

    def save(self) -> None:
        if self.run_dir is None:
            return
        if self.writes:
            save_checkpoint(self.run_dir, self.step, self.model, self.optimizers,
                            extra={"lr_plateau": dict(self.plateau)} if self.config.lr_plateau else None,
                            keep=self.config.keep_checkpoints)
        self.last_checkpoint_step = self.step  # on every rank: their messages name the same checkpoint

    def run_evaluation(self) -> dict:
        if self.evaluate_fn is None or not self.writes:  # rank 0 evaluates; the others wait at the next step
            return {}
        with eval_mode(self.model), torch.random.fork_rng(devices=_rng_devices(self.device)), distributed.all_cores():
            torch.manual_seed(self.config.seed + 17)
            result = self.evaluate_fn(self.model, self.step)
        if self.run_dir is not None:
            _append_jsonl(self.run_dir / "eval.jsonl", {"step": self.step, **result})
            self._keep_if_best(result)
        self._follow_plateau(result)
        self.notify("on_evaluation", {"step": self.step, **result})
        return result

    def _rate(self, name: str) -> float:
        """Group `name`'s rate before the plateau's factor: its schedule's value at this step, or its number."""
        lr = self.lr_schedules.get(name, self.config.group_lr.get(name, self.config.lr))
        return lr.at(self.step) if isinstance(lr, Scheduled) else float(lr)

    def _apply_plateau(self) -> None:
        floor = self.config.lr_plateau["min_lr"]
        for name, optimizer in self.optimizers.items():
            rate = self._rate(name)
            for group in optimizer.param_groups:
                group["lr"] = max(rate * self.plateau["scale"], min(floor, rate))

    def _follow_plateau(self, result: dict) -> None:
        """After a quick evaluation (rank 0's): one more without a better metric, or a new best; `patience`
        of them in a row multiply every group's rate by `factor` (ReduceLROnPlateau's rule)."""
        p = self.config.lr_plateau
        if not p or p["metric"] not in result:
            return
        value, higher, state = float(result[p["metric"]]), KEEP_BEST[p["metric"]], self.plateau
        if state["best"] is None or (value > state["best"] if higher else value < state["best"]):
            state["best"], state["waited"] = value, 0
            return
        state["waited"] += 1
        if state["waited"] >= p["patience"]:
            state["scale"] *= p["factor"]
            state["waited"] = 0

    def _keep_if_best(self, result: dict) -> None:
        key = self.config.keep_best
        if not key or key not in result:
            return
        value, higher = float(result[key]), KEEP_BEST[key]
        if self._best is None or (value > self._best if higher else value < self._best):
            self._best = value
            save_best(self.run_dir, self.step, self.model, key, value)

    def fit(self) -> dict:
        """Train up to `total_steps`, then trigger "on_fit_end"; return the last logged terms."""
        t0 = time.perf_counter()
        last = self._loop()
        self.train_seconds = time.perf_counter() - t0
        if self.scheduled:  # a trained model holds its settings' values at the step it reached (as load_run gives)
            self.model.config = at_step(self._base_model_config, self.step)
        self.trigger("on_fit_end")
        return last

    def _loop(self) -> dict:
        cfg, total = self.config, self.total_steps
        if self.step == 0:
            torch.manual_seed(self._rank_seed())
        self.model.train()
        progress = Progress(total, self.step, enabled=self.show_progress)
        sums: dict[str, Tensor] = {}
        counts: dict[str, int] = {}  # steps that logged each term (a staged model's terms come and go)
        count, t_last, paused, last = 0, time.perf_counter(), 0.0, {}
        while self.step < total:
            if self.world.distributed:  # each rank's draws a function of (seed, rank, step): resume is exact
                torch.manual_seed(self._rank_seed() + 1_000_003 * self.step)
            batch = self.batch_at(self.step)
            terms = self.train_step(batch)
            self.step += 1
            for k, v in terms.items():
                sums[k] = sums[k] + v if k in sums else v.clone()
                counts[k] = counts.get(k, 0) + 1
            count += 1
            if self.step % cfg.log_every == 0 or self.step == total:
                now = time.perf_counter()
                ips = count * cfg.batch_size / max(now - t_last - paused, 1e-9)
                last = {k: float(v) / counts[k] for k, v in sums.items()}
                if self.run_dir is not None and self.writes:
                    _append_jsonl(self.run_dir / "metrics.jsonl",
                                  {"step": self.step, **last, "images_per_s": ips})
                self.notify("on_log", {"step": self.step, **last, "images_per_s": ips})
                progress.update(self.step, last, ips)
                sums, counts, count, t_last, paused = {}, {}, 0, time.perf_counter(), 0.0
            else:
                progress.tick(self.step)
            t_pause = time.perf_counter()  # evaluation and checkpoints do not count towards images/s
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < total:
                result = self.run_evaluation()
                if cfg.lr_plateau:  # rank 0 followed the evaluation; every rank takes its factor
                    self.plateau["scale"] = distributed.from_main(self.plateau["scale"])
                if result:
                    progress.message(f"eval @ {self.step}: " + ", ".join(
                        f"{k}={v:.4g}" for k, v in result.items() if isinstance(v, (int, float)) and math.isfinite(v)))
            if self.step % cfg.checkpoint_every == 0 or self.step == total:
                self.save()
            paused += time.perf_counter() - t_pause
        progress.close()
        return last
