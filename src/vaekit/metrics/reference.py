"""The model-independent half of sample quality, computed once and cached: the test split's features
and k-NN radii, and the floor that real training images reach (`reference/*`: FD, precision/recall of
as many training images as there are samples against the test split; the test images' own MS-SSIM).

None of these depends on the model being evaluated, only on the feature network, the test images, the
training images drawn and the counts, so `vaekit evaluate` of many runs of one dataset computes them
once. They are cached under $VAEKIT_CACHE/feature-nets/reference/ (safetensors + JSON, written
atomically) by a SHA-256 of everything they depend on: the feature network's weights, the test images
and the training images themselves (not their names or paths), the counts, k and the seed. A changed
image, network or setting is a new key, never a stale number.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from ..errors import CheckpointError
from ..files import atomic_path, read_safetensors, write_json_atomic
from .feature_net import extract_features, feature_net_folder
from .sample_quality import knn_radii, ms_ssim_diversity, sample_quality

FORMAT = "vaekit-sample-reference"
FORMAT_VERSION = 2  # 2: the floor has KID


def fingerprint(net, *parts, chunk: int = 250) -> str:
    """SHA-256 over the feature net's weights and `parts`: tensors, image data sets (read `chunk` images at
    a time, so memory does not grow with the split; the key does not depend on `chunk`) or anything with a
    stable repr."""
    h = hashlib.sha256(f"{FORMAT} {FORMAT_VERSION}".encode())

    def add(t: Tensor) -> None:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())

    for name, value in sorted(net.state_dict().items()):
        h.update(f"{name} {value.dtype} {tuple(value.shape)}".encode())
        add(value)
    for part in parts:
        if torch.is_tensor(part):
            h.update(f"tensor {part.dtype} {tuple(part.shape)}".encode())
            add(part)
        elif hasattr(part, "batch"):  # an image data set: its size and shape, then every image's pixels
            h.update(f"images {len(part)} {tuple(part.image_shape)}".encode())
            for s in range(0, len(part), chunk):
                add(part.batch(torch.arange(s, min(len(part), s + chunk))))
        else:
            h.update(repr(part).encode())
    return h.hexdigest()


def sample_reference(net, test_data, train_x: Tensor, *, pairs: int, seed: int, k: int = 3,
                     batch_size: int = 250, shown=None) -> tuple[Tensor, Tensor, dict]:
    """(test features (N, D), their k-NN radii (N,), the `reference/*` numbers), from the cache when
    present, else computed and cached. `shown` (a TaskProgress) is advanced by images featurised."""
    key = fingerprint(net, test_data, train_x, pairs, seed, k, chunk=batch_size)
    path = feature_net_folder() / "reference" / f"{key[:32]}.safetensors"
    cached = _read(path, key)
    if cached is not None:
        if shown is not None:
            shown.advance(len(test_data) + len(train_x))
        return cached
    f_test = extract_features(net, test_data, batch_size)
    f_train = extract_features(net, train_x, batch_size)
    if shown is not None:
        shown.advance(len(test_data) + len(train_x))
    radii = knn_radii(f_test, k)
    floor = sample_quality(f_test, f_train, k=k, real_radii=radii)
    numbers = {f"reference/train_{name}": v for name, v in floor.items()}
    if len(test_data) >= 2:
        numbers["reference/test_ms_ssim"], numbers["reference/test_ms_ssim_se"] = ms_ssim_diversity(
            test_data, pairs, seed, batch_size, return_se=True)
    _write(path, key, f_test, radii, numbers)
    return f_test, radii, numbers


def _write(path: Path, key: str, f_test: Tensor, radii: Tensor, numbers: dict) -> None:
    try:
        with atomic_path(path) as tmp:
            save_file({"test_features": f_test.contiguous(), "test_radii": radii.contiguous()}, str(tmp),
                      metadata={"format": FORMAT})
        write_json_atomic(path.with_suffix(".json"), {"format": FORMAT, "format_version": FORMAT_VERSION,
                                                      "key": key, "numbers": numbers})
    except OSError:  # a read-only cache costs time, not correctness
        pass


def _read(path: Path, key: str):
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        if meta.get("format") != FORMAT or meta.get("key") != key:
            return None
        tensors = read_safetensors(path)
        return tensors["test_features"], tensors["test_radii"], dict(meta["numbers"])
    except (OSError, ValueError, KeyError, TypeError, CheckpointError):
        return None
