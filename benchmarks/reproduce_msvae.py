"""Reproduce Table 1 of Cai, Gao & Ji 2017 (multi-stage VAE) on the data we have, on 2 CPU cores.

VAE, Residual-VAE and MSVAE are trained with the paper's MNIST settings (sec. 3.1): an encoder of
3 stride-2 convolutions, latent 128, a decoder of 3 transposed convolutions, 5 residual blocks
(two 3x3 convolutions with batch norm and a skip each), the l1 refine loss for MSVAE, batch 256,
Adam with lr 1e-3. The "l2" loss of the paper is a Gaussian likelihood with fixed sigma (eq. 2.4);
we state sigma. Every model gets the same number of steps (the budget), through the same front
door a user has (`vaekit.run.folder.train_run`). Fashion-MNIST always; MNIST when its IDX files are found
under $VAEKIT_DATA/mnist/.

Outputs benchmarks/results/msvae.md (the paper's Table 1 beside ours: mean SSIM of test
reconstructions; sharpness of reconstructions and samples against the real test images' own), and
image grids like the paper's figure 5 (rows: input, VAE, Residual-VAE, MSVAE) and figure 7 (each
model's stages).

    python benchmarks/reproduce_msvae.py                       # the committed result
    python benchmarks/reproduce_msvae.py --steps 50 --out /tmp/msvae-smoke   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vaekit.errors import DataError  # noqa: E402
from vaekit.metrics.image_quality import gradient_energy, laplacian_variance  # noqa: E402
from vaekit.run import load_run, load_split, resolve_config, train_run  # noqa: E402
from vaekit.run.pictures import reconstruction_rows  # noqa: E402
from vaekit.viz import save_grid  # noqa: E402

PAPER_SSIM = {"vae": {"CelebA": 0.646, "MNIST": 0.834}, "residual_vae": {"CelebA": 0.648, "MNIST": 0.839},
              "msvae": {"CelebA": 0.690, "MNIST": 0.836}}
LABELS = {"vae": "VAE", "residual_vae": "Residual-VAE", "msvae": "MSVAE"}


def settings(model: str, args) -> list[str]:
    vae = (f"latent_dim = 128, downsamples = 3, likelihood = \"gaussian\", scale = {args.sigma}, "
           f"base_channels = 32, max_channels = 128")
    stage = f"blocks = 5, channels = {args.refine_channels}"
    common = ["train.batch_size=256", "train.lr=1e-3", f"train.seed={args.seed}", "train.eval_every=0",
              f"train.log_every={max(1, args.steps // 20)}", f"train.checkpoint_every={args.steps}"]
    if model == "vae":
        return [f"model.{kv.split(' = ')[0]}={kv.split(' = ')[1]}" for kv in vae.split(", ")] + common
    loss = "likelihood" if model == "residual_vae" else "l1"
    return [f"model.base_settings={{{vae}}}", f"model.stages=[{{loss = \"{loss}\", {stage}}}]"] + common


def ordering_note(ours: dict[str, float]) -> str:
    """Our SSIM ordering against the paper's MNIST column, and what we think explains a difference."""
    def order(scores):
        return " > ".join(LABELS[m] for m in sorted(scores, key=scores.get, reverse=True))
    paper = {m: PAPER_SSIM[m]["MNIST"] for m in ours}
    line = f"SSIM ordering — ours: {order(ours)}; the paper's (MNIST): {order(paper)}."
    if order(ours) == order(paper):
        return line + " The same ordering."
    return (line + " **The orderings differ.** What we think explains it (not tested here): (1) the budget — "
            "600 steps is 0.6% of the paper's 100,000, and the Residual-VAE, whose one likelihood must flow back "
            "through five extra residual blocks before the decoder learns, is the slowest starter of the three, "
            "while MSVAE's coarse likelihood trains the VAE stage exactly as the plain VAE; (2) the data — "
            "Fashion-MNIST's textures are harder than MNIST's strokes; (3) the paper's three MNIST numbers lie "
            "within 0.005 of each other, less than the spread we would expect between seeds, so its ordering "
            "itself may not be significant. We did not tune anything to make the orderings agree.")


def sharpness(x: torch.Tensor) -> dict:
    return {"laplacian_var": float(laplacian_variance(x).mean()), "grad_energy": float(gradient_energy(x).mean())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600, help="optimiser steps per model (the equal budget)")
    p.add_argument("--sigma", type=float, default=0.1, help="sigma of the Gaussian (l2) likelihood")
    p.add_argument("--refine-channels", type=int, default=16, help="width of the residual blocks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for msvae.md and images")
    p.add_argument("--runs", default=str(ROOT / "runs" / "bench-msvae"), help="folder for the run folders")
    args = p.parse_args()
    out, runs = Path(args.out), Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)

    datasets = ["fashion-mnist"]
    if os.environ.get("VAEKIT_DATA") and (Path(os.environ["VAEKIT_DATA"]) / "mnist").is_dir():
        datasets.append("mnist")
    results: dict = {}
    for data in datasets:
        for model in ("vae", "residual_vae", "msvae"):
            run_dir = runs / f"{data}-{model}-s{args.seed}-{args.steps}"
            if not (run_dir / "evaluation.json").exists():
                cfg = resolve_config(model, overrides=settings(model, args),
                                     base={"data": {"name": data}, "train": {"steps": args.steps}})
                t0 = time.time()
                try:
                    train_run(cfg, run_dir, progress=False, final_iw_samples=0)
                except DataError as e:
                    print(f"skipping {data}: {e}", file=sys.stderr)
                    break
                print(f"{data} {model}: {time.time() - t0:.0f} s", flush=True)
            results[(data, model)] = run_dir

    lines = ["# Multi-stage VAE reproduction (Cai, Gao & Ji 2017, Table 1)", "",
             f"- command: `python benchmarks/reproduce_msvae.py {' '.join(sys.argv[1:])}`".rstrip(),
             f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
             f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads",
             f"- budget: {args.steps} steps per model at batch 256 (the paper: 100,000 steps on MNIST), "
             f"seed {args.seed}; each model's training wall time is in the table (a 2-core machine shared with "
             "other work, so times are indicative)",
             f"- settings (paper, sec. 3.1): 3 stride-2 convolutions, latent 128, 3 transposed convolutions, "
             f"5 residual blocks of width {args.refine_channels} (the paper does not give the width; 16 keeps "
             f"the budget), l1 refine loss, Adam lr 1e-3; the l2 loss is a Gaussian likelihood with sigma "
             f"{args.sigma}, so L_l2 = sum (x - f(z))^2 / (2 sigma^2) per image (eq. 2.4)", ""]
    grids = {}
    for data in datasets:
        rows = [(m, results.get((data, m))) for m in ("vae", "residual_vae", "msvae") if (data, m) in results]
        if not rows:
            continue
        test = None
        table = ["| model | paper SSIM (MNIST) | paper SSIM (CelebA) | our SSIM | our MSE | recon sharpness "
                 "(Laplacian var / grad energy) | sample sharpness | train time (s) |", "|---|---|---|---|---|---|---|---|"]
        ours: dict[str, float] = {}
        recon_rows = []
        for model, run_dir in rows:
            cfg, m, _ = load_run(run_dir)
            if test is None:
                test = load_split(cfg, "test")
                x = test.batch(torch.arange(2000))
                real = sharpness(x)
                recon_rows.append(x[:12])
            ev = json.loads((run_dir / "evaluation.json").read_text())
            torch.manual_seed(0)
            recon = torch.cat([m.reconstruct(x[i:i + 500]) for i in range(0, 2000, 500)])
            samples = m.sample(2000)
            rs, ss = sharpness(recon), sharpness(samples)
            recon_rows.append(recon[:12])
            table.append(f"| {LABELS[model]} | {PAPER_SSIM[model]['MNIST']:.3f} | {PAPER_SSIM[model]['CelebA']:.3f} | "
                         f"{ev['test/ssim']:.3f} | {ev['test/mse']:.4f} | {rs['laplacian_var']:.4f} / "
                         f"{rs['grad_energy']:.4f} | {ss['laplacian_var']:.4f} / {ss['grad_energy']:.4f} | "
                         f"{ev['train_seconds_this_session']:.0f} |")
            ours[model] = ev["test/ssim"]
            if model != "vae":
                stage_grid, names = reconstruction_rows(m, x[:12])
                save_grid(out / f"msvae_{data}_{model}_stages.png", stage_grid, nrow=12)
            save_grid(out / f"msvae_{data}_{model}_samples.png", samples[:64], nrow=8)
            grids[(data, model)] = ev
        table.append(f"| real test images | | | 1 | 0 | {real['laplacian_var']:.4f} / {real['grad_energy']:.4f} | | |")
        table += ["", ordering_note(ours)]
        save_grid(out / f"msvae_{data}_reconstructions.png", torch.cat(recon_rows), nrow=12)
        lines += [f"## {data} (test split, {len(test)} images for SSIM/MSE; 2,000 for sharpness)", "", *table, "",
                  f"Figure-5-like grid (rows: input, VAE, Residual-VAE, MSVAE): `msvae_{data}_reconstructions.png`; "
                  f"stages (rows: input, coarse, refined): `msvae_{data}_<model>_stages.png`; samples: "
                  f"`msvae_{data}_<model>_samples.png`.", "",
                  f"![reconstructions](msvae_{data}_reconstructions.png)", ""]
    (out / "msvae.md").write_text("\n".join(lines) + "\n")
    (out / "msvae.json").write_text(json.dumps({f"{d}/{m}": ev for (d, m), ev in grids.items()}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
