"""ImageDataset, the dataset registry and load_dataset.

Every dataset is one `DatasetSpec` registered by name; its loader returns the
split as uint8 (N, C, H, W). `load_dataset` checks the arguments, calls the
loader, then brings the images to the requested `size`/`channels` if the
loader did not already, and keeps a few recent results in memory.

A generated dataset (dsprites) is a subclass that holds no image tensor
(`images` is None): it overrides `__len__`, `image_shape`, `batch`, `subset`
and `conformed`, and renders its images in `batch`.
"""

from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from vaekit.errors import DataError

SPLITS = ("train", "test")
MIN_SIZE = 8


@dataclass(repr=False)
class ImageDataset:
    """One split of an image dataset, held in memory as uint8 (N, C, H, W).

    Read images through `batch`: only it works for every dataset, generated ones included.
    """

    name: str
    split: str
    images: torch.Tensor | None  # None only in subclasses that render in `batch` (dsprites)
    labels: torch.Tensor | None
    classes: list[str] | None
    source: str

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor):
            raise ValueError(f"ImageDataset.images must be a uint8 tensor (N, C, H, W), got {type(self.images).__name__}")
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"ImageDataset.images must be uint8 (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        self.images = self.images.contiguous()
        if self.labels is not None:
            if self.labels.shape != (len(self.images),):
                raise ValueError(
                    f"ImageDataset.labels must have shape ({len(self.images)},), "
                    f"got {tuple(self.labels.shape)}"
                )
            self.labels = self.labels.to(torch.int64).contiguous()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        # The default dataclass repr would print every pixel.
        c, h, w = self.image_shape
        n_classes = len(self.classes) if self.classes is not None else None
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"shape=({c}, {h}, {w}), labels={self.labels is not None}, "
            f"classes={n_classes}, source={self.source!r})"
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        """Images at `index` as float32 (B, C, H, W) in [0, 1]."""
        return self.images[index].float().div_(255)

    def subset(self, n: int) -> ImageDataset:
        """The first `n` items (all of them if there are fewer)."""
        if n < 0:
            raise ValueError(f"subset size must be >= 0, got {n}")
        return dataclasses.replace(
            self,
            images=self.images[:n],
            labels=None if self.labels is None else self.labels[:n],
        )

    def conformed(self, size: int | None, channels: int | None) -> ImageDataset:
        """This split with its images brought to `size`/`channels` (see `conform`)."""
        return dataclasses.replace(self, images=conform(self.images, size, channels))


def fixed_sample(total: int, n: int | None = None, seed: int = 0) -> torch.Tensor:
    """Positions (int64) of a fixed uniform sample of `n` of `total` items (all of them when `n` is
    None or >= total), in a random order, so that every prefix is itself a uniform sample.

    What evaluations read instead of "the first n": a split's order need not be random (dSprites is
    stored by factor, image folders by class), and its first n images would be one class. The same
    `seed` gives the same images, so runs are compared on the same sample.
    """
    k = total if n is None else min(n, total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:k]


# A loader gets (split, root, size, channels) and returns the split. It may
# ignore size/channels: load_dataset conforms the result afterwards.
Loader = Callable[[str, Path | None, int | None, int | None], ImageDataset]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: how to load it and how to tell the user where it lives."""

    name: str
    description: str
    load: Loader
    # locate(root) -> (where it would be read from, whether it is there)
    locate: Callable[[Path | None], tuple[str, bool]]
    note: str  # how to get it when it is missing


_REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def dataset_names() -> list[str]:
    return sorted(_REGISTRY)


def describe_datasets() -> list[dict]:
    """One dict per registered dataset, for `vaekit datasets`-style listings."""
    rows = []
    for name in dataset_names():
        spec = _REGISTRY[name]
        location, available = spec.locate(None)
        rows.append(
            {
                "name": name,
                "description": spec.description,
                "location": location,
                "available": bool(available),
                "note": "" if available else spec.note,
            }
        )
    return rows


# Small LRU of loaded splits: a run loads train and test, evaluation loads
# them again; re-reading and re-decoding would be wasted time.
_CACHE: OrderedDict[tuple, ImageDataset] = OrderedDict()
_CACHE_ENTRIES = 4


def clear_cache() -> None:
    _CACHE.clear()


def load_dataset(
    name: str,
    split: str = "train",
    *,
    root: str | None = None,
    size: int | None = None,
    channels: int | None = None,
) -> ImageDataset:
    """Load one split of a registered dataset as uint8 (N, C, H, W).

    `size` resizes the shorter side to `size` and centre-crops to size x size;
    `channels` (1 or 3) converts to gray or RGB. Both are optional.
    """
    spec = _REGISTRY.get(name)
    if spec is None:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(dataset_names())}")
    if split not in SPLITS:
        raise DataError(f"{name}: unknown split {split!r}; use 'train' or 'test'")
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise DataError(f"{name}: channels must be 1 (gray) or 3 (RGB), got {channels!r}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE):
        raise DataError(f"{name}: size must be an integer >= {MIN_SIZE}, got {size!r}")

    root_path = Path(root).expanduser().resolve() if root is not None else None
    # VAEKIT_DATA changes where a root-less dataset is read from, so it is part of the key.
    key = (name, split, str(root_path), size, channels, os.environ.get("VAEKIT_DATA"))
    cached = _CACHE.get(key)
    if cached is not None:
        _CACHE.move_to_end(key)
        return dataclasses.replace(cached)  # a fresh object sharing the tensors

    try:
        dataset = spec.load(split, root_path, size, channels)
        dataset = dataset.conformed(size, channels)
    except DataError as e:
        message = printable(str(e))
        if message != str(e):  # a file name that is not UTF-8: printing it would raise UnicodeEncodeError
            raise DataError(message) from None
        raise
    except MemoryError:
        what = f" at data.size={size}" if size is not None else ""
        raise DataError(f"{name}: the {split} split{what} does not fit in memory; "
                        f"{'choose a smaller data.size' if size is not None else 'use fewer or smaller images'}") from None
    if len(dataset) == 0:  # every loader refuses this itself; a last guard for new ones
        raise DataError(f"{name}: the {split} split of {dataset.source} has no images; add images to it")
    _CACHE[key] = dataset
    while len(_CACHE) > _CACHE_ENTRIES:
        _CACHE.popitem(last=False)
    return dataclasses.replace(dataset)


def printable(text: str) -> str:
    """`text` with the bytes of file names that are not UTF-8 (surrogate escapes) shown as \\xNN."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no file name produced
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def conform(images: torch.Tensor, size: int | None, channels: int | None) -> torch.Tensor:
    """Convert uint8 (N, C, H, W) to `channels` and to size x size (shorter side, centre crop).

    Returns `images` itself when nothing needs to change.
    """
    if channels == 1 and images.shape[1] == 3:
        # Same weights as Pillow's RGB -> L, so gray looks alike for every dataset.
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        images = (images.float() * weights).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    if size is not None and images.shape[2:] != (size, size):
        images = _resize_and_crop(images, size)
    if channels == 3 and images.shape[1] == 1:
        # After resizing: three identical planes are three times the work.
        images = images.expand(-1, 3, -1, -1).contiguous()
    return images


def _resize_and_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    h, w = images.shape[2:]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    try:
        out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    except RuntimeError as e:  # torch's allocator says "can't allocate memory"
        raise MemoryError(str(e)) from None
    # In chunks: the float copy of a whole up-scaled dataset could take gigabytes.
    for start in range(0, images.shape[0], 4096):
        chunk = images[start : start + 4096].float()
        chunk = F.interpolate(chunk, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False)
        chunk = chunk[:, :, top : top + size, left : left + size]
        out[start : start + 4096] = chunk.round_().clamp_(0, 255).to(torch.uint8)
    return out
