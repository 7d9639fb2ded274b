"""Training-step time of vaekit's Trainer: float32 against bfloat16 autocast, and beta-TCVAE's fused
q(z) estimator against the full-matrix reference.

What is measured
----------------
For each case (model, dataset, network, batch) a model is built at seed 0 and `Trainer.train_step`
is timed on real batches (no run folder, no evaluation): `--warmup` untimed steps, then `--rounds`
rounds, each timing `--steps` steps of every variant one after the other, the order alternating
between rounds so that drift of the machine (other load, clock speed) cancels in the per-round
ratio. The headline per case is the median over rounds of time(reference) / time(variant): the
speed-up. Variants:

- precision: `train.precision = "fp32"` (reference) against `"bf16"` (vaekit.precision: networks
  under bfloat16 autocast, the maths in float32);
- tc estimator (beta-TCVAE only, both float32): `log_qz_estimates(fused=False)` (the (B, B, D)
  matrix through autograd, reference) against the blockwise estimator with its hand-written backward.

bf16 pays off only where the CPU has bfloat16 matrix units (AMX, AVX-512 BF16); the machine's flags
are printed with the result.

    python benchmarks/training_speed.py                    # the committed result
    python benchmarks/training_speed.py --rounds 2 --steps 2 --out /tmp/speed.md   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
try:
    import vaekit  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT / "src"))

from vaekit.config import TrainConfig  # noqa: E402
from vaekit.data import load_dataset  # noqa: E402
from vaekit.models import build_model, model_config  # noqa: E402
from vaekit.objectives import total_correlation  # noqa: E402
from vaekit.train import Trainer  # noqa: E402

# (label, model, dataset, model settings, batch size)
CASES = [
    ("VAE, Chen et al.'s MLP, dSprites", "vae", "dsprites", {"architecture": "mlp", "norm": "none", "latent_dim": 10}, 2048),
    ("beta-TCVAE, Chen et al.'s MLP, dSprites", "btcvae", "dsprites",
     {"architecture": "mlp", "norm": "none", "latent_dim": 10}, 2048),
    ("VAE, conv (default), Fashion-MNIST", "vae", "fashion-mnist", {}, 128),
    ("IntroVAE, residual nets, Fashion-MNIST", "introvae", "fashion-mnist", {}, 64),
]


@contextmanager
def reference_tc_estimator():
    """Route beta-TCVAE through the full-matrix estimator (fused=False) while inside."""
    original = total_correlation.log_qz_estimates

    def reference(*args, **kwargs):
        return original(*args, **{**kwargs, "fused": False})

    total_correlation.log_qz_estimates = reference
    try:
        yield
    finally:
        total_correlation.log_qz_estimates = original


def make_trainer(name, data, settings, batch_size, precision):
    torch.manual_seed(0)
    settings = dict(settings)
    if name == "btcvae":
        settings["dataset_size"] = len(data)
    if name.startswith("introvae"):
        settings["steps_per_epoch"] = len(data) // batch_size
    model = build_model(name, model_config(name, settings), data.image_shape)
    return Trainer(model, data, TrainConfig(batch_size=batch_size, precision=precision), progress=False)


def time_steps(trainer, steps, context=None):
    start = time.perf_counter()
    with context() if context else nullcontext():
        for _ in range(steps):
            trainer.train_step(trainer.batch_at(trainer.step))
            trainer.step += 1
    return (time.perf_counter() - start) / steps


def measure(case, rounds, steps, warmup):
    label, name, dataset, settings, batch = case
    data = load_dataset(dataset, "train")
    variants = {"fp32": (make_trainer(name, data, settings, batch, "fp32"), None),
                "bf16": (make_trainer(name, data, settings, batch, "bf16"), None)}
    if name == "btcvae":
        variants["fp32, reference tc estimator"] = (make_trainer(name, data, settings, batch, "fp32"),
                                                    reference_tc_estimator)
    for trainer, context in variants.values():
        time_steps(trainer, warmup, context)
    times = {k: [] for k in variants}
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(variants)[::-1]
        for k in order:
            trainer, context = variants[k]
            times[k].append(time_steps(trainer, steps, context))
    rows = [(f"{label}, batch {batch}", "bf16 vs fp32", times["fp32"], times["bf16"])]
    if name == "btcvae":
        rows.append((f"{label}, batch {batch}", "fused vs reference q(z) estimator (fp32)",
                     times["fp32, reference tc estimator"], times["fp32"]))
    return rows


def cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    wanted = ["avx512f", "avx512_bf16", "amx_bf16", "amx_tile"]
    return ", ".join(f for f in wanted if f" {f}" in flags) or "none of avx512f / avx512_bf16 / amx_bf16"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=5, help="timed steps per variant per round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "training_speed.md"))
    args = p.parse_args()
    started = time.time()
    rows = []
    for case in CASES:
        rows += measure(case, args.rounds, args.steps, args.warmup)
        print(rows[-1][0], flush=True)
    lines = ["# Training-step speed: bf16 autocast and the fused beta-TCVAE estimator", "",
             f"- command: `python benchmarks/training_speed.py {' '.join(sys.argv[1:])}`".rstrip(),
             f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
             f"- machine: {platform.machine()}, {os.cpu_count()} cores ({cpu_flags()}), torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads",
             f"- budget: {args.warmup} warm-up steps, then {args.rounds} alternating rounds × {args.steps} timed "
             f"steps per variant; wall time {time.time() - started:.0f} s",
             "- what: `Trainer.train_step` (forward, per-group backward, Adam step) on real batches; speed-up = "
             "median over rounds of time(reference) / time(variant)", "",
             "| case | comparison | reference s/step | variant s/step | speed-up (median) | per-round range |",
             "|---|---|---|---|---|---|"]
    for case, what, ref, var in rows:
        ratios = [a / b for a, b in zip(ref, var)]
        lines.append(f"| {case} | {what} | {statistics.median(ref):.3f} | {statistics.median(var):.3f} | "
                     f"{statistics.median(ratios):.2f}× | {min(ratios):.2f}–{max(ratios):.2f} |")
    lines += ["", "bf16 changes only the networks' arithmetic: every loss term stays float32 "
              "(tests/test_precision.py), and a bf16 run follows the fp32 run of the same seed "
              "(same test). Bit-identical resume is promised for fp32 only."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
