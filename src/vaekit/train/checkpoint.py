"""Checkpoints: tensors in safetensors, everything else in JSON, written atomically.

Layout inside a run folder:
    checkpoints/step-00002000/model.safetensors     model parameters and buffers
    checkpoints/step-00002000/trainer.safetensors   optimiser tensors and the RNG state
    checkpoints/step-00002000/state.json            step, optimiser hyper-parameters, format version
    checkpoints/latest.json                         {"step": 2000, "dir": "step-00002000"}

A checkpoint directory is written under a temporary name and renamed into place; `latest.json` is
replaced atomically after that, so a crash at any moment leaves the previous checkpoint usable.
state.json records the byte size and sha256 of every other file, and a sha256 of its own content,
so a checkpoint damaged later (a full disk, a copy cut short, a flipped bit) is recognised:
`latest_checkpoint` skips it with one warning line and falls back to the newest complete one.
Nothing is ever unpickled: a file that is not safetensors is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import CheckpointError
from ..files import looks_like_pickle, read_safetensors, write_json_atomic

FORMAT_VERSION = 1  # files and sha256 in state.json came later; checkpoints without them still load
TENSOR_FILES = ("model.safetensors", "trainer.safetensors")
_STEP_DIR = re.compile(r"step-(\d{8,})")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _plain_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage; a contiguous copy is cheap at our sizes.
    return {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}


def optimizer_to_flat(optimizers: dict[str, torch.optim.Optimizer]) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimisers' state dicts -> (tensors for safetensors, JSON-able hyper-parameters)."""
    tensors, meta = {}, {}
    for group_name, opt in optimizers.items():
        sd = opt.state_dict()
        meta[group_name] = {"param_groups": sd["param_groups"], "state_keys": {}}
        for idx, state in sd["state"].items():
            keys = []
            for k, v in state.items():
                if not torch.is_tensor(v):
                    v = torch.tensor(v)
                tensors[f"optim/{group_name}/{idx}/{k}"] = v
                keys.append(k)
            meta[group_name]["state_keys"][str(idx)] = keys
    return tensors, meta


def optimizer_from_flat(optimizers: dict[str, torch.optim.Optimizer], tensors: dict[str, torch.Tensor],
                        meta: dict) -> None:
    for group_name, opt in optimizers.items():
        if group_name not in meta:
            raise CheckpointError(f"checkpoint has no optimiser state for parameter group {group_name!r}")
        m = meta[group_name]
        state = {int(idx): {k: tensors[f"optim/{group_name}/{idx}/{k}"] for k in keys}
                 for idx, keys in m["state_keys"].items()}
        groups = []
        for g in m["param_groups"]:
            g = dict(g)
            for k, v in g.items():
                if isinstance(v, list) and k != "params":
                    g[k] = tuple(v)
            groups.append(g)
        opt.load_state_dict({"state": state, "param_groups": groups})


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """Where the checkpoint of `step` lives (whether or not it exists, or was pruned)."""
    return Path(run_dir) / "checkpoints" / f"step-{step:08d}"


def _fault(point: str, step: int) -> None:
    """Test hook: VAEKIT_FAULT=POINT:STEP kills this process at POINT of checkpoint STEP, as a power cut
    or the OOM killer would, so the crash-safety tests can hit a given moment of a checkpoint write."""
    if os.environ.get("VAEKIT_FAULT") == f"{point}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _record(path: Path) -> dict:
    """Size and sha256 of a written file, read back from the disk (after fsync), so they describe what is there."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    return {"bytes": path.stat().st_size, "sha256": _sha256(path)}


def _state_digest(state: dict) -> str:
    """sha256 of state.json's content without its own digest; a JSON round trip gives the same text."""
    body = {k: v for k, v in state.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    """The checkpoint folders under `root`, newest first (temporary ones start with a dot: not listed)."""
    found = []
    for p in root.glob("step-*"):
        m = _STEP_DIR.fullmatch(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found, reverse=True)


def save_best(run_dir: str | Path, step: int, model: torch.nn.Module, metric: str, value: float) -> Path:
    """RUN/best: the model's weights at its best quick evaluation by `metric`, with the run's config.json
    beside them (so `vaekit.load(RUN/best)` reads it) and best.json (step, metric, value); replaced whole."""
    run_dir = Path(run_dir)
    final = run_dir / "best"
    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=".best.", suffix=".tmp"))
    try:
        save_file(_plain_tensors(model.state_dict()), str(tmp / "model.safetensors"), metadata={"format": "vaekit"})
        if (run_dir / "config.json").exists():
            shutil.copyfile(run_dir / "config.json", tmp / "config.json")
        (tmp / "best.json").write_text(json.dumps({"step": step, "metric": metric, "value": value}) + "\n")
        old = run_dir / ".best.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_best(run_dir: str | Path) -> dict | None:
    """RUN/best/best.json, or None."""
    try:
        return json.loads((Path(run_dir) / "best" / "best.json").read_text())
    except (OSError, ValueError):
        return None


def save_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module,
                    optimizers: dict[str, torch.optim.Optimizer], extra: dict | None = None, keep: int = 2) -> Path:
    """Write checkpoint for `step` atomically; keep the newest `keep` checkpoints."""
    final = checkpoint_dir(run_dir, step)
    root, name = final.parent, final.name
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.", suffix=".tmp"))
    try:
        save_file(_plain_tensors(model.state_dict()), str(tmp / "model.safetensors"), metadata={"format": "vaekit"})
        _fault("checkpoint-write", step)
        optim_tensors, optim_meta = optimizer_to_flat(optimizers)
        optim_tensors["rng/torch_cpu"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                optim_tensors[f"rng/torch_cuda_{i}"] = state
        save_file(_plain_tensors(optim_tensors), str(tmp / "trainer.safetensors"), metadata={"format": "vaekit"})
        state = {"format_version": FORMAT_VERSION, "step": step, "optimizers": optim_meta, **(extra or {}),
                 "files": {name: _record(tmp / name) for name in TENSOR_FILES}}
        state["sha256"] = _state_digest(state)
        with open(tmp / "state.json", "w") as f:
            json.dump(state, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fault("checkpoint-rename", step)
    write_json_atomic(root / "latest.json", {"step": step, "dir": name})
    _fault("checkpoint-saved", step)
    # Checkpoints of later steps belong to a run that crashed after them and resumed from an earlier one.
    older = [p for s, p in _step_dirs(root) if s < step]
    for p in [p for s, p in _step_dirs(root) if s > step] + older[max(0, keep - 1):]:
        shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".*.tmp"):  # left by a process killed while writing
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return final


def checkpoint_step(ckpt_dir: str | Path) -> int:
    """The step of a checkpoint folder, from its name (which `check_checkpoint` holds to state.json)."""
    return int(_STEP_DIR.fullmatch(Path(ckpt_dir).name).group(1))


def check_checkpoint(ckpt_dir: str | Path) -> str | None:
    """Why `ckpt_dir` is not a complete, undamaged checkpoint; None when it is.

    Every file is checked against the size and sha256 recorded in state.json. A checkpoint written
    before those were recorded is checked as far as it can be: state.json parses and each safetensors
    header is whole. A checkpoint of another format version raises: it is not damaged, just not ours."""
    ckpt_dir = Path(ckpt_dir)
    try:
        state = json.loads((ckpt_dir / "state.json").read_bytes())
    except FileNotFoundError:
        return "state.json is missing"
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return f"state.json is unreadable: {str(e)[:80]}"
    if not isinstance(state, dict):
        return "state.json is not a JSON object"
    if "sha256" in state and state["sha256"] != _state_digest(state):
        return "state.json is corrupt: its content does not match its sha256"
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{ckpt_dir}: checkpoint format {state.get('format_version')} is not {FORMAT_VERSION}")
    if state.get("step") != checkpoint_step(ckpt_dir):
        return f"state.json is for step {state.get('step')}"
    files = state.get("files")
    for name in TENSOR_FILES:
        path = ckpt_dir / name
        if not path.is_file():
            return f"{name} is missing"
        if looks_like_pickle(path):
            return f"{name} looks like a pickle/torch.save file, and vaekit never unpickles"
        if files is None:
            try:
                with safe_open(str(path), "pt"):
                    pass
            except (SafetensorError, OSError) as e:
                return f"{name} is not a valid safetensors file: {str(e)[:80]}"
            continue
        info = files.get(name) if isinstance(files, dict) else None
        if not isinstance(info, dict):
            return f"state.json records no size and sha256 for {name}"
        size = path.stat().st_size
        if size < info.get("bytes", 0):
            return f"{name} is truncated: {size} of {info['bytes']} bytes"
        if size != info.get("bytes"):
            return f"{name} has {size} bytes, not the {info.get('bytes')} recorded"
        if _sha256(path) != info.get("sha256"):
            return f"{name} is corrupt: its sha256 does not match the one recorded"
    return None


def _warn(message: str) -> None:
    print(f"vaekit: warning: {message}", file=sys.stderr)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of the run folder; None when it has none at all.

    A damaged one is skipped with one warning line naming it, for the next older one; when none
    is left, CheckpointError. latest.json is a hint only: a crash between renaming a checkpoint into
    place and updating it leaves it one behind, and a corrupt one or one pointing nowhere is
    worked around by looking at the step-* folders themselves."""
    root = Path(run_dir) / "checkpoints"
    pointer = root / "latest.json"
    candidates = _step_dirs(root)
    pointer_note = None
    if pointer.exists():
        try:
            pointed = root / json.loads(pointer.read_text())["dir"]
            if not pointed.is_dir():
                pointer_note = f"{pointer} points at {pointed.name}, which does not exist"
        except (OSError, ValueError, KeyError, TypeError):
            pointer_note = f"{pointer} is corrupt (not the JSON vaekit writes)"
    if not candidates:
        if pointer_note:
            raise CheckpointError(f"{pointer_note}, and {root} holds no other checkpoint")
        return None
    skipped = []
    for _, path in candidates:
        reason = check_checkpoint(path)
        if reason is None:
            break
        skipped.append(f"{path} ({reason})")
    else:
        raise CheckpointError(f"no complete checkpoint in {root}: {'; '.join(skipped)}")
    if pointer_note:
        _warn(f"{pointer_note}; using {path.name}")
    for s in skipped:
        _warn(f"skipping {s}; using {path.name}")
    return path


def load_model_weights(ckpt_dir: str | Path, model: torch.nn.Module) -> None:
    tensors = read_safetensors(Path(ckpt_dir) / "model.safetensors")
    try:
        device = next(iter(model.state_dict().values())).device
        model.load_state_dict({k: v.to(device) for k, v in tensors.items()}, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(f"{ckpt_dir}/model.safetensors does not fit this model: "
                              f"{' '.join(first[:2])[:300]}") from None


def load_checkpoint(ckpt_dir: str | Path, model: torch.nn.Module,
                    optimizers: dict[str, torch.optim.Optimizer]) -> dict:
    """Restore model, optimisers and RNG; return state.json."""
    ckpt_dir = Path(ckpt_dir)
    try:
        state = json.loads((ckpt_dir / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{ckpt_dir}/state.json: unreadable ({e})") from None
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{ckpt_dir}: checkpoint format {state.get('format_version')} is not "
                              f"{FORMAT_VERSION}")
    load_model_weights(ckpt_dir, model)
    tensors = read_safetensors(ckpt_dir / "trainer.safetensors")
    try:
        optimizer_from_flat(optimizers, tensors, state["optimizers"])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{ckpt_dir}/trainer.safetensors: optimiser state does not fit ({e})") from None
    torch.set_rng_state(tensors["rng/torch_cpu"])
    for key, rng in tensors.items():
        if key.startswith("rng/torch_cuda_") and torch.cuda.is_available():
            index = int(key.rsplit("_", 1)[1])
            if index < torch.cuda.device_count():
                torch.cuda.set_rng_state(rng, index)
    return state
