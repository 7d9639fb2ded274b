"""What the reproduction scripts share for their tables (imported from the script's own folder)."""

from __future__ import annotations

import statistics


def mean_sd(values: list[float], spec: str = ".3f", sd_spec: str | None = None, empty: str = "-") -> str:
    """'mean ± sd' over seeds in the format `spec` (the sd in `sd_spec`, default the same); one value alone
    without an sd; `empty` for none."""
    if not values:
        return empty
    if len(values) == 1:
        return format(values[0], spec)
    return f"{format(statistics.mean(values), spec)} ± {format(statistics.stdev(values), sd_spec or spec)}"
