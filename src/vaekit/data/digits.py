"""scikit-learn's bundled 8x8 digits as a dataset (no download needed).

The data has no official split. Ours is fixed and uses no random numbers:
within each class, in the original order, every 5th image (positions 4, 9,
14, ...) is test, the rest train -- a stratified 20% test split that cannot
change between library versions.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch

from vaekit.data.dataset import DatasetSpec, ImageDataset, register
from vaekit.errors import DataError

TEST_EVERY = 5


def _sklearn_digits_file() -> Path | None:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"


@functools.lru_cache(maxsize=1)
def _all_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as uint8 (N, 8, 8) in 0-255, and their labels."""
    try:
        from sklearn.datasets import load_digits  # slow import, only when used
    except ImportError:
        raise DataError("digits: needs scikit-learn; install it with `pip install scikit-learn`") from None
    bunch = load_digits()
    # Values are counts 0-16; map 16 -> 255 so the range matches other datasets.
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return images, bunch.target.astype(np.int64)


def digits_split_index(labels: np.ndarray, split: str) -> np.ndarray:
    """Indices of `split` under the fixed every-5th-per-class rule, in original order."""
    is_test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        is_test[members[TEST_EVERY - 1 :: TEST_EVERY]] = True
    return np.flatnonzero(is_test if split == "test" else ~is_test)


def _load_digits(split: str, root: Path | None, size: int | None, channels: int | None) -> ImageDataset:
    images, labels = _all_digits()
    index = digits_split_index(labels, split)
    return ImageDataset(
        name="digits",
        split=split,
        images=torch.from_numpy(images[index][:, None].copy()),
        labels=torch.from_numpy(labels[index]),
        classes=[str(d) for d in range(10)],
        source=str(_sklearn_digits_file() or "sklearn.datasets.load_digits"),
    )


def _locate_digits(root: Path | None) -> tuple[str, bool]:
    path = _sklearn_digits_file()
    if path is None:
        return "sklearn.datasets.load_digits (scikit-learn not installed)", False
    return str(path), path.is_file()


register(
    DatasetSpec(
        name="digits",
        description=(
            "scikit-learn's bundled 8x8 handwritten digits (1,797 images, 1 channel, 0-16 scaled to 0-255); "
            "fixed split: within each class every 5th image is test (20%)"
        ),
        load=_load_digits,
        locate=_locate_digits,
        note="comes with scikit-learn: `pip install scikit-learn`",
    )
)
