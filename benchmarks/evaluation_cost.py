"""What a run's final evaluation and `vaekit evaluate` (defaults) cost, old code against new, as a
share of the training time of the README's command for the same model.

For each row: train the README command at reduced steps into a run folder (once; an existing folder
with a checkpoint is reused), then on that one folder time, in subprocesses, with the old code (a git
worktree of --old-commit, on PYTHONPATH) and the new code (this checkout), back to back so that both
see the same load:
  - the old code's final-evaluation path (`evaluate_run` with the options `vaekit train` gives it, in
    one process as the old `vaekit train` ran it), and
  - `vaekit evaluate RUN --json --quiet` with its defaults.
The new code's final evaluation is timed where a user meets it: in its own run of the same reduced
steps with the README's defaults (its worker processes share the test-set pass), evaluation.json's
`evaluation_seconds` (`final_new`). The training time of the README's full step count is
extrapolated from each code's metrics.jsonl (images/s at every log interval, the first left out as
warm-up): seconds per step = batch size / images per second.
The feature network of a dataset (and, for the new code, the test split's half of sample quality,
metrics/reference.py) is computed and cached before anything is timed, so no row pays for it.

    git -C . worktree add /tmp/eval-old 50ae03e
    python benchmarks/evaluation_cost.py [--rows vae,btcvae,...] [--old-src /tmp/eval-old/src]

Rows already in benchmarks/results/evaluation_cost.json are skipped (resumable); each finished
measurement is written at once.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PY = sys.executable

# name: (model, data, reduced steps, --set overrides, README steps, README command)
ROWS = {
    "vae": ("vae", "fashion-mnist", 100, [], 2000, "make demo (vaekit train vae --data fashion-mnist --steps 2000)"),
    "btcvae": ("btcvae", "dsprites", 100, [], 500, "vaekit train btcvae --data dsprites --steps 500"),
    "cvae": ("cvae", "fashion-mnist", 100, [], 2000, "vaekit train cvae --data fashion-mnist --steps 2000"),
    "m2": ("m2", "fashion-mnist", 100, ["data.labelled=1000"], 1000,
           "vaekit train m2 --data fashion-mnist --set data.labelled=1000 --steps 1000"),
    "draw": ("draw", "fashion-mnist", 50, ["data.binarize=dynamic", "model.glimpses=16"], 1000,
             "vaekit train draw --data fashion-mnist --set data.binarize=dynamic --set model.glimpses=16 --steps 1000"),
    "introvae": ("introvae", "fashion-mnist", 50, [], 1000, "vaekit train introvae --data fashion-mnist --steps 1000"),
}

# The final-evaluation path of `vaekit train` (run/folder.py, _train_run), for either code: the same
# options, data (the partly labelled train split of a semi-supervised run) and training mean.
FINAL_DRIVER = r"""
import json, sys, time
import torch
import vaekit
from vaekit.run import EvaluationOptions, evaluate_run, load_run, load_split
from vaekit.metrics import dataset_mean_image
run = sys.argv[1]
cfg, model, saved = load_run(run)
train, test = load_split(cfg, "train"), load_split(cfg, "test")
if cfg.data.labelled is not None:
    from vaekit.data.labelled import partly_labelled
    kept = torch.tensor(json.load(open(run + "/labelled.json"))["positions"])
    train = partly_labelled(train, kept)
options = EvaluationOptions(iw_samples=50, iw_images=200, images=cfg.train.final_eval_images or None,
                            seed=cfg.train.seed, samples=0, completion_images=min(1000, cfg.train.final_eval_images or 1000),
                            progress=False)
train_mean = dataset_mean_image(train)
t = time.perf_counter()
result = evaluate_run(model, train, test, options, train_mean=train_mean)
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "vaekit": vaekit.__file__, "threads": torch.get_num_threads(),
                  "result": {k: v for k, v in result.items() if not isinstance(v, list)}}))
"""

WARM_DRIVER = r"""
import sys
from vaekit.run import load_run, load_split
from vaekit.metrics.feature_net import get_feature_net
cfg, model, _ = load_run(sys.argv[1])
train, test = load_split(cfg, "train"), load_split(cfg, "test")
if train.labels is not None:
    net, _ = get_feature_net(train, test, progress=print)
    try:  # and the test split's half of sample quality, cached beside it (new code only)
        from vaekit.metrics import reference
        from vaekit.metrics.evaluate import reference_train_images
        reference.sample_reference(net, test, reference_train_images(train, min(10_000, len(train)), 0, 250),
                                   pairs=10_000, seed=0, batch_size=250)
    except ImportError:
        pass
"""


def say(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def env_for(src: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(src)}


def train(name: str, out: Path, old_src: Path) -> None:
    """Trained by the old code: its run folder is one both codes read (the new one reads old configs)."""
    model, data, steps, sets, _, _ = ROWS[name]
    if (out / "checkpoints").exists() and any((out / "checkpoints").iterdir()) and (out / "metrics.jsonl").exists():
        say(f"{name}: reusing {out}")
        return
    cmd = [PY, "-m", "vaekit", "train", model, "--data", data, "--steps", str(steps), "--out", str(out), "--quiet",
           "--iw-samples", "0"]  # the run's own final evaluation is not what is timed here
    for s in sets:
        cmd += ["--set", s]
    if out.exists():
        cmd.append("--resume")
    say(f"{name}: training {' '.join(cmd[2:])}")
    subprocess.run(cmd, check=True, env=env_for(old_src), stdout=subprocess.DEVNULL)


def train_new(name: str, out: Path) -> tuple[float, dict]:
    """Seconds per step of the new code with the defaults `vaekit train` picks for the README's run (the
    processes worker_plan chooses for its length), and its final evaluation as that run does it (shared by
    its worker processes; evaluation.json's `evaluation_seconds`): the same reduced steps trained again,
    to a folder of its own."""
    import torch
    from vaekit.distributed import worker_plan
    from vaekit.run import resolve_config

    model, data, steps, sets, readme_steps, _ = ROWS[name]
    cfg = resolve_config(model, None, [*sets], {"data": {"name": data}})
    processes = worker_plan("auto", torch.device("cpu"), cfg.train.batch_size, readme_steps * cfg.train.batch_size).processes
    timed = out.parent / f"{name}-new-speed"
    if not (timed / "metrics.jsonl").exists():
        cmd = [PY, "-m", "vaekit", "train", model, "--data", data, "--steps", str(steps), "--out", str(timed),
               "--quiet", "--set", f"train.processes={processes}"]
        for s in sets:
            cmd += ["--set", s]
        say(f"{name}: timing the new code's training ({processes} processes)")
        subprocess.run(cmd, check=True, env=env_for(ROOT / "src"), stdout=subprocess.DEVNULL)
    evaluation = json.loads((timed / "evaluation.json").read_text())
    final = {"seconds": evaluation["evaluation_seconds"], "processes": processes, "in": "the run's own final evaluation",
             "result": {k: v for k, v in evaluation.items() if not isinstance(v, (list, dict))}}
    return seconds_per_step(timed)[0], final


def seconds_per_step(out: Path) -> tuple[float, int]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    speeds = [r["images_per_s"] for r in rows if r.get("images_per_s")]
    speeds = speeds[1:] or speeds  # the first interval includes warm-up
    batch = json.loads((out / "config.json").read_text())["train"]["batch_size"]
    return batch / statistics.mean(speeds), batch


def time_final(src: Path, out: Path) -> dict:
    p = subprocess.run([PY, "-c", FINAL_DRIVER, str(out)], env=env_for(src), capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def time_evaluate(src: Path, out: Path) -> dict:
    t = time.perf_counter()
    p = subprocess.run([PY, "-m", "vaekit", "evaluate", str(out), "--json", "--quiet"], env=env_for(src),
                       capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if p.returncode:
        raise RuntimeError(p.stderr[-2000:])
    result = json.loads(p.stdout.strip().splitlines()[-1])
    return {"seconds": seconds, "result": {k: v for k, v in result.items() if not isinstance(v, list)}}


def machine() -> str:
    mem = ""
    try:
        kb = int(next(line for line in open("/proc/meminfo") if line.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.machine()}, {os.cpu_count()} cores{mem}, load average {load:.1f} at the start"


def write_md(data: dict) -> None:
    lines = ["# Cost of the final evaluation and of `vaekit evaluate`, old code against new", "",
             f"Command: `{data['command']}`", f"Date: {data['date']}; machine: {data['machine']}; "
             f"old code: {data['old_commit']} (git worktree), new: this checkout.",
             "Budget: each row trains its README command at reduced steps once; the old code's final-evaluation "
             "path (`evaluate_run` with `vaekit train`'s options, in one process, as the old `vaekit train` ran it) "
             "and `vaekit evaluate RUN --json --quiet` (defaults) are each timed once per code, old then new back "
             "to back on the same run folder, feature networks cached beforehand; the new code's final evaluation "
             "is the one its own run of the same reduced steps made (in the run's worker processes, which share "
             "its test-set pass; evaluation.json's `evaluation_seconds`). Training time of the README step count is extrapolated from each code's own "
             "training speed (batch / mean images/s after the first log interval, metrics.jsonl) x README steps: "
             "the old code's from the run folder it trained, the new code's from the same reduced steps trained "
             "again with its defaults for the README's run; each code's % is of its own training time.", "",
             "| row | README training old (s) | new (s) | final eval old (s) | new (s) | old % | new % "
             "| evaluate old (s) | new (s) | old % | new % |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in data["rows"].items():
        t_old, t_new = r.get("train_seconds_readme"), r.get("train_seconds_readme_new")
        if t_old is None or t_new is None:
            continue

        def cell(kind, code):
            m, t = r.get(f"{kind}_{code}"), (t_new if code == "new" else t_old)
            return ("—", "—") if m is None else (f"{m['seconds']:.1f}", f"{100 * m['seconds'] / t:.1f}")
        fo, fn, eo, en = cell("final", "old"), cell("final", "new"), cell("evaluate", "old"), cell("evaluate", "new")
        lines.append(f"| {name} | {t_old:.0f} | {t_new:.0f} | {fo[0]} | {fn[0]} | {fo[1]} | {fn[1]} | {eo[0]} | {en[0]} "
                     f"| {eo[1]} | {en[1]} |")
    lines += ["", "Targets: final evaluation <= 10 % of the training time, `vaekit evaluate` <= 25 %.", "",
              "Rows (README command, reduced steps, seconds per training step):"]
    for name, r in data["rows"].items():
        lines.append(f"- {name}: `{r['readme_command']}`; trained {r['trained_steps']} steps, "
                     f"{r['seconds_per_step']:.3f} s/step old, {r.get('seconds_per_step_new', float('nan')):.3f} "
                     f"s/step new (batch {r['batch_size']})")
    if data.get("notes"):
        lines += ["", *(f"- {n}" for n in data["notes"])]
    (RESULTS / "evaluation_cost.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    ap.add_argument("--old-src", default="/tmp/eval-old/src")
    ap.add_argument("--old-commit", default="50ae03e")
    ap.add_argument("--runs", default="/tmp/vaekit-evaluation-cost", help="where the run folders go")
    ap.add_argument("--skip", default="", help="measurements to leave out, e.g. evaluate_old (comma-separated)")
    ap.add_argument("--again", default="", help="rows measured again, both codes (comma-separated)")
    ap.add_argument("--note", action="append", default=[], help="a line for the .md (the load, what was left out)")
    args = ap.parse_args()
    old_src, runs = Path(args.old_src), Path(args.runs)
    if not (old_src / "vaekit").is_dir():
        ap.error(f"{old_src} holds no vaekit; git -C {ROOT} worktree add {old_src.parent} {args.old_commit}")
    runs.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "evaluation_cost.json"
    data = json.loads(path.read_text()) if path.exists() else {"rows": {}}
    data.update({"command": "python " + " ".join(["benchmarks/evaluation_cost.py", *sys.argv[1:]]),
                 "date": data.get("date") or datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                 "machine": data.get("machine") or machine(), "old_commit": args.old_commit})
    skip = {s for s in args.skip.split(",") if s}
    again = {s for s in args.again.split(",") if s}
    data["notes"] = [*data.get("notes", []), *(n for n in args.note if n not in data.get("notes", []))]

    def save():  # merged with what is on disk: another instance may have finished other measurements
        on_disk = json.loads(path.read_text()) if path.exists() else {"rows": {}}
        for name, row in data["rows"].items():
            on_disk["rows"].setdefault(name, {}).update(row)
        data["rows"] = on_disk["rows"]
        path.write_text(json.dumps(data, indent=1) + "\n")
        write_md(data)

    for name in [r for r in args.rows.split(",") if r]:
        out = runs / name
        train(name, out, old_src)
        per_step, batch = seconds_per_step(out)
        row = data["rows"].setdefault(name, {})
        row.update({"readme_command": ROWS[name][5], "trained_steps": ROWS[name][2], "batch_size": batch,
                    "seconds_per_step": per_step, "train_seconds_readme": per_step * ROWS[name][4]})
        if name in again:
            keys = ("train_seconds_readme_new", "seconds_per_step_new", "final_new", "final_old", "evaluate_new",
                    "evaluate_old")
            for key in keys:
                row.pop(key, None)
            if path.exists():  # save() merges with the file: drop them there too
                on_disk = json.loads(path.read_text())
                for key in keys:
                    on_disk["rows"].get(name, {}).pop(key, None)
                path.write_text(json.dumps(on_disk, indent=1) + "\n")
            shutil.rmtree(out.parent / f"{name}-new-speed", ignore_errors=True)
        if "train_seconds_readme_new" not in row or "final_new" not in row:
            row["seconds_per_step_new"], row["final_new"] = train_new(name, out)
            row["train_seconds_readme_new"] = row["seconds_per_step_new"] * ROWS[name][4]
            say(f"{name}: final evaluation new (in the run, {row['final_new']['processes']} processes): "
                f"{row['final_new']['seconds']:.1f} s")
        for kind, timer in (("final", time_final), ("evaluate", time_evaluate)):
            for code, src in (("old", old_src), ("new", ROOT / "src")):
                key = f"{kind}_{code}"
                if key in row or key in skip:
                    continue
                if kind == "evaluate" and not row.get("feature_net_warm"):  # trained once, not timed
                    subprocess.run([PY, "-c", WARM_DRIVER, str(out)], check=True, env=env_for(ROOT / "src"))
                    row["feature_net_warm"] = True
                say(f"{name}: {kind} with the {code} code ...")
                row[key] = timer(src, out)
                t = row["train_seconds_readme" + ("_new" if code == "new" else "")]
                say(f"{name}: {kind} {code}: {row[key]['seconds']:.1f} s ({100 * row[key]['seconds'] / t:.1f} % of "
                    f"{t:.0f} s training with the {code} code)")
                save()
                row = data["rows"][name]  # save() re-reads the rows: keep adding to the one it holds now
        save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
