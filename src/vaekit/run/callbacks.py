"""What a run does once training ends, as the trainer's "on_fit_end" callbacks (minGPT's habit): the
final evaluation, the pictures, the report, and last evaluation.json, each a small object called with
the trainer. The trainer runs them on rank 0 alone and holds every other rank at one barrier."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..files import write_json_atomic
from ..train.trainer import truncate_jsonl
from .pictures import draw_run_pictures
from .report import write_report


@dataclass
class RunEnd:
    """The state the callbacks share: the run folder, its configuration and data, and the result."""

    out: Path
    cfg: object
    saved: dict
    train_data: object
    test_data: object
    result: dict = field(default_factory=dict)


@dataclass
class FinalEvaluation:
    """Every test-set number of the trained model (`evaluate(model)`: the run's `evaluate_run`, which
    every rank calls, sharing its test-set pass), and the last point of eval.jsonl."""

    end: RunEnd
    evaluate: Callable[[object], dict]
    processes: int = 1
    every_rank = True

    def __call__(self, trainer) -> None:
        e = self.end
        started = time.perf_counter()
        result = self.evaluate(trainer.model)
        if not trainer.writes:
            return
        e.result = result
        e.result.update({"step": trainer.step, "train_seconds_this_session": round(trainer.train_seconds, 1),
                         "evaluation_seconds": round(time.perf_counter() - started, 1),
                         "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        if self.processes > 1:
            e.result["processes"] = self.processes
        # the final point of the evaluation curves, once (a run killed after writing it evaluates again)
        truncate_jsonl(e.out / "eval.jsonl", trainer.step - 1)
        with open(e.out / "eval.jsonl", "a") as f:
            f.write(json.dumps({k: v for k, v in e.result.items() if k != "evaluated_at"}) + "\n")


@dataclass
class Pictures:
    end: RunEnd

    def __call__(self, trainer) -> None:
        draw_run_pictures(self.end.out, trainer.model, self.end.test_data, self.end.cfg)


@dataclass
class Report:
    end: RunEnd

    def __call__(self, trainer) -> None:
        e = self.end
        write_report(e.out, e.cfg, e.saved, e.result, trainer.model)


@dataclass
class EvaluationFile:
    """evaluation.json, last: a run folder without it is finished by --resume."""

    end: RunEnd

    def __call__(self, trainer) -> None:
        write_json_atomic(self.end.out / "evaluation.json", self.end.result)
