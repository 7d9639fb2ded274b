"""Run configuration: frozen dataclasses, loaded from TOML and `--set section.key=value` overrides.

Unknown keys and impossible values are refused by name (ConfigError -> exit code 2). A model's own
config dataclass lives beside the model; this module knows only the run, data and train sections.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .schedules import Scheduled


def _fail_unless(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _is_partly_labelled(c) -> bool:
    return c.labelled is not None


_SEED_MAX = 2**32 - 1


@dataclass(frozen=True)
class DataConfig:
    name: str = "fashion-mnist"
    root: str | None = None  # folder with the files; default: the dataset's usual place / $VAEKIT_DATA
    size: int | None = None  # image-folder: resize + centre-crop to size x size
    channels: int | None = None  # image-folder: 1 (gray) or 3 (RGB); default from the files
    binarize: str = "none"  # none | dynamic (train: x ~ Bernoulli(grey) per read; test: once, fixed) | threshold (>= 1/2)
    #                         | fixed (every split once, seed 0; vaekit's own, not Larochelle's static binarised MNIST)
    labelled: int | None = None  # semi-supervised: keep this many training labels (balanced over the
    #                              classes), the rest of the train split unlabelled; None = every label
    label_seed: int = field(default=0, metadata={"applies_when": (_is_partly_labelled, "data.labelled is set")})
    #   which images keep their labels
    labelled_fraction: float = field(default=0.5,
                                     metadata={"applies_when": (_is_partly_labelled, "data.labelled is set")})
    #   share of each training batch drawn from the labelled images

    def __post_init__(self):
        _fail_unless(not isinstance(self.name, str) or bool(self.name.strip()),
                     "data.name must name a dataset (see `vaekit datasets`), got ''")
        _fail_unless(not isinstance(self.root, str) or bool(self.root.strip()),
                     "data.root must be a folder path, got ''; drop it or set --set data.root=DIR")
        _fail_unless(self.size is None or self.size >= 8, f"data.size must be >= 8, got {self.size}")
        _fail_unless(self.channels in (None, 1, 3), f"data.channels must be 1 or 3, got {self.channels}")
        _fail_unless(self.binarize in ("none", "dynamic", "threshold", "fixed"),
                     f"data.binarize must be none, dynamic, threshold or fixed, got {self.binarize!r}")
        _fail_unless(self.labelled is None or self.labelled >= 1,
                     f"data.labelled must be >= 1 (or drop it to keep every label), got {self.labelled}")
        _fail_unless(0 <= self.label_seed <= _SEED_MAX, f"data.label_seed must lie in [0, {_SEED_MAX}], got {self.label_seed}")
        _fail_unless(0 < self.labelled_fraction < 1,
                     f"data.labelled_fraction must lie strictly between 0 and 1, got {self.labelled_fraction}")
        refuse_inapplicable(self, "data")


# what train.keep_best may judge by, and whether higher is better
KEEP_BEST = {"test/elbo": True, "test/ssim": True, "test/psnr": True, "test/loss": False, "test/mse": False}
PLATEAU_DEFAULTS = {"metric": "test/elbo", "factor": 0.5, "patience": 3, "min_lr": 0.0}


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2000  # optimiser iterations in total (a resumed run continues up to this)
    epochs: float | None = None  # if set, overrides steps: epochs * (train images // batch_size)
    batch_size: int = 128
    lr: float = 1e-3  # Adam
    group_lr: dict = field(default_factory=dict)  # per parameter group, e.g. {"loss/discriminator" = 2e-4}, a
    #   number or a schedule table
    adam_betas: tuple[float, float] = (0.9, 0.999)
    group_adam_betas: dict = field(default_factory=dict)  # per parameter group, e.g. {"loss/discriminator" = [0.5, 0.9]}
    weight_decay: float = 0.0
    grad_clip: float | None = None  # max global L2 norm per parameter group; None = off
    seed: int = 0
    log_every: int = 50
    eval_every: int = 500  # quick test-set evaluation during training (0 = only at the end)
    eval_images: int = 2000  # test images used by that quick evaluation
    final_eval_images: int = 0  # test images of the final evaluation; 0 = the whole test split
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    keep_best: str = ""  # a metric of the quick evaluations (KEEP_BEST): RUN/best holds the model at its best one
    lr_plateau: dict = field(default_factory=dict)  # {metric = "test/elbo", factor = 0.5, patience = 3, min_lr = 0}:
    #   every group's rate times factor after `patience` quick evaluations without a better metric; {} = off
    tensorboard: bool | str = "auto"  # RUN/tensorboard/ event files; auto = when the tensorboard package is installed
    device: str = "cpu"  # cpu | cuda | cuda:N | mps | auto; bit-identical resume is promised on CPU
    precision: str = "auto"  # auto | fp32 | bf16: networks under bfloat16 autocast while training; the maths
    #                          (likelihoods, KL, TC, GAN losses) and evaluation stay float32 (vaekit.precision);
    #                          auto = bf16 where the CPU or GPU has bfloat16 matrix instructions, else fp32
    processes: int | str = "auto"  # `vaekit train` on a CPU: data-parallel worker processes (as torchrun's);
    #                                auto = one per core for a run long enough to repay their start
    #                                (vaekit.distributed.worker_plan); 1 = this process alone
    check_every: int = 0  # steps between the host's reads of the divergence checks (the device keeps a flag
    #                       between them, so a GPU step makes no host sync); 0 = 1 on a CPU, log_every on a GPU
    channels_last: bool | str = "auto"  # convolutions in channels-last memory order; auto = on a CPU for a model
    #                                    with convolutions, where it is measured faster (vaekit.layout)
    compile: bool = False  # torch.compile the model's loss (minutes of compiling first)
    sync_batchnorm: bool = False  # under torchrun: batch norm over the global batch (every rank's images),
    #                               not each rank's B / W (vaekit.nn.batchnorm.GlobalBatchNorm)
    explode_factor: float = 1000.0  # stop when an optimised loss exceeds this many times its running
    #                                 level (adversarial runs that blow up; its square in the first 50
    #                                 steps); 0 = only non-finite stops

    def total_steps(self, steps_per_epoch: int) -> int:
        """The run's optimiser steps in all: `steps`, or `epochs` passes of `steps_per_epoch`."""
        return max(1, round(self.epochs * steps_per_epoch)) if self.epochs is not None else self.steps

    def __post_init__(self):
        for name in ("steps", "batch_size", "log_every", "checkpoint_every", "keep_checkpoints", "eval_images"):
            _fail_unless(getattr(self, name) >= 1, f"train.{name} must be >= 1, got {getattr(self, name)}")
        _fail_unless(self.eval_every >= 0, f"train.eval_every must be >= 0, got {self.eval_every}")
        _fail_unless(self.check_every >= 0, f"train.check_every must be >= 0, got {self.check_every}")
        _fail_unless(self.final_eval_images >= 0, f"train.final_eval_images must be >= 0, got {self.final_eval_images}")
        _fail_unless(self.lr > 0, f"train.lr must be > 0, got {self.lr}")
        _fail_unless(self.epochs is None or self.epochs > 0, f"train.epochs must be > 0, got {self.epochs}")
        _fail_unless(self.grad_clip is None or self.grad_clip > 0, f"train.grad_clip must be > 0, got {self.grad_clip}")
        _fail_unless(all(0 <= b < 1 for b in self.adam_betas), f"train.adam_betas must lie in [0, 1), got {self.adam_betas}")
        _fail_unless(self.weight_decay >= 0, f"train.weight_decay must be >= 0, got {self.weight_decay}")
        _fail_unless(self.precision in ("auto", "fp32", "bf16"),
                     f"train.precision must be auto, fp32 or bf16, got {self.precision!r}")
        _fail_unless(self.channels_last in ("auto", True, False),
                     f"train.channels_last must be auto, true or false, got {self.channels_last!r}")
        _fail_unless(self.processes == "auto" or (isinstance(self.processes, int) and self.processes >= 1),
                     f"train.processes must be auto or a whole number >= 1, got {self.processes!r}")
        _fail_unless(self.tensorboard in ("auto", True, False),
                     f"train.tensorboard must be auto, true or false, got {self.tensorboard!r}")
        _fail_unless(self.keep_best in ("", *KEEP_BEST), f"train.keep_best must be one of "
                     f"{', '.join(KEEP_BEST)} (a metric of the quick evaluations) or \"\", got {self.keep_best!r}")
        _fail_unless(not self.keep_best or self.eval_every > 0,
                     "train.keep_best needs quick evaluations to choose among: set train.eval_every > 0")
        _fail_unless(self.explode_factor == 0 or self.explode_factor > 1,
                     f"train.explode_factor must be 0 (off) or > 1, got {self.explode_factor}")
        if self.lr_plateau:
            unknown = sorted(set(self.lr_plateau) - set(PLATEAU_DEFAULTS))
            _fail_unless(not unknown, f"train.lr_plateau has no {unknown[0]!r}; it takes "
                         f"{', '.join(PLATEAU_DEFAULTS)}" if unknown else "")
            plateau = {**PLATEAU_DEFAULTS, **self.lr_plateau}
            object.__setattr__(self, "lr_plateau", plateau)
            _fail_unless(plateau["metric"] in KEEP_BEST, f"train.lr_plateau.metric must be one of "
                         f"{', '.join(KEEP_BEST)}, got {plateau['metric']!r}")
            _fail_unless(_is_number(plateau["factor"]) and 0 < plateau["factor"] < 1,
                         f"train.lr_plateau.factor must lie in (0, 1), got {plateau['factor']!r}")
            _fail_unless(isinstance(plateau["patience"], int) and not isinstance(plateau["patience"], bool)
                         and plateau["patience"] >= 1, f"train.lr_plateau.patience must be an integer >= 1, "
                         f"got {plateau['patience']!r}")
            _fail_unless(_is_number(plateau["min_lr"]) and plateau["min_lr"] >= 0,
                         f"train.lr_plateau.min_lr must be a number >= 0, got {plateau['min_lr']!r}")
            _fail_unless(self.eval_every > 0, "train.lr_plateau follows the quick evaluations: set train.eval_every > 0")
        # a group's rate may be a schedule of its own (a table, as train.lr's)
        object.__setattr__(self, "group_lr", {
            key: Scheduled.from_table(value, f"train.group_lr[{key!r}]") if isinstance(value, dict) else value
            for key, value in self.group_lr.items()})
        for key, value in self.group_lr.items():
            if isinstance(value, Scheduled):
                _fail_unless(value.end > 0 and value.start > 0,
                             f"train.group_lr[{key!r}]: a rate's schedule must start and end above 0")
            _fail_unless(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                         and value > 0, f"train.group_lr[{key!r}] must be a finite number > 0, got {value!r}")
        object.__setattr__(self, "group_adam_betas", {key: tuple(value) if isinstance(value, (list, tuple)) else value
                                                      for key, value in self.group_adam_betas.items()})
        for key, value in self.group_adam_betas.items():
            _fail_unless(isinstance(value, tuple) and len(value) == 2 and all(_is_number(b) and 0 <= b < 1 for b in value),
                         f"train.group_adam_betas[{key!r}] must be two numbers in [0, 1), got {value!r}")
        # the data order is seeded by seed * 1_000_003 + epoch (train/trainer.py), which must stay 64-bit
        _fail_unless(0 <= self.seed <= _SEED_MAX, f"train.seed must lie in [0, {_SEED_MAX}], got {self.seed}")


@dataclass(frozen=True)
class RunConfig:
    model_name: str
    model: Any  # the registered model's own config dataclass
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ---------------------------------------------------------------------------------------------
# dict <-> dataclass, with refusal of unknown keys and type checking by name


_NONE_WORDS = ("none", "null")  # what a bare `--set` value for "off" may say
_INT_LIMIT = 10**18  # integer settings must fit a signed 64-bit integer, with room for arithmetic


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS)):
            return None  # `--set train.grad_clip=none` switches an optional setting off
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{where} must have {len(args)} entries, got {len(value)}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if tp is int:
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or (isinstance(value, float) and not (math.isfinite(value) and value.is_integer()))):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        if not -_INT_LIMIT <= value < _INT_LIMIT:  # torch and numpy take 64-bit integers
            raise ConfigError(f"{where} must be an integer of at most 18 digits, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, Scheduled):
            return value
        if isinstance(value, dict) and "schedule" in value:  # a setting that changes with the step
            return Scheduled.from_table(value, where)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond the float range
            number = math.inf
        if not math.isfinite(number):  # nan or inf: never a usable learning rate, weight, scale ...
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if tp is Any:
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value) and isinstance(value, tp):
            return value
        return from_dict(tp, value, where)
    raise ConfigError(f"{where}: unsupported type {tp}")  # pragma: no cover - a programming error


def from_dict(cls: type, data: dict, section: str) -> Any:
    """Build dataclass `cls` from `data`, refusing keys it does not have."""
    if not isinstance(data, dict):
        raise ConfigError(f"[{section}] must be a table of settings, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown setting {section}.{unknown[0]}; {section} has: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in data.items()}
    try:
        built = cls(**kwargs)
    except TypeError as e:  # a required field missing
        raise ConfigError(f"[{section}]: {e}") from None
    for k, v in kwargs.items():  # the config's checks saw a schedule's start; its end must pass them too
        if isinstance(v, Scheduled):
            try:
                cls(**{**kwargs, k: v.end})
            except ConfigError as e:
                raise ConfigError(f"at the end of its schedule, {e}") from None
    return built


def to_dict(obj: Any) -> dict:
    """Dataclass -> plain dict (tuples as lists) for JSON/TOML."""
    def plain(v):
        if isinstance(v, Scheduled):
            return v.to_table()
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if dataclasses.is_dataclass(v):
            return to_dict(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def run_config_to_dict(cfg: RunConfig) -> dict:
    return {"model_name": cfg.model_name, "model": to_dict(cfg.model),
            "data": to_dict(cfg.data), "train": to_dict(cfg.train)}


# ---------------------------------------------------------------------------------------------
# overrides


def parse_value(text: str) -> Any:
    """A TOML literal (`3e-4`, `true`, `[32, 64]`, `"x"`), else the bare string. A bare `none` stays a
    string here: it becomes None only for an optional setting (see _coerce), so `model.norm=none` is
    the string "none"."""
    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    # `1\nx = 2` would parse too: only a value alone is a literal
    return parsed["v"] if set(parsed) == {"v"} else text


def apply_override(tree: dict, assignment: str) -> None:
    """Apply `section.key=value` to a nested dict in place."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects section.key=value, got {assignment!r}")
    key, text = assignment.split("=", 1)
    parts = [part.strip() for part in key.split(".")]
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"--set key must be section.key (e.g. train.lr), got {key!r}")
    section, name = parts
    if section not in ("model", "data", "train"):
        raise ConfigError(f"unknown section {section!r} in --set {assignment}; sections: model, data, train")
    tree.setdefault(section, {})[name] = parse_value(text)


def load_toml(path: str | Path) -> dict:
    """A `--config` file: tables [model], [data], [train] and optionally `model_name = "..."`."""
    try:
        with open(path, "rb") as f:
            tree = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; give --config a TOML file") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path} ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML (not UTF-8 text); give --config a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    unknown = sorted(set(tree) - {"model", "data", "train", "model_name"})
    if unknown:
        raise ConfigError(f"{path}: unknown section [{unknown[0]}]; sections: model, data, train")
    for section in ("model", "data", "train"):
        if section in tree and not isinstance(tree[section], dict):
            raise ConfigError(f"{path}: {section} must be a table ([{section}] followed by key = value lines), "
                              f"got {section} = {tree[section]!r}")
    if "model_name" in tree and not isinstance(tree["model_name"], str):
        raise ConfigError(f"{path}: model_name must be a string such as \"vae\", got {tree['model_name']!r}")
    return tree


def to_toml(tree: dict) -> str:
    """Nested dict of scalars/lists -> TOML text (enough for our configs; None values are omitted)."""
    def lit(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(lit(x) for x in v) + "]"
        if isinstance(v, dict):  # inline table
            return "{" + ", ".join(f"{k} = {lit(x)}" for k, x in v.items() if x is not None) + "}"
        return repr(v)
    lines = []
    for k, v in tree.items():
        if not isinstance(v, dict) and v is not None:
            lines.append(f"{k} = {lit(v)}")
    for k, v in tree.items():
        if isinstance(v, dict):
            lines.append(f"\n[{k}]")
            lines += [f"{kk} = {lit(vv)}" for kk, vv in v.items() if vv is not None]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# settings that apply only in some configurations


def applies_when(condition, description: str) -> dict:
    """Field metadata: the setting is used only when `condition(config)` holds (a likelihood's scale
    only for a Gaussian or Laplace, the TC weights only for beta-TCVAE). A value other than the
    default where it does not apply is refused by name instead of being silently ignored."""
    return {"applies_when": (condition, description)}


def refuse_inapplicable(config, section: str = "model") -> None:
    for f in dataclasses.fields(config):
        rule = f.metadata.get("applies_when")
        if rule is None:
            continue
        condition, description = rule
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if not condition(config) and getattr(config, f.name) != default:
            raise ConfigError(f"{section}.{f.name} applies only when {description}; drop it, or set that too")
