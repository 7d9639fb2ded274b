"""Time to quality: training seconds of the default VAE until its test SSIM and test ELBO first reach
fixed thresholds, before and after the speed issue, in one run.

Both versions train `vaekit train vae --data fashion-mnist` (the demo's model and data) for the same
number of steps with a quick test evaluation (train.eval_images test images, a fixed uniform sample)
every EVAL_EVERY steps: "before" is commit BEFORE with its defaults, "after" this checkout with its
defaults for a run this long (train.precision = auto, train.processes = auto). The time at an
evaluation is the training time up to it, summed from metrics.jsonl's images/s of each log interval
(the trainer leaves evaluation and checkpoint pauses out of it), so the evaluations themselves cost
neither version anything. A threshold is reached at the first evaluation at or beyond it.

Resumable: a version whose run folder is complete is read back, not trained again.

    python benchmarks/time_to_quality.py                # 2 x 3000 steps, ~15 min on 2 cores
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from before_code import BEFORE, source  # noqa: E402
SSIM = (0.55, 0.60, 0.65)
ELBO = (-260.0, -250.0, -245.0)  # nats per image, test ELBO (higher is better)
EVAL_EVERY = 100
LOG_EVERY = 25


def train(version: str, steps: int, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "vaekit", "train", "vae", "--data", "fashion-mnist", "--steps", str(steps),
           "--out", str(out), "--iw-samples", "0", "--set", f"train.eval_every={EVAL_EVERY}",
           "--set", f"train.log_every={LOG_EVERY}", "--set", "train.final_eval_images=2000"]
    if not (out / "evaluation.json").exists():
        if out.exists():
            import shutil

            shutil.rmtree(out)
        env = {**os.environ, "PYTHONPATH": str(source(version) / "src")}
        subprocess.run(cmd, env=env, check=True, cwd=str(source(version)))
    return cmd


def curve(out: Path) -> list[dict]:
    """(step, training seconds, test ssim, test elbo) at each evaluation, the final one included."""
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    final = json.loads((out / "evaluation.json").read_text())
    evals.append({"step": final["step"], "test/ssim": final["test/ssim"], "test/elbo": final["test/elbo"]})
    seconds, last_step, at = 0.0, 0, {}
    batch = json.loads((out / "config.json").read_text())["train"]["batch_size"]
    for row in logs:
        seconds += (row["step"] - last_step) * batch / row["images_per_s"]
        last_step = row["step"]
        at[row["step"]] = seconds
    return [{"step": e["step"], "seconds": at.get(e["step"], seconds), "ssim": e["test/ssim"], "elbo": e["test/elbo"]}
            for e in evals]


def first_reaching(points: list[dict], key: str, threshold: float) -> dict | None:
    return next((p for p in points if p[key] >= threshold), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "results" / ".time_to_quality_runs",
                    help="run folders (kept, so an interrupted benchmark resumes)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "time_to_quality.md")
    args = ap.parse_args()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    curves, commands = {}, {}
    for version in ("before", "after"):
        print(f"time to quality: training {version} ({args.steps} steps) ...", flush=True)
        cmd = train(version, args.steps, args.work / version)
        commands[version] = "vaekit " + shlex.join(cmd[3:]).replace(str(args.work), "RUNS")
        curves[version] = curve(args.work / version)
    saved = {v: json.loads((args.work / v / "config.json").read_text()) for v in curves}
    rows = []
    for key, thresholds in (("ssim", SSIM), ("elbo", ELBO)):
        for t in thresholds:
            b, a = first_reaching(curves["before"], key, t), first_reaching(curves["after"], key, t)
            rows.append({"metric": f"test {key.upper()} >= {t:g}", "before": b, "after": a,
                         "speedup": (b["seconds"] / a["seconds"]) if a and b else None})
    data = {"command": "python benchmarks/time_to_quality.py" + (f" --steps {args.steps}" if args.steps != 3000 else ""),
            "date": date, "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
            "commands": commands, "curves": curves, "rows": rows,
            "settings": {v: {"precision": s.get("precision", s["train"].get("precision", "fp32")),
                             "processes": s.get("processes", 1)} for v, s in saved.items()}}
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=1))

    def cell(p):
        return "not reached" if p is None else f"{p['seconds']:.0f} s (step {p['step']})"

    lines = ["# Time to quality: the default VAE before and after the speed issue", "",
             f"- command: `{data['command']}`", f"- date: {date}; machine: {data['machine']}",
             f"- before: commit {BEFORE}, its defaults; after: this checkout, its defaults "
             f"({data['settings']['after']})", f"- budget: {args.steps} steps of batch 128 per version; a quick "
             f"test evaluation (2,000 images, a fixed uniform sample) every {EVAL_EVERY} steps",
             "- time = training seconds up to that evaluation (evaluation pauses left out, for both)", "",
             "| threshold | before | after | speed-up |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['metric']} | {cell(r['before'])} | {cell(r['after'])} | "
                     f"{'' if r['speedup'] is None else format(r['speedup'], '.2f') + 'x'} |")
    lines += ["", "Commands:", ""] + [f"- {v}: `{c}`" for v, c in commands.items()] + [""]
    args.out.write_text("\n".join(lines))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
