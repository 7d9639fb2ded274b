"""Runs side by side: the metrics of their final evaluations in one table (`vaekit compare`, the
explorer's table). A run's newest numbers are `evaluation.json`'s; a metric a run lacks is left empty."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError
from .configuration import read_run_config

# the columns, in order, when any run has them: (key in evaluation.json, heading, lower is better?)
METRICS = [("test/elbo", "ELBO", False), ("test/iwae_nll", "-log p(x) IWAE", True), ("test/recon", "recon", True),
           ("test/kl", "KL", None), ("test/ssim", "SSIM", False), ("test/mse", "MSE", True),
           ("samples/fd", "FD", True), ("samples/precision", "precision", False), ("samples/recall", "recall", False),
           ("classification/error", "class. error", True), ("conditional/label_accuracy", "label acc.", False),
           ("train_seconds_this_session", "train s", None)]


def run_summary(run_dir: str | Path) -> dict:
    """name, model, data, steps and every METRICS value a run's final evaluation has (none, and steps
    None, before its final evaluation)."""
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
    row = {"run": str(run_dir), "model": cfg.model_name, "data": data, "steps": result.get("step")}
    row.update({key: result[key] for key, _, _ in METRICS if isinstance(result.get(key), (int, float))})
    return row


def compare_runs(run_dirs: list[str | Path]) -> tuple[list[tuple[str, str, bool | None]], list[dict]]:
    """The METRICS columns any of the runs has, and one summary per run."""
    rows = [run_summary(r) for r in run_dirs]
    columns = [m for m in METRICS if any(m[0] in r for r in rows)]
    return columns, rows


def format_table(columns, rows) -> str:
    """An aligned text table; the best value of each metric marked with *."""
    head = ["run", "model", "data", "steps", *[h for _, h, _ in columns]]
    best = {}
    for key, _, lower in columns:
        values = [r[key] for r in rows if key in r]
        if lower is not None and len(values) > 1:
            best[key] = min(values) if lower else max(values)
    body = []
    for r in rows:
        cells = [r["run"], r["model"], r["data"], str(r["steps"])]
        for key, _, _ in columns:
            v = r.get(key)
            cells.append("" if v is None else f"{v:.4g}" + ("*" if best.get(key) == v else ""))
        body.append(cells)
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, body)])
