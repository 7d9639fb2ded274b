"""dSprites (Matthey et al. 2017, "dSprites: Disentanglement testing Sprites dataset"), generated here.

All 737,280 binary 64x64 images of the original: every combination of shape (square, ellipse,
heart), scale (6 values, linspace(0.5, 1)), orientation (40 values, linspace(0, 2*pi)), pos_x and
pos_y (32 values each, linspace(0, 1)). Image `i` has the factors of row `i` of the original's
`latents_classes` (without its single-valued color column): the index is row-major over
(shape, scale, orientation, pos_x, pos_y), so pos_y varies fastest.

Rendering (an approximation of DeepMind's pixels, not a reproduction):
- Coordinates are in pixels, x to the right, y down the rows; pixel (r, c) is the square
  [c, c+1] x [r, r+1]. A pixel is on when its centre (c + 0.5, r + 0.5) lies inside the shape:
  no anti-aliasing, no threshold to tune, the same bits on every run.
- At scale 1 the square is 20 x 20 px, the ellipse 20 x 10 px (long axis horizontal at
  orientation 0) and the heart 20 px wide and about 18 px tall (a square turned 45 degrees with a
  disc on each upper side, tip down); scale multiplies all lengths.
- Orientation rotates the shape counter-clockwise as seen on screen. Like the original, the first
  and last orientation (0 and 2*pi) give the same image, and the square repeats every 90 degrees.
- The shape's centre sits on a pixel corner: x = 16 + 31 * pos_x, y = 16 + 31 * pos_y, i.e. 16 to 47
  in whole pixels, one pixel per position step. At scale 1 the square at 45 degrees reaches
  14.2 px from its centre, so every sprite stays inside the 64 x 64 frame.

Speed and memory: the 3 x 6 x 40 = 720 sprites are drawn once (32 x 32 crops) and laid out on one
2.9 MB tape of zeros so that every image is a contiguous 4096-byte stretch of it (see `_windows`):
rendering a batch is one `index_select`. Nothing else is held; `batch` renders what it is asked for.
A `size`/`channels` other than 64/1 is applied to each batch by the same `conform` as for other
datasets (the images are then no longer binary).

Splits: dSprites has none. `train` is all 737,280 images (as in the disentanglement papers);
`test` is a fixed subset of 10,000 of them, chosen by a splitmix64 hash of the image index (no
library random stream, so it cannot change between versions), in the order of that hash, so its
first n images are a uniform sample. Labels are the shape (3 classes).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from vaekit.data.dataset import DatasetSpec, ImageDataset, conform, register

FACTOR_NAMES = ["shape", "scale", "orientation", "pos_x", "pos_y"]
FACTOR_SIZES = [3, 6, 40, 32, 32]
SHAPES = ["square", "ellipse", "heart"]
# The real value of each factor setting, as in the original's `latents_values`
# (shape is stored there as 1, 2, 3).
FACTOR_VALUES = [
    np.array([1.0, 2.0, 3.0]),
    np.linspace(0.5, 1.0, 6),
    np.linspace(0.0, 2 * np.pi, 40),
    np.linspace(0.0, 1.0, 32),
    np.linspace(0.0, 1.0, 32),
]
N_IMAGES = math.prod(FACTOR_SIZES)  # 737,280
N_SPRITES = math.prod(FACTOR_SIZES[:3])  # 720: one per (shape, scale, orientation)
# Index strides of (shape, scale, orientation, pos_x, pos_y): row-major, pos_y fastest.
STRIDES = [math.prod(FACTOR_SIZES[k + 1 :]) for k in range(len(FACTOR_SIZES))]

IMAGE_SIZE = 64
SPRITE_SIZE = 32  # crop around the shape's centre; the largest shape reaches 14.2 px from it
FIRST_CENTRE = 16  # centre of pos 0 in pixels; pos k is at 16 + k (k = 0..31)
HALF = 10.0  # half the width of every shape at scale 1, in pixels

TEST_SIZE = 10_000
TEST_SEED = 0


# ---------------------------------------------------------------- factors and indices


def _as_long(x) -> torch.Tensor:
    return torch.as_tensor(x).to(torch.int64)


def factors_to_index(factors) -> torch.Tensor:
    """Image indices of factor settings (n, 5) int64 (value indices). -> (n,) int64"""
    factors = _check_factors(factors)
    return factors @ torch.tensor(STRIDES, dtype=torch.int64)


def index_to_factors(index) -> torch.Tensor:
    """Factor settings (value indices) of image indices (n,). -> (n, 5) int64"""
    index = _as_long(index).reshape(-1)
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= N_IMAGES):
        raise IndexError(f"dsprites image index out of range [0, {N_IMAGES})")
    stride = torch.tensor(STRIDES, dtype=torch.int64)
    size = torch.tensor(FACTOR_SIZES, dtype=torch.int64)
    return (index[:, None] // stride) % size


def factor_values(factors) -> torch.Tensor:
    """The real values of factor settings (n, 5) int64, as in the original. -> (n, 5) float64"""
    factors = _check_factors(factors)
    return torch.stack([torch.from_numpy(values)[factors[:, k]] for k, values in enumerate(FACTOR_VALUES)], 1)


def _check_factors(factors) -> torch.Tensor:
    factors = _as_long(factors)
    if factors.dim() != 2 or factors.shape[1] != len(FACTOR_SIZES):
        raise ValueError(f"dsprites factors must be (n, {len(FACTOR_SIZES)}), got {tuple(factors.shape)}")
    if factors.numel():
        size = torch.tensor(FACTOR_SIZES)
        if bool((factors < 0).any()) or bool((factors >= size).any()):
            raise ValueError(f"dsprites factor index out of range; sizes are {FACTOR_SIZES} ({FACTOR_NAMES})")
    return factors


# ---------------------------------------------------------------- drawing


def _inside(shape: int, u: np.ndarray, v: np.ndarray, scale) -> np.ndarray:
    """Whether points (u right, v up; relative to the centre, unrotated) lie inside the shape."""
    half = HALF * scale
    if shape == 0:  # square, side 2 * half
        return np.maximum(np.abs(u), np.abs(v)) < half
    if shape == 1:  # ellipse, semi-axes half and half / 2
        return (u / half) ** 2 + (v / (half / 2)) ** 2 < 1
    # Heart: a square turned 45 degrees (half-diagonal d) with a disc on each upper side (the
    # side as diameter). Its width is d * (1 + sqrt 2) = 2 * half; its top is 1.207 d above
    # the square's centre and its tip d below, so shift by their mean to centre the heart.
    d = 2 * half / (1 + math.sqrt(2))
    v = v + d * (1 / 2 + 1 / math.sqrt(2) - 1) / 2
    r2 = d * d / 2
    return (
        (np.abs(u) + np.abs(v) < d)
        | ((u - d / 2) ** 2 + (v - d / 2) ** 2 < r2)
        | ((u + d / 2) ** 2 + (v - d / 2) ** 2 < r2)
    )


def draw_sprite(shape: int, scale, angle, size: int = SPRITE_SIZE) -> np.ndarray:
    """A shape centred in a size x size crop (centre on the crop's middle pixel corner).

    `scale` and `angle` may be arrays that broadcast (e.g. (6, 1, 1, 1) and (40, 1, 1)); the
    result is bool (..., size, size). Rows go down, so image y = -v.
    """
    if shape not in (0, 1, 2):
        raise ValueError(f"dsprites shape must be 0, 1 or 2 ({', '.join(SHAPES)}), got {shape!r}")
    offsets = np.arange(size) + 0.5 - size / 2  # pixel centres relative to the shape's centre
    x, y_up = offsets[None, :], -offsets[:, None]
    angle = np.asarray(angle, dtype=np.float64)[..., None, None]
    scale = np.asarray(scale, dtype=np.float64)[..., None, None]
    # Rotating each pixel by -angle into the shape's frame turns the shape by +angle.
    c, s = np.cos(angle), np.sin(angle)
    return _inside(shape, c * x + s * y_up, -s * x + c * y_up, scale)


@functools.lru_cache(maxsize=1)
def base_sprites() -> torch.Tensor:
    """The 720 sprites, uint8 {0, 1} (3, 6, 40, 32, 32); drawn once per process."""
    scale = FACTOR_VALUES[1][:, None]  # (6, 1) x (40,) -> (6, 40, 32, 32)
    sprites = np.stack([draw_sprite(shape, scale, FACTOR_VALUES[2]) for shape in range(3)])
    # The crop must hold the whole shape, or placing it would cut it.
    assert not sprites[..., 0, :].any() and not sprites[..., -1, :].any()
    assert not sprites[..., :, 0].any() and not sprites[..., :, -1].any()
    return torch.from_numpy(sprites.astype(np.uint8))


@functools.lru_cache(maxsize=1)
def _windows() -> torch.Tensor:
    """Every image as a 4096-pixel window into one tape of sprites: a view, (L, 4096) uint8.

    The tape is 2048 zeros, then per sprite its 32 rows padded to 64 columns (2048 pixels)
    followed by 2048 zeros. An image with the sprite's top-left corner at (top, left) is the
    4096 pixels that start `top * 64 + left` before the sprite's block: the padding columns and
    the zeros around the block fill the rest of the image. So one image is one contiguous copy.
    """
    area = IMAGE_SIZE * IMAGE_SIZE
    block = torch.zeros(N_SPRITES, 2, SPRITE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    block[:, 0, :, :SPRITE_SIZE] = base_sprites().view(N_SPRITES, SPRITE_SIZE, SPRITE_SIZE)
    tape = torch.cat([torch.zeros(area // 2, dtype=torch.uint8), block.reshape(-1)])
    return tape.as_strided((tape.numel() - area + 1, area), (1, 1))


def render_images(index) -> torch.Tensor:
    """The images at image indices (n,), uint8 {0, 1} (n, 1, 64, 64)."""
    index = _as_long(index).reshape(-1)
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= N_IMAGES):
        raise IndexError(f"dsprites image index out of range [0, {N_IMAGES})")
    sprite = index // STRIDES[2]
    # Top-left corner of the 32 x 32 crop: the centre (16 + k) minus half the crop.
    left = (index // STRIDES[3]) % FACTOR_SIZES[3] + (FIRST_CENTRE - SPRITE_SIZE // 2)
    top = index % FACTOR_SIZES[4] + (FIRST_CENTRE - SPRITE_SIZE // 2)
    area = IMAGE_SIZE * IMAGE_SIZE
    start = area // 2 + sprite * area - (top * IMAGE_SIZE + left)
    return _windows().index_select(0, start).view(-1, 1, IMAGE_SIZE, IMAGE_SIZE)


# ---------------------------------------------------------------- splits


def _splitmix64(x: np.ndarray) -> np.ndarray:
    # A fixed 64-bit mixer (Steele et al. 2014): a bijection, so no two indices tie.
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@functools.lru_cache(maxsize=1)
def _test_index() -> torch.Tensor:
    # The images with the TEST_SIZE smallest hashes of their index, in the order of their hash: a fixed
    # random order, so the split's first n images are a uniform sample (by index they would all be
    # small squares, dSprites being stored factor by factor).
    with np.errstate(over="ignore"):  # the mixer relies on uint64 wrap-around
        h = _splitmix64(np.arange(N_IMAGES, dtype=np.uint64) + np.uint64(TEST_SEED) * np.uint64(N_IMAGES))
    chosen = np.argpartition(h, TEST_SIZE)[:TEST_SIZE]
    return torch.from_numpy(chosen[np.argsort(h[chosen])].astype(np.int64))


def split_indices(split: str) -> torch.Tensor:
    """The image indices of a split: `train` all of them, ascending; `test` a fixed 10,000, in a fixed
    random order (any prefix of it a uniform sample)."""
    if split == "train":
        return torch.arange(N_IMAGES, dtype=torch.int64)
    if split == "test":
        return _test_index()
    raise ValueError(f"dsprites: unknown split {split!r}; use 'train' or 'test'")


# ---------------------------------------------------------------- the dataset


@dataclass(repr=False)
class DSpritesDataset(ImageDataset):
    """One split of dSprites. Holds only image indices and labels; `batch` renders the images.

    `images` is None. Positions `idx` below are positions in this split (as for `batch` and
    `labels`); `index[idx]` are the dSprites image indices.
    """

    index: torch.Tensor | None = None  # (N,) int64 dSprites image index of each item
    size: int = IMAGE_SIZE  # images come out (channels, size, size); other than 64/1 via `conform`
    channels: int = 1

    factor_names: ClassVar[list[str]] = FACTOR_NAMES
    factor_sizes: ClassVar[list[int]] = FACTOR_SIZES

    def __post_init__(self) -> None:
        # Nothing like ImageDataset's image checks: there is no image tensor.
        if self.images is not None:
            raise ValueError("DSpritesDataset.images must be None: its images are rendered in batch()")
        if self.index is None or self.index.dtype != torch.int64 or self.index.dim() != 1:
            raise ValueError("DSpritesDataset.index must be int64 (N,)")
        if self.labels is not None and self.labels.shape != self.index.shape:
            raise ValueError(f"DSpritesDataset.labels must have shape ({len(self.index)},)")

    def __len__(self) -> int:
        return self.index.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        """Images at positions `index` as float32 (B, C, H, W); {0, 1} at the native 64x64x1."""
        return self._finish(render_images(self.index[_as_long(index)]))

    def subset(self, n: int) -> DSpritesDataset:
        """The first `n` items (all of them if there are fewer)."""
        if n < 0:
            raise ValueError(f"subset size must be >= 0, got {n}")
        return dataclasses.replace(
            self, index=self.index[:n], labels=None if self.labels is None else self.labels[:n]
        )

    def conformed(self, size: int | None, channels: int | None) -> DSpritesDataset:
        # Other sizes/channels are applied per batch by the same `conform` as other datasets.
        return dataclasses.replace(
            self, size=self.size if size is None else size, channels=self.channels if channels is None else channels
        )

    def _finish(self, images: torch.Tensor) -> torch.Tensor:
        if (self.size, self.channels) == (IMAGE_SIZE, 1):
            return images.float()
        return conform(images * 255, self.size, self.channels).float().div_(255)

    # --- factors (FactorDataset protocol and helpers) ---

    def factors_of(self, idx) -> torch.Tensor:
        """Factor settings (value indices) of the items at positions `idx`. -> (n, 5) int64"""
        return index_to_factors(self.index[_as_long(idx)])

    def factor_values(self, factors) -> torch.Tensor:
        """Real values of factor settings (n, 5) int64. -> (n, 5) float64"""
        return factor_values(factors)

    def sample_factors(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n factor settings, each factor uniform over its values. -> (n, 5) int64"""
        columns = [torch.randint(size, (n,), generator=generator) for size in FACTOR_SIZES]
        return torch.stack(columns, 1)

    def images_from_factors(self, factors: torch.Tensor) -> torch.Tensor:
        """The images of factor settings (n, 5) int64 -> float32 (n, C, H, W), any split's."""
        return self._finish(render_images(factors_to_index(factors)))


def load_dsprites(split: str, root: Path | None = None, size: int | None = None,
                  channels: int | None = None) -> DSpritesDataset:
    """The `train` (all images) or `test` (10,000 fixed) split. `root` is ignored: nothing is read."""
    index = split_indices(split)
    dataset = DSpritesDataset(
        name="dsprites",
        split=split,
        images=None,
        labels=index // STRIDES[0],  # the shape
        classes=list(SHAPES),
        source="generated (vaekit.data.dsprites)",
        index=index,
    )
    return dataset.conformed(size, channels)


register(
    DatasetSpec(
        name="dsprites",
        description=(
            "dSprites (Matthey et al. 2017), generated here, approximating DeepMind's pixels: 737,280 binary "
            "64x64 images, 1 channel, every shape (square, ellipse, heart) x 6 scales x 40 orientations x "
            "32 x 32 positions, rendered per batch; labels = shape; train = all 737,280 images, "
            "test = a fixed 10,000 of them (index hash)"
        ),
        load=load_dsprites,
        locate=lambda root: ("generated in memory (no files)", True),
        note="",
    )
)
