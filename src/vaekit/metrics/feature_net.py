"""FeatureNet: a small classifier the toolkit trains per dataset, whose penultimate layer is the
feature space for the Fréchet distance ("FD") and precision/recall of samples (sample_quality.py).

FID (Heusel et al. 2017) uses ImageNet Inception-v3 features, but those weights cannot be
downloaded here, and on 28x28 grayscale data an ImageNet network mostly sees upsampling artefacts.
So vaekit trains a classifier on the labelled training split with one fixed, seeded recipe, caches
it per dataset and image shape, and reuses it for every model: FD values are comparable between
runs that share the cached network (its JSON records the recipe, dataset and test accuracy), not
with published FIDs. With real Inception weights, use inception.py instead.

    net, info = get_feature_net(train, test)          # trains once per dataset, cached
    f_real = extract_features(net, test)              # (N, feature_dim)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn

from ..data.dataset import fixed_sample
from ..progress import TaskProgress
from ..errors import CheckpointError, ConfigError
from ..models.base import eval_mode
from ..files import atomic_path, read_safetensors, write_json_atomic
from ..layout import channels_last_while

__all__ = [
    "FeatureNet",
    "FeatureNetRecipe",
    "default_feature_net_path",
    "extract_features",
    "get_feature_net",
    "load_feature_net",
    "save_feature_net",
    "train_feature_net",
]

FORMAT = "vaekit-feature-net"
FORMAT_VERSION = 1


class FeatureNet(nn.Module):
    """Conv classifier for any (C, H, W) with C in {1, 3} and H, W in [8, 128].

    Per stage two (3x3 conv, batch norm, ReLU) then a 2x2 max pool; global average pooling; a
    linear layer to `feature_dim` (the features, taken before the ReLU so that no unit is
    identically zero); ReLU; a linear classifier head."""

    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, ...] = (16, 32, 64),
                 feature_dim: int = 128):
        super().__init__()
        self.arch = {"in_channels": in_channels, "num_classes": num_classes, "widths": list(widths),
                     "feature_dim": feature_dim}
        layers, c = [], in_channels
        for width in widths:
            for _ in range(2):
                layers += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
                c = width
            layers.append(nn.MaxPool2d(2, ceil_mode=True))  # ceil: odd sizes keep their last row/column
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Linear(c, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) in [0, 1] -> penultimate features (B, feature_dim)."""
        h = self.conv(x * 2 - 1)  # (B, widths[-1], H / 8, W / 8)
        return self.fc(h.mean((2, 3)))  # (B, feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(F.relu(self.features(x)))  # (B, num_classes) logits


@dataclass(frozen=True)
class FeatureNetRecipe:
    """The fixed training recipe. Changing it changes every FD value, so the cache keeps one net per
    dataset and shape and records the recipe beside it. Cross-entropy, Adam with the learning rate
    decayed to 0 on a cosine, no augmentation."""

    seed: int = 0
    epochs: int = 2  # Fashion-MNIST: 90.6% test accuracy
    batch_size: int = 128
    lr: float = 1e-3
    widths: tuple[int, ...] = (16, 32, 64)
    feature_dim: int = 128
    max_train_images: int | None = 120_000  # a fixed uniform sample of a larger split (dSprites' 737,280
    #                                         images would cost six times as much); None: every image

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0 or self.feature_dim < 1:
            raise ConfigError(f"feature-net recipe needs epochs, batch_size, feature_dim >= 1 and lr > 0; got {self}")
        if not self.widths or min(self.widths) < 1:
            raise ConfigError(f"feature-net widths must be positive channel counts, got {self.widths}")


def _num_classes(data) -> int:
    if data.classes is not None:
        return len(data.classes)
    return int(data.labels.max()) + 1


def _require_labels(data) -> None:
    if data.labels is None:
        raise ConfigError(f"dataset {data.name!r} ({data.split}) has no labels, so a feature network for FD and "
                          "precision/recall cannot be trained on it; pass --inception PATH (FID Inception "
                          "weights as safetensors) instead")


def _device_of(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def _batches(images, batch_size: int):
    """Float (B, C, H, W) batches in [0, 1] from an ImageDataset or a tensor (float or uint8)."""
    for start in range(0, len(images), batch_size):
        if torch.is_tensor(images):
            x = images[start:start + batch_size]
            yield x.float().div(255) if x.dtype == torch.uint8 else x.float()
        else:
            yield images.batch(torch.arange(start, min(start + batch_size, len(images))))


def extract_features(net: nn.Module, images, batch_size: int = 250) -> Tensor:
    """`net.features` of every image (an ImageDataset or a tensor (N, C, H, W)), in eval mode.
    -> float32 (N, D) on the CPU"""
    device = _device_of(net)
    with eval_mode(net), channels_last_while(net, device), torch.no_grad():
        out = [net.features(x.to(device)).float().cpu() for x in _batches(images, batch_size)]
    return torch.cat(out)


def _accuracy(net: FeatureNet, data, batch_size: int = 500) -> float:
    device, correct = _device_of(net), 0
    with eval_mode(net):
        for start, x in zip(range(0, len(data), batch_size), _batches(data, batch_size)):
            y = data.labels[start:start + batch_size].to(device)
            correct += int((net(x.to(device)).argmax(1) == y).sum())
    return correct / len(data)


def train_feature_net(train_data, test_data, recipe: FeatureNetRecipe = FeatureNetRecipe(),
                      progress: Callable[[str], None] | None = None,
                      device: str | torch.device = "cpu") -> tuple[FeatureNet, dict]:
    """Train a FeatureNet on the labelled `train_data` with `recipe`; deterministic under its seed
    for a given device and thread count. -> (net in eval mode, info with test accuracy, sizes, seconds, recipe, ...)"""
    _require_labels(train_data)
    _require_labels(test_data)
    if train_data.image_shape != test_data.image_shape:
        raise ConfigError(f"train and test images differ in shape: {train_data.image_shape} vs {test_data.image_shape}")
    c, h, w = train_data.image_shape
    if c not in (1, 3) or not (8 <= min(h, w) and max(h, w) <= 128):
        raise ConfigError(f"feature network supports 1 or 3 channels and 8..128 pixels, got {c}x{h}x{w}; "
                          "pass --size and --channels to bring the data there")
    n = len(train_data) if recipe.max_train_images is None else min(recipe.max_train_images, len(train_data))
    # a uniform sample, never the first n (a split may be stored by class or by factor)
    subset = torch.arange(n) if n == len(train_data) else fixed_sample(len(train_data), n, recipe.seed)
    start_time = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        net = FeatureNet(c, _num_classes(train_data), recipe.widths, recipe.feature_dim).to(device)
    net = net.to(memory_format=torch.channels_last)  # ~1.3-1.8x faster CPU convolutions; same weights
    order_rng = torch.Generator().manual_seed(recipe.seed)
    opt = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    steps, step = recipe.epochs * math.ceil(n / recipe.batch_size), 0
    net.train()
    shown = TaskProgress("feature net training", steps, "steps", enabled=progress is not None)
    for epoch in range(recipe.epochs):
        order = subset[torch.randperm(n, generator=order_rng)]
        total = 0.0
        for start in range(0, n, recipe.batch_size):
            idx = order[start:start + recipe.batch_size]
            x = train_data.batch(idx).to(device, memory_format=torch.channels_last)
            y = train_data.labels[idx].to(device)
            for group in opt.param_groups:
                group["lr"] = recipe.lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            step += 1
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            shown.advance()
        if progress is not None:
            progress(f"feature net: epoch {epoch + 1}/{recipe.epochs}, train loss {total / n:.4f}, "
                     f"{time.perf_counter() - start_time:.0f} s")
    shown.close()
    net = net.to(memory_format=torch.contiguous_format)
    accuracy = _accuracy(net, test_data)
    net.eval()
    info = {"dataset": train_data.name, "image_shape": [c, h, w], "classes": train_data.classes,
            "n_train": n, "n_test": len(test_data), "test_accuracy": accuracy,
            "seconds": round(time.perf_counter() - start_time, 2),
            "recipe": {**dataclasses.asdict(recipe), "widths": list(recipe.widths)}}  # as JSON gives it back
    if progress is not None:
        progress(f"feature net: test accuracy {accuracy:.4f} ({info['seconds']:.0f} s)")
    return net, info


def _json_path(path: Path) -> Path:
    return path.with_suffix(".json") if path.suffix == ".safetensors" else path.with_name(path.name + ".json")


def save_feature_net(net: FeatureNet, info: dict, path: str | Path) -> None:
    """Weights to `path` (safetensors) and info + architecture to the .json beside it, each written
    under a temporary name and renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    write_json_atomic(_json_path(path), {"format": FORMAT, "format_version": FORMAT_VERSION,
                                         "architecture": net.arch, **info})


def load_feature_net(path: str | Path) -> tuple[FeatureNet, dict]:
    """Rebuild a FeatureNet from the JSON beside `path` and load its safetensors weights.
    -> (net in eval mode on the CPU, info)"""
    path = Path(path)
    meta_path = _json_path(path)
    try:
        info = json.loads(meta_path.read_text())
        arch = info["architecture"]
        if info.get("format") != FORMAT:
            raise KeyError("format")
        net = FeatureNet(int(arch["in_channels"]), int(arch["num_classes"]), tuple(arch["widths"]),
                         int(arch["feature_dim"]))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{meta_path}: missing or not a vaekit feature-net description ({e})") from None
    tensors = read_safetensors(path)
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not fit the feature net described in {meta_path.name}: "
                              f"{' '.join(str(e).split())[:300]}") from None
    return net.eval(), info


def feature_net_folder() -> Path:
    """$VAEKIT_CACHE/feature-nets (cache default ~/.cache/vaekit): the feature nets and what is cached beside them."""
    return Path(os.environ.get("VAEKIT_CACHE") or Path.home() / ".cache" / "vaekit").expanduser() / "feature-nets"


def default_feature_net_path(dataset_name: str, image_shape: tuple[int, int, int]) -> Path:
    """feature_net_folder()/<name>-<C>x<H>x<W>.safetensors."""
    c, h, w = image_shape
    safe_name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in dataset_name)
    return feature_net_folder() / f"{safe_name}-{c}x{h}x{w}.safetensors"


def get_feature_net(train_data, test_data, path: str | Path | None = None,
                    progress: Callable[[str], None] | None = None, recipe: FeatureNetRecipe = FeatureNetRecipe(),
                    device: str | torch.device = "cpu") -> tuple[FeatureNet, dict]:
    """The cached feature net for this dataset and image shape, trained with `recipe` and saved on
    first use. A cached net is reused as it is, whatever `recipe` says now (info["recipe"] is what
    it was trained with); one for another image shape is refused. -> (net in eval mode, info)"""
    path = Path(path) if path is not None else default_feature_net_path(train_data.name, train_data.image_shape)
    if path.exists():
        net, info = load_feature_net(path)
        if tuple(info.get("image_shape", ())) != tuple(train_data.image_shape):
            raise CheckpointError(f"{path} was trained on {info.get('dataset')!r} images of shape "
                                  f"{tuple(info.get('image_shape', ()))}, not {tuple(train_data.image_shape)}; "
                                  "delete it or give another path")
        return net.to(device), info
    net, info = train_feature_net(train_data, test_data, recipe, progress, device)
    save_feature_net(net, info, path)
    if progress is not None:
        progress(f"feature net saved to {path}")
    return net, info
