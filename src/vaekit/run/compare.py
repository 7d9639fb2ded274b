"""Runs side by side: the metrics of their final evaluations in one table (`vaekit compare`, the
explorer's table). A run's newest numbers are `evaluation.json`'s; a metric a run lacks is left empty."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from ..errors import ConfigError
from .configuration import read_run_config

# the columns, in order, when any run has them: (key, heading, lower is better?). Likelihood figures are
# split by what they bound (`Capabilities.bound`): -log p(x) and -log p(x|y) are different quantities, and
# so is each kept part's -log p(missing | kept): a column never mixes them.
METRICS = [("test/elbo", "ELBO of p(x)", False), ("test/iwae_nll", "-log p(x) IWAE", True),
           ("test/elbo|y", "ELBO of p(x|y)", False), ("test/iwae_nll|y", "-log p(x|y) IWAE", True),
           ("test/recon", "recon", True), ("test/kl", "KL", None), ("test/ssim", "SSIM", False),
           ("test/mse", "MSE", True), ("test/psnr", "PSNR", False), ("samples/fd", "FD", True),
           ("samples/kid", "KID", True), ("samples/precision", "precision", False),
           ("samples/recall", "recall", False), ("classification/error", "class. error", True),
           ("conditional/label_accuracy", "label acc.", False), ("train_seconds_this_session", "train s", None)]
STAR_NOTE = "* best among runs on the same data with the same side information (condition)"


def _bound(cfg, saved: dict, result: dict) -> str | None:
    """What the run's ELBO and IWAE figures bound: as its evaluation says, or (an evaluation from before
    it said) as the model declares."""
    if "iwae_of" in result:
        return result["iwae_of"]
    from ..models import build_model

    return build_model(cfg.model_name, cfg.model, saved["image_shape"]).capabilities.bound


def _condition(cfg) -> str:
    """The side information a run's model takes (a multi-stage model's is its base's)."""
    model = cfg.model
    settings = getattr(model, "base_settings", None)
    if isinstance(settings, dict):
        return str(settings.get("condition", "none"))
    return str(getattr(model, "condition", "none"))


def run_summary(run_dir: str | Path) -> dict:
    """name, model, data, steps, condition and every metric column a run's final evaluation has (none,
    and steps None, before its final evaluation)."""
    cfg, saved = read_run_config(run_dir)
    path = Path(run_dir) / "evaluation.json"
    result = {}
    if path.exists():  # a run still training (or killed before its evaluation) has a row without metrics
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path}: unreadable ({e})") from None
        if not isinstance(result, dict):
            raise ConfigError(f"{path}: not an evaluation (a JSON {type(result).__name__})")
    data = cfg.data.name + ("" if cfg.data.binarize == "none" else f"+{cfg.data.binarize}")
    row = {"run": str(run_dir), "model": cfg.model_name, "data": data, "steps": result.get("step"),
           "condition": _condition(cfg)}
    numbers = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if numbers.keys() & {"test/elbo", "test/iwae_nll"} and _bound(cfg, saved, result) == "p(x|y)":
        for key in ("test/elbo", "test/iwae_nll"):  # a conditional run's figures bound log p(x|y)
            if key in numbers:
                numbers[f"{key}|y"] = numbers.pop(key)
    row.update({key: numbers[key] for key, _, _ in METRICS if key in numbers})
    row.update({k: v for k, v in numbers.items() if k.startswith("completion/") and k.endswith("/nll")})
    return row


def compare_runs(run_dirs: list[str | Path]) -> tuple[list[tuple[str, str, bool | None]], list[dict]]:
    """The metric columns any of the runs has, and one summary per run; each row's `best` lists the
    columns in which it is the best of the runs comparable with it (same data, same condition)."""
    rows = [run_summary(r) for r in run_dirs]
    columns = [m for m in METRICS if any(m[0] in r for r in rows)]
    keeps = sorted({k for r in rows for k in r if k.startswith("completion/") and k.endswith("/nll")})
    columns += [(k, f"-log p(missing | {k.split('/')[1]} kept)", True) for k in keeps]
    mark_best(columns, rows)
    return columns, rows


def mark_best(columns, rows: list[dict]) -> None:
    """Each row's `best`: the columns in which it is the best of the rows comparable with it (same data,
    same condition), where there are two or more."""
    for r in rows:
        r["best"] = []
    for key, _, lower in columns:
        if lower is None:
            continue
        groups: dict[tuple[str, str], list[dict]] = {}
        for r in rows:
            if key in r:
                groups.setdefault((r["data"], r["condition"]), []).append(r)
        for group in groups.values():
            if len(group) > 1:
                best = (min if lower else max)(r[key] for r in group)
                for r in group:
                    if r[key] == best:
                        r["best"].append(key)


def format_table(columns, rows) -> str:
    """An aligned text table; the best value of each metric among comparable runs marked with *; rows of
    several seeds (group_seeds) as mean ± sd with their count."""
    seeds = any(r.get("seeds", 1) > 1 for r in rows)
    head = ["run", "model", "data", "condition", "steps", *(["seeds"] if seeds else []), *[h for _, h, _ in columns]]
    body = []
    for r in rows:
        cells = [r["run"], r["model"], r["data"], r["condition"], str(r["steps"]),
                 *([str(r.get("seeds", 1))] if seeds else [])]
        for key, _, _ in columns:
            v, sd = r.get(key), r.get(f"{key}_sd")
            cell = "" if v is None else f"{v:.4g}" + ("" if sd is None else f" ± {sd:.2g}")
            cells.append(cell + ("*" if v is not None and key in r["best"] else ""))
        body.append(cells)
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    starred = any(r["best"] for r in rows)
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, body), *([STAR_NOTE] if starred else [])])


# train settings that change how a run is carried out, not what it learns: runs differing only in these
# and the seed are repeats of one configuration
_HOW = {"seed", "device", "processes", "log_every", "eval_every", "eval_images", "checkpoint_every",
        "keep_checkpoints", "keep_best", "tensorboard", "check_every", "final_eval_images"}


def configuration_key(run_dir: str | Path) -> str:
    """What a run learns, as text: its model, data and train settings without the seed (and `_HOW`)."""
    from ..config import run_config_to_dict

    cfg, _ = read_run_config(run_dir)
    tree = run_config_to_dict(cfg)
    tree["train"] = {k: v for k, v in tree["train"].items() if k not in _HOW}
    return json.dumps(tree, sort_keys=True, default=str)


def group_seeds(columns, rows: list[dict]) -> list[dict]:
    """Runs of one configuration that differ only in the seed, as one row: each metric's mean with its
    sample sd over the seeds (`<key>_sd`) and `seeds`, the count; the best marks recomputed on the means."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(configuration_key(r["run"]), []).append(r)
    out = []
    for members in groups.values():
        if len(members) == 1:
            out.append({**members[0], "seeds": 1})
            continue
        row = {k: members[0][k] for k in ("model", "data", "condition")}
        row["run"] = ", ".join(m["run"] for m in members)
        row["seeds"] = len(members)
        steps = {m["steps"] for m in members}
        row["steps"] = steps.pop() if len(steps) == 1 else None
        for key, _, _ in columns:
            values = [m[key] for m in members if m.get(key) is not None]
            if values:
                row[key] = statistics.mean(values)
                row[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        out.append(row)
    mark_best(columns, out)
    return out
