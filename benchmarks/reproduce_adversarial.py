"""VAE, VAE-GAN and IntroVAE at an equal budget on 2 CPU cores: sample quality, diversity, stability.

Every model is trained through the front door a user has (`vaekit.run.folder.train_run`) with the same
encoder/decoder (IntroVAE's appendix-B residual network, scaled to the image size), the same number
of steps and batch size, on Fashion-MNIST at 28x28 and upsampled to 64x64, for several seeds. A run
that diverges (the trainer's guard: non-finite or exploding losses) is counted, not hidden.

Measured on the test split, in eval mode, with the counts in the table: FD and precision/recall in
the features of the toolkit's own Fashion-MNIST classifier (Inception weights cannot be downloaded;
its test accuracy is stated), MS-SSIM diversity among random sample pairs (IntroVAE's Table 2), SSIM
of test reconstructions. Writes benchmarks/results/adversarial.md with IntroVAE's KL curves (the
paper's figure 5) and sample grids; the paper's own numbers are given as context only (CelebA /
LSUN at 128-1024 px, with Inception features).

    python benchmarks/reproduce_adversarial.py                       # the committed result
    python benchmarks/reproduce_adversarial.py --steps 30 --steps-64 10 --seeds 0 --samples 500 \\
        --out /tmp/adv-smoke --runs /tmp/adv-runs                    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tables import mean_sd as _mean_sd  # noqa: E402  (benchmarks/tables.py)
from vaekit.errors import TrainingDiverged  # noqa: E402
from vaekit.metrics import evaluate_samples  # noqa: E402
from vaekit.models import model_config  # noqa: E402
from vaekit.run import load_run, load_split, resolve_config, train_run  # noqa: E402
from vaekit.viz import save_grid  # noqa: E402

LABELS = {"vae": "VAE", "vaegan": "VAE-GAN", "introvae": "IntroVAE"}
# IntroVAE paper, Table 2 (context only: other data, other resolution, Inception features).
PAPER_TABLE_2 = {"MS-SSIM CelebA 128px": {"WGAN-GP": 0.2854, "PGGAN": 0.2828, "IntroVAE": 0.2719},
                 "MS-SSIM LSUN bedroom 128px": {"WGAN-GP": 0.0587, "PGGAN": 0.0636, "IntroVAE": 0.0532},
                 "FID CelebA-HQ 1024px": {"PGGAN": 7.30, "IntroVAE": 5.19},
                 "FID LSUN bedroom 256px": {"PGGAN": 8.34, "IntroVAE": 8.84}}


def settings(model: str, size: int, args) -> list[str]:
    """The shared network and budget; each model's own objective settings are its registered preset
    (the toolkit's tested defaults) except where stated here."""
    net = ["model.architecture=\"resnet\"", f"model.base_channels={args.width}", "model.max_channels=128",
           f"model.latent_dim={args.latent}"]
    steps = args.steps if size == 28 else args.steps_64
    batch = args.batch if size == 28 else args.batch_64
    common = [f"train.batch_size={batch}", f"train.steps={steps}", "train.eval_every=0",
              f"train.log_every={max(1, steps // 50)}", f"train.checkpoint_every={max(1, steps // 4)}",
              "train.final_eval_images=2000"]
    own = ["model.likelihood=\"bernoulli\""] if model == "vae" else []
    return net + own + common


def registered_name(model: str, size: int) -> str:
    """IntroVAE's beta multiplies a sum over pixels: 64x64 uses the preset scaled for it."""
    return "introvae_64" if model == "introvae" and size == 64 else model


def pretrain_steps(args) -> list[tuple[int, int]]:
    """(size, steps) of IntroVAE's VAE pre-training in each size's budget, from its registered preset."""
    out = []
    for size in args.sizes:
        batch = args.batch if size == 28 else args.batch_64
        epochs = model_config(registered_name("introvae", size)).pretrain_epochs
        if "introvae" in args.models and epochs > 0:
            out.append((size, round(epochs * (60000 // batch))))
    return out


def mean_sd(values: list[float]) -> str:
    return _mean_sd(values, ".3f", empty="–")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600, help="steps per 28x28 run (the equal budget)")
    p.add_argument("--steps-64", type=int, default=400, help="steps per 64x64 run")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batch-64", type=int, default=32)
    p.add_argument("--width", type=int, default=16, help="channels at full resolution (the paper: 16)")
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sizes", type=int, nargs="+", default=[28, 64])
    p.add_argument("--models", nargs="+", default=list(LABELS))
    p.add_argument("--samples", type=int, default=5000, help="samples per 28x28 run for FD, P/R and MS-SSIM")
    p.add_argument("--samples-64", type=int, default=2000, help="samples per 64x64 run")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--runs", default=str(ROOT / "runs" / "bench-adversarial"))
    args = p.parse_args()
    out, runs = Path(args.out), Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)

    rows: dict = {}
    for size in args.sizes:
        for model in args.models:
            for seed in args.seeds:
                steps = args.steps if size == 28 else args.steps_64
                run_dir = runs / f"{size}px-{model}-s{seed}-{steps}"
                record = {"run": str(run_dir), "diverged": None}
                if (run_dir / "samples.json").exists():
                    record = json.loads((run_dir / "samples.json").read_text())
                else:
                    if run_dir.exists():
                        shutil.rmtree(run_dir)  # a half-finished earlier attempt
                    data = {"name": "fashion-mnist", **({"size": size} if size != 28 else {})}
                    cfg = resolve_config(registered_name(model, size), overrides=[*settings(model, size, args), f"train.seed={seed}"],
                                         base={"data": data})
                    t0 = time.time()
                    try:
                        ev = train_run(cfg, run_dir, progress=False, final_iw_samples=0)
                    except TrainingDiverged as e:
                        record["diverged"] = str(e)
                        print(f"{size}px {model} seed {seed}: DIVERGED: {e}", flush=True)
                    else:
                        _, m, _ = load_run(run_dir)
                        train, test = load_split(cfg, "train"), load_split(cfg, "test")
                        n = args.samples if size == 28 else args.samples_64
                        q = evaluate_samples(m, train, test, samples=n, pairs=n, seed=seed,
                                             progress=True)
                        record.update({"train_seconds": ev["train_seconds_this_session"],
                                       "ssim": ev["test/ssim"], **q})
                        torch.manual_seed(seed)
                        save_grid(run_dir / "bench_samples.png", m.sample(64), nrow=8)
                    record["wall_seconds"] = round(time.time() - t0, 1)
                    (run_dir / "samples.json").parent.mkdir(parents=True, exist_ok=True)
                    (run_dir / "samples.json").write_text(json.dumps(record, indent=1))
                    print(f"{size}px {model} seed {seed}: {record.get('samples/fd', 'diverged')} "
                          f"({record['wall_seconds']:.0f} s)", flush=True)
                rows[(size, model, seed)] = record

    lines = ["# VAE, VAE-GAN and IntroVAE at an equal budget", "",
             f"- command: `python benchmarks/reproduce_adversarial.py {' '.join(sys.argv[1:])}`".rstrip(),
             f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
             f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads, no GPU",
             f"- budget per run: {args.steps} steps at batch {args.batch} (28x28) / {args.steps_64} steps at batch "
             f"{args.batch_64} (64x64): {args.steps * args.batch / 60000:.2f} / {args.steps_64 * args.batch_64 / 60000:.2f} "
             "epochs of the 60,000 "
             f"training images); seeds {args.seeds}. The paper trains for days on a GPU: this is a "
             "short-budget comparison, not a reproduction of its images.",
             f"- network (all three): IntroVAE's residual encoder/decoder (appendix B) scaled to the image, "
             f"{args.width} channels at full resolution doubling per halving (cap 128), latent {args.latent}; "
             "VAE-GAN adds its conv discriminator. Objectives: each model's registered preset "
             "(`vaekit models`: `introvae` at 28x28, `introvae_64` at 64x64), VAE with a Bernoulli likelihood."
             + "".join(f" IntroVAE at {size}x{size} spends the first {pre} of its steps as a plain VAE (alpha = 0, "
                       "its preset's pre-training), inside the same budget." for size, pre in pretrain_steps(args)),
             f"- metrics: {args.samples} samples per 28x28 run ({args.samples_64} per 64x64 run) against the "
             "10,000 test images, in eval mode; FD and "
             "precision/recall (k = 3) in the features of vaekit's Fashion-MNIST classifier (not Inception: no "
             "weights offline), MS-SSIM over as many random sample pairs (lower = more diverse), SSIM of 2,000 "
             "test reconstructions. 'real train images' is the same measurement with training images in place "
             "of samples: the floor for this sample count.", ""]
    for size in args.sizes:
        acc = [r.get("feature_net/test_accuracy") for (s, _, _), r in rows.items() if s == size and r.get("feature_net/test_accuracy")]
        lines += [f"## Fashion-MNIST {size}x{size}" + (f" (feature net test accuracy {acc[0]:.4f})" if acc else ""), "",
                  "| model | FD ↓ | precision ↑ | recall ↑ | MS-SSIM (samples) | recon SSIM ↑ | diverged | train s/run |",
                  "|---|---|---|---|---|---|---|---|"]
        ref = None
        for model in args.models:
            recs = [rows[(size, model, s)] for s in args.seeds if (size, model, s) in rows]
            ok = [r for r in recs if not r.get("diverged")]
            ref = ref or next((r for r in ok if "reference/train_fd" in r), None)
            col = {k: mean_sd([r[k] for r in ok if k in r]) for k in
                   ("samples/fd", "samples/precision", "samples/recall", "samples/ms_ssim", "ssim")}
            secs = [r["train_seconds"] for r in ok if "train_seconds" in r]
            col["train_seconds"] = f"{statistics.mean(secs):.0f}" if secs else "–"
            lines.append(f"| {LABELS[model]} | {col['samples/fd']} | {col['samples/precision']} | "
                         f"{col['samples/recall']} | {col['samples/ms_ssim']} | {col['ssim']} | "
                         f"{len(recs) - len(ok)} of {len(recs)} | {col['train_seconds']} |")
        means = {m: statistics.mean(v) for m in args.models
                 if (v := [rows[(size, m, sd)]["samples/fd"] for sd in args.seeds
                           if "samples/fd" in rows.get((size, m, sd), {})])}
        order = " < ".join(f"{LABELS[m]} ({v:.2f})" for m, v in sorted(means.items(), key=lambda kv: kv[1]))
        if ref:
            lines.append(f"| real train images | {ref['reference/train_fd']:.3f} | {ref['reference/train_precision']:.3f} | "
                         f"{ref['reference/train_recall']:.3f} | {ref['reference/test_ms_ssim']:.3f} (test images) | | | |")
        lines += ["", f"Mean FD, best first: {order}." if order else "", ""]
        for seed in args.seeds:  # IntroVAE's Theorem-1 balance, as its run report judges it
            rec = rows.get((size, "introvae", seed))
            if rec and not rec.get("diverged"):
                run_dir = Path(rec["run"])
                _, m, _ = load_run(run_dir)
                logged = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
                lines += [f"- IntroVAE seed {seed}: {note}" for note in m.report_notes(logged)
                          if note.startswith("Last 10%")]
        lines.append("")
        for model in args.models:
            seed = args.seeds[0]
            rec = rows.get((size, model, seed))
            if rec and not rec.get("diverged"):
                run_dir = Path(rec["run"])
                shutil.copy(run_dir / "bench_samples.png", out / f"adversarial_{size}px_{model}_samples.png")
                if (run_dir / "training_curves.png").exists():
                    shutil.copy(run_dir / "training_curves.png", out / f"adversarial_{size}px_{model}_curves.png")
        lines += [f"Samples (seed {args.seeds[0]}): " + ", ".join(
            f"{LABELS[m]} `adversarial_{size}px_{m}_samples.png`" for m in args.models), ""]
        lines += [f"![{LABELS[m]}](adversarial_{size}px_{m}_samples.png)" for m in args.models
                  if (out / f"adversarial_{size}px_{m}_samples.png").exists()]
        if (out / f"adversarial_{size}px_introvae_curves.png").exists():
            lines += ["", f"IntroVAE's KL of real, reconstructed and sampled images against the margin, and L_AE "
                          f"(the paper's figure 5), seed {args.seeds[0]}:", "",
                      f"![IntroVAE curves](adversarial_{size}px_introvae_curves.png)"]
        lines.append("")
        for model in args.models:
            for s in args.seeds:
                r = rows.get((size, model, s))
                if r and r.get("diverged"):
                    lines.append(f"- {LABELS[model]} seed {s} diverged: {r['diverged'].split('. ')[0]}.")
        lines.append("")
    lines += ["## What the IntroVAE paper reports (context, not comparable)", "",
              "| measure | " + " | ".join(["WGAN-GP", "PGGAN", "IntroVAE"]) + " |", "|---|---|---|---|"]
    for measure, values in PAPER_TABLE_2.items():
        lines.append(f"| {measure} | " + " | ".join(f"{values[k]}" if k in values else "–"
                                                    for k in ("WGAN-GP", "PGGAN", "IntroVAE")) + " |")
    lines += ["", "Their MS-SSIM is over 10K pairs of 128x128 samples of faces and bedrooms, their FID over 50K "
                  "samples with Inception features; ours is Fashion-MNIST at 28 and 64 px with a small classifier's "
                  "features, so only the direction of a difference between models can be compared, not values."]
    (out / "adversarial.md").write_text("\n".join(lines) + "\n")
    (out / "adversarial.json").write_text(json.dumps({f"{s}px/{m}/seed{sd}": r for (s, m, sd), r in rows.items()},
                                                      indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
