"""`make demo` end to end, before and after the speed issue, in one run.

Runs the demo's two commands (scripts/demo.sh: `vaekit train vae --data fashion-mnist --steps 2000 --seed 0`,
then `vaekit sample RUN -n 64 --seed 1`) with commit BEFORE's code and with this checkout's, one after
the other, and splits each `train` into its training seconds (the run's own count) and the rest (start,
final evaluation, pictures, report). Resumable: a finished version is read back from its JSON row.

    python benchmarks/demo_time.py          # ~8 min on 2 cores
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from before_code import BEFORE, source  # noqa: E402
OUT = ROOT / "benchmarks" / "results" / "demo_time.json"


def demo(version: str, work: Path) -> dict:
    out = work / version
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(source(version) / "src")}
    vaekit = [sys.executable, "-m", "vaekit"]
    t0 = time.perf_counter()
    subprocess.run([*vaekit, "train", "vae", "--data", "fashion-mnist", "--steps", "2000", "--seed", "0",
                    "--out", str(out)], env=env, check=True, stdout=subprocess.DEVNULL)
    t1 = time.perf_counter()
    subprocess.run([*vaekit, "sample", str(out), "-n", "64", "-o", str(out / "samples-seed1.png"), "--seed", "1"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    t2 = time.perf_counter()
    ev = json.loads((out / "evaluation.json").read_text())
    saved = json.loads((out / "config.json").read_text())
    return {"total_s": t2 - t0, "train_command_s": t1 - t0, "training_s": ev["train_seconds_this_session"],
            "after_training_s": (t1 - t0) - ev["train_seconds_this_session"], "sample_s": t2 - t1,
            "test_elbo": ev["test/elbo"], "test_ssim": ev["test/ssim"],
            "precision": saved.get("precision", "fp32"), "processes": ev.get("processes", 1)}


def main() -> None:
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    with tempfile.TemporaryDirectory() as work:
        for version in ("before", "after"):
            if version not in data:
                print(f"make demo, {version} ...", flush=True)
                data[version] = demo(version, Path(work))
                data["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
                OUT.write_text(json.dumps(data, indent=1))
    b, a = data["before"], data["after"]
    rows = [("whole demo (train + sample)", "total_s"), ("training", "training_s"),
            ("after training (final evaluation, pictures, report) and start-up", "after_training_s"),
            ("`vaekit sample`", "sample_s")]
    lines = ["# `make demo` end to end, before and after the speed issue", "",
             "- command: `python benchmarks/demo_time.py`", f"- date: {data['date']}; machine: {platform.machine()}, "
             f"{len(os.sched_getaffinity(0))} cores", f"- before: commit {BEFORE} ({b['precision']}, "
             f"{b['processes']} process); after: this checkout ({a['precision']}, {a['processes']} processes)", "",
             "| part | before s | after s | speed-up |", "|---|---:|---:|---:|"]
    for what, key in rows:
        lines.append(f"| {what} | {b[key]:.1f} | {a[key]:.1f} | {b[key] / a[key]:.2f}x |")
    lines += ["", f"Final test ELBO {b['test_elbo']:.2f} before, {a['test_elbo']:.2f} after; test SSIM "
              f"{b['test_ssim']:.4f} before, {a['test_ssim']:.4f} after (same seed; see precision.md for how far "
              "bf16 and the two-process batch norm move a run).", ""]
    OUT.with_suffix(".md").write_text("\n".join(lines))
    print(OUT.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
