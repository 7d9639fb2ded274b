"""The "before" of the speed issue's benchmarks: commit BEFORE, checked out once as a git worktree beside
this checkout, so that one run of a benchmark can time both codes."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "50ae03e"


def source(version: str) -> Path:
    """The tree whose src/ a version runs: this checkout for "after", the worktree of BEFORE otherwise."""
    if version == "after":
        return ROOT
    tree = Path(tempfile.gettempdir()) / f"vaekit-speed-{BEFORE}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), BEFORE], check=True,
                       capture_output=True)
    return tree
