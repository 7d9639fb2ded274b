"""Settings that change with the training step: any number-valued model setting may be a schedule,
given as a table in the TOML or `--set`, e.g. KL warm-up

    model.beta = {schedule = "linear", start = 0, end = 1, steps = 5000}

- linear:   start -> end over `steps`, then end (the usual KL warm-up; Bowman et al. 2016)
- cosine:   start -> end along half a cosine over `steps`, then end
- cyclical: Fu et al. 2019 (NAACL), "Cyclical annealing schedule": `cycles` cycles of `steps` steps, each
            rising linearly from start to end over its first `ratio` and holding end for the rest; end
            after the last cycle
- step:     start multiplied by `factor` (default 0.1) every `steps` steps, never past end (a learning
            rate's step decay)

Any of them may begin with `warmup` steps rising linearly from 0 to start (a learning rate's warm-up:
`train.lr = {schedule = "cosine", start = 1e-3, end = 1e-5, steps = 20000, warmup = 500}`).

A schedule is a `Scheduled`: a float whose value is the schedule's start (so the config's own checks
see a number), carrying its table; its value at a step depends on the step alone, so a resumed run
continues it bit-identically. The trainer gives the model the setting's value at every step
(`at_step`) and logs it as `schedule/<setting>`.
"""

from __future__ import annotations

import dataclasses
import math

from .errors import ConfigError

KINDS = ("linear", "cosine", "cyclical", "step")
_DEFAULTS = {"ratio": 0.5, "cycles": 4, "factor": 0.1}
_OWN = {"cyclical": {"ratio", "cycles"}, "step": {"factor"}}  # the settings only one kind takes


class Scheduled(float):
    """A number-valued setting on a schedule (see the module's docstring); float(self) = its start value
    (what the config's own checks judge, with its end; a warm-up's 0 is the schedule's own)."""

    def __new__(cls, kind: str, start: float, end: float, steps: int, ratio: float = 0.5, cycles: int = 4,
                warmup: int = 0, factor: float = 0.1):
        self = super().__new__(cls, start)
        self.kind, self.start, self.end, self.steps, self.ratio, self.cycles = kind, start, end, steps, ratio, cycles
        self.warmup, self.factor = warmup, factor
        return self

    def at(self, step: int) -> float:
        if step < self.warmup:
            return self.start * step / self.warmup
        step -= self.warmup
        if self.kind == "step":
            value = self.start * self.factor ** (step // self.steps)
            return max(value, self.end) if self.factor < 1 else min(value, self.end)
        if self.kind == "cyclical":
            if step >= self.cycles * self.steps:
                return self.end
            progress = min(1.0, (step % self.steps) / (self.ratio * self.steps))
        else:
            progress = min(1.0, step / self.steps)
            if self.kind == "cosine":
                progress = (1 - math.cos(math.pi * progress)) / 2
        return self.start + (self.end - self.start) * progress

    def to_table(self) -> dict:
        table = {"schedule": self.kind, "start": self.start, "end": self.end, "steps": self.steps}
        if self.kind == "cyclical":
            table.update(ratio=self.ratio, cycles=self.cycles)
        if self.kind == "step":
            table["factor"] = self.factor
        if self.warmup:
            table["warmup"] = self.warmup
        return table

    def __repr__(self) -> str:
        return f"Scheduled({self.to_table()})"

    def __reduce__(self):
        return (Scheduled, (self.kind, self.start, self.end, self.steps, self.ratio, self.cycles, self.warmup,
                            self.factor))

    @classmethod
    def from_table(cls, table: dict, where: str) -> "Scheduled":
        kind = table.get("schedule")
        if kind not in KINDS:
            raise ConfigError(f"{where}: schedule must be one of {', '.join(KINDS)}, got {kind!r}")
        allowed = {"schedule", "start", "end", "steps", "warmup"} | _OWN.get(kind, set())
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise ConfigError(f"{where}: a {kind} schedule has no {unknown[0]!r}; it takes {', '.join(sorted(allowed))}")
        missing = [k for k in ("start", "end", "steps") if k not in table]
        if missing:
            raise ConfigError(f"{where}: a schedule needs {', '.join(missing)} (e.g. {{schedule = \"linear\", "
                              "start = 0, end = 1, steps = 5000}})")
        numbers = {}
        for k in ("start", "end", "ratio", "factor"):
            v = table.get(k, _DEFAULTS.get(k))
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"{where}: the schedule's {k} must be a finite number, got {v!r}")
            numbers[k] = float(v)
        for k, least in (("steps", 1), ("cycles", 1), ("warmup", 0)):
            v = table.get(k, _DEFAULTS.get(k, 0))
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ConfigError(f"{where}: the schedule's {k} must be an integer >= {least}, got {v!r}")
            numbers[k] = v
        if not 0 < numbers["ratio"] <= 1:
            raise ConfigError(f"{where}: the schedule's ratio must be in (0, 1], got {numbers['ratio']}")
        if not numbers["factor"] > 0 or numbers["factor"] == 1:
            raise ConfigError(f"{where}: the schedule's factor must be > 0 and not 1, got {numbers['factor']}")
        return cls(kind, numbers["start"], numbers["end"], numbers["steps"], numbers["ratio"], numbers["cycles"],
                   numbers["warmup"], numbers["factor"])


def scheduled_fields(config) -> dict[str, Scheduled]:
    """The settings of a config dataclass that are on a schedule."""
    if not dataclasses.is_dataclass(config):
        return {}
    return {f.name: v for f in dataclasses.fields(config) if isinstance(v := getattr(config, f.name), Scheduled)}


def at_step(config, step: int):
    """`config` with each scheduled setting replaced by its plain value at `step` (itself when none is)."""
    fields = scheduled_fields(config)
    return dataclasses.replace(config, **{k: s.at(step) for k, s in fields.items()}) if fields else config
