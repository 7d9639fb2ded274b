"""DRAW's training step: this tree's implementation against the one of commit 50ae03e (before the
regrouped recurrence of vaekit.models.draw), in one run.

What is measured
----------------
`vaekit train draw`'s default model (T = 64 glimpses, z_t of 100, LSTMs of 256, read 2 x 2 and write
5 x 5 attention) on 28 x 28 binarised Fashion-MNIST, batches of 100: one step is zero_grad, the loss's
forward (under bfloat16 autocast for bf16), backward and an Adam step, timed with perf_counter.

The old implementation is imported from a git worktree of 50ae03e (`--old`, made with `git worktree
add` when missing), the new one from this tree; each runs in its own worker process (its own
`torch.set_num_threads`) and both are built at seed 0 on the same batches. For every case (precision x
threads) the parent runs `--warmup` untimed steps in each, then `--rounds` rounds of `--steps` timed
steps of each, the order alternating between rounds (old first, then new first) so that drift of a
shared machine cancels in the per-round ratio. The speed-up is the median over rounds of
time(old) / time(new); the seconds per step are medians over every timed step. The first step's loss
of both, at the same seed and batch, is printed beside it: the same maths gives the same number
within float tolerance (bf16: within bfloat16's).

    python benchmarks/draw_speed.py                         # the committed result
    python benchmarks/draw_speed.py --rounds 2 --steps 1 --out /tmp/draw_speed.md   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OLD_COMMIT = "50ae03e"
BATCH = 100
SHAPE = (1, 28, 28)


def log(msg: str) -> None:
    print(f"[draw_speed {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the worker: one implementation, one thread count ---------------------------------------------

def worker(batches_path: str, threads: int) -> None:
    """Reads commands `<precision> <steps>` on stdin, answers one JSON line per command."""
    import torch

    torch.set_num_threads(threads)
    from vaekit.models import build_model, model_config
    from vaekit.models.base import Batch

    batches = torch.load(batches_path)
    torch.manual_seed(0)
    model = build_model("draw", model_config("draw", {}), SHAPE)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    done = 0

    def step(precision: str) -> float:
        nonlocal done
        x = batches[done % len(batches)]
        done += 1
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model.loss(Batch(x))["loss"]
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    # the first loss at seed 0 of a fresh copy of the model, both precisions (a check, not a timing)
    import copy
    first = {}
    state = copy.deepcopy(model.state_dict())
    for precision in ("fp32", "bf16"):
        model.load_state_dict(state)
        torch.manual_seed(1)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            first[precision] = float(model.loss(Batch(batches[0]))["loss"])
    model.load_state_dict(state)
    print(json.dumps({"ready": True, "first_loss": first, "torch": torch.__version__,
                      "module": sys.modules[type(model).__module__].__file__}), flush=True)
    for line in sys.stdin:
        precision, steps = line.split()
        times = []
        for _ in range(int(steps)):
            t0 = time.perf_counter()
            step(precision)
            times.append(time.perf_counter() - t0)
        print(json.dumps({"times": times}), flush=True)


class Worker:
    def __init__(self, src: Path, batches: str, threads: int):
        env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads)}
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", batches, str(threads)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(src.parent))
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("a benchmark worker died (see its traceback above)")
        return json.loads(line)

    def run(self, precision: str, steps: int) -> list[float]:
        self.proc.stdin.write(f"{precision} {steps}\n")
        self.proc.stdin.flush()
        return self._read()["times"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


# --- the parent -------------------------------------------------------------------------------------

def old_tree(path: Path) -> Path:
    if not (path / "src" / "vaekit" / "models" / "draw.py").exists():
        log(f"git worktree add {path} {OLD_COMMIT}")
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), OLD_COMMIT], check=True,
                       stdout=subprocess.DEVNULL)
    head = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    if not OLD_COMMIT.startswith(head[:7]) and not head.startswith(OLD_COMMIT):
        raise SystemExit(f"{path} is at {head}, not {OLD_COMMIT}: remove it or pass another --old")
    return path


def make_batches(path: str, count: int) -> None:
    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from vaekit.data import load_dataset

    data = load_dataset("fashion-mnist", "train")
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(data), generator=g)[:count * BATCH]
    x = data.batch(idx).float()
    x = torch.bernoulli(x, generator=g)  # stochastic binarisation (Salakhutdinov & Murray 2008)
    torch.save(list(x.view(count, BATCH, *SHAPE)), path)


def machine() -> dict:
    import torch

    cpu = platform.processor() or "unknown"
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
        flags = next(line.split(":", 1)[1] for line in text.splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags.split()]
    return {"cpu": cpu, "cores": os.cpu_count(), "flags": " ".join(wanted), "torch": torch.__version__,
            "python": platform.python_version(), "load_average": os.getloadavg()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", type=Path, default=Path("/tmp/draw-old"), help=f"a worktree of {OLD_COMMIT}")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=2, help="timed steps of each implementation per round")
    ap.add_argument("--budget", type=float, default=270.0,
                    help="seconds for the whole run: cases get fewer rounds (2, or 1 once it is spent) when it runs short")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "draw_speed.md")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    command = "python benchmarks/draw_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    old = old_tree(args.old)
    cases = [(p, int(t)) for t in args.threads.split(",") for p in args.precisions.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        batches = str(Path(tmp) / "batches.pt")
        make_batches(batches, 4)
        for threads in sorted({t for _, t in cases}):
            log(f"starting the workers with {threads} thread(s)")
            workers = {"old": Worker(old / "src", batches, threads), "new": Worker(ROOT / "src", batches, threads)}
            try:
                for precision in [p for p, t in cases if t == threads]:
                    case_left = len(cases) - len(rows)
                    for name, w in workers.items():
                        w.run(precision, args.warmup)
                    times = {"old": [], "new": []}
                    ratios = []
                    for r in range(args.rounds):
                        order = ("old", "new") if r % 2 == 0 else ("new", "old")
                        got = {name: workers[name].run(precision, args.steps) for name in order}
                        for name in got:
                            times[name] += got[name]
                        ratios.append(sum(got["old"]) / sum(got["new"]))
                        log(f"{precision} {threads} thread(s) round {r + 1}: old {statistics.median(got['old']):.3f} s, "
                            f"new {statistics.median(got['new']):.3f} s per step, ratio {ratios[-1]:.2f}")
                        left = args.budget - (time.perf_counter() - start)
                        per_round = (time.perf_counter() - start) / max(1, len(rows) * args.rounds + r + 1)
                        if left < 0 or (r + 1 >= 2 and left < per_round * (args.rounds - r - 1 + (case_left - 1) * 2)):
                            log("budget short: ending this case's rounds here")
                            break
                    rows.append({"precision": precision, "threads": threads, "rounds": len(ratios),
                                 "old_s": statistics.median(times["old"]), "new_s": statistics.median(times["new"]),
                                 "speedup": statistics.median(ratios), "ratios": ratios,
                                 "first_loss_old": workers["old"].info["first_loss"][precision],
                                 "first_loss_new": workers["new"].info["first_loss"][precision]})
                    log(f"{precision} {threads} thread(s): speed-up {rows[-1]['speedup']:.2f}x")
            finally:
                for w in workers.values():
                    w.close()
    wall = time.perf_counter() - start
    info = machine()
    date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    result = {"command": command, "date": date, "machine": info, "wall_s": wall, "old_commit": OLD_COMMIT,
              "batch": BATCH, "glimpses": 64, "warmup": args.warmup, "steps_per_round": args.steps,
              "budget_s": args.budget, "cases": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.write_text(render(result))
    log(f"wrote {args.out} ({wall:.0f} s)")
    print(render(result))
    return 0


def render(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# DRAW training step: regrouped recurrence against 50ae03e",
        "",
        f"- command: `{r['command'].strip()}`",
        f"- date: {r['date']}",
        f"- machine: {m['cpu']}, {m['cores']} cores ({m['flags']}), torch {m['torch']}, Python {m['python']}; "
        f"load average at the end {', '.join(f'{v:.1f}' for v in m['load_average'])} (a shared machine)",
        f"- budget: {r['budget_s']:.0f} s asked, {r['wall_s']:.0f} s taken; {r['warmup']} warm-up steps, then rounds of "
        f"{r['steps_per_round']} timed steps of each implementation, alternating which goes first",
        f"- model: `vaekit train draw`'s default (T = {r['glimpses']}, read 2 x 2, write 5 x 5, LSTMs of 256, z_t of 100), "
        f"batches of {r['batch']} binarised Fashion-MNIST images; a step is forward + backward + Adam",
        "",
        "| precision | threads | old s/step | new s/step | speed-up (median of per-round ratios) | rounds | "
        "per-round ratios | first loss old / new |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for c in r["cases"]:
        spread = max(c["ratios"]) / min(c["ratios"])
        flag = " (unreliable: rounds disagree)" if spread > 1.5 or len(c["ratios"]) < 3 else ""
        lines.append(f"| {c['precision']} | {c['threads']} | {c['old_s']:.3f} | {c['new_s']:.3f} | **{c['speedup']:.2f}x**{flag} | "
                     f"{c['rounds']} | {', '.join(f'{x:.2f}' for x in c['ratios'])} | "
                     f"{c['first_loss_old']:.3f} / {c['first_loss_new']:.3f} |")
    lines += ["", "Seconds per step are medians over every timed step; on a shared machine they move with the "
              "other load, the per-round ratios much less. A case is marked unreliable when it has fewer than 3 rounds "
              "or its per-round ratios differ by more than 1.5x (two threads on two cores that other work also uses: "
              "one slow OpenMP thread stalls the other)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--render":  # the .md again from a .json
        print(render(json.loads(Path(sys.argv[2]).read_text())), end="")
    elif len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]))
    else:
        raise SystemExit(main())
