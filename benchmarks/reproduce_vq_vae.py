"""VQ-VAE beside a VAE at an equal budget on MNIST and Fashion-MNIST: reconstructions (MSE, SSIM), samples
(FD, precision/recall) and codebook use (issue 30).

Every run goes through the front door a user has (`vaekit.run.train_run`, the code of `vaekit train`), with
each model's registered preset: `vq_vae` (its PixelCNN prior trained over the last quarter of the steps) and
the convolutional `vae`, one budget of steps and batch for both. Measured on the test split in eval mode:
MSE and SSIM of the reconstructions of a fixed uniform sample, FD and precision/recall (k = 3) of samples in
the features of vaekit's classifier for the dataset, against the whole test split; for VQ-VAE also its
codebook use (perplexity, entries used) and the ELBO with its learned prior.

Van den Oord et al. 2017 give no MNIST or Fashion-MNIST numbers (their image results are CIFAR10 bits/dim,
ImageNet and DeepMind Lab samples), so this table stands beside the VAE trained alike, not beside a
published row; their CIFAR10 numbers are quoted as context.

Resumable: each run is a run folder under --runs, continued by `--resume` if killed, and each finished row is
written to benchmarks/results/vq_vae.json at once; a row already there is not run again.

    python benchmarks/reproduce_vq_vae.py                            # the committed table
    python benchmarks/reproduce_vq_vae.py --data mnist --models vq_vae   # one lane of it
    python benchmarks/reproduce_vq_vae.py --report-only
    python benchmarks/reproduce_vq_vae.py --steps 200 --samples 500 --json /tmp/vq.json --runs /tmp/vq-runs  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from tables import mean_sd  # noqa: E402
from vaekit.files import write_json_atomic, write_text_atomic  # noqa: E402
from vaekit.metrics import evaluate_samples  # noqa: E402
from vaekit.run import load_run, load_split, resolve_config, train_run  # noqa: E402
from vaekit.viz import save_grid  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
LABELS = {"vq_vae": "VQ-VAE (K = 512, D = 64, 7x7 grid, PixelCNN prior; eq. 3's codebook term)",
          "vq_vae_ema": "the same VQ-VAE, EMA codebook (appendix A.1) and dead-code restarts (dead_count 1)",
          "vae": "VAE (conv, z of 32)"}
# row -> (registered model, its settings beyond the preset)
ROWS = {"vq_vae": ("vq_vae", ()), "vq_vae_ema": ("vq_vae", ('model.codebook_update="ema"', "model.dead_count=1.0")),
        "vae": ("vae", ())}
DATA = ("mnist", "fashion-mnist")
# van den Oord et al. 2017, sec. 4.1 (CIFAR10, bits/dim of the ELBO): context only, another data set.
PAPER_CIFAR = {"VAE (continuous)": 4.51, "VQ-VAE": 4.67, "VIMCO": 5.14}


def key(data: str, model: str, seed: int) -> str:
    return f"{data}/{model}/seed{seed}"


def run_row(data: str, model: str, seed: int, args) -> dict:
    run_dir = Path(args.runs) / f"{data}-{model}-s{seed}-{args.steps}"
    overrides = [f"train.steps={args.steps}", f"train.batch_size={args.batch}", f"train.seed={seed}",
                 "train.eval_every=0", f"train.log_every={max(1, args.steps // 100)}",
                 f"train.checkpoint_every={max(100, args.steps // 10)}", f"train.processes={args.processes}",
                 f"train.final_eval_images={args.images}", *ROWS[model][1]]
    cfg = resolve_config(ROWS[model][0], base={"data": {"name": data}}, overrides=overrides)
    resume = (run_dir / "checkpoints").is_dir()
    print(f"[{data}/{model}/seed {seed}] training {args.steps} steps{' (resumed)' if resume else ''}", flush=True)
    t0 = time.time()
    ev = train_run(cfg, run_dir, resume=resume, progress=not args.quiet, final_iw_samples=0)
    _, m, _ = load_run(run_dir)
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    q = evaluate_samples(m, train, test, samples=args.samples, pairs=min(args.samples, 2000), seed=seed,
                         progress=not args.quiet)
    torch.manual_seed(seed)
    save_grid(run_dir / "bench_samples.png", m.sample(64), nrow=8)
    keep = ("test/mse", "test/ssim", "test/recon", "test/elbo", "test/perplexity", "test/codes_used",
            "test/prior_nll", "test/kl", "images", "train_seconds_this_session")
    return {"run": str(run_dir), "steps": args.steps, "batch": args.batch, "samples": args.samples,
            **{k: ev[k] for k in keep if k in ev}, **q, "wall_seconds": round(time.time() - t0, 1)}


def write_report(results: dict, out: Path) -> None:
    meta = results.get("_meta", {})
    rows = {k: v for k, v in results.items() if not k.startswith("_")}
    steps = sorted({r["steps"] for r in rows.values()})
    batch = meta.get("batch", 0)
    passes = ", ".join(f"{s * batch / 60000:.1f}" for s in steps)
    lines = ["# VQ-VAE beside a VAE at an equal budget (MNIST, Fashion-MNIST)", "",
             "Made by `benchmarks/reproduce_vq_vae.py` from its JSON (`vq_vae.json`); every number is computed, none "
             "typed in.", "",
             "- commands (one per lane): " + ", ".join(f"`{c}`" for c in meta.get("commands", [])),
             f"- date: {meta.get('date', '?')}; machine: {meta.get('machine', '?')}",
             f"- budget per run: {', '.join(map(str, steps))} steps at batch {meta.get('batch', '?')} "
             f"({passes} passes of the 60,000 training "
             "images); VQ-VAE spends the last quarter of them on its PixelCNN prior (the VQ-VAE frozen). The paper "
             "trains 250,000 steps at batch 128 (533 passes) on CIFAR10.",
             "- models: the registered presets (`vaekit models`): `vq_vae` (K = 512 entries of D = 64, a 7x7 grid, "
             "beta = 0.25, the gradient-trained codebook, lr 2e-4) and the convolutional `vae` (z of 32, lr 1e-3); "
             "both with a Bernoulli likelihood on grey levels.",
             f"- metrics: MSE (per pixel) and SSIM of test reconstructions (a fixed uniform sample, count below); "
             "FD and precision/recall (k = 3) of samples against the 10,000 test images in the features of vaekit's "
             "classifier for the data set (no Inception weights offline); 'real train images' is the same "
             "measurement with training images in place of samples (the floor for this sample count).", ""]
    for data in DATA:
        here = {k: v for k, v in rows.items() if k.startswith(data + "/")}
        if not here:
            continue
        acc = next((r.get("feature_net/test_accuracy") for r in here.values() if r.get("feature_net/test_accuracy")), None)
        lines += [f"## {data}" + (f" (feature net test accuracy {acc:.4f})" if acc else ""), "",
                  "| model | seeds | recon MSE ↓ | recon SSIM ↑ | FD ↓ | precision ↑ | recall ↑ | codebook perplexity | "
                  "entries used / batch | −ELBO (nats) | train s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        ref = None
        for model in LABELS:
            recs = [r for k, r in here.items() if k.split("/")[1] == model]
            if not recs:
                continue
            ref = ref or next((r for r in recs if "reference/train_fd" in r), None)

            def col(name, spec=".4f"):
                return mean_sd([r[name] for r in recs if r.get(name) is not None], spec)

            lines.append(f"| {LABELS[model]} | {len(recs)} | {col('test/mse')} | {col('test/ssim', '.3f')} | "
                         f"{col('samples/fd', '.2f')} | {col('samples/precision', '.3f')} | {col('samples/recall', '.3f')} | "
                         f"{col('test/perplexity', '.1f')} | {col('test/codes_used', '.1f')} | "
                         f"{mean_sd([-r['test/elbo'] for r in recs if r.get('test/elbo') is not None], '.2f')} | "
                         f"{col('train_seconds_this_session', '.0f')} |")
        if ref:
            lines.append(f"| real train images | | | | {ref['reference/train_fd']:.2f} | {ref['reference/train_precision']:.3f} | "
                         f"{ref['reference/train_recall']:.3f} | | | | |")
        lines += ["", f"Reconstructions were scored on {next(iter(here.values())).get('images', '?')} test images; "
                      f"samples: {next(iter(here.values())).get('samples', '?')} per run.", ""]
        for model in LABELS:
            png = f"vq_vae_{data}_{model}_samples.png"
            if (out.parent / png).exists():
                lines += [f"{LABELS[model]}, samples (seed 0):", "", f"![{model}]({png})", ""]
    lines += ["## What the paper reports (context, not comparable)", "",
              "van den Oord et al. 2017, sec. 4.1, CIFAR10, bits/dim of the ELBO: "
              + ", ".join(f"{k} {v}" for k, v in PAPER_CIFAR.items())
              + ". They give no MNIST or Fashion-MNIST numbers; the VQ-VAE's ELBO above is the same kind of bound "
                "(log p(x|z_q) + log p(codes) under the PixelCNN) in nats per image, the VAE's its own ELBO.", "",
              "Where this differs from the paper's set-up: grey 28x28 images and a Bernoulli likelihood instead of "
              "colour 32x32 and a discretised one; 128 hidden units instead of 256; a PixelCNN of 8 gated layers of "
              "64 channels on a 7x7 grid; a budget of minutes on two CPU cores, not 250,000 steps."]
    write_text_atomic(out, "\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=list(DATA), choices=DATA)
    p.add_argument("--models", nargs="+", default=list(LABELS), choices=list(LABELS), help="rows")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--samples", type=int, default=5000, help="samples per run for FD and precision/recall")
    p.add_argument("--images", type=int, default=2000, help="test images whose reconstructions are scored")
    p.add_argument("--processes", default="1", help="train.processes of each run (1: this lane alone)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", default=str(RESULTS / ".vq_vae_runs"))
    p.add_argument("--json", type=Path, default=RESULTS / "vq_vae.json")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out_md = args.json.with_suffix(".md")
    if not args.report_only:
        results = json.loads(args.json.read_text()) if args.json.exists() else {}
        meta = results.setdefault("_meta", {})
        command = "python benchmarks/reproduce_vq_vae.py " + " ".join(sys.argv[1:] if argv is None else argv)
        meta.update(commands=[*(c for c in meta.get("commands", []) if c != command), command.strip()],
                    date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), batch=args.batch,
                    machine=f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                            f"{args.threads} thread(s) per lane, no GPU")
        write_json_atomic(args.json, results)
        for data in args.data:
            for model in args.models:
                for seed in args.seeds:
                    k = key(data, model, seed)
                    if json.loads(args.json.read_text()).get(k, {}).get("steps") == args.steps:
                        continue
                    record = run_row(data, model, seed, args)
                    results = json.loads(args.json.read_text())  # lanes share the file: re-read, then add
                    results[k] = record
                    write_json_atomic(args.json, results)
                    if seed == args.seeds[0]:
                        shutil.copy(Path(record["run"]) / "bench_samples.png",
                                    out_md.parent / f"vq_vae_{data}_{model}_samples.png")
                    print(f"[{k}] FD {record.get('samples/fd', float('nan')):.2f}, MSE {record.get('test/mse'):.4f} "
                          f"({record['wall_seconds']:.0f} s)", flush=True)
    write_report(json.loads(args.json.read_text()), out_md)
    print(f"wrote {out_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
