"""A trained model as a self-contained folder (`vaekit export RUN -o DIR`), and `vaekit.load` of such a
folder or of a run folder: the model in eval mode with its run configuration and data facts, ready to
`sample`, `encode`, `decode` — no run folder, checkpoints or training data needed.

The folder: config.json (the run's, as `vaekit train` wrote it), model.safetensors (the newest
checkpoint's weights, copied byte for byte), evaluation.json (where the run has one) and README.md, a
card naming the model, its paper, data, budget and final metrics. Written whole or not at all.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import ConfigError
from ..files import write_json_atomic, write_text_atomic
from ..models import MODELS, GenerativeModel, build_model
from ..train import latest_checkpoint
from ..schedules import at_step
from ..train.checkpoint import checkpoint_step, load_model_weights
from .configuration import read_run_config
from .folder import load_run

EXPORT_FORMAT = "vaekit-export"
CARD_METRICS = (("test/elbo", "test ELBO (nats)"), ("test/iwae_nll", "test -log p(x), IWAE bound (nats)"),
                ("test/ssim", "test SSIM of reconstructions"), ("test/psnr", "test PSNR (dB)"),
                ("samples/fd", "FD of samples (vaekit's feature net)"), ("samples/kid", "KID of samples"),
                ("classification/error", "test classification error"))


def export_run(run_dir: str | Path, out: str | Path) -> Path:
    """Write run `run_dir`'s trained model into the new folder `out` (see the module's docstring)."""
    run_dir, out = Path(run_dir), Path(out)
    load_run(run_dir)  # every check: a readable config, a checkpoint whose weights fit the model
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"-o {out} exists and is not an empty folder; choose a new one")
    if not out.parent.is_dir():
        raise ConfigError(f"-o {out}: the folder {out.parent} does not exist; create it or write elsewhere")
    saved = json.loads((run_dir / "config.json").read_text())
    evaluation = _read_json(run_dir / "evaluation.json")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    shutil.copyfile(latest_checkpoint(run_dir) / "model.safetensors", partial / "model.safetensors")
    step = checkpoint_step(latest_checkpoint(run_dir))
    write_json_atomic(partial / "config.json", {**saved, "export": {"format": EXPORT_FORMAT, "step": step,
                                                                  "from_run": str(run_dir.resolve())}})
    if evaluation is not None:
        write_json_atomic(partial / "evaluation.json", evaluation)
    write_text_atomic(partial / "README.md", model_card(saved, evaluation, out.name))
    if out.exists():
        out.rmdir()  # empty, checked above
    partial.rename(out)
    return out


def model_card(saved: dict, evaluation: dict | None, name: str) -> str:
    entry = MODELS.get(saved["model_name"])
    lines = [f"# {name}: a trained vaekit `{saved['model_name']}`", ""]
    if entry is not None:
        lines += [f"{entry.description.rstrip('.')}.", "", f"Paper: {entry.paper.rstrip('.')}.", ""]
    steps = (evaluation or {}).get("step")
    lines += [f"- data: {saved['data']['name']} (read from {saved.get('data_source', '?')}), images "
              f"{tuple(saved['image_shape'])}",
              f"- trained: {steps if steps is not None else '?'} steps of batch {saved['train']['batch_size']}, "
              f"precision {saved.get('precision', '?')}, vaekit {saved.get('vaekit_version', '?')}",
              "- settings: config.json (`model`, `data`, `train`)", ""]
    shown = [(label, evaluation[key], evaluation.get(f"{key}_se")) for key, label in CARD_METRICS
             if evaluation and isinstance(evaluation.get(key), (int, float))]
    if shown:
        lines += ["| metric (final evaluation, evaluation.json) | value | standard error |", "|---|---:|---:|"]
        lines += [f"| {label} | {value:.4g} | {'' if se is None else f'{se:.2g}'} |" for label, value, se in shown]
        lines.append("")
    lines += ["Load it in Python (no run folder needed):", "", "```python", "import vaekit", "",
              f'model = vaekit.load("{name}")  # eval mode; model.run_config, model.facts',
              "x = model.sample(16)            # images in [0, 1], (16, C, H, W)", "```", ""]
    return "\n".join(lines)


def load(path: str | Path, device: str = "cpu") -> GenerativeModel:
    """The trained model of a run folder or of an exported folder, in eval mode on `device`, with
    `run_config` (its RunConfig) and `facts` (image shape, data, classes) attached."""
    path = Path(path)
    if (path / "checkpoints").is_dir():
        cfg, model, saved = load_run(path, device)
    elif (path / "model.safetensors").is_file():
        from ..device import resolve_device

        cfg, saved = read_run_config(path)
        model = build_model(cfg.model_name, cfg.model, saved["image_shape"]).to(resolve_device(device))
        load_model_weights(path, model)
        model.config = at_step(model.config, int(saved.get("export", {}).get("step", 0)))
        model.eval()
    else:
        raise ConfigError(f"{path} is neither a vaekit run folder (no checkpoints/) nor an exported model "
                          "(no model.safetensors)")
    model.run_config = cfg
    model.facts = {k: saved.get(k) for k in ("image_shape", "data_source", "classes", "class_names",
                                              "train_images", "labelled_images")}
    return model


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
