"""Peak resident memory of `vaekit train` (with its final evaluation) and of `vaekit evaluate`, for a
28x28 model, a 64x64 model and beta-TCVAE on dSprites; `vaekit evaluate` at two settings of K and
--batch-size, to show that the evaluation's peak does not grow with them. Writes
benchmarks/results/memory.md (and .json) with every command, its peak RSS and its wall time.

    .venv/bin/python benchmarks/memory.py [--steps 100] [--out /tmp/vaekit-memory] [--continue]

--continue keeps the rows of benchmarks/results/memory.json and measures only the setups it lacks.

Each command runs as its own process; its peak RSS is the kernel's (os.wait4's ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
VAEKIT = [sys.executable, "-m", "vaekit.cli.main"]
LIMIT_GIB = 8.0

# (name, train arguments): each trained once, then evaluated at two settings of K and --batch-size
SETUPS = [
    ("28x28 VAE (Fashion-MNIST)", ["vae", "--data", "fashion-mnist"]),
    ("64x64 IntroVAE (Fashion-MNIST at data.size=64)", ["introvae_64", "--data", "fashion-mnist", "--set", "data.size=64"]),
    ("64x64 beta-TCVAE (dSprites)", ["btcvae", "--data", "dsprites"]),
]
EVALUATIONS = [("K=10, --batch-size 100", ["--iw-samples", "10", "--batch-size", "100"]),
               ("K=200, --batch-size 500", ["--iw-samples", "200", "--batch-size", "500"])]


def run(argv: list[str]) -> dict:
    """Run one command; its peak RSS in GiB and wall seconds."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr_lines = []
    for line in proc.stderr:  # the command's own progress, passed on
        stderr_lines.append(line)
        print("   ", line.rstrip(), file=sys.stderr, flush=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} failed with exit code {proc.returncode}:\n{''.join(stderr_lines[-5:])}")
    return {"command": shlex.join(["vaekit", *argv[len(VAEKIT):]]), "peak_rss_gib": usage.ru_maxrss / 2**20,
            "seconds": round(time.perf_counter() - t0, 1), "commit": _commit()}


def _commit() -> str:
    """The vaekit commit measured (the source tree the command imported)."""
    import vaekit

    src = Path(vaekit.__file__).resolve().parents[2]
    try:
        return subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_results(rows: list[dict], steps: int) -> None:
    worst = max(r["peak_rss_gib"] for r in rows)
    done = len(rows) == len(SETUPS) * (1 + len(EVALUATIONS))
    lines = ["# Peak memory of training and evaluation", "",
             f"Command: `.venv/bin/python benchmarks/memory.py --steps {steps}`  ",
             f"Date: {datetime.now(timezone.utc).date()}; machine: {platform.machine()}, {os.cpu_count()} cores, "
             f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB; budget: {steps} "
             "training steps per model, `vaekit evaluate` with its defaults otherwise (10,000 samples for sample "
             "quality, fast disentanglement and KL decomposition).", "",
             "Peak resident memory per process (the kernel's ru_maxrss), in GiB:", "",
             "| setup | what | peak RSS (GiB) | wall (s) | command | vaekit commit |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['setup']} | {r['what']} | {r['peak_rss_gib']:.2f} | {r['seconds']:.0f} | `{r['command']}` | "
              f"{r.get('commit', 'unknown')} |" for r in rows]
    lines += ["", "Wall times are those of a shared machine: other benchmarks ran beside these commands, so read "
              "them as upper bounds, and the peaks (which do not depend on the load) as the result.", "",
              f"Largest peak: {worst:.2f} GiB (limit {LIMIT_GIB:g} GiB). For each setup the two `vaekit "
              "evaluate` rows differ in K (20x) and in --batch-size (5x); one network call of an evaluation holds "
              "at most 500 images (`vaekit.metrics.likelihood.IMAGES_PER_CALL`), so their peaks differ only by "
              "what a batch of 100 or 500 images costs."]
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "memory.json").write_text(json.dumps(rows, indent=2) + "\n")
    if not done:
        lines += ["", f"Incomplete: {len(rows)} of {len(SETUPS) * (1 + len(EVALUATIONS))} commands measured so far."]
    (HERE / "results" / "memory.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100, help="training steps per model")
    p.add_argument("--out", default="/tmp/vaekit-memory", help="folder for the run folders")
    p.add_argument("--continue", dest="resume", action="store_true",
                   help="keep the measured rows of results/memory.json; measure the setups it has not finished")
    args = p.parse_args()
    out = Path(args.out)
    rows: list[dict] = []
    saved = HERE / "results" / "memory.json"
    if args.resume and saved.exists():
        rows = json.loads(saved.read_text())
        finished = {name for name, _ in SETUPS if sum(r["setup"] == name for r in rows) == 1 + len(EVALUATIONS)}
        rows = [r for r in rows if r["setup"] in finished]  # a setup half measured is measured again
    for i, (name, train_args) in enumerate(SETUPS):
        if any(r["setup"] == name for r in rows):
            continue
        run_dir = out / f"run{i}"
        if run_dir.exists():
            import shutil
            shutil.rmtree(run_dir)
        print(f"[{i + 1}/{len(SETUPS)}] {name}: training {args.steps} steps + final evaluation", file=sys.stderr)
        rows.append({"setup": name, "what": "train + final evaluation",
                     **run([*VAEKIT, "train", *train_args, "--steps", str(args.steps), "--out", str(run_dir)])})
        write_results(rows, args.steps)  # after every command: an interrupted benchmark keeps what it measured
        for label, eval_args in EVALUATIONS:
            print(f"[{i + 1}/{len(SETUPS)}] {name}: vaekit evaluate, {label}", file=sys.stderr)
            rows.append({"setup": name, "what": f"evaluate, {label}",
                         **run([*VAEKIT, "evaluate", str(run_dir), "--json", *eval_args])})
            write_results(rows, args.steps)
    worst = max(r["peak_rss_gib"] for r in rows)
    if worst > LIMIT_GIB:
        raise SystemExit(f"a command peaked at {worst:.2f} GiB, over {LIMIT_GIB:g} GiB")


if __name__ == "__main__":
    main()
