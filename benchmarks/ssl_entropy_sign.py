"""SSL-VAE-GAN's entropy sign ("When VAEs meet GANs", sec. 3.3): the literal +H of L_G,unobserved
(`model.entropy_weight=1`) against the -H that the section's own -U(x) implies and M2 minimises
(`model.entropy_weight=-1`), on the same budget. Each run goes through `benchmarks/reproduce_ssl.py`
(SSL-VAE-GAN rows only, one run per call with --merge, so an interrupted sweep resumes at the first run
missing from its JSON); then q(y|x) of every trained run is read on the whole test split: its mean
entropy and the share of the test images its argmax puts in the largest class (1/k for balanced
predictions, 1 for a collapse onto one class).

    python benchmarks/ssl_entropy_sign.py                       # the committed result
    python benchmarks/ssl_entropy_sign.py --labels 1000 --seeds 0 --steps 10 --out /tmp/sign-smoke \\
        --runs /tmp/sign-smoke-runs                             # a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tables import mean_sd  # noqa: E402  (benchmarks/tables.py)
from vaekit.run import load_run, load_split  # noqa: E402

SIGNS = {"plus": 1.0, "minus": -1.0}  # +H: the literal L_G,unobserved; -H: -U(x)'s sign, M2's
DATASET = "fashion-mnist"  # reproduce_ssl.py's default dataset


def reproduce_json(runs: Path, sign: str) -> Path:
    return runs / sign / f"ssl_{sign}.json"


def done(runs: Path, sign: str) -> set[tuple[int, int]]:
    path = reproduce_json(runs, sign)
    if not path.exists():
        return set()
    rows = json.loads(path.read_text())["datasets"].get(DATASET, [])
    return {(r["labels"], r["seed"]) for r in rows if r["model"] == "ssl_vaegan"}


def train(runs: Path, sign: str, labels: int, seed: int, steps: int, extra: list[str]) -> None:
    command = [sys.executable, str(ROOT / "benchmarks" / "reproduce_ssl.py"), "--labels",
               "--gan-labels", str(labels), "--gan-seeds", str(seed), "--gan-steps", str(steps),
               "--set", "model.architecture=mlp", "--set", f"model.entropy_weight={SIGNS[sign]:g}",
               *[a for s in extra for a in ("--set", s)],
               "--out", str(runs / sign), "--runs", str(runs / sign / "runs"), "--name", f"ssl_{sign}"]
    if reproduce_json(runs, sign).exists():
        command.append("--merge")
    print("running", " ".join(command[1:]), file=sys.stderr, flush=True)
    subprocess.run(command, check=True)


@torch.no_grad()
def q_y_stats(run_dir: Path) -> dict:
    """Mean H(q(y|x)) over the test split (nats) and the argmax class histogram."""
    cfg, model, saved = load_run(run_dir)
    test = load_split(cfg, "test")
    log_q, n = [], len(test)
    for start in range(0, n, 1000):
        log_q.append(model.classify(test.batch(torch.arange(start, min(n, start + 1000)))))
    log_q = torch.cat(log_q)  # (n, k)
    h = -(log_q.exp() * log_q).sum(1)
    counts = torch.bincount(log_q.argmax(1), minlength=saved["classes"])
    return {"mean_entropy": float(h.mean()), "max_entropy": math.log(saved["classes"]),
            "largest_class_share": float(counts.max()) / n, "prediction_counts": counts.tolist()}


def collect(runs: Path, labels: list[int], seeds: list[int]) -> dict:
    out = {"rows": [], "commands": {}}
    for sign in SIGNS:
        path = reproduce_json(runs, sign)
        if not path.exists():
            continue
        saved = json.loads(path.read_text())
        out["commands"][sign] = saved["command"]
        for r in saved["datasets"].get(DATASET, []):
            if r["model"] != "ssl_vaegan" or r["labels"] not in labels or r["seed"] not in seeds:
                continue
            row = {"sign": sign, "entropy_weight": SIGNS[sign], **{k: r[k] for k in (
                "labels", "seed", "steps") if k in r}}
            if "diverged" in r:
                out["rows"].append({**row, "diverged": r["diverged"]})
                continue
            row.update({k: r[k] for k in ("error", "baseline_error", "train_seconds", "architecture", "batch_size",
                                          "lr", "labelled_fraction")})
            row.update(q_y_stats(runs / sign / "runs" / f"{DATASET}_ssl_vaegan_{r['labels']}_{r['seed']}"))
            out["rows"].append(row)
    return out


def compare(a: list[float], b: list[float]) -> str:
    """How a's mean stands to b's: the gap, and whether it exceeds the larger sd over seeds."""
    spread = max(statistics.stdev(a) if len(a) > 1 else 0.0, statistics.stdev(b) if len(b) > 1 else 0.0)
    gap = statistics.mean(a) - statistics.mean(b)
    if abs(gap) < spread:
        return f"{100 * gap:+.1f} points, within the seeds' spread: sd up to {100 * spread:.1f}"
    return (f"{'lower' if gap < 0 else 'higher'} by {100 * abs(gap):.1f} points, "
            + (f"more than the sd over seeds ({100 * spread:.1f})" if spread else "one seed"))


def verdict(rows: list[dict]) -> list[str]:
    ok = [r for r in rows if "diverged" not in r]
    lines = []
    for labels in sorted({r["labels"] for r in ok}):
        get = {s: [r for r in ok if r["sign"] == s and r["labels"] == labels] for s in SIGNS}
        if not all(get.values()):
            continue
        err = {s: [r["error"] for r in get[s]] for s in SIGNS}
        h = {s: statistics.mean(r["mean_entropy"] for r in get[s]) for s in SIGNS}
        share = {s: max(r["largest_class_share"] for r in get[s]) for s in SIGNS}
        collapsed = {s: sum(r["largest_class_share"] > 0.5 for r in get[s]) for s in SIGNS}
        empty = {s: statistics.mean(sum(c < 0.01 * sum(r["prediction_counts"]) for c in r["prediction_counts"])
                                    for r in get[s]) for s in SIGNS}
        base = statistics.mean(r["baseline_error"] for s in SIGNS for r in get[s])
        line = (f"- {labels} labels: test error {100 * statistics.mean(err['minus']):.1f} % with -H against "
                f"{100 * statistics.mean(err['plus']):.1f} % with +H (-H {compare(err['minus'], err['plus'])}; "
                f"supervised-only {100 * base:.1f} %). Mean H(q(y|x)) on the test images: "
                f"{h['minus']:.2f} nats with -H, {h['plus']:.2f} with +H (uniform: {math.log(10):.2f}).")
        for s, name in (("plus", "+H"), ("minus", "-H")):
            line += (f" With {name} {collapsed[s]} of {len(get[s])} runs put more than half of the test images in "
                     f"one class (the largest share {100 * share[s]:.0f} %), and {empty[s]:.1f} classes per run "
                     "receive under 1 % of the predictions.")
        lines.append(line)
    pairs = [(statistics.mean(r["mean_entropy"] for r in ok if r["sign"] == "minus" and r["labels"] == n),
              statistics.mean(r["mean_entropy"] for r in ok if r["sign"] == "plus" and r["labels"] == n))
             for n in sorted({r["labels"] for r in ok})
             if {"minus", "plus"} <= {r["sign"] for r in ok if r["labels"] == n}]
    if pairs:
        over = {s: sum(r["largest_class_share"] > 0.5 for r in ok if r["sign"] == s) for s in SIGNS}
        lines.append(f"- In all: -H gives the higher mean H(q(y|x)) at {sum(a > b for a, b in pairs)} of {len(pairs)} "
                     f"label counts, and {over['minus']} runs with more than half of the test images in one class "
                     f"against +H's {over['plus']}.")
    return lines


def committed_check(rows: list[dict]) -> list[str]:
    """The +H runs against the SSL-VAE-GAN rows of benchmarks/results/ssl.md of the same labels, seed and
    steps (made with the old default, +H, and the same settings)."""
    path = ROOT / "benchmarks" / "results" / "ssl.json"
    if not path.exists():
        return []
    old = {(r["labels"], r["seed"], r["steps"]): r["error"] for r in json.loads(path.read_text())["datasets"].get(DATASET, [])
           if r["model"] == "ssl_vaegan" and "error" in r}
    pairs = [(r["error"], old[r["labels"], r["seed"], r["steps"]]) for r in rows
             if r["sign"] == "plus" and "error" in r and (r["labels"], r["seed"], r["steps"]) in old]
    if not pairs:
        return []
    gap = max(abs(a - b) for a, b in pairs)
    return [f"- The +H runs repeat {len(pairs)} SSL-VAE-GAN runs of `ssl.md` (the old default, the same settings"
            f", seeds and steps): the largest difference in test error is {100 * gap:.2f} points"
            + (" (the same runs)." if gap < 0.0005 else ", so these runs are not bit-identical to those.")]


def write_markdown(path: Path, results: dict) -> None:
    rows, ok = results["rows"], [r for r in results["rows"] if "diverged" not in r]
    first = ok[0] if ok else {}
    lines = ["# SSL-VAE-GAN's entropy sign: +H (sec. 3.3's L_G,unobserved as written) against -H (its -U(x), "
             "M2's)", "",
             "\"When VAEs meet GANs\" (sec. 3.3) writes the unlabelled generator loss with +H(q(y|x)), but defines "
             "-U(x) = sum_y Q(y|x)(-L(x, y)) + H(Q(y|x)) as the bound to maximise, so the loss to minimise carries "
             "-H, as M2's U(x) does; minimising +H instead rewards confident q(y|x). `model.entropy_weight` is the "
             "weight on H in the encoder's loss: -1 (now the default) or +1 (the literal one).", "",
             f"Command: `{results['command']}`, which calls, per run, " +
             "; ".join(f"`{c}`" for c in results["commands"].values()) + "  ",
             f"Date: {results['date']}; machine: {results['machine']}, OMP_NUM_THREADS=1.", "",
             f"Budget: SSL-VAE-GAN, MLP architecture, {results['steps']} steps of batch {first.get('batch_size')} "
             f"({100 * first.get('labelled_fraction', 0):.0f} % labelled), lr {first.get('lr')}, on {DATASET}; "
             f"every other setting the preset's; {statistics.mean(r['train_seconds'] for r in ok) if ok else 0:.0f} s "
             "of training per run on average. The error is argmax q(y|x) on the whole test split; the "
             "supervised-only baseline is the same q(y|x) network on the same labelled images, batches and steps "
             "(it does not depend on the sign, so both columns show the same baseline runs).", "",
             "| entropy term | labels | seeds | test error (%) | supervised-only (%) | mean H(q(y|x)) (nats) | "
             "largest class share of predictions | diverged |", "|---|---|---|---|---|---|---|---|"]
    for sign, name in (("plus", "+H (entropy_weight=1)"), ("minus", "-H (entropy_weight=-1)")):
        for labels in sorted({r["labels"] for r in rows}):
            group = [r for r in rows if r["sign"] == sign and r["labels"] == labels]
            good = [r for r in group if "diverged" not in r]
            if not group:
                continue
            lines.append(f"| {name} | {labels} | {len(group)} | {mean_sd([100 * r['error'] for r in good], '.2f')} | "
                         f"{mean_sd([100 * r['baseline_error'] for r in good], '.2f')} | "
                         f"{mean_sd([r['mean_entropy'] for r in good], '.2f')} | "
                         f"{mean_sd([r['largest_class_share'] for r in good], '.2f')} | "
                         f"{len(group) - len(good)} of {len(group)} |")
    lines += ["", "Largest class share: the fraction of the 10,000 test images that the run's argmax q(y|x) puts in "
              "its most predicted class (0.10 for balanced predictions; the test split is balanced). Per run:", "",
              "| entropy term | labels | seed | error (%) | mean H | largest share | predictions per class (0-9) |",
              "|---|---|---|---|---|---|---|"]
    for r in sorted(ok, key=lambda r: (r["sign"] != "plus", r["labels"], r["seed"])):
        lines.append(f"| {'+H' if r['sign'] == 'plus' else '-H'} | {r['labels']} | {r['seed']} | "
                     f"{100 * r['error']:.2f} | {r['mean_entropy']:.3f} | {r['largest_class_share']:.3f} | "
                     f"{' '.join(map(str, r['prediction_counts']))} |")
    lines += ["", "Verdict, computed from the numbers above:", "", *verdict(rows), *committed_check(rows), ""]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, nargs="+", default=[1000, 3000])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                    help="further settings for every run (architecture and entropy_weight are set here)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--runs", default="/tmp/vaekit-ssl-entropy-sign")
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from the trained runs")
    args = ap.parse_args()
    runs, out = Path(args.runs), Path(args.out)
    if not args.report_only:
        for seed in args.seeds:  # seed-major, so a sweep cut short still has both signs on the same seeds
            for labels in args.labels:
                for sign in SIGNS:
                    if (labels, seed) not in done(runs, sign):
                        train(runs, sign, labels, seed, args.steps, args.extra)
    results = {"command": "python benchmarks/ssl_entropy_sign.py " + " ".join(sys.argv[1:]), "steps": args.steps,
               "settings": ["model.architecture=mlp", *args.extra],
               "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
               "date": str(datetime.now(timezone.utc).date()),
               **collect(runs, args.labels, args.seeds)}
    results["verdict"] = verdict(results["rows"]) + committed_check(results["rows"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "ssl_entropy_sign.json").write_text(json.dumps(results, indent=1))
    write_markdown(out / "ssl_entropy_sign.md", results)


if __name__ == "__main__":
    main()
