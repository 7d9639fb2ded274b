"""A run: train a configuration into a run folder, read it back, evaluate it, draw and report it.

    folder.py         train into a run folder (`train_run`), load it back (`load_run`), evaluate it
    configuration.py  a run's configuration: presets < config file < --set, read back and checked, --resume
    callbacks.py      what happens after training: evaluation, pictures, the report (the trainer's callbacks)
    pictures.py       reconstructions by stage, samples, interpolations, traversals, class grids
    report.py         the report as data, rendered as report.md and report.html
    compare.py        runs' final metrics side by side
    canvas.py         DRAW-like models' canvas over time as PNG strips and GIFs
    uses.py           class-conditional generation and style transfer
    completion.py     image completion, and its evaluation
"""

from .configuration import read_run_config, resolve_config
from .folder import EvaluationOptions, evaluate_run, evaluated_step, load_run, load_split, train_run

__all__ = ["EvaluationOptions", "evaluate_run", "evaluated_step", "load_run", "load_split", "read_run_config", "resolve_config",
           "train_run"]
