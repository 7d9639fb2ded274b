"""The run folder: what `vaekit train` leaves behind, and how every other command reads it back.

    runs/vae1/config.json        resolved configuration (+ image shape, dataset source)
    runs/vae1/config.toml        the same, as a file `--config` accepts
    runs/vae1/metrics.jsonl      training terms every log interval, with images/s
    runs/vae1/eval.jsonl         quick test-set evaluations during training
    runs/vae1/evaluation.json    the final test-set evaluation
    runs/vae1/loss_curves.png, reconstructions.png, samples.png, interpolations.png
    runs/vae1/training_curves.png  the model's own figure, when it has one (IntroVAE's KLs vs. m)
    runs/vae1/report.md          a page a person reads first
    runs/vae1/checkpoints/       safetensors + JSON (see train/checkpoint.py)

Everything that can be refused (config, data, shapes) is checked before the folder is created, so
bad input never leaves a half-written run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import __version__
from .conditioning import data_classes, kept_quadrants, side_information_for_samples
from .config import (DataConfig, RunConfig, TrainConfig, apply_override, from_dict, load_toml,
                     run_config_to_dict, to_toml)
from .data import fixed_sample, load_dataset
from .data.binarize import binarized
from .data.labelled import balanced_labelled_subset, partly_labelled
from .device import resolve_device
from .errors import CheckpointError, ConfigError
from .metrics.classification import evaluate_classification
from .metrics.evaluate import evaluate_completion
from .metrics import (dataset_mean_image, evaluate_disentanglement, evaluate_kl_decomposition, evaluate_model,
                      evaluate_samples)
from .metrics.likelihood import IMAGES_PER_CALL
from .models import GenerativeModel, build_model, get_entry, model_config
from .models.base import Batch, DataFacts, inference
from .train import RunLock, Trainer, latest_checkpoint
from .train.trainer import truncate_jsonl
from .train.checkpoint import checkpoint_step, load_model_weights, write_json_atomic, write_text_atomic
from .train.lock import LOCK_NAME
from .viz import plot_curves, plot_panels, save_grid


# --- configuration ------------------------------------------------------------------------

def resolve_config(model_name: str, config_file: str | None = None, overrides: list[str] = (),
                   base: dict | None = None) -> RunConfig:
    """preset < config file < `base` (CLI shortcuts such as --steps) < `--set` overrides."""
    tree: dict = {"model": {}, "data": {}, "train": dict(get_entry(model_name).train)}
    if config_file:
        loaded = load_toml(config_file)
        if loaded.pop("model_name", model_name).replace("-", "_") != model_name.replace("-", "_"):
            raise ConfigError(f"{config_file} is for another model than {model_name!r}")
        for section, values in loaded.items():
            tree[section].update(values)
    for section, values in (base or {}).items():
        tree[section].update(values)
    for assignment in overrides:
        apply_override(tree, assignment)
    return config_from_tree(model_name, tree)


def config_from_tree(model_name: str, tree: dict) -> RunConfig:
    return RunConfig(model_name=get_entry(model_name).name,
                     model=model_config(model_name, tree.get("model", {})),
                     data=from_dict(DataConfig, tree.get("data", {}), "data"),
                     train=from_dict(TrainConfig, tree.get("train", {}), "train"))


def read_run_config(run_dir: str | Path) -> tuple[RunConfig, dict]:
    path = Path(run_dir) / "config.json"
    if not Path(run_dir).is_dir():
        raise ConfigError(f"run folder not found: {run_dir}")
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a vaekit run folder (no config.json)")
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as e:  # ValueError: bad JSON or bytes that are not UTF-8
        raise ConfigError(f"{path}: unreadable run config ({e}); restore it or train the run again") from None
    problem = _run_config_problem(saved)
    if problem:
        raise ConfigError(f"{path}: not a vaekit run config ({problem}); restore it or train the run again")
    try:
        cfg = config_from_tree(saved["model_name"], saved)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return cfg, saved


def _run_config_problem(saved) -> str | None:
    if not isinstance(saved, dict):
        return f"a JSON {type(saved).__name__}, not an object"
    if not isinstance(saved.get("model_name"), str):
        return "model_name is missing or not a string"
    for section in ("model", "data", "train"):
        if not isinstance(saved.get(section), dict):
            return f"{section} is missing or not an object"
    shape = saved.get("image_shape")
    if not (isinstance(shape, list) and len(shape) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)):
        return f"image_shape {shape!r} is not 3 positive integers"
    return None


# --- loading a trained model ------------------------------------------------------------

def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[RunConfig, GenerativeModel, dict]:
    """Config, model with the newest checkpoint's weights (in eval mode, on `device`), and config.json."""
    cfg, saved = read_run_config(run_dir)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise CheckpointError(f"{run_dir} has no checkpoint yet")
    model = build_model(cfg.model_name, cfg.model, saved["image_shape"]).to(resolve_device(device))
    load_model_weights(ckpt, model)
    model.eval()
    return cfg, model, saved


def load_split(cfg: RunConfig, split: str):
    d = cfg.data
    return binarized(load_dataset(d.name, split, root=d.root, size=d.size, channels=d.channels), d.binarize, split)


# --- evaluation -------------------------------------------------------------------------

DECOMPOSITION_MODES = ("fast", "full", "off")


@dataclasses.dataclass(frozen=True)
class EvaluationOptions:
    """What `vaekit evaluate` measures (its flags); a run's final evaluation uses the same path."""

    iw_samples: int = 100  # K of the IWAE bound; 0 = skip
    iw_images: int | None = 200  # test images scored with the IWAE bound; None = all of them
    images: int | None = None  # test images for every other metric (a fixed uniform sample); None = all
    batch_size: int = 500  # images per network call (at most IMAGES_PER_CALL)
    seed: int = 0
    disentanglement: str = "fast"  # fast | full | off (data with known factors only)
    kl_decomposition: str = "fast"  # fast | full | off (models with a posterior only)
    samples: int = 10_000  # model samples for FD, precision/recall, MS-SSIM; 0 = skip
    pairs: int = 10_000  # sample pairs for MS-SSIM diversity
    feature_net: str | None = None  # a feature network file; None = the dataset's cached one
    inception: str | None = None  # local FID-Inception weights (safetensors)
    completion: str = "auto"  # left | right | top | bottom: complete that half kept; off; auto: the half a
    #                           CVAE conditioned on an image part was trained on, off for other models
    completion_images: int = 1000
    progress: bool = True

    def __post_init__(self):
        def fail_unless(ok, message):
            if not ok:
                raise ConfigError(message)
        fail_unless(self.iw_samples >= 0, f"--iw-samples must be >= 0 (0 skips the IWAE bound), got {self.iw_samples}")
        for name in ("iw_images", "images"):
            value = getattr(self, name)
            fail_unless(value is None or value >= 1, f"--{name.replace('_', '-')} must be >= 1 or 'all', got {value}")
        fail_unless(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}")
        fail_unless(self.samples == 0 or self.samples >= 2, f"--samples must be 0 or >= 2, got {self.samples}")
        fail_unless(self.pairs >= 1, f"--pairs must be >= 1, got {self.pairs}")
        for name in ("disentanglement", "kl_decomposition"):
            fail_unless(getattr(self, name) in DECOMPOSITION_MODES,
                        f"--{name.replace('_', '-')} must be fast, full or off, got {getattr(self, name)!r}")
        fail_unless(not self.inception or self.samples, "--inception needs samples to score; drop --samples 0")
        if self.completion not in ("auto", "off"):
            try:
                kept_quadrants(self.completion)
            except ConfigError as e:
                raise ConfigError(f"--completion must be auto, off, a half or 1-3 quadrants: {e}") from None
        fail_unless(self.completion_images >= 1, f"--completion-images must be >= 1, got {self.completion_images}")
        for flag, path in (("--feature-net", self.feature_net), ("--inception", self.inception)):
            fail_unless(path is None or Path(path).is_file(),
                        f"{flag} {path}: no such file (vaekit reads it, never writes it; omit {flag} for the default)")


def evaluate_run(model: GenerativeModel, train_data, test_data, options: EvaluationOptions = EvaluationOptions(),
                 train_mean: torch.Tensor | None = None) -> dict:
    """Every test-set number `vaekit evaluate` prints: ELBO terms, IWAE bound, SSIM/MSE beside the
    mean image, the KL decomposition, disentanglement scores and sample quality, as `options` say."""
    o = options
    if train_mean is None:
        train_mean = dataset_mean_image(train_data)
    result = evaluate_model(model, test_data, train_mean=train_mean, iw_samples=o.iw_samples, iw_images=o.iw_images,
                            max_images=o.images, batch_size=o.batch_size, seed=o.seed, progress=o.progress)
    result.update(evaluate_disentanglement(model, train_data, o.disentanglement, seed=o.seed, progress=o.progress))
    result.update(evaluate_kl_decomposition(model, train_data, o.kl_decomposition, seed=o.seed, progress=o.progress))
    result.update(evaluate_classification(model, test_data, images=o.images, seed=o.seed,
                                          batch_size=o.batch_size, progress=o.progress))
    keep = o.completion
    if keep == "auto":
        keep = {"none": "off", "label": "off", "half": "left", "quadrants": "tl"}.get(model.condition, model.condition)
    if keep != "off":
        result.update(evaluate_completion(model, test_data, train_mean, keep, images=o.completion_images,
                                          batch_size=min(o.batch_size, IMAGES_PER_CALL), seed=o.seed,
                                          nll_samples=o.iw_samples, nll_images=o.iw_images, progress=o.progress))
    if o.samples:
        result.update(evaluate_samples(model, train_data, test_data, samples=o.samples, pairs=o.pairs,
                                       feature_net_path=o.feature_net, inception_path=o.inception, seed=o.seed,
                                       batch_size=min(o.batch_size, IMAGES_PER_CALL), progress=o.progress))
    return result


# --- training ---------------------------------------------------------------------------

def _refuse_if_not_empty(out: Path) -> None:
    """A fresh run needs an empty or new folder; a lock file alone (a run killed at its start) is empty."""
    if out.exists() and any(p.name != LOCK_NAME for p in out.iterdir()):
        raise ConfigError(f"{out} already exists and is not empty; pass --resume to continue it or choose another --out")


def _evaluated_step(out: Path) -> int:
    """The step of the run's final evaluation; -1 when it has none (or a crash cut its writing short)."""
    try:
        return int(json.loads((out / "evaluation.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def train_run(cfg: RunConfig, out: str | Path, *, resume: bool = False, progress: bool = True,
              final_iw_samples: int = 50, final_iw_images: int = 200) -> dict:
    """Train `cfg` into run folder `out` (or continue it), then evaluate and draw the pictures.
    One process at a time: the run folder stays locked until all of it is written (train/lock.py)."""
    out = Path(out)
    for parent in (out, *out.parents):  # an --out that is, or lies under, a file
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"--out {out}: {parent} is a file, not a folder; choose another --out")
            break
    lock = RunLock(out)
    try:
        return _train_run(cfg, Path(out), lock, resume=resume, progress=progress,
                          final_iw_samples=final_iw_samples, final_iw_images=final_iw_images)
    finally:
        lock.release()


def _train_run(cfg: RunConfig, out: Path, lock: RunLock, *, resume: bool, progress: bool,
               final_iw_samples: int, final_iw_images: int) -> dict:
    lock.acquire(create=False)  # a folder another process trains into is refused before anything else
    if resume:
        cfg = _resume_config(cfg, out)
    else:
        _refuse_if_not_empty(out)
    train_data, test_data = load_split(cfg, "train"), load_split(cfg, "test")
    resolve_device(cfg.train.device)  # refused here, before the run folder exists
    if cfg.train.batch_size > len(train_data):
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} exceeds the {len(train_data)} training images")
    if len(test_data) < 2:  # sample-quality and diversity metrics compare pairs of test images
        raise ConfigError(f"the test split of {test_data.source} has {len(test_data)} image; evaluation needs at "
                          "least 2, so add test images")
    kept = None
    if cfg.data.labelled is not None:
        if not get_entry(cfg.model_name).model_class.semi_supervised:
            raise ConfigError(f"data.labelled applies to semi-supervised models (m2, ssl_vaegan); {cfg.model_name} "
                              "learns from labelled images only or from none; drop data.labelled")
        if train_data.labels is None:
            raise ConfigError(f"data.labelled needs a dataset with class labels; {train_data.source} has none")
        kept = balanced_labelled_subset(train_data.labels, cfg.data.labelled, cfg.data.label_seed)
        train_data = partly_labelled(train_data, kept)
    labelled_images = len(kept) if kept is not None else (len(train_data) if train_data.labels is not None else 0)
    cfg = _fill_from_data(cfg, len(train_data), data_classes(train_data), labelled_images)
    torch.manual_seed(cfg.train.seed)  # the initial weights depend on the seed too
    model = build_model(cfg.model_name, cfg.model, train_data.image_shape)

    train_mean = dataset_mean_image(train_data)
    quick = min(cfg.train.eval_images, len(test_data))

    def quick_eval(m, step):
        return evaluate_model(m, test_data, max_images=quick, seed=cfg.train.seed)

    trainer = Trainer(model, train_data, cfg.train, out, evaluate=quick_eval, progress=progress,
                      labelled_fraction=cfg.data.labelled_fraction)  # creates `out`
    lock.acquire()  # before anything is written into `out`; refused, it leaves the other process's folder as it is
    if resume:
        ckpt = latest_checkpoint(out)
        start = checkpoint_step(ckpt) if ckpt is not None else 0
        # A run killed after its last checkpoint but before its final evaluation only finishes that.
        if start >= trainer.total_steps and _evaluated_step(out) >= start:
            raise ConfigError(f"{out} is already at step {start}; ask for more with --steps N (N > {start})")
        trainer.restore(ckpt)
    else:  # again: another run may have got in between the check above and the lock
        _refuse_if_not_empty(out)
    saved = {**run_config_to_dict(cfg), "image_shape": list(train_data.image_shape),
             "data_source": train_data.source, "train_images": len(train_data), "test_images": len(test_data),
             "classes": data_classes(train_data), "class_names": train_data.classes,
             "labelled_images": labelled_images,
             "vaekit_version": __version__, "torch_version": torch.__version__}
    write_json_atomic(out / "config.json", saved)
    write_text_atomic(out / "config.toml", to_toml(run_config_to_dict(cfg)))
    if kept is not None:  # which training images kept their labels, by position in the train split
        write_json_atomic(out / "labelled.json", {"labelled": len(kept), "label_seed": cfg.data.label_seed,
                                                  "positions": kept.tolist(),
                                                  "labels": train_data.labels[kept].tolist()})
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0

    options = EvaluationOptions(iw_samples=final_iw_samples, iw_images=final_iw_images,
                                images=cfg.train.final_eval_images or None, seed=cfg.train.seed, samples=0,
                                completion_images=min(1000, cfg.train.final_eval_images or 1000), progress=progress)
    result = evaluate_run(model, train_data, test_data, options, train_mean=train_mean)
    result.update({"step": trainer.step, "train_seconds_this_session": round(seconds, 1),
                   "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    # the final point of the evaluation curves, once (a run killed after writing it evaluates again)
    truncate_jsonl(out / "eval.jsonl", trainer.step - 1)
    with open(out / "eval.jsonl", "a") as f:
        f.write(json.dumps({k: v for k, v in result.items() if k != "evaluated_at"}) + "\n")
    draw_run_pictures(out, model, test_data, cfg)
    write_report(out, cfg, saved, result, model)
    write_json_atomic(out / "evaluation.json", result)  # last: a run without it is finished by --resume
    return result


def _fill_from_data(cfg: RunConfig, train_images: int, classes: int, labelled_images: int) -> RunConfig:
    """The model settings the model takes from the data (`settings_from_data`), in one place."""
    facts = DataFacts(train_images=train_images, steps_per_epoch=train_images // cfg.train.batch_size,
                      classes=classes, labelled_images=labelled_images)
    model = get_entry(cfg.model_name).model_class.settings_from_data(cfg.model, facts)
    return dataclasses.replace(cfg, model=model)


def _resume_config(requested: RunConfig, out: Path) -> RunConfig:
    """Resume keeps the saved model and data; only train settings may change (e.g. more steps)."""
    saved, tree = read_run_config(out)
    if requested.model_name != saved.model_name:
        raise ConfigError(f"{out} trains {saved.model_name!r}, not {requested.model_name!r}")
    if "train_images" in tree:  # what the saved run derived from its data, derived again to compare
        derived = _fill_from_data(dataclasses.replace(requested, train=saved.train), int(tree["train_images"]),
                                  int(tree.get("classes", 0)),
                                  int(tree.get("labelled_images", tree["train_images"] if tree.get("classes") else 0)))
        requested = dataclasses.replace(requested, model=derived.model)
    for section in ("model", "data"):
        if getattr(requested, section) != getattr(saved, section):
            raise ConfigError(f"--resume cannot change the {section} settings of {out}; start a new run instead")
    return dataclasses.replace(saved, train=requested.train)


# --- pictures and report -------------------------------------------------------------------

def side_of(model: GenerativeModel, x: torch.Tensor, labels: torch.Tensor | None):
    """The side information of images x with their labels (None for an unconditional model)."""
    return model.side_information(Batch(x, None if labels is None else labels.to(x.device)))


@inference  # eval mode, no gradients, the model's mode restored after
def reconstruction_rows(model: GenerativeModel, x: torch.Tensor,
                        labels: torch.Tensor | None = None) -> tuple[torch.Tensor, list[str]]:
    """Inputs, then one row per output stage of the model (coarse, refine1, ... like Cai et al.'s
    figures 6-7); stages at a lower resolution are enlarged to the input's size for display.
    A conditional model is given the images' side information. -> ((rows * n), C, H, W), row names"""
    x = x.to(model.device)
    y = side_of(model, x, labels)
    grid, names = stage_rows(model.decode_stages(model.latent_code(x, y), y), size=x.shape[-2:])
    return torch.cat([x, grid]), ["input", *names]


def stage_rows(stages: dict[str, torch.Tensor], size=None) -> tuple[torch.Tensor, list[str]]:
    """Every stage's images one row after another, enlarged to `size` (default: the largest stage)."""
    size = tuple(size) if size is not None else max((s.shape[-2:] for s in stages.values()), key=lambda hw: hw[0] * hw[1])
    rows = [s.clamp(0, 1) if tuple(s.shape[-2:]) == tuple(size) else
            torch.nn.functional.interpolate(s.clamp(0, 1), size=size, mode="nearest") for s in stages.values()]
    return torch.cat(rows), list(stages)


def _lerp(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """(P, ...) and (P, ...) -> (P * steps, ...): (1-t) a + t b for t in [0, 1]."""
    t = torch.linspace(0, 1, steps, device=a.device).view(1, steps, *([1] * (a.dim() - 1)))
    return ((1 - t) * a.unsqueeze(1) + t * b.unsqueeze(1)).flatten(0, 1)


@inference  # eval mode, no gradients, the model's mode restored after
def interpolation_grid(model: GenerativeModel, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10,
                       labels_a: torch.Tensor | None = None, labels_b: torch.Tensor | None = None) -> torch.Tensor:
    """Each row: input a, decodes of (1-t) z_a + t z_b for t in [0, 1], input b; a conditional model's
    side information is interpolated alike (one-hot labels blend from a's class to b's)."""
    x_a, x_b = x_a.to(model.device), x_b.to(model.device)
    y_a, y_b = side_of(model, x_a, labels_a), side_of(model, x_b, labels_b)
    z_a, z_b = model.latent_code(x_a, y_a), model.latent_code(x_b, y_b)  # (P, D)
    y = None if y_a is None else _lerp(y_a, y_b, steps)
    decoded = model.decode(_lerp(z_a, z_b, steps), y).view(x_a.shape[0], steps, *x_a.shape[1:])
    return torch.cat([x_a.unsqueeze(1), decoded, x_b.unsqueeze(1)], 1).flatten(0, 1)


@inference  # eval mode, no gradients, the model's mode restored after
def traversal_grid(model: GenerativeModel, x_ref: torch.Tensor, x_kl: torch.Tensor, steps: int = 9,
                   span: float = 3.0, dims: int | None = None, labels_ref: torch.Tensor | None = None,
                   labels_kl: torch.Tensor | None = None) -> tuple[torch.Tensor, list[int], torch.Tensor]:
    """Latent traversals: one row per latent dimension, ordered by its mean KL(q || p(z|y)) on `x_kl`
    (most used first), each sweeping that dimension over [-span, span] standard deviations of the
    prior p(z|y) around its mean, with the others fixed at the code of `x_ref` (1 image).
    -> (rows * steps, C, H, W), dims, KL per dim"""
    x_kl = x_kl.to(model.device)
    y_kl = side_of(model, x_kl, labels_kl)
    q = model.encode(x_kl, y_kl)
    kl = q.kl_per_dim(model.prior(y_kl, len(x_kl))).mean(0).flatten()  # (D,)
    order = torch.argsort(kl, descending=True)[: dims or kl.numel()]
    x_ref = x_ref[:1].to(model.device)
    y_ref = side_of(model, x_ref, None if labels_ref is None else labels_ref[:1])
    base = model.latent_code(x_ref, y_ref).flatten(1)  # (1, D)
    prior = model.prior(y_ref, 1)
    values = torch.linspace(-span, span, steps, device=base.device)
    z = base.repeat(len(order) * steps, 1)
    for row, d in enumerate(order.tolist()):
        z[row * steps:(row + 1) * steps, d] = prior.mu[0, d] + prior.std[0, d] * values
    y = None if y_ref is None else y_ref.expand(len(z), *y_ref.shape[1:])
    return model.decode(z, y), order.tolist(), kl


def draw_run_pictures(out: Path, model: GenerativeModel, test_data, cfg: RunConfig) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        # a fixed uniform sample of the test split, not its first images: a split may be stored by class
        shown = fixed_sample(len(test_data), 16)
        labels = test_data.labels
        pick = (lambda idx: None) if labels is None else (lambda idx: labels[idx])
        grid, _ = reconstruction_rows(model, test_data.batch(shown), pick(shown))
        save_grid(out / "reconstructions.png", grid, nrow=len(shown))
        y = side_information_for_samples(model, test_data, 0, 64, cfg.train.seed)
        save_grid(out / "samples.png", model.sample(64, y), nrow=8)
        pairs = min(6, len(test_data) // 2)
        x, ends = test_data.batch(shown[:2 * pairs]), shown[:2 * pairs]
        save_grid(out / "interpolations.png", interpolation_grid(
            model, x[:pairs], x[pairs:], labels_a=pick(ends[:pairs]), labels_b=pick(ends[pairs:])), nrow=12)
        if model.has_posterior and model.factorised_posterior:  # rows by KL on 1,000 test images, as `vaekit traverse`
            kl_idx = fixed_sample(len(test_data), 1000)
            grid, _, _ = traversal_grid(model, test_data.batch(torch.arange(1)), test_data.batch(kl_idx), steps=9,
                                        dims=10, labels_ref=pick(torch.arange(1)), labels_kl=pick(kl_idx))
            save_grid(out / "traversals.png", grid, nrow=9)
        draw_conditional_pictures(out, model, test_data, cfg.train.seed)
        if hasattr(model, "canvas_sequence"):  # DRAW: the canvas over time, 4 reconstructions and 4 samples
            from .canvas import save_canvas_pictures

            y = side_information_for_samples(model, test_data, 0, 4, cfg.train.seed)
            save_canvas_pictures(out, model, test_data.batch(shown[:4]), side_of(model, test_data.batch(shown[:4]).to(
                model.device), pick(shown[:4])), model.prior_sample(4, y), y)
    rows = _read_jsonl(out / "metrics.jsonl")
    eval_rows = _read_jsonl(out / "eval.jsonl")
    keys = [k for k in (rows[-1] if rows else {}) if k not in ("step", "images_per_s")][:6]  # as the model logs them
    plot_curves(rows, keys, out / "loss_curves.png", title=f"{cfg.model_name} on {cfg.data.name}",
                eval_rows=eval_rows, eval_keys=[f"test/{k}" for k in keys])
    if hasattr(model, "curve_panels"):  # the model's own figure (IntroVAE's fig. 5: KLs against the margin)
        plot_panels(rows, model.curve_panels(), out / "training_curves.png",
                    title=f"{cfg.model_name} on {cfg.data.name}")


def draw_conditional_pictures(out: Path, model: GenerativeModel, test_data, seed: int) -> None:
    """A label-conditional run: samples with one row per class (the seed's figures 6-7) and style
    transfer (figure 9); a run conditioned on an image part: completions of test images (figure 8)."""
    from .completion import completion_rows
    from .uses import class_grid, style_transfer_grid

    if model.condition == "label":
        classes = data_classes(test_data)
        save_grid(out / "classes.png", class_grid(model, classes, 10), nrow=10)
        idx = fixed_sample(len(test_data), 8, seed)
        grid = style_transfer_grid(model, test_data.batch(idx), test_data.labels[idx], classes)
        save_grid(out / "style_transfer.png", grid, nrow=classes + 1)
    elif model.condition != "none" and hasattr(model, "side"):
        idx = fixed_sample(len(test_data), 8, seed)
        keep = {"half": "left", "quadrants": "tl"}.get(model.condition, model.condition)
        grid, _ = completion_rows(model, test_data.batch(idx), keep)
        save_grid(out / "completions.png", grid, nrow=len(idx))


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


_DIS = "disentanglement/"
_DIS_SCORES = [("MIG, Chen et al.'s posterior estimator (mean over every factor)", "mig_posterior"),
               ("MIG, disentanglement_lib", "mig"),
               ("beta-VAE score", "beta_vae/eval_accuracy"), ("FactorVAE score", "factor_vae/eval_accuracy"),
               ("DCI disentanglement", "dci/disentanglement"), ("DCI completeness", "dci/completeness"),
               ("DCI informativeness", "dci/informativeness"), ("SAP", "sap")]


def _disentanglement_section(result: dict) -> list[str]:
    """The disentanglement scores of `result` (keys disentanglement/...), and both MIGs per factor."""
    d = {k[len(_DIS):]: v for k, v in result.items() if k.startswith(_DIS)}
    if not d:
        return []
    lines = ["", "## Disentanglement (scored against the data's known factors)", "",
             "| score | value |", "|---|---|"]
    lines += [f"| {name} | {d[key]:.4f} |" for name, key in _DIS_SCORES if key in d]
    factors = [k.split("/", 1)[1] for k in d if k.startswith("mig_posterior/") and k.split("/", 1)[1] not in
               ("n", "samples")]
    if factors:
        lines += ["", "| factor | MIG (Chen et al.) | MIG (disentanglement_lib) |", "|---|---|---|"]
        lines += [f"| {f} | {d[f'mig_posterior/{f}']:.4f} | {d.get(f'mig/{f}', float('nan')):.4f} |" for f in factors]
    counts = ", ".join(f"{k} = {v:g}" for k, v in d.items() if k.rsplit("/", 1)[-1] in
                       ("n", "samples", "bins", "n_train", "n_eval", "n_test", "n_var", "pairs", "group_size"))
    return lines + ["", f"Sample counts: {counts}."]


def _confusion_section(result: dict, names: list[str] | None) -> list[str]:
    """The confusion matrix of a model that classifies (rows: the true class, columns: the predicted)."""
    counts = result.get("classification/confusion")
    if not counts:
        return []
    k = len(counts)
    names = names if names and len(names) == k else [str(c) for c in range(k)]
    lines = ["", f"## Classification (test error {result['classification/error']:.4f} on "
             f"{result['classification/images']} test images, argmax q(y|x))", "",
             "Confusion matrix (rows: true class, columns: predicted):", "",
             "| true \\ predicted | " + " | ".join(str(c) for c in range(k)) + " | error |",
             "|---" * (k + 2) + "|"]
    for c, row in enumerate(counts):
        error = result.get(f"classification/error/{c}", float("nan"))
        lines.append(f"| {c} {names[c]} | " + " | ".join(str(v) for v in row) + f" | {error:.3f} |")
    return lines


_DEC = "decomposition/"


def _decomposition_section(result: dict) -> list[str]:
    """The KL of q(z) decomposed over the data set (keys decomposition/...), with what separates it from
    the minibatch estimates a beta-TCVAE logs (test/tc/...)."""
    d = {k[len(_DEC):]: v for k, v in result.items() if k.startswith(_DEC)}
    if "mi" not in d:
        return []
    lines = ["", "## KL decomposition over the data set (Chen et al. 2018, eq. 2)", "",
             "| term | nats |", "|---|---|"]
    lines += [f"| {name} | {d[key]:.4f} |" for name, key in (("index-code mutual information", "mi"),
              ("total correlation", "tc"), ("dimension-wise KL", "dwkl"), ("sum (the average KL)", "kl"))]
    lines += ["", f"q(z) is the mixture of the posteriors of {d['n']} training images, scored at {d['samples']} "
              f"draws; the mutual information is at most log {d['n']} = {math.log(d['n']):.2f} nats, so compare "
              "runs at equal counts (`vaekit evaluate RUN --kl-decomposition full` uses every image)."]
    if "test/tc/mi" in result:
        lines += ["The test/tc/* rows above are the minibatch estimates the training objective uses: with a batch "
                  "of B out of N images they drift once posteriors are sharp (the mutual information towards log N, "
                  "the total correlation below 0, which a true total correlation never is), so read this section "
                  "for the terms themselves."]
    return lines


def write_report(out: Path, cfg: RunConfig, saved: dict, result: dict, model: GenerativeModel | None = None) -> None:
    def fmt(v):
        return f"{v:.4f}" if isinstance(v, float) and math.isfinite(v) else str(v)
    lines = [f"# {cfg.model_name} on {cfg.data.name}", "",
             f"- data: {saved['data_source']} ({saved['train_images']} train / {saved['test_images']} test images, "
             f"shape {tuple(saved['image_shape'])})",
             f"- steps: {result['step']} (batch {cfg.train.batch_size}, lr {cfg.train.lr}, seed {cfg.train.seed})",
             f"- vaekit {saved['vaekit_version']}, torch {saved['torch_version']}", "",
             "Per-image terms in nats (summed over pixels and latent dimensions, averaged over images).", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {fmt(v)} |" for k, v in result.items()
              if not k.startswith((_DIS, _DEC)) and not isinstance(v, list)]
    notes = model.report_notes(_read_jsonl(out / "metrics.jsonl")) if hasattr(model, "report_notes") else []
    lines += ["", *[f"- {n}" for n in notes]] if notes else []
    lines += _confusion_section(result, saved.get("class_names"))
    lines += _decomposition_section(result)
    lines += _disentanglement_section(result)
    if (out / "traversals.png").exists():
        lines += ["", "Latent traversals of the 10 most used dimensions (rows, by KL on test images; columns -3 … 3 "
                  "prior standard deviations around the first test image's code):", "", "![traversals](traversals.png)"]
    if (out / "canvas").is_dir():
        lines += ["", "The canvas over time (read attention red, write attention green): four test images reconstructed "
                  "(the posterior means) and four samples from the prior, one frame per glimpse; a strip per sequence in "
                  "canvas/.", "", "![reconstructions over time](canvas/reconstructions.gif) "
                  "![samples over time](canvas/samples.gif)", "", "![first sample's canvases](canvas/sample-0.png)"]
    if (out / "training_curves.png").exists():
        lines += ["", "![training curves](training_curves.png)"]
    if (out / "classes.png").exists():
        lines += ["", "Samples for each class (one row per class, z from the prior):", "", "![classes](classes.png)",
                  "", "Style transfer (first column: a test image; then its code decoded with every label):", "",
                  "![style transfer](style_transfer.png)"]
    if (out / "completions.png").exists():
        lines += ["", "Completions of test images (rows: the kept part, the completion, the truth):", "",
                  "![completions](completions.png)"]
    lines += ["", "![loss curves](loss_curves.png)", "",
              "Test reconstructions (top row: inputs):", "", "![reconstructions](reconstructions.png)", "",
              "Samples from the prior:", "", "![samples](samples.png)", "",
              "Interpolations between test images (ends: the inputs):", "", "![interpolations](interpolations.png)", ""]
    write_text_atomic(out / "report.md", "\n".join(lines))
