"""Training throughput of vaekit's Trainer against a minimal hand-written PyTorch loop.

What is measured
----------------
The standard conv VAE (`build_model("vae", model_config("vae"), ...)`: latent 32, batch norm,
Bernoulli likelihood) is trained on Fashion-MNIST (batch 128, Adam lr 1e-3) in two ways:

1. vaekit: `vaekit.train.Trainer.fit()` -- its real per-step work: batch sampled by index from the
   epoch permutation, the loss dict, the finiteness check, per-group backward and step, logging
   accumulation every `log_every` steps (no run folder, no evaluation, no checkpoints, no progress bar);
2. minimal: the same model class and initialisation in the shortest loop that trains it:
   a random permutation per epoch, `x = images[idx].float().div_(255)`, `model.loss(...)["loss"]`,
   `zero_grad(set_to_none=True)`, `backward()`, `Adam.step()`. Nothing more — but under the same
   autocast as the trainer's default precision (train.precision = auto: bf16 on a CPU with bf16
   matrix instructions) and with the trainer's default layout (train.channels_last = auto:
   channels-last on a CPU), so that the ratio compares loops, not precisions. Both run in this one
   process; the worker processes `vaekit train` adds on a multi-core CPU are measured in speed.md.

Both get `--warmup` untimed steps first; the second half of the warm-up gives the step rate from
which the number of steps per timed run is chosen (about `--seconds` of work). Then, for each of
`--rounds` rounds, both loops train that same number of steps, one after the other, alternating
which goes first, so drift of the machine (other load, clock speed) cancels in the per-round ratio
vaekit / minimal. The headline is the median of these ratios against the goal of 0.95.

FLOPs per image of one training step (forward + backward of the loss; the Adam update is not
counted) come from `torch.utils.flop_counter.FlopCounterMode` on one batch, divided by the batch
size. The counter counts matrix products and convolutions only (elementwise ops, batch norm and
the likelihood are left out), so FLOPs/image is a lower bound and achieved GFLOP/s =
FLOPs/image x images/s / 1e9 is the rate of useful dense arithmetic.

Run from the repository root (the committed result was made with the default settings):

    python benchmarks/throughput.py                      # 5 rounds x 20 s per loop, plus warm-up
    python benchmarks/throughput.py --rounds 2 --seconds 3 --out /tmp/smoke.md   # a smoke run

It prints a table and writes `--out` (Markdown, default benchmarks/results/throughput.md) and the
same numbers as JSON beside it (same name, `.json`). Every number in them is measured by this run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
try:
    import vaekit  # noqa: F401  (installed, or on PYTHONPATH)
except ImportError:  # a plain checkout: use the sources next to this file
    sys.path.insert(0, str(ROOT / "src"))

from vaekit.config import TrainConfig  # noqa: E402
from vaekit.data import load_dataset  # noqa: E402
from vaekit.errors import DataError  # noqa: E402
from vaekit.models import Batch, build_model, model_config  # noqa: E402
from vaekit.layout import resolve_channels_last  # noqa: E402
from vaekit.precision import autocast, resolve_precision  # noqa: E402
from vaekit.train import Trainer  # noqa: E402

DEVICE = torch.device("cpu")
PRECISION = resolve_precision("auto", DEVICE)  # what the trainer runs in by default here

GOAL = 0.95  # vaekit's trainer must reach this fraction of the minimal loop's images/s
MODEL = "vae"
LR = 1e-3
SEED = 0
FALLBACK_DATA = "digits"  # scikit-learn's bundled digits, resized to 28 x 28: needs no download


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (each times both loops)")
    p.add_argument("--seconds", type=float, default=20.0, help="approximate time per loop per round")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps per loop before the rounds")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--data", default="fashion-mnist", help="training set (falls back to digits if missing)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "throughput.md",
                   help="Markdown report; the JSON goes beside it")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.warmup < 2 or args.batch_size < 1:
        p.error("need --rounds >= 1, --seconds > 0, --warmup >= 2, --batch-size >= 1")
    return args


# ---------------------------------------------------------------------------------------------
# the two loops: each keeps its own model and optimiser and continues where its last run stopped


def fresh_model(image_shape):
    torch.manual_seed(SEED)  # the same initial weights for both loops
    return build_model(MODEL, model_config(MODEL), image_shape)


class VaekitLoop:
    """vaekit's Trainer; `run(n)` raises its step limit by n and calls `fit()`."""

    name = "vaekit"

    def __init__(self, data, batch_size: int):
        self.model = fresh_model(data.image_shape)
        config = TrainConfig(steps=1, batch_size=batch_size, lr=LR, eval_every=0,
                             checkpoint_every=10**12, seed=SEED)  # log_every: the default
        self.trainer = Trainer(self.model, data, config, run_dir=None, evaluate=None, progress=False)
        self.last_loss = math.nan

    def run(self, steps: int) -> None:
        t = self.trainer
        t.config = dataclasses.replace(t.config, steps=t.step + steps)
        self.last_loss = t.fit().get("loss", math.nan)


class MinimalLoop:
    """The shortest correct training loop for the same model."""

    name = "minimal"

    def __init__(self, data, batch_size: int):
        self.model = fresh_model(data.image_shape)
        if resolve_channels_last("auto", DEVICE, self.model):  # the same layout the trainer takes (auto)
            self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.images, self.batch_size = data.images, batch_size
        self.steps_per_epoch = len(data) // batch_size
        self.step, self.perm = 0, None
        self.last_loss = math.nan

    def run(self, steps: int) -> None:
        model, opt, bs = self.model, self.opt, self.batch_size
        model.train()
        for _ in range(steps):
            k = self.step % self.steps_per_epoch
            if k == 0:
                self.perm = torch.randperm(len(self.images))
            idx = self.perm[k * bs:(k + 1) * bs]
            x = self.images[idx].float().div_(255)
            with autocast(DEVICE, PRECISION):  # the same speed-up the trainer takes (train.precision = auto)
                loss = model.loss(Batch(x), self.step)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.step += 1
        self.last_loss = float(loss.detach())


def timed(loop, steps: int) -> float:
    """Seconds of wall time for `steps` training steps of `loop`."""
    gc.collect()
    t0 = time.perf_counter()
    loop.run(steps)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------
# FLOPs and the machine


def flops_per_image(data, batch_size: int) -> tuple[float, float]:
    """(training step, forward only) FLOPs per image, on a separate copy of the model."""
    model = fresh_model(data.image_shape).train()
    x = data.batch(torch.arange(batch_size))
    with FlopCounterMode(display=False) as fwd:
        with torch.no_grad():
            model.loss(Batch(x))
    with FlopCounterMode(display=False) as step:
        model.loss(Batch(x))["loss"].backward()
    return step.get_total_flops() / batch_size, fwd.get_total_flops() / batch_size


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def command_line() -> str:
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(Path.cwd())
    except ValueError:
        pass
    return shlex.join(["python", str(script), *sys.argv[1:]])


def machine() -> dict:
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "precision": PRECISION,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# ---------------------------------------------------------------------------------------------
# the measurement


def load_train_data(name: str):
    try:
        return load_dataset(name, "train"), None
    except DataError as e:
        if name != "fashion-mnist":
            raise
        note = (f"Fashion-MNIST is not available ({e}); measured on scikit-learn's digits resized "
                f"to 28 x 28 instead (`make data` installs Fashion-MNIST)")
        print(f"NOTE: {note}", file=sys.stderr)
        return load_dataset(FALLBACK_DATA, "train", size=28), note


def measure(args) -> dict:
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    data, data_note = load_train_data(args.data)
    if args.batch_size > len(data):
        sys.exit(f"--batch-size {args.batch_size} exceeds the {len(data)} training images of {data.name}")
    bs = args.batch_size

    flops_step, flops_fwd = flops_per_image(data, bs)
    loops = {"vaekit": VaekitLoop(data, bs), "minimal": MinimalLoop(data, bs)}
    n_params = sum(p.numel() for p in loops["minimal"].model.parameters())

    # Warm-up; the second half of it gives each loop's step rate, their mean the steps per run.
    first = args.warmup // 2
    rates = {}
    for name, loop in loops.items():
        loop.run(first)
        rates[name] = (args.warmup - first) / timed(loop, args.warmup - first)
    steps = max(1, round(args.seconds * statistics.mean(rates.values())))
    print(f"{data.name}: {len(data)} images {data.image_shape}, batch {bs}, {torch.get_num_threads()} threads; "
          f"warm-up {args.warmup} steps each; {args.rounds} rounds of {steps} steps (~{args.seconds:g} s) per loop",
          file=sys.stderr)

    rounds = []
    for r in range(args.rounds):
        order = ["vaekit", "minimal"] if r % 2 == 0 else ["minimal", "vaekit"]
        seconds = {name: timed(loops[name], steps) for name in order}
        ips = {name: steps * bs / seconds[name] for name in loops}
        row = {"round": r + 1, "first": order[0], "steps": steps,
               "vaekit_seconds": seconds["vaekit"], "minimal_seconds": seconds["minimal"],
               "vaekit_images_per_s": ips["vaekit"], "minimal_images_per_s": ips["minimal"],
               "ratio": ips["vaekit"] / ips["minimal"]}
        rounds.append(row)
        print(f"  round {r + 1}/{args.rounds} ({order[0]} first): vaekit {ips['vaekit']:,.0f} img/s, "
              f"minimal {ips['minimal']:,.0f} img/s, ratio {row['ratio']:.3f}", file=sys.stderr)

    ratios = [row["ratio"] for row in rounds]
    median_ratio = statistics.median(ratios)
    median_ips = {name: statistics.median(row[f"{name}_images_per_s"] for row in rounds) for name in loops}
    return {
        "command": command_line(),
        "date_utc": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "commit": git_commit(),
        "machine": machine(),
        "load_average_1min": {"start": load_before[0] if load_before else None,
                              "end": os.getloadavg()[0] if load_before else None},
        "budget": {"rounds": args.rounds, "seconds_per_loop_per_round": args.seconds,
                   "steps_per_loop_per_round": steps, "warmup_steps": args.warmup},
        "data": {"requested": args.data, "used": data.name, "images": len(data),
                 "image_shape": list(data.image_shape), "note": data_note},
        "model": {"name": MODEL, "config": dataclasses.asdict(model_config(MODEL)), "parameters": n_params},
        "batch_size": bs,
        "rounds": rounds,
        "ratio": {"median": median_ratio, "min": min(ratios), "max": max(ratios)},
        "goal": GOAL,
        "verdict": "PASS" if median_ratio >= GOAL else "FAIL",
        "median_images_per_s": median_ips,
        "flops_per_image": {"train_step": flops_step, "forward": flops_fwd},
        "gflops_per_s": {name: flops_step * v / 1e9 for name, v in median_ips.items()},
        "last_loss": {name: loop.last_loss for name, loop in loops.items()},
    }


# ---------------------------------------------------------------------------------------------
# report


def rounds_table(res: dict) -> list[str]:
    lines = ["| round | first | vaekit img/s | minimal img/s | ratio vaekit/minimal |",
             "|---:|---|---:|---:|---:|"]
    for row in res["rounds"]:
        lines.append(f"| {row['round']} | {row['first']} | {row['vaekit_images_per_s']:,.0f} | "
                     f"{row['minimal_images_per_s']:,.0f} | {row['ratio']:.3f} |")
    m, r = res["median_images_per_s"], res["ratio"]
    lines.append(f"| **median** | | **{m['vaekit']:,.0f}** | **{m['minimal']:,.0f}** | **{r['median']:.3f}** |")
    return lines


def headline(res: dict) -> str:
    r = res["ratio"]
    return (f"median ratio vaekit / minimal = {r['median']:.3f} (min {r['min']:.3f}, max {r['max']:.3f}) "
            f"against the goal >= {res['goal']:.2f}: {res['verdict']}")


def flops_lines(res: dict) -> list[str]:
    f, g, m = res["flops_per_image"], res["gflops_per_s"], res["median_images_per_s"]
    return [
        f"- FLOPs per image, one training step (forward + backward of the loss): {f['train_step'] / 1e6:,.1f} MFLOP "
        f"(forward alone {f['forward'] / 1e6:,.1f} MFLOP); matrix products and convolutions only, Adam not counted",
        f"- achieved: vaekit {g['vaekit']:.2f} GFLOP/s ({m['vaekit']:,.0f} img/s), "
        f"minimal {g['minimal']:.2f} GFLOP/s ({m['minimal']:,.0f} img/s)",
    ]


def markdown(res: dict, json_name: str) -> str:
    mc, b, d, mo = res["machine"], res["budget"], res["data"], res["model"]
    load = res["load_average_1min"]
    load_text = (f"; 1-min load average {load['start']:.2f} at the start, {load['end']:.2f} at the end"
                 if load["start"] is not None else "")
    lines = [
        "# Training throughput: vaekit's Trainer vs a minimal PyTorch loop",
        "",
        "Made by `benchmarks/throughput.py` (its docstring says what is measured and how). Command, from the "
        "repository root:",
        "",
        "```",
        res["command"],
        "```",
        "",
        f"- date: {res['date_utc']}; code: commit {res['commit']}",
        f"- machine: {mc['cpu']}, {mc['cores']} usable cores ({mc['logical_cpus']} logical CPUs), "
        f"torch {mc['torch']} with {mc['torch_threads']} threads, precision {mc.get('precision', 'fp32')} (both loops), Python {mc['python']}, {mc['platform']}{load_text}",
        f"- budget: {b['rounds']} rounds x {b['seconds_per_loop_per_round']:g} s per loop "
        f"({b['steps_per_loop_per_round']} steps each, chosen from the warm-up rate), "
        f"after {b['warmup_steps']} warm-up steps per loop; the two loops alternate which goes first",
        f"- data: {d['used']} train split, {d['images']:,} images of shape {tuple(d['image_shape'])}, "
        f"batch {res['batch_size']}" + (f". **{d['note']}**" if d["note"] else ""),
        f"- model: the standard conv VAE (`{mo['name']}`, default config: latent {mo['config']['latent_dim']}, "
        f"norm {mo['config']['norm']}, likelihood {mo['config']['likelihood']}), {mo['parameters']:,} parameters; "
        f"Adam lr {LR:g}",
        "",
        *rounds_table(res),
        "",
        f"**Result: {headline(res)}.**",
        "",
        *flops_lines(res),
        f"- loss after the last round (a check that both train alike): vaekit {res['last_loss']['vaekit']:.2f}, "
        f"minimal {res['last_loss']['minimal']:.2f} nats/image",
        "",
        f"The same numbers, machine-readable: `{json_name}`.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    res = measure(args)
    out, out_json = args.out, args.out.with_suffix(".json")

    print()
    print("\n".join(rounds_table(res)))
    print()
    print(headline(res))
    print("\n".join(flops_lines(res)))

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(res, out_json.name))
    out_json.write_text(json.dumps(res, indent=2) + "\n")
    print(f"\nwrote {out} and {out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
