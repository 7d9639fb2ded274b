"""Training speed per model family, before and after the speed issue, in one run: images/s and % of
the machine's measured peak.

"before" is the code of commit BEFORE (default 50ae03e) with its defaults (one process, torch's
threads, fp32); "after" is this checkout with its defaults for the README's run of that family
(train.precision = auto; train.processes = auto, i.e. what worker_plan picks for the README's number of
steps — the short timed run is given that count explicitly). Each timed run is a real `vaekit train`
through the CLI; images/s is the median of its metrics.jsonl log intervals after the first (the
trainer leaves evaluation and checkpoint pauses out). The two versions alternate which runs first.

% of peak = FLOPs per training image (matrix products and convolutions of one Trainer step, counted by
torch's FlopCounterMode on this checkout's model) x images/s, over the measured matmul peak of the
precision the run trained in (benchmarks/peak.py).

Resumable: rows already in the JSON are kept (delete it, or pass --fresh, to measure again).

    python benchmarks/speed.py                       # all families (~25 min on 2 cores)
    python benchmarks/speed.py --only vae_conv draw_t64
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from before_code import BEFORE, source  # noqa: E402
from peak import measure_peak  # noqa: E402

# name, what, CLI args of the README's command, its steps, timed steps, log_every
FAMILIES = [
    ("vae_conv", "VAE, conv (default), Fashion-MNIST, batch 128",
     ["vae", "--data", "fashion-mnist"], 2000, 300, 30),
    ("btcvae_mlp", "beta-TCVAE, Chen et al.'s MLP, dSprites, batch 2048",
     ["btcvae", "--data", "dsprites", "--batch-size", "2048", "--set", "model.architecture=mlp",
      "--set", "model.norm=none"], None, 40, 5),
    ("introvae", "IntroVAE, residual nets, Fashion-MNIST, batch 64", ["introvae", "--data", "fashion-mnist"],
     1000, 80, 10),
    ("vaegan", "VAE-GAN, Fashion-MNIST", ["vaegan", "--data", "fashion-mnist"], 1000, 120, 15),
    ("cvae", "CVAE on labels, Fashion-MNIST", ["cvae", "--data", "fashion-mnist"], 2000, 300, 30),
    ("m2", "M2, 1000 labels, Fashion-MNIST", ["m2", "--data", "fashion-mnist", "--set", "data.labelled=1000"],
     1000, 60, 10),
    ("draw_t64", "DRAW, attention, T = 64, binarised Fashion-MNIST",
     ["draw", "--data", "fashion-mnist", "--set", "data.binarize=dynamic"], 1000, 24, 4),
]
COMMON = ["--iw-samples", "0", "--quiet", "--set", "train.eval_every=0", "--set", "train.final_eval_images=100"]


def _plan(args: list[str], readme_steps: int | None) -> int:
    """The processes `vaekit train` picks by itself for the README's run of this family."""
    from vaekit.distributed import worker_plan
    from vaekit.run import resolve_config

    cfg = resolve_config(args[0], None, [], _base(args))
    images = None if readme_steps is None else readme_steps * cfg.train.batch_size
    return worker_plan("auto", torch.device("cpu"), cfg.train.batch_size, images).processes


def _base(args: list[str]) -> dict:
    base = {"data": {}, "train": {}}
    it = iter(args[1:])
    sets = []
    for a in it:
        if a == "--data":
            base["data"]["name"] = next(it)
        elif a == "--batch-size":
            base["train"]["batch_size"] = int(next(it))
        elif a == "--set":
            sets.append(next(it))
    for s in sets:
        key, value = s.split("=", 1)
        section, name = key.split(".", 1)
        base.setdefault(section, {})[name] = value if not value.isdigit() else int(value)
    return base


def timed_run(version: str, args: list[str], steps: int, log_every: int, processes: int, out: Path) -> dict:
    src = source(version)
    extra = ["--set", f"train.processes={processes}"] if version == "after" else []
    cmd = [sys.executable, "-m", "vaekit", "train", *args, "--steps", str(steps), "--out", str(out), *COMMON,
           "--set", f"train.log_every={log_every}", "--set", f"train.checkpoint_every={steps}", *extra]
    env = {**os.environ, "PYTHONPATH": str(src / "src")}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=str(src))
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{version} run failed ({r.returncode}): {shlex.join(cmd)}\n{r.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [row["images_per_s"] for row in rows[1:]] or [rows[0]["images_per_s"]]
    saved = json.loads((out / "config.json").read_text())
    return {"images_per_s": statistics.median(rates), "wall_s": wall,
            "precision": saved.get("precision", saved["train"].get("precision", "fp32")),  # what auto resolved to
            "processes": processes if version == "after" else 1,
            "command": "vaekit " + shlex.join(cmd[3:]).replace(str(out), "OUT")}


def flops_per_image(args: list[str]) -> float:
    """Matrix-product FLOPs of one Trainer step (every phase, forward and backward) per training image."""
    from torch.utils.flop_counter import FlopCounterMode

    from vaekit.config import TrainConfig
    from vaekit.conditioning import data_classes
    from vaekit.data.labelled import balanced_labelled_subset, partly_labelled
    from vaekit.models import build_model
    from vaekit.run import load_split, resolve_config
    from vaekit.run.configuration import fill_from_data
    from vaekit.train import Trainer
    import dataclasses

    cfg = resolve_config(args[0], None, [], _base(args))
    data = load_split(cfg, "train")
    labelled = len(data)
    if cfg.data.labelled is not None:
        kept = balanced_labelled_subset(data.labels, cfg.data.labelled, cfg.data.label_seed)
        data, labelled = partly_labelled(data, kept), len(kept)
    cfg = fill_from_data(cfg, len(data), data_classes(data), labelled)
    torch.manual_seed(0)
    model = build_model(cfg.model_name, cfg.model, data.image_shape)
    train = dataclasses.replace(cfg.train, precision="fp32", processes=1, eval_every=0, steps=1)
    trainer = Trainer(model, data, train, progress=False)
    batch = trainer.batch_at(0)
    with FlopCounterMode(display=False) as counter:
        trainer.train_step(batch)
    return counter.get_total_flops() / train.batch_size


def _machine() -> str:
    name = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {len(os.sched_getaffinity(0))} cores, torch {torch.__version__}, Python {platform.python_version()}"


def write_markdown(path: Path, data: dict) -> None:
    peaks = data["peaks"]
    lines = ["# Training speed: before and after the speed issue, per model family", "",
             f"- command: `{data['command']}`", f"- date: {data['date']}", f"- machine: {data['machine']}",
             f"- before: commit {BEFORE} with its defaults (fp32, one process, torch's default threads); after: "
             "this checkout with its defaults for the README's command (train.precision = auto, "
             "train.processes = auto, train.channels_last = auto)",
             f"- measured peak (benchmarks/peak.py): fp32 {peaks['fp32']['gflops']:.0f} GFLOP/s "
             f"({peaks['fp32']['layout']}), bf16 {peaks['bf16']['gflops']:.0f} GFLOP/s ({peaks['bf16']['layout']})",
             "- budget: one timed `vaekit train` per version and family (steps in the table); images/s is the "
             "median of the log intervals after the first",
             *([f"- rows from an earlier run: {data['kept_rows_note']}"] if data.get("kept_rows_note") else []), "",
             "| family | FLOP/image (train step) | before img/s | before % of fp32 peak | after img/s | after "
             "(precision, processes) | after % of its peak | speed-up |",
             "|---|---:|---:|---:|---:|---|---:|---:|"]
    for name, what, *_ in FAMILIES:
        row = data["rows"].get(name)
        if not row or "before" not in row or "after" not in row:
            continue
        b, a, f = row["before"], row["after"], row["flops_per_image"]
        pb = f * b["images_per_s"] / 1e9 / peaks["fp32"]["gflops"] * 100
        pa = f * a["images_per_s"] / 1e9 / peaks[a["precision"]]["gflops"] * 100
        if len(a.get("repeats", [])) > 1:
            what += f" (median of {len(a['repeats'])} alternating runs each: before " + \
                ", ".join(f"{r['images_per_s']:,.0f}" for r in b["repeats"]) + "; after " + \
                ", ".join(f"{r['images_per_s']:,.0f}" for r in a["repeats"]) + ")"
        lines.append(f"| {what} | {f / 1e6:.1f} M | {b['images_per_s']:,.0f} | {pb:.0f} % | {a['images_per_s']:,.0f} | "
                     f"{a['precision']}, {a['processes']} | {pa:.0f} % | {a['images_per_s'] / b['images_per_s']:.2f}x |")
    lines += ["", "Commands of the timed runs (OUT = a temporary folder):", ""]
    for name, *_ in FAMILIES:
        row = data["rows"].get(name, {})
        for version in ("before", "after"):
            if version in row:
                lines.append(f"- {name}, {version}: `{row[version]['command']}`")
    lines.append("")
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="families to measure (default: all)")
    ap.add_argument("--fresh", action="store_true", help="measure every row again")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per version, alternating; the median is kept")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speed_families.md")
    args = ap.parse_args()
    jpath = args.out.with_suffix(".json")
    data = json.loads(jpath.read_text()) if jpath.exists() and not args.fresh else {"rows": {}}
    data["command"] = "python benchmarks/speed.py" + ("" if not args.only else " --only " + " ".join(args.only)) + \
        ("" if args.repeats == 1 else f" --repeats {args.repeats}")
    data["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    data["machine"] = _machine()
    if "peaks" not in data:
        print("measuring the matmul peak (fp32, bf16) ...", flush=True)
        data["peaks"] = {"fp32": measure_peak("float32"), "bf16": measure_peak("bfloat16")}
    families = [f for f in FAMILIES if not args.only or f[0] in args.only]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, what, cli, readme_steps, steps, log_every) in enumerate(families):
            row = data["rows"].setdefault(name, {})
            if "flops_per_image" not in row:
                row["flops_per_image"] = flops_per_image(cli)
            processes = _plan(cli, readme_steps)
            order = ("before", "after") if i % 2 == 0 else ("after", "before")
            for repeat in range(args.repeats):  # alternating, so drift of the machine falls on both versions
                for version in order if repeat % 2 == 0 else order[::-1]:
                    runs = row.get(version, {}).get("repeats", [row[version]] if version in row else [])
                    if len(runs) > repeat:
                        continue
                    print(f"[{i + 1}/{len(families)}] {name}: {version}, {steps} steps (repeat {repeat + 1}) ...",
                          flush=True)
                    runs.append(timed_run(version, cli, steps, log_every, processes, Path(tmp) / f"{name}-{version}-{repeat}"))
                    print(f"    {runs[-1]['images_per_s']:,.0f} images/s ({runs[-1]['wall_s']:.0f} s wall)", flush=True)
                    median = sorted(runs, key=lambda r: r["images_per_s"])[(len(runs) - 1) // 2]
                    row[version] = {**median, "repeats": [{k: v for k, v in r.items() if k != "repeats"} for r in runs]}
                    jpath.write_text(json.dumps(data, indent=1))
                    write_markdown(args.out, data)
    write_markdown(args.out, data)
    print(args.out.read_text())


if __name__ == "__main__":
    main()
