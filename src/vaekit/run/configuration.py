"""A run's configuration: resolved from presets, config files and `--set`, read back from a run
folder (and checked), the settings a model takes from its data, and what `--resume` may change."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..config import DataConfig, RunConfig, TrainConfig, apply_override, from_dict, load_toml
from ..errors import ConfigError
from ..models import get_entry, model_config, settings_from_data
from ..models.base import DataFacts


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


def fill_from_data(cfg: RunConfig, train_images: int, classes: int, labelled_images: int) -> RunConfig:
    """The model settings the model takes from the data (`settings_from_data`), in one place."""
    steps_per_epoch = train_images // cfg.train.batch_size
    facts = DataFacts(train_images=train_images, steps_per_epoch=steps_per_epoch, classes=classes,
                      labelled_images=labelled_images, train_steps=cfg.train.total_steps(steps_per_epoch))
    model = settings_from_data(cfg.model_name, cfg.model, facts)
    return dataclasses.replace(cfg, model=model)


def resume_config(requested: RunConfig, out: Path) -> RunConfig:
    """Resume keeps the saved model and data; only train settings may change (e.g. more steps)."""
    saved, tree = read_run_config(out)
    if requested.model_name != saved.model_name:
        raise ConfigError(f"{out} trains {saved.model_name!r}, not {requested.model_name!r}")
    if "train_images" in tree:  # what the saved run derived from its data, derived again to compare
        derived = fill_from_data(dataclasses.replace(requested, train=saved.train), int(tree["train_images"]),
                                  int(tree.get("classes", 0)),
                                  int(tree.get("labelled_images", tree["train_images"] if tree.get("classes") else 0)))
        requested = dataclasses.replace(requested, model=derived.model)
    for section in ("model", "data"):
        if getattr(requested, section) != getattr(saved, section):
            raise ConfigError(f"--resume cannot change the {section} settings of {out}; start a new run instead")
    return dataclasses.replace(saved, train=requested.train)

