"""`vaekit sweep`: one `vaekit train` per point of a grid of settings and per seed, into one folder,
then the table of their final metrics (seeds as mean ± sd) and a plot of each metric against the swept
setting.

    vaekit sweep vae --data fashion-mnist --steps 2000 --seeds 0 1 2 --grid model.beta=1,4,10 --out runs/sweep

Every configuration is checked before any run starts (a bad value is refused in one line). Resumable:
a run whose evaluation is at its last step is kept, a run cut short is continued from its checkpoint
(`--resume`), so the same command again finishes a sweep that was stopped. The runs go one after another
(each uses the whole machine as `vaekit train` does) or `--parallel N` at a time (one process each);
`--print-commands` prints the `vaekit train` lines instead, e.g. for a cluster scheduler's job array.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..config import parse_value
from ..errors import ConfigError
from ..files import write_text_atomic
from .compare import compare_runs, format_table, group_seeds
from .configuration import resolve_config
from .folder import evaluated_step


@dataclass(frozen=True)
class SweepRun:
    name: str  # folder name under the sweep's --out
    point: tuple[tuple[str, object], ...]  # (setting, value) of the grid
    seed: int
    argv: tuple[str, ...]  # `vaekit train` arguments


def parse_grid(items: list[str]) -> list[tuple[str, list]]:
    """`section.key=v1,v2,...` -> [(key, [values])]; values are TOML literals or bare strings."""
    grid = []
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ConfigError(f"--grid expects section.key=value1,value2,..., got {item!r}")
        grid.append((key.strip(), [parse_value(v.strip()) for v in values.split(",")]))
    return grid


def plan(model: str, train_args: list[str], sets: list[str], grid: list[tuple[str, list]], seeds: list[int],
         out: Path, config: str | None = None, base: dict | None = None) -> list[SweepRun]:
    """Every run of the sweep, each configuration resolved (and so checked) before anything runs."""
    if not seeds:
        raise ConfigError("--seeds needs at least one seed")
    runs = []
    for values in itertools.product(*[v for _, v in grid]) if grid else [()]:
        point = tuple(zip([k for k, _ in grid], values))
        for seed in seeds:
            overrides = [*sets, *(f"{k}={_literal(v)}" for k, v in point), f"train.seed={seed}"]
            resolve_config(model, config, overrides, json.loads(json.dumps(base or {})))  # refused now, by name
            name = "-".join([*(f"{k.split('.')[-1]}={v}" for k, v in point), f"seed={seed}"])
            name = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name)
            argv = ["train", model, *train_args, *(["--config", config] if config else []),
                    *(a for o in overrides for a in ("--set", o)), "--out", str(out / name)]
            runs.append(SweepRun(name, point, seed, tuple(argv)))
    return runs


def _literal(v) -> str:
    return json.dumps(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)


def state(run_dir: Path) -> str:
    """done (evaluated at its last step), partial (a checkpoint to continue from) or new."""
    try:
        saved = json.loads((run_dir / "config.json").read_text())
        if evaluated_step(run_dir) == saved["train"]["steps"]:
            return "done"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return "partial" if (run_dir / "checkpoints").is_dir() else "new"


def run_sweep(runs: list[SweepRun], out: Path, parallel: int = 1) -> list[Path]:
    """Train every run not done yet (`parallel` at a time), each a `vaekit train` process whose output goes to
    OUT/logs/NAME.log; then the table and plots. Returns the run folders."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    todo = [r for r in runs if state(out / r.name) != "done"]
    print(f"sweep: {len(runs)} runs ({len(runs) - len(todo)} done already) into {out}", file=sys.stderr, flush=True)
    env = dict(os.environ)
    if parallel > 1:  # one single-threaded process per run: the cores are shared among the runs
        env.update(OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // parallel)))
    pending, active, failed = list(todo), [], []
    finished = len(runs) - len(todo)
    while pending or active:
        while pending and len(active) < parallel:
            r = pending.pop(0)
            argv = [*r.argv, "--quiet"]
            if state(out / r.name) == "partial":
                argv.append("--resume")
            if parallel > 1:
                argv += ["--set", "train.processes=1"]
            log = open(out / "logs" / f"{r.name}.log", "w")
            print(f"sweep: training {r.name}", file=sys.stderr, flush=True)
            active.append((r, subprocess.Popen([sys.executable, "-m", "vaekit", *argv], stdout=log,
                                               stderr=subprocess.STDOUT, env=env), log))
        r, proc, log = active.pop(0)
        code = proc.wait()
        log.close()
        finished += 1
        if code:
            failed.append(r.name)
        print(f"sweep: {finished}/{len(runs)} {r.name} {'failed (exit ' + str(code) + ')' if code else 'done'}",
              file=sys.stderr, flush=True)
    if failed:
        raise ConfigError(f"{len(failed)} of the sweep's runs failed ({', '.join(failed)}); their logs are in "
                          f"{out / 'logs'}; the same command again continues the sweep")
    return [out / r.name for r in runs]


def report(runs: list[SweepRun], out: Path, grid: list[tuple[str, list]]) -> str:
    """The table (seeds grouped) into OUT/sweep.md and one PNG per metric against the swept setting."""
    columns, rows = compare_runs([out / r.name for r in runs])
    grouped = group_seeds(columns, rows)
    table = format_table(columns, grouped)
    lines = ["# Sweep", "", f"Grid: {', '.join(f'{k} = {vs}' for k, vs in grid) or 'none'}; seeds: "
             f"{sorted({r.seed for r in runs})}.", "", "```", table, "```", ""]
    if grid:
        for key, title, _ in columns:
            png = _plot(runs, grouped, key, title, grid, out)
            if png:
                lines.append(f"![{title}]({png.name})")
    write_text_atomic(out / "sweep.md", "\n".join(lines) + "\n")
    return table


def _plot(runs, grouped, key, title, grid, out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    point_of = {str(out / r.name): r.point for r in runs}
    xs, ys, errs = [], [], []
    for row in grouped:
        if key not in row:
            continue
        point = point_of[row["run"].split(", ")[0]]
        xs.append(", ".join(f"{v}" for _, v in point))
        ys.append(row[key])
        errs.append(row.get(f"{key}_sd", 0.0))
    if not xs:
        return None
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    numeric = len(grid) == 1 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in grid[0][1])
    x = [float(s) for s in xs] if numeric else list(range(len(xs)))
    ax.errorbar(x, ys, yerr=errs, fmt="o-", capsize=3)
    if not numeric:
        ax.set_xticks(x, xs, rotation=30, fontsize=7)
    ax.set_xlabel(", ".join(k for k, _ in grid))
    ax.set_ylabel(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / f"sweep_{''.join(c if c.isalnum() else '_' for c in key)}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def command_lines(runs: list[SweepRun]) -> list[str]:
    return ["vaekit " + " ".join(shlex.quote(a) for a in r.argv) for r in runs]
