"""benchmarks/results/speed.md: the speed issue's numbers in one page, read from the JSON that each
speed benchmark wrote (nothing is typed in; a benchmark not yet run is said to be missing).

    python benchmarks/speed_summary.py

Sources: speed_families.json (speed.py), demo_time.json, time_to_quality.json, precision.json,
throughput.json, draw_speed.json, evaluation_cost.json.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def main() -> None:
    lines = ["# Speed: what one `vaekit train` gets out of this machine, before and after", "",
             "Before = commit 50ae03e with its defaults (fp32, one process with torch's threads); after = this "
             "checkout with its defaults (`train.precision = auto`, `train.processes = auto`, `train.channels_last = auto`). Each section is "
             "made by the benchmark it names, before and after measured in one run of it; the exact commands, "
             "dates and machines are in the linked pages.", ""]

    fam = _load("speed_families.json")
    lines += ["## Training images/s per model family (`benchmarks/speed.py`)", ""]
    if fam:
        lines.append((RESULTS / "speed_families.md").read_text().split("\n", 2)[2].strip())
    else:
        lines.append("not run yet")

    demo = _load("demo_time.json")
    lines += ["", "## `make demo` end to end (`benchmarks/demo_time.py`)", ""]
    if demo and "after" in demo:
        b, a = demo["before"], demo["after"]
        lines += ["| part | before s | after s | speed-up |", "|---|---:|---:|---:|"]
        for what, key in (("whole demo", "total_s"), ("training", "training_s"),
                          ("start-up, final evaluation, pictures, report", "after_training_s"),
                          ("`vaekit sample`", "sample_s")):
            lines.append(f"| {what} | {b[key]:.1f} | {a[key]:.1f} | {b[key] / a[key]:.2f}x |")
        share = lambda r: 100 * r["after_training_s"] / r["training_s"]  # noqa: E731
        lines += ["", f"After training (final evaluation and the rest) costs {share(b):.0f} % of the training time "
                  f"before and {share(a):.0f} % after (goal: <= 10 % for the evaluation). Date {demo['date']}."]
    else:
        lines.append("not run yet")

    ttq = _load("time_to_quality.json")
    lines += ["", "## Time to quality (`benchmarks/time_to_quality.py`)", ""]
    if ttq:
        lines += ["| threshold | before s | after s | speed-up |", "|---|---:|---:|---:|"]
        for r in ttq["rows"]:
            cell = lambda p: "not reached" if p is None else f"{p['seconds']:.0f} (step {p['step']})"  # noqa: E731
            sp = "" if r["speedup"] is None else f"{r['speedup']:.2f}x"
            lines.append(f"| {r['metric']} | {cell(r['before'])} | {cell(r['after'])} | {sp} |")
        lines.append(f"\nDate {ttq['date']}; settings {ttq['settings']}.")
    else:
        lines.append("not run yet")

    prec = _load("precision.json")
    lines += ["", "## bf16 against fp32 (`benchmarks/precision.py`)", ""]
    if prec:
        for metric, v in prec["verdict"].items():
            lines.append(f"- {metric}: mean bf16 - fp32 over 3 seeds {v['mean_difference']:+.4f} (fp32 seed-to-seed "
                         f"sd {v['fp32_seed_sd']:.4f}); tolerance ±{v['tolerance']:g}: "
                         f"**{'PASS' if v['pass'] else 'FAIL'}**")
    else:
        lines.append("not run yet")

    tp = _load("throughput.json")
    lines += ["", "## Trainer against a minimal loop with the same speed-ups (`benchmarks/throughput.py`)", ""]
    if tp:
        r = tp["ratio"]
        lines.append(f"- median ratio vaekit / minimal {r['median']:.3f} (min {r['min']:.3f}, max {r['max']:.3f}) against "
                     f"the goal >= {tp['goal']}: **{tp['verdict']}**; precision "
                     f"{tp['machine'].get('precision', 'fp32')} in both loops; {tp['median_images_per_s']} images/s; "
                     f"date {tp['date_utc']} (throughput.md)")
    else:
        lines.append("not run yet")

    draw = _load("draw_speed.json")
    lines += ["", "## DRAW per step at T = 64 (`benchmarks/draw_speed.py`)", ""]
    if draw:
        lines += ["| precision | threads | before s/step | after s/step | speed-up |", "|---|---:|---:|---:|---:|"]
        for c in draw["cases"]:
            lines.append(f"| {c['precision']} | {c['threads']} | {c['old_s']:.3f} | {c['new_s']:.3f} | {c['speedup']:.2f}x |")
        fp32 = next((c for c in draw["cases"] if c["precision"] == "fp32" and c["threads"] == 1), None)
        bf16 = next((c for c in draw["cases"] if c["precision"] == "bf16" and c["threads"] == 1), None)
        if fp32 and bf16:
            lines.append(f"\nThe default a user gets (bf16 here) against the old default (fp32), one thread: "
                         f"{fp32['old_s'] / bf16['new_s']:.2f}x. Date {draw['date']}; load {draw['machine'].get('load_average')}.")
    else:
        lines.append("not run yet")

    ev = _load("evaluation_cost.json")
    lines += ["", "## Evaluation cost (`benchmarks/evaluation_cost.py`)", ""]
    if ev:
        lines.append((RESULTS / "evaluation_cost.md").read_text().split("\n", 2)[2].strip())
    else:
        lines.append("not run yet")
    (RESULTS / "speed.md").write_text("\n".join(lines) + "\n")
    print((RESULTS / "speed.md").read_text())


if __name__ == "__main__":
    main()
