"""Tests for the generated dSprites (vaekit.data.dsprites): factors, counts, pixels, splits, API."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaekit.data import DSpritesDataset, clear_cache, describe_datasets, load_dataset
from vaekit.data import dsprites
from vaekit.data.factors import FactorDataset
from vaekit.errors import DataError

N = 737_280
SIZES = [3, 6, 40, 32, 32]


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


@pytest.fixture
def train() -> DSpritesDataset:
    return load_dataset("dsprites", "train")


def image_at(ds, shape, scale, orientation, pos_x, pos_y) -> torch.Tensor:
    """The (64, 64) image of one factor setting (value indices)."""
    return ds.images_from_factors(torch.tensor([[shape, scale, orientation, pos_x, pos_y]]))[0, 0]


def box(top: int, left: int, bottom: int, right: int) -> torch.Tensor:
    """A 64 x 64 mask, 1 on rows top..bottom-1 and columns left..right-1."""
    mask = torch.zeros(64, 64)
    mask[max(top, 0) : bottom, max(left, 0) : right] = 1
    return mask


def bbox(img: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the on pixels, bottom/right exclusive."""
    on = img.nonzero()
    return int(on[:, 0].min()), int(on[:, 1].min()), int(on[:, 0].max()) + 1, int(on[:, 1].max()) + 1


# ---------------------------------------------------------------- factors and counts


def test_count_and_images_per_factor_value(train):
    assert len(train) == N == math.prod(SIZES)
    assert train.factor_names == ["shape", "scale", "orientation", "pos_x", "pos_y"]
    assert train.factor_sizes == SIZES
    factors = train.factors_of(torch.arange(len(train)))
    assert factors.shape == (N, 5) and factors.dtype == torch.int64
    for k, size in enumerate(SIZES):
        counts = torch.bincount(factors[:, k], minlength=size)
        assert counts.shape == (size,) and bool((counts == N // size).all()), train.factor_names[k]
    # Row-major over (shape, scale, orientation, pos_x, pos_y), as the original's latents_classes.
    expected = np.indices(SIZES).reshape(5, -1).T
    assert torch.equal(factors, torch.from_numpy(expected))


def test_index_factor_round_trip():
    g = torch.Generator().manual_seed(1)
    index = torch.randint(0, N, (5000,), generator=g)
    assert torch.equal(dsprites.factors_to_index(dsprites.index_to_factors(index)), index)
    factors = torch.stack([torch.randint(s, (5000,), generator=g) for s in SIZES], 1)
    assert torch.equal(dsprites.index_to_factors(dsprites.factors_to_index(factors)), factors)
    with pytest.raises(IndexError):
        dsprites.index_to_factors(torch.tensor([N]))
    with pytest.raises(ValueError):
        dsprites.factors_to_index(torch.tensor([[3, 0, 0, 0, 0]]))
    with pytest.raises(ValueError):
        dsprites.factors_to_index(torch.tensor([[0, 0, 0, 0]]))


def test_factor_values_are_the_originals(train):
    values = train.factor_values(torch.tensor([[0, 0, 0, 0, 0], [2, 5, 39, 31, 31], [1, 2, 10, 16, 3]]))
    assert values.dtype == torch.float64
    torch.testing.assert_close(values[0], torch.tensor([1.0, 0.5, 0.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(values[1], torch.tensor([3.0, 1.0, 2 * math.pi, 1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(values[2], torch.tensor([2.0, 0.7, 10 * 2 * math.pi / 39, 16 / 31, 3 / 31],
                                                       dtype=torch.float64))


# ---------------------------------------------------------------- pixels


def test_known_square_matches_a_hand_made_one(train):
    # Square, scale 1, orientation 0, pos (16/31, 16/31) ~ (0.5, 0.5). Documented geometry: the
    # centre is at 16 + 31 * pos = 32 px (a pixel corner), the side is 20 * scale = 20 px.
    img = image_at(train, 0, 5, 0, 16, 16)
    assert img.shape == (64, 64)
    inner, outer = box(23, 23, 41, 41), box(21, 21, 43, 43)
    assert bool((img >= inner).all()) and bool((img <= outer).all())  # within one pixel
    assert torch.equal(img, box(22, 22, 42, 42))  # and exactly, pixel centres inside the square
    # Same at another scale and position: side 20 * 0.7 = 14, centre (16 + 3, 16 + 30) = (19, 46).
    img = image_at(train, 0, 2, 0, 3, 30)
    cy, cx, half = 46, 19, 7
    assert torch.equal(img, box(cy - half, cx - half, cy + half, cx + half))


def test_known_ellipse_and_heart_shapes(train):
    top, left, bottom, right = bbox(image_at(train, 1, 5, 0, 16, 16))  # 20 wide, 10 tall
    assert abs((right - left) - 20) <= 1 and abs((bottom - top) - 10) <= 1
    assert abs((left + right) / 2 - 32) <= 0.5 and abs((top + bottom) / 2 - 32) <= 0.5
    heart = image_at(train, 2, 5, 0, 16, 16)
    top, left, bottom, right = bbox(heart)
    assert abs((right - left) - 20) <= 1 and 16 <= bottom - top <= 20
    widths = heart.sum(1)
    assert int(widths[top]) < 20 and int(widths[bottom - 1]) <= 2  # two lobes on top, a tip below
    assert int(widths.argmax()) < 32  # widest above the centre


def test_images_binary_nonempty_and_inside_the_frame(train):
    # Every sprite at the four corner positions and the middle: binary, not empty, not cut off
    # (same pixel count as in the middle), and the frame's outermost pixels stay off.
    sprite = torch.arange(3 * 6 * 40)
    base = torch.stack([sprite // 240, sprite // 40 % 6, sprite % 40], 1)
    counts = []
    for px, py in ((0, 0), (0, 31), (31, 0), (31, 31), (16, 16)):
        factors = torch.cat([base, torch.tensor([[px, py]]).expand(len(base), 2)], 1)
        imgs = train.images_from_factors(factors)
        assert imgs.shape == (720, 1, 64, 64) and imgs.dtype == torch.float32
        assert bool(((imgs == 0) | (imgs == 1)).all())
        assert imgs[:, 0, [0, -1], :].sum() == 0 and imgs[:, 0, :, [0, -1]].sum() == 0
        counts.append(imgs.sum((1, 2, 3)))
    assert bool((counts[-1] > 0).all())
    for c in counts[:-1]:
        assert torch.equal(c, counts[-1])


def test_position_moves_one_pixel_per_step(train):
    a, b = image_at(train, 2, 3, 7, 10, 20), image_at(train, 2, 3, 7, 11, 22)
    assert torch.equal(torch.roll(a, shifts=(2, 1), dims=(0, 1)), b)  # pos_x -> columns, pos_y -> rows


def test_rotation():
    square = dsprites.draw_sprite(0, 1.0, 0.0)
    assert np.array_equal(dsprites.draw_sprite(0, 1.0, math.pi / 2), square)
    assert np.array_equal(dsprites.draw_sprite(1, 0.8, math.pi), dsprites.draw_sprite(1, 0.8, 0.0))
    assert not np.array_equal(dsprites.draw_sprite(2, 1.0, math.pi / 2), dsprites.draw_sprite(2, 1.0, 0.0))
    sprites = dsprites.base_sprites()  # (shape, scale, orientation, 32, 32)
    assert sprites.shape == (3, 6, 40, 32, 32)
    assert torch.equal(sprites[:, :, 0], sprites[:, :, 39])  # 0 and 2 pi, as in the original
    # Orientation 10 is 92 degrees: a square nearly as at 0, an ellipse standing up.
    assert (sprites[0, 5, 10] != sprites[0, 5, 0]).sum() <= 40
    on = sprites[1, 5, 10].nonzero()
    assert on[:, 0].max() - on[:, 0].min() > on[:, 1].max() - on[:, 1].min()
    # Counter-clockwise on screen: the heart's tip (down at 0) points right, its lobes left.
    heart = sprites[2, 5, 10].float()
    cols = torch.arange(32).float()
    on = heart.nonzero()
    mass_col = float((heart.sum(0) * cols).sum() / heart.sum())
    assert mass_col < (int(on[:, 1].min()) + int(on[:, 1].max())) / 2


def test_larger_scale_more_pixels():
    counts = dsprites.base_sprites().flatten(3).sum(3)  # (3, 6, 40)
    assert bool((counts[:, 1:] > counts[:, :-1]).all())
    assert counts[0, 5, 0] == 400 and counts[0, 0, 0] == 100  # squares of side 20 and 10


# ---------------------------------------------------------------- dataset API


def test_batch_is_deterministic_and_matches_factors(train):
    idx = torch.tensor([0, 737_279, 123_456, 5, 5])
    x = train.batch(idx)
    assert x.shape == (5, 1, 64, 64) and x.dtype == torch.float32
    assert torch.equal(x, train.batch(idx))
    assert torch.equal(x[3], x[4])
    assert torch.equal(x, train.images_from_factors(train.factors_of(idx)))
    clear_cache()
    assert torch.equal(x, load_dataset("dsprites", "train").batch(idx))
    assert train.labels[idx].tolist() == train.factors_of(idx)[:, 0].tolist()
    with pytest.raises(IndexError):
        train.batch(torch.tensor([N]))


def test_factor_dataset_protocol(train):
    assert isinstance(train, FactorDataset)
    f1 = train.sample_factors(30_000, torch.Generator().manual_seed(3))
    f2 = train.sample_factors(30_000, torch.Generator().manual_seed(3))
    assert torch.equal(f1, f2) and f1.shape == (30_000, 5) and f1.dtype == torch.int64
    for k, size in enumerate(SIZES):
        counts = torch.bincount(f1[:, k], minlength=size)
        assert counts.shape == (size,) and int(counts.min()) > 0.7 * 30_000 / size  # every value, roughly evenly
    assert train.images_from_factors(f1[:7]).shape == (7, 1, 64, 64)


def test_not_generated_eagerly(train):
    # Per-batch rendering: no image tensor; what the object holds is indices and labels only.
    assert train.images is None
    held = sum(v.numel() * v.element_size() for v in vars(train).values() if isinstance(v, torch.Tensor))
    assert held < 16 * 2**20  # vs 377 MB bit-packed or 3 GB as uint8
    tape = dsprites._windows()
    assert tape.untyped_storage().nbytes() < 4 * 2**20


def test_splits_labels_and_registry():
    train, test = load_dataset("dsprites", "train"), load_dataset("dsprites", "test")
    assert len(test) == 10_000 and test.image_shape == train.image_shape == (1, 64, 64)
    index = test.index
    assert len(index.unique()) == len(index) and 0 <= int(index.min()) and int(index.max()) < N
    assert torch.equal(index, dsprites.split_indices("test"))  # fixed rule
    first = test.labels[:2000]  # any prefix is a uniform sample, not the small squares stored first
    assert all(0.25 < float(first.eq(shape).float().mean()) < 0.42 for shape in range(3))
    assert train.classes == test.classes == ["square", "ellipse", "heart"]
    assert torch.equal(test.labels, test.factors_of(torch.arange(len(test)))[:, 0])
    assert torch.equal(test.batch(torch.arange(3)), train.batch(index[:3]))
    assert 0.25 < float(test.labels.eq(0).float().mean()) < 0.42  # not all of one shape
    row = next(r for r in describe_datasets() if r["name"] == "dsprites")
    assert row["available"] is True and "Matthey" in row["description"]
    small = test.subset(4)
    assert isinstance(small, DSpritesDataset) and len(small) == 4 and small.labels.shape == (4,)
    assert torch.equal(small.batch(torch.arange(4)), test.batch(torch.arange(4)))
    assert "DSpritesDataset" in repr(test) and len(repr(test)) < 300


def test_size_and_channels_through_conform():
    native = load_dataset("dsprites", "test")
    rgb = load_dataset("dsprites", "test", channels=3)
    assert rgb.image_shape == (3, 64, 64)
    x = rgb.batch(torch.arange(4))
    assert x.shape == (4, 3, 64, 64) and torch.equal(x, native.batch(torch.arange(4)).expand(-1, 3, -1, -1))
    small = load_dataset("dsprites", "test", size=32)
    y = small.batch(torch.arange(4))
    assert small.image_shape == (1, 32, 32) and y.shape == (4, 1, 32, 32)
    assert 0 < float(y.sum()) and float(y.max()) <= 1
    with pytest.raises(DataError):
        load_dataset("dsprites", "test", size=4)


def test_mean_image_over_a_subset(train):
    from vaekit.metrics.image_quality import dataset_mean_image

    mean = dataset_mean_image(train.subset(300), batch_size=128)
    assert mean.shape == (1, 1, 64, 64) and 0 < float(mean.max()) <= 1
