"""Progress of a long evaluation step on stderr: what, how many, time left.

Training has its own display (train/progress.py). This one is for the counted loops of evaluation
(test terms, the IWAE bound, disentanglement encodes, sample quality): a step that ends within
`quiet_for` seconds prints nothing, a longer one prints a line at most every `every` seconds (one
line redrawn in place on a terminal) and a closing line with its total time.
"""

from __future__ import annotations

import sys
import time


class TaskProgress:
    def __init__(self, what: str, total: int, unit: str = "images", *, enabled: bool = True, stream=None,
                 every: float = 5.0, quiet_for: float = 3.0):
        self.what, self.total, self.unit = what, max(0, int(total)), unit
        self.enabled = enabled and self.total > 0
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every, self.quiet_for = every, quiet_for
        self.done = 0
        self.t0 = self.t_shown = time.perf_counter()
        self.shown = False

    def __enter__(self) -> "TaskProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.t0 >= self.quiet_for and (not self.shown or now - self.t_shown >= (0.5 if self.tty else self.every)):
            self._write(self._line(now), final=False)
            self.t_shown, self.shown = now, True

    def _line(self, now: float) -> str:
        elapsed = now - self.t0
        done = min(self.done, self.total)
        left = elapsed / done * (self.total - done) if done else float("nan")
        return (f"{self.what}: {done:,}/{self.total:,} {self.unit} ({100 * done / self.total:.0f}%), "
                f"{elapsed:.0f}s elapsed, ~{left:.0f}s left")

    def _write(self, line: str, final: bool) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.shown:
            self._write(f"{self.what}: {min(self.done, self.total):,}/{self.total:,} {self.unit} in "
                        f"{time.perf_counter() - self.t0:.0f}s", final=True)
        self.enabled = False
