"""Does a bf16 run follow the fp32 run? The demo's VAE at the demo's budget, 3 seeds, both precisions.

Each of the 6 runs is `vaekit train vae --data fashion-mnist --steps 2000 --seed S --set
train.precision=P` (everything else the defaults, so train.processes = auto), with its final
evaluation on the whole test split. The verdict compares the mean over seeds of bf16 - fp32 (same
seed) with the stated tolerance: 1 nat of test ELBO per image and 0.01 of test SSIM, and with the
seed-to-seed spread of fp32 itself. Resumable: a run folder with its evaluation.json is read back.

    python benchmarks/precision.py          # ~25 min on 2 cores
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = (0, 1, 2)
TOLERANCE = {"test/elbo": 1.0, "test/ssim": 0.01}


def run(seed: int, precision: str, steps: int, work: Path) -> tuple[dict, list[str]]:
    out = work / f"{precision}-seed{seed}"
    cmd = [sys.executable, "-m", "vaekit", "train", "vae", "--data", "fashion-mnist", "--steps", str(steps),
           "--seed", str(seed), "--out", str(out), "--set", f"train.precision={precision}"]
    if not (out / "evaluation.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "evaluation.json").read_text()), cmd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "results" / ".precision_runs")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "precision.md")
    args = ap.parse_args()
    results, commands = {}, []
    for i, seed in enumerate(SEEDS):
        for precision in ("fp32", "bf16") if i % 2 == 0 else ("bf16", "fp32"):
            print(f"[{len(results) + 1}/{2 * len(SEEDS)}] seed {seed}, {precision} ...", flush=True)
            results[(seed, precision)], cmd = run(seed, precision, args.steps, args.work)
            commands.append("vaekit " + " ".join(cmd[3:]).replace(str(args.work), "RUNS"))
    lines = ["# bf16 against fp32: the demo's VAE, 3 seeds", "",
             f"- command: `python benchmarks/precision.py{'' if args.steps == 2000 else f' --steps {args.steps}'}`",
             f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; machine: "
             f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
             f"- budget: {args.steps} steps of batch 128 per run (the demo's), final evaluation on the whole test split",
             "", "| metric | seed | fp32 | bf16 | bf16 - fp32 |", "|---|---:|---:|---:|---:|"]
    verdict = {}
    for metric, tol in TOLERANCE.items():
        diffs = []
        for seed in SEEDS:
            a, b = results[(seed, "fp32")][metric], results[(seed, "bf16")][metric]
            diffs.append(b - a)
            lines.append(f"| {metric} | {seed} | {a:.4f} | {b:.4f} | {b - a:+.4f} |")
        spread = statistics.stdev(results[(s, "fp32")][metric] for s in SEEDS)
        mean = statistics.mean(diffs)
        verdict[metric] = {"mean_difference": mean, "fp32_seed_sd": spread, "tolerance": tol, "pass": abs(mean) <= tol}
    lines.append("")
    for metric, v in verdict.items():
        lines.append(f"- {metric}: mean bf16 - fp32 = {v['mean_difference']:+.4f} (fp32's seed-to-seed sd "
                     f"{v['fp32_seed_sd']:.4f}); tolerance ±{v['tolerance']:g}: **{'PASS' if v['pass'] else 'FAIL'}**")
    lines += ["", "Commands (RUNS = the work folder):", ""] + [f"- `{c}`" for c in commands] + [""]
    args.out.write_text("\n".join(lines))
    args.out.with_suffix(".json").write_text(json.dumps(
        {"results": {f"{s}-{p}": r for (s, p), r in results.items()}, "verdict": verdict}, indent=1))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
