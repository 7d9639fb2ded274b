"""Checkpoints: tensors in safetensors, everything else in JSON, written atomically.

Layout inside a run folder:
    checkpoints/step-00002000/model.safetensors     model parameters and buffers
    checkpoints/step-00002000/trainer.safetensors   optimiser tensors and the RNG state
    checkpoints/step-00002000/state.json            step, optimiser hyper-parameters, format version
    checkpoints/latest.json                         {"step": 2000, "dir": "step-00002000"}

A checkpoint directory is written under a temporary name and renamed into place; `latest.json` is
replaced atomically after that, so a crash at any moment leaves the previous checkpoint usable.
Nothing is ever unpickled: a file that is not safetensors is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError

FORMAT_VERSION = 1


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write under a temporary name, then rename: readers see the old file or the new one, whole."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be read like any file
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


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


def save_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module,
                    optimizers: dict[str, torch.optim.Optimizer], extra: dict | None = None, keep: int = 2) -> Path:
    """Write checkpoint for `step` atomically; keep the newest `keep` checkpoints."""
    final = checkpoint_dir(run_dir, step)
    root, name = final.parent, final.name
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.", suffix=".tmp"))
    try:
        save_file(_plain_tensors(model.state_dict()), str(tmp / "model.safetensors"), metadata={"format": "vaekit"})
        optim_tensors, optim_meta = optimizer_to_flat(optimizers)
        optim_tensors["rng/torch_cpu"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                optim_tensors[f"rng/torch_cuda_{i}"] = state
        save_file(_plain_tensors(optim_tensors), str(tmp / "trainer.safetensors"), metadata={"format": "vaekit"})
        state = {"format_version": FORMAT_VERSION, "step": step, "optimizers": optim_meta, **(extra or {})}
        with open(tmp / "state.json", "w") as f:
            json.dump(state, f, indent=2)
        for p in tmp.iterdir():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_json_atomic(root / "latest.json", {"step": step, "dir": name})
    old = sorted(p for p in root.glob("step-*") if p.is_dir() and p.name != name)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    root = Path(run_dir) / "checkpoints"
    pointer = root / "latest.json"
    if not pointer.exists():
        return None
    try:
        info = json.loads(pointer.read_text())
        path = root / info["dir"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise CheckpointError(f"{pointer}: corrupt checkpoint pointer (not the JSON vaekit writes)") from None
    if not path.is_dir():
        raise CheckpointError(f"{pointer} points at {path}, which does not exist")
    return path


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file; anything else (a pickle, a truncated file) is refused by name."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80" or head == b"PK":  # pickle protocol >= 2, or torch.save's zip
            raise CheckpointError(f"{path}: looks like a pickle/torch.save file; vaekit never unpickles, "
                                  "it reads only safetensors") from None
        raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from None


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
