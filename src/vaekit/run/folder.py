"""The run folder: what `vaekit train` leaves behind, and how every other command reads it back.

    runs/vae1/config.json        resolved configuration (+ image shape, dataset source)
    runs/vae1/config.toml        the same, as a file `--config` accepts
    runs/vae1/metrics.jsonl      training terms every log interval, with images/s
    runs/vae1/eval.jsonl         quick test-set evaluations during training
    runs/vae1/evaluation.json    the final test-set evaluation
    runs/vae1/loss_curves.png, reconstructions.png, samples.png, interpolations.png
    runs/vae1/training_curves.png  the model's own figure, when it has one (IntroVAE's KLs vs. m)
    runs/vae1/report.md, report.html   the page a person reads first (vaekit.run.report), the HTML one
                                 self-contained
    runs/vae1/checkpoints/       safetensors + JSON (see train/checkpoint.py)

This module trains a configuration into the folder, loads it back and evaluates it; the configuration
(run_config.py), the pictures (pictures.py) and the report (report.py) have modules of their own.

Everything that can be refused (config, data, shapes) is checked before the folder is created, so
bad input never leaves a half-written run.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from .. import __version__, distributed
from ..conditioning import data_classes, kept_quadrants
from ..config import RunConfig, run_config_to_dict, to_toml
from ..data import load_dataset
from ..data.binarize import binarized
from ..data.labelled import balanced_labelled_subset, partly_labelled
from ..device import resolve_device
from ..errors import CheckpointError, ConfigError, VaekitError
from ..metrics.classification import evaluate_classification
from ..metrics import (dataset_mean_image, evaluate_disentanglement, evaluate_kl_decomposition, evaluate_model,
                      evaluate_samples)
from ..metrics.likelihood import IMAGES_PER_CALL
from ..models import GenerativeModel, build_model
from ..models.registry import refuse_built_schedules
from ..train import RunLock, Trainer, latest_checkpoint
from ..files import write_json_atomic, write_text_atomic
from ..layout import channels_last_while
from ..schedules import at_step
from ..train.checkpoint import checkpoint_step, load_model_weights
from ..train.lock import LOCK_NAME
from . import callbacks
from .completion import evaluate_completion
from .configuration import fill_from_data, read_run_config, resume_config
from .tensorboard import TensorBoardLog, tensorboard_wanted
from .workers import train_in_workers


# --- loading a trained model ------------------------------------------------------------

def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[RunConfig, GenerativeModel, dict]:
    """Config, model with the newest checkpoint's weights (in eval mode, on `device`), and config.json."""
    cfg, saved = read_run_config(run_dir)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise CheckpointError(f"{run_dir} has no checkpoint yet")
    model = build_model(cfg.model_name, cfg.model, saved["image_shape"]).to(resolve_device(device))
    load_model_weights(ckpt, model)
    model.config = at_step(model.config, checkpoint_step(ckpt))  # scheduled settings at the step it reached
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
    batch_size: int = IMAGES_PER_CALL  # images per network call (at most that)
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
                 train_mean: torch.Tensor | None = None, share: distributed.Share = distributed.Share()) -> dict:
    """Every test-set number `vaekit evaluate` prints: ELBO terms, IWAE bound, SSIM/MSE beside the
    mean image, the KL decomposition, disentanglement scores and sample quality, as `options` say.
    With a `share` of a process group every rank calls it: the ranks split the test-set pass (the most
    of it), rank 0 does the rest with their cores and returns the numbers, the others {}."""
    with channels_last_while(model, next(model.parameters()).device):
        return _evaluate_run(model, train_data, test_data, options, train_mean, share)


def _evaluate_run(model, train_data, test_data, o: EvaluationOptions, train_mean, share) -> dict:
    if train_mean is None:
        train_mean = dataset_mean_image(train_data)
    result = evaluate_model(model, test_data, train_mean=train_mean, iw_samples=o.iw_samples, iw_images=o.iw_images,
                            max_images=o.images, batch_size=o.batch_size, seed=o.seed, progress=o.progress,
                            share=share)
    if not share.main:
        return {}
    with distributed.all_cores():
        result.update(_evaluate_rest(model, train_data, test_data, o, train_mean))
    return result


def _evaluate_rest(model, train_data, test_data, o: EvaluationOptions, train_mean) -> dict:
    result = evaluate_disentanglement(model, train_data, o.disentanglement, seed=o.seed, progress=o.progress)
    result.update(evaluate_kl_decomposition(model, train_data, o.kl_decomposition, seed=o.seed, progress=o.progress))
    result.update(evaluate_classification(model, test_data, images=o.images, seed=o.seed,
                                          batch_size=o.batch_size, progress=o.progress))
    keep = model.capabilities.default_completion if o.completion == "auto" else o.completion
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


def evaluated_step(out: Path) -> int:
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
    given = cfg
    w = distributed.init(distributed.device_for(resolve_device(cfg.train.device)))  # refused before the folder exists
    error = None
    if w.main:  # the folder's checks are rank 0's, told to every rank (vaekit.distributed)
        try:
            lock.acquire(create=False)  # a folder another process trains into is refused before anything else
            if resume:
                cfg = resume_config(cfg, out)
            else:
                _refuse_if_not_empty(out)
        except VaekitError as e:
            error = e
    distributed.agree(error)
    if resume and not w.main:
        cfg = resume_config(cfg, out)
    train_data, test_data = load_split(cfg, "train"), load_split(cfg, "test")
    if cfg.train.batch_size > len(train_data):
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} exceeds the {len(train_data)} training images")
    if len(test_data) < 2:  # sample-quality and diversity metrics compare pairs of test images
        raise ConfigError(f"the test split of {test_data.source} has {len(test_data)} image; evaluation needs at "
                          "least 2, so add test images")
    kept = None
    if cfg.data.labelled is not None:
        if train_data.labels is None:
            raise ConfigError(f"data.labelled needs a dataset with class labels; {train_data.source} has none")
        kept = balanced_labelled_subset(train_data.labels, cfg.data.labelled, cfg.data.label_seed)
        train_data = partly_labelled(train_data, kept)
    labelled_images = len(kept) if kept is not None else (len(train_data) if train_data.labels is not None else 0)
    cfg = fill_from_data(cfg, len(train_data), data_classes(train_data), labelled_images)
    write_tensorboard = tensorboard_wanted(cfg.train.tensorboard)  # refused before the folder exists
    torch.manual_seed(cfg.train.seed)  # the initial weights depend on the seed too
    model = build_model(cfg.model_name, cfg.model, train_data.image_shape)
    refuse_built_schedules(cfg.model_name, cfg.model, train_data.image_shape)
    if kept is not None and not model.capabilities.semi_supervised:
        raise ConfigError(f"data.labelled applies to semi-supervised models (m2, ssl_vaegan); {cfg.model_name} "
                          "learns from labelled images only or from none; drop data.labelled")
    plan = _worker_plan(cfg, out, resume, len(train_data))
    if plan.processes > 1:  # every check above passed here; the same run again, in the workers
        lock.release()  # for the workers' rank 0 to take
        return train_in_workers(given, out, plan, resume=resume, progress=progress,
                                final_iw_samples=final_iw_samples, final_iw_images=final_iw_images)

    train_mean = dataset_mean_image(train_data)
    quick = min(cfg.train.eval_images, len(test_data))

    def quick_eval(m, step):
        return evaluate_model(m, test_data, max_images=quick, seed=cfg.train.seed)

    trainer = Trainer(model, train_data, cfg.train, out, evaluate=quick_eval, progress=progress,
                      labelled_fraction=cfg.data.labelled_fraction)  # creates `out`
    error, ckpt = None, None
    if w.main:
        try:
            lock.acquire()  # before anything is written into `out`; refused, it leaves the other process's folder as it is
            if resume:
                ckpt = latest_checkpoint(out)
                start = checkpoint_step(ckpt) if ckpt is not None else 0
                # A run killed after its last checkpoint but before its final evaluation only finishes that.
                if start >= trainer.total_steps and evaluated_step(out) >= start:
                    raise ConfigError(f"{out} is already at step {start}; ask for more with --steps N (N > {start})")
            else:  # again: another run may have got in between the check above and the lock
                _refuse_if_not_empty(out)
        except VaekitError as e:
            error = e
    distributed.agree(error)
    if resume:
        trainer.restore(ckpt if w.main else latest_checkpoint(out))
    saved = {**run_config_to_dict(cfg), "image_shape": list(train_data.image_shape),
             "data_source": train_data.source, "train_images": len(train_data), "test_images": len(test_data),
             "classes": data_classes(train_data), "class_names": train_data.classes,
             "labelled_images": labelled_images,
             "precision": trainer.precision, "processes": w.size,  # what auto chose here
             "channels_last": trainer.channels_last,
             "vaekit_version": __version__, "torch_version": torch.__version__}
    if w.main:
        _write_settings(out, cfg, saved, kept, train_data)
    options = EvaluationOptions(iw_samples=final_iw_samples, iw_images=final_iw_images,
                                images=cfg.train.final_eval_images or None, seed=cfg.train.seed, samples=0,
                                completion_images=min(1000, cfg.train.final_eval_images or 1000), progress=progress)
    end = callbacks.RunEnd(out, cfg, saved, train_data, test_data)
    share = distributed.Share.of_group()
    final = callbacks.FinalEvaluation(
        end, lambda m: evaluate_run(m, train_data, test_data, options, train_mean=train_mean, share=share), w.size)
    for callback in (final, callbacks.Pictures(end),
                     callbacks.Report(end), callbacks.EvaluationFile(end)):
        trainer.add_callback("on_fit_end", callback)
    if write_tensorboard and w.main:
        log = TensorBoardLog(out, test_data, trainer.step, cfg.train.seed)
        trainer.add_callback("on_log", log.on_log)
        trainer.add_callback("on_evaluation", log.on_evaluation)
        trainer.add_callback("on_fit_end", lambda t: log.final(end.result, t.model, t.step))
    trainer.fit()  # and then the callbacks, on rank 0; the other ranks return {}
    return end.result


def _worker_plan(cfg: RunConfig, out: Path, resume: bool, train_images: int) -> distributed.WorkerPlan:
    t = cfg.train
    steps = t.steps if t.epochs is None else max(1, round(t.epochs * (train_images // t.batch_size)))
    done = 0
    if resume:  # the newest step folder's name: enough for a plan, and silent (rank 0 checks it in earnest)
        done = max((checkpoint_step(p) for p in (out / "checkpoints").glob("step-*") if p.is_dir() and
                    p.name[5:].isdigit()), default=0)
    return distributed.worker_plan(t.processes, resolve_device(t.device), t.batch_size,
                                   max(0, steps - done) * t.batch_size)


def _write_settings(out: Path, cfg: RunConfig, saved: dict, kept, train_data) -> None:
    write_json_atomic(out / "config.json", saved)
    write_text_atomic(out / "config.toml", to_toml(run_config_to_dict(cfg)))
    if kept is not None:  # which training images kept their labels, by position in the train split
        write_json_atomic(out / "labelled.json", {"labelled": len(kept), "label_seed": cfg.data.label_seed,
                                                  "positions": kept.tolist(),
                                                  "labels": train_data.labels[kept].tolist()})



