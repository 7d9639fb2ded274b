"""A folder of PNG/JPEG files as a dataset (Pillow only).

Layout rules, all deterministic:
- Files are found recursively under the root (hidden files and folders,
  whose names start with ".", are skipped) and sorted by relative path.
- If `root/train` and `root/test` both exist they are the splits (one of them
  alone is refused). Otherwise a file is test when a hash of its path relative
  to root falls in 1 of 10 buckets (~10%); adding files never moves existing
  ones between splits.
- If every image sits inside a subfolder (of root, or of root/train and
  root/test), the first-level subfolder names, sorted, are the classes and
  give the labels. Otherwise labels and classes are None.
- `channels` defaults to 3 if any image in the folder (either split) is
  colour, else 1, decided from the image modes so both splits agree.
- Without `size` every image in the folder must have the same size. With it,
  the shorter side is resized to `size` (bicubic) and the centre cropped.
  Alpha is dropped.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from vaekit.data.dataset import SPLITS, DatasetSpec, ImageDataset, register
from vaekit.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
TEST_BUCKETS = 10  # 1 in TEST_BUCKETS files goes to test when there are no train/test folders
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}

# Per-file (colour?, (width, height)) keyed by (path, mtime, size): loading
# test after train must not open every header again.
_PROBE_CACHE: dict[tuple[str, int, int], tuple[bool, tuple[int, int]]] = {}


def is_test_file(relative_path: str) -> bool:
    """The split rule for folders without train/test: stable hash of the relative POSIX path."""
    # surrogateescape: a file name that is not valid UTF-8 still gets a place (valid names are unchanged)
    digest = hashlib.sha1(relative_path.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % TEST_BUCKETS == 0


def list_images(folder: Path) -> list[Path]:
    """PNG/JPEG files under `folder`, recursively, sorted by relative path."""
    found = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if path.suffix.lower() in IMAGE_SUFFIXES and not any(p.startswith(".") for p in rel.parts):
            if path.is_file():
                found.append((rel.as_posix(), path))
    return [path for _, path in sorted(found)]


def _split_files(root: Path) -> tuple[dict[str, list[Path]], dict[str, Path]]:
    """Files of each split and the folder each split's paths are relative to."""
    present = [split for split in SPLITS if (root / split).is_dir()]
    if len(present) == 2:
        bases = {split: root / split for split in SPLITS}
        return {split: list_images(bases[split]) for split in SPLITS}, bases
    if present:  # half a layout: its images would silently become one class of a hashed split
        missing = root / ("test" if present[0] == "train" else "train")
        raise DataError(
            f"{root}: has a {present[0]}/ folder but no {missing.name}/; make {missing} (a folder of images) "
            f"too, or move the images up into {root} to split them ~{100 // TEST_BUCKETS}% test by path"
        )
    files = list_images(root)
    test = [p for p in files if is_test_file(p.relative_to(root).as_posix())]
    test_set = set(test)
    return {"train": [p for p in files if p not in test_set], "test": test}, {s: root for s in SPLITS}


def _open_error(path: Path, e: Exception) -> DataError:
    return DataError(f"{path}: not a readable PNG/JPEG image ({e}); remove or replace the file")


def _probe(path: Path) -> tuple[bool, tuple[int, int]]:
    """(is colour, (width, height)) from the header, without decoding the pixels."""
    from PIL import Image

    try:
        stat = path.stat()
    except OSError as e:  # gone (or unreachable) since it was listed
        raise _open_error(path, e) from None
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _PROBE_CACHE:
        try:
            with Image.open(path) as im:
                if im.mode in ("P", "PA"):
                    palette = im.getpalette() or []
                    colour = any(
                        palette[i] != palette[i + 1] or palette[i] != palette[i + 2]
                        for i in range(0, len(palette) - 2, 3)
                    )
                else:
                    colour = im.mode not in GRAY_MODES
                _PROBE_CACHE[key] = (colour, im.size)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise _open_error(path, e) from None
    return _PROBE_CACHE[key]


def _decode(path: Path, pil_mode: str, size: int | None) -> np.ndarray:
    """One image as uint8 (H, W) or (H, W, 3), resized and centre-cropped when `size` is given."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            if size is not None:
                # Lets the JPEG decoder scale down by 1/2..1/8 while decoding; no-op for PNG.
                im.draft(pil_mode, (size, size))
            if im.mode in SIXTEEN_BIT_MODES:
                # Pillow's I;16 -> L (and -> RGB) conversion clips instead of scaling: scale to L first.
                values = np.asarray(im, dtype=np.float32) / 257.0
                im = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
            im = im.convert(pil_mode)
            if size is not None:
                im = ImageOps.fit(im, (size, size), Image.Resampling.BICUBIC)
            return np.asarray(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise _open_error(path, e) from None


def read_image(path: str | Path, shape: tuple[int, int, int]):
    """One image file as float (C, H, W) in [0, 1] at `shape`: gray or RGB, the shorter side resized
    and centre-cropped as the image-folder dataset does (`vaekit classify`)."""
    from .dataset import conform

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such image file")
    c, h, w = shape
    array = _decode(path, "L" if c == 1 else "RGB", None)
    t = torch.from_numpy(array.copy())
    t = t[None, None] if t.dim() == 2 else t.permute(2, 0, 1)[None]
    t = conform(t, h, c)
    if tuple(t.shape[2:]) != (h, w):
        raise DataError(f"{path}: cannot bring it to the run's {h}x{w} images")
    return t[0].float() / 255


def _load_image_folder(split: str, root: Path | None, size: int | None, channels: int | None) -> ImageDataset:
    if root is None:
        raise DataError("image-folder: needs a folder of PNG/JPEG images; set --set data.root=DIR")
    if not root.is_dir():
        raise DataError(f"image-folder: {root} is not a folder; set --set data.root=DIR to a folder of images")

    files, bases = _split_files(root)
    every = sorted(files["train"] + files["test"], key=lambda p: p.relative_to(root).as_posix())
    if not every:
        raise DataError(f"{root}: no PNG or JPEG images found (searched subfolders too)")
    if not files[split]:
        if bases[split] != root:  # root/train + root/test
            raise DataError(f"{bases[split]}: no images in the {split} split; add PNG/JPEG images to it")
        raise DataError(
            f"{bases[split]}: no images in the {split} split ({len(every)} in the folder); "
            f"add images or make {root / 'train'} and {root / 'test'} folders"
        )

    # Decide channels and check sizes over the whole folder so train and test match.
    probes = {path: _probe(path) for path in every}
    if channels is None:
        channels = 3 if any(colour for colour, _ in probes.values()) else 1
    if size is None:
        first = every[0]
        expected = probes[first][1]
        for path in every:
            if probes[path][1] != expected:
                w, h = probes[path][1]
                raise DataError(
                    f"{path}: image is {w}x{h} but {first.name} is {expected[0]}x{expected[1]} (width x height); "
                    f"images must all be the same size, or set --set data.size=N to resize and centre-crop"
                )
        width, height = expected
    else:
        width = height = size

    # Labels only when every image (either split) lies in a class subfolder.
    relative = {s: [p.relative_to(bases[s]).parts for p in files[s]] for s in SPLITS}
    labelled = all(len(parts) >= 2 for s in SPLITS for parts in relative[s])
    classes = labels = None
    if labelled:
        classes = sorted({parts[0] for s in SPLITS for parts in relative[s]})
        class_index = {name: i for i, name in enumerate(classes)}
        labels = torch.tensor([class_index[parts[0]] for parts in relative[split]], dtype=torch.int64)

    pil_mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(files[split]), height, width, channels), dtype=np.uint8)
    for i, path in enumerate(files[split]):
        out[i] = _decode(path, pil_mode, size).reshape(height, width, channels)
    images = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
    return ImageDataset(
        name="image-folder", split=split, images=images, labels=labels, classes=classes, source=str(bases[split])
    )


register(
    DatasetSpec(
        name="image-folder",
        description=(
            "PNG/JPEG files under data.root (recursive); root/train + root/test are the splits if present, "
            "else ~10% of files by a stable path hash are test; first-level subfolders are the classes"
        ),
        load=_load_image_folder,
        locate=lambda root: (str(root) if root else "data.root (not set)", bool(root and root.is_dir())),
        note="set --set data.root=DIR to a folder of PNG/JPEG images",
    )
)
