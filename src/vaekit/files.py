"""Files written atomically, and tensors read safely (safetensors only, never a pickle).

Written atomically: under a temporary name beside the target, renamed over it once complete, so
a reader (or a run killed mid-write) sees the old file or the new one, whole, never a half-written one."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .errors import CheckpointError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed to `path` when the block ends without an
    error, removed otherwise. The parent folder is created when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be read like any file
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:  # on disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def looks_like_pickle(path: Path) -> bool:
    """A pickle (protocol >= 2) or torch.save's zip, by its first bytes, and not safetensors: those start
    with the JSON header's 8-byte length, whose low byte may be anything (0x80, or "PK"), then "{"."""
    with open(path, "rb") as f:
        head = f.read(9)
    size = path.stat().st_size
    if len(head) == 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size:
        return False
    return head[:1] == b"\x80" or head[:2] == b"PK"


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file; anything else (a pickle, a truncated file) is refused by name."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        if looks_like_pickle(path):
            raise CheckpointError(f"{path}: looks like a pickle/torch.save file; vaekit never unpickles, "
                                  "it reads only safetensors") from None
        raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from None
