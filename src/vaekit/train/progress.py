"""A one-line progress display: step, loss terms, images/s. Redrawn in place on a terminal,
printed as plain lines (one per log interval) when stderr is a file or a pipe."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, start: int = 0, stream=None, enabled: bool = True, every: float | None = None):
        self.total, self.stream, self.enabled = total, stream or sys.stderr, enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start_step, self.t0 = start, time.perf_counter()
        self.every = every if every is not None else (2.0 if self.tty else 30.0)
        self.t_shown = self.t0

    def update(self, step: int, terms: dict[str, float], images_per_s: float) -> None:
        shown = " ".join(f"{k}={v:.4g}" for k, v in terms.items())
        self._show(step, f"{shown} | {images_per_s:,.0f} img/s")

    def tick(self, step: int) -> None:
        """Between log intervals: the step and the time left, when `every` seconds have passed since the
        last line (slow models log every 50 steps, which can be minutes)."""
        if time.perf_counter() - self.t_shown >= self.every:
            self._show(step, "")

    def _show(self, step: int, middle: str) -> None:
        if not self.enabled:
            return
        width = 24
        frac = step / max(1, self.total)
        bar = "#" * int(width * frac) + "-" * (width - int(width * frac))
        now = time.perf_counter()
        done = step - self.start_step
        eta = (now - self.t0) / done * (self.total - step) if done > 0 else float("nan")
        line = f"[{bar}] {step}/{self.total} {middle + ' | ' if middle else ''}eta {eta:,.0f}s"
        self.t_shown = now
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
