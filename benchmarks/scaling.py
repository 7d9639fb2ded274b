"""Data-parallel scaling: training images per second of `vaekit train` in 1 process and under
`torchrun --nproc-per-node N` (one thread each on a CPU), the same model, global batch and steps, read
from each run's metrics.jsonl (the trainer's own images/s, evaluation and checkpoints excluded; the
first log interval, warm-up, left out). On a machine with GPUs pass --device cuda: NCCL, one GPU each.

    python benchmarks/scaling.py                     # vae on Fashion-MNIST, 1 and 2 processes
    python benchmarks/scaling.py --processes 1 2 4 8 --device cuda --steps 400
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(processes: int, args, out: Path) -> dict:
    if out.exists():
        shutil.rmtree(out)
    train = ["-m", "vaekit", "train", args.model, "--data", args.data, "--steps", str(args.steps), "--out", str(out),
             "--batch-size", str(args.batch_size), "--device", args.device, "--iw-samples", "0", "--quiet",
             "--set", "train.eval_every=0", "--set", f"train.log_every={max(1, args.steps // 10)}",
             "--set", f"train.checkpoint_every={args.steps}", "--set", "train.final_eval_images=100"]
    cmd = [sys.executable, *train] if processes == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
         "--master-port", str(_port()), *train]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT / "src")}
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [r["images_per_s"] for r in rows[1:]] or [rows[0]["images_per_s"]]
    return {"processes": processes, "images_per_s": statistics.median(rates), "wall_s": round(wall, 1),
            "command": " ".join(["torchrun", "--nproc-per-node", str(processes), *train] if processes > 1
                                else ["python", *train])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vae")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=128, help="the global batch")
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, default=1, help="OMP threads per process")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runs", default="/tmp/vaekit-scaling")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    rows = [run(p, args, Path(args.runs) / f"p{p}") for p in args.processes]
    base = rows[0]["images_per_s"]
    lines = ["# Data-parallel scaling: images per second under torchrun", "",
             f"Command: `python benchmarks/scaling.py {' '.join(sys.argv[1:])}`  ",
             f"Date: {datetime.now(timezone.utc).date()}; machine: {platform.machine()}, {os.cpu_count()} CPU cores; "
             f"device {args.device}, {args.threads} thread(s) per process; {args.model} on {args.data}, global batch "
             f"{args.batch_size}, {args.steps} steps per run.", "",
             "| processes | images/s (median of log intervals after the first) | speed-up | wall s (incl. start-up and "
             "final evaluation) |", "|---|---|---|---|"]
    lines += [f"| {r['processes']} | {r['images_per_s']:.0f} | {r['images_per_s'] / base:.2f}x | {r['wall_s']} |"
              for r in rows]
    lines += ["", "Each run's command:", ""] + [f"- `{r['command']}`" for r in rows]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "scaling" if args.device == "cpu" else f"scaling_{args.device.replace(':', '')}"
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
