"""`train_run` in data-parallel worker processes on a multi-core CPU (train.processes, see
vaekit.distributed.worker_plan): the checks that can refuse a run are made once, in the calling process,
before any worker starts; then `python -m vaekit.cli.worker SPEC` runs in each rank, SPEC holding the
resolved configuration and `train_run`'s arguments, and the caller returns the evaluation rank 0 wrote."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from .. import distributed
from ..config import RunConfig, run_config_to_dict
from ..errors import VaekitError


def train_in_workers(cfg: RunConfig, out: Path, plan: distributed.WorkerPlan, **train_run_kwargs) -> dict:
    spec = {"config": run_config_to_dict(cfg), "out": str(out), **train_run_kwargs}
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="vaekit-workers-") as f:
        json.dump(spec, f)
        f.flush()
        code = distributed.run_workers([sys.executable, "-m", "vaekit.cli.worker", f.name], plan)
    if code:
        raise WorkersFailed(code)
    return json.loads((out / "evaluation.json").read_text())


class WorkersFailed(VaekitError):
    """A worker stopped with a message of its own, already shown: the caller exits with its code."""

    def __init__(self, code: int):
        super().__init__("")
        self.exit_code = code
