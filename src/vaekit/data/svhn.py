"""SVHN (Street View House Numbers, cropped digits; Netzer et al. 2011) from the user's own .mat files.

The "Format 2" files `train_32x32.mat` and `test_32x32.mat` (http://ufldl.stanford.edu/housenumbers/)
hold `X`, uint8 (32, 32, 3, N), and `y`, (N, 1) labels 1-10 where 10 is the digit 0. They are read
with `scipy.io.loadmat` (MATLAB v5, never unpickles), from `data.root` if given, else
`$VAEKIT_DATA/svhn/`. Nothing is downloaded. `extra_32x32.mat` is not read.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch

from vaekit.data.dataset import DatasetSpec, ImageDataset, register
from vaekit.data.idx import _search_folders
from vaekit.errors import DataError

NAME = "svhn"
URL = "http://ufldl.stanford.edu/housenumbers/"
FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
CLASSES = [str(d) for d in range(10)]
IMAGE_SHAPE = (32, 32, 3)  # (H, W, C) of X, then N

HINT = (
    f"download {FILES['train']} and {FILES['test']} (Format 2, cropped digits) from {URL} and put them in "
    f"$VAEKIT_DATA/{NAME}/, or point --set data.root=DIR at the folder that holds them"
)

# MAT v5 codes (scipy.io.matlab._mio5_params).
_MI_INT8, _MI_UTF8, _MI_MATRIX, _MI_COMPRESSED = 1, 16, 14, 15
_MI_NUMERIC = {1, 2, 3, 4, 5, 6, 7, 9, 12, 13}  # int8 ... uint64: the element types numeric data has
_MX_NUMERIC = range(6, 16)  # mxDOUBLE_CLASS ... mxUINT64_CLASS
_MX_NAMES = {1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse", 16: "function", 17: "opaque"}


def _find(folder: Path, split: str) -> Path | None:
    """The split's file in `folder` if anything is there under its name (a folder or a broken link
    too, so that reading it says what is wrong instead of "not found")."""
    path = folder / FILES[split]
    return path if path.exists() or path.is_symlink() else None


def _tag(buf: bytes, off: int, order: str) -> tuple[int, int, int, int] | None:
    """One MAT v5 element tag at `off`, read as scipy reads it (small data elements included):
    (data type, byte count, where the data starts, where the next element starts); None past the end."""
    if off + 8 > len(buf):
        return None
    mdtype, count = struct.unpack_from(order + "II", buf, off)
    if mdtype >> 16:  # small data element: type and count in the first 4 bytes, data in the next 4
        return mdtype & 0xFFFF, mdtype >> 16, off + 4, off + 8
    return mdtype, count, off + 8, off + 8 + count + (-count % 8)


def _matrix_header(body: bytes, order: str) -> tuple[int, bool, str, int | None] | None:
    """(class, complex?, name, data type of the real part) of the miMATRIX whose contents start `body`;
    None where scipy would itself refuse the header (it raises then, so nothing needs checking)."""
    if len(body) < 16:
        return None
    flags = struct.unpack_from(order + "I", body, 8)[0]
    mclass, is_complex = flags & 0xFF, bool(flags >> 11 & 1)
    off = 16
    if mclass != 17:  # every class but opaque has dims before its name
        dims = _tag(body, off, order)
        if dims is None or dims[0] not in (5, 6) or dims[1] > 128:
            return None
        off = dims[3]
    name = _tag(body, off, order)
    if name is None or name[0] not in (_MI_INT8, _MI_UTF8) or name[2] + name[1] > len(body):
        return None
    data = _tag(body, name[3], order)
    return mclass, is_complex, body[name[2] : name[2] + name[1]].decode("latin1"), None if data is None else data[0]


def _check_mat5(f, path: Path) -> None:
    """Refuse what would crash scipy rather than make it raise.

    scipy (1.17 at least) looks up the data type code of a numeric element in a 20-slot table without a
    range check, so a corrupt code in X or y ends the process with a segmentation fault. Walk the
    file's top-level variables as loadmat does and check X's and y's headers first. Anything else
    malformed is left to loadmat, which raises on it.
    """
    f.seek(0)
    head = f.read(128)
    # loadmat's own test: a zero in the first 4 bytes is v4; the version byte is next to "I" at 124-127.
    if len(head) < 128 or 0 in head[:4] or head[124 + (head[126] == ord("I"))] != 1:
        return
    order = "<" if head[126:128] == b"IM" else ">"
    size = f.seek(0, 2)
    pos, wanted = 128, {"X", "y"}
    while wanted and pos + 8 <= size:
        f.seek(pos)
        mdtype, count = struct.unpack(order + "II", f.read(8))
        if count == 0:
            return
        if mdtype == _MI_COMPRESSED:
            try:
                inner = zlib.decompressobj().decompress(f.read(min(count, 1 << 16)), 4096)
            except zlib.error:
                return
            if len(inner) < 8:
                return
            mdtype = struct.unpack_from(order + "I", inner)[0]
            body = inner[8:]
        else:
            body = f.read(4096)  # scipy reads the header from the file, past `count` if it says so
        if mdtype != _MI_MATRIX:
            return
        header = _matrix_header(body, order)
        if header is None:
            return
        mclass, is_complex, name, data_type = header
        if name in wanted:
            wanted.discard(name)
            what = "images" if name == "X" else "labels"
            if mclass not in _MX_NUMERIC:
                kind = _MX_NAMES.get(mclass, f"class-{mclass}")
                raise DataError(f"{path}: {name} is a MATLAB {kind} array, expected numeric {what}; "
                                f"not an SVHN Format 2 file")
            if is_complex:
                raise DataError(f"{path}: {name} is complex, expected real {what}; not an SVHN Format 2 file")
            if data_type is not None and data_type not in _MI_NUMERIC:
                raise DataError(f"{path}: corrupt MAT file ({name} has data of unknown type code {data_type}); "
                                f"download it again from {URL}")
        pos += 8 + count


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _loadmat(path: Path) -> dict:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError(f"{NAME}: reading .mat files needs scipy; install it with `pip install scipy`") from None
    try:
        with open(path, "rb") as f:
            _check_mat5(f, path)
            f.seek(0)
            with warnings.catch_warnings():
                # Duplicate or unreadable variables are warnings to scipy; what matters is checked below.
                warnings.simplefilter("ignore")
                return loadmat(f, variable_names=("X", "y"))
    except DataError:
        raise
    except NotImplementedError:  # scipy's answer to a v7.3 file
        raise DataError(
            f"{path}: MATLAB v7.3 (HDF5) files are not supported; use the Format 2 files "
            f"{FILES['train']} / {FILES['test']} from {URL}"
        ) from None
    except MemoryError:
        raise DataError(f"{path}: claims more data than fits in memory; a corrupt MAT file? "
                        f"download it again from {URL}") from None
    except OSError as e:
        if e.errno is not None:  # from open() or the file system, not scipy's "could not read bytes"
            raise DataError(f"{path}: cannot read the file ({e.strerror or e})") from None
        raise DataError(f"{path}: truncated or corrupt MAT file ({_one_line(e)}); "
                        f"download it again from {URL}") from None
    except Exception as e:  # whatever else scipy raises on a malformed file (ValueError, TypeError, MatReadError, ...)
        raise DataError(f"{path}: not a readable MAT file ({type(e).__name__}: {_one_line(e)}); "
                        f"download it again from {URL}") from None


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {'x'.join(map(str, value.shape))}"
    return type(value).__name__


def read_svhn_mat(path: Path, split: str) -> ImageDataset:
    """One SVHN Format 2 file as uint8 (N, 3, 32, 32) images and int64 labels 0-9."""
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file"
        raise DataError(f"{path}: is {what}, not a MAT file; remove it or put {path.name} there")
    mat = _loadmat(path)
    missing = [key for key in ("X", "y") if key not in mat]
    if missing:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(
            f"{path}: no {' or '.join(missing)} in the MAT file (it has {', '.join(found) or 'no variables'}); "
            f"SVHN Format 2 files hold X (32x32x3xN images) and y (Nx1 labels)"
        )
    x, y = mat["X"], mat["y"]
    for key, value in (("X", x), ("y", y)):
        if isinstance(value, str):  # scipy's stand-in for a variable it could not read
            raise DataError(f"{path}: cannot read {key} ({_one_line(value)}); download the file again from {URL}")
    if isinstance(x, np.ndarray) and x.shape == IMAGE_SHAPE:
        x = x[..., None]  # MATLAB drops a trailing singleton: a file of one image
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[:3] != IMAGE_SHAPE or x.dtype != np.uint8:
        raise DataError(f"{path}: X is {_describe(x)}, expected uint8 32x32x3xN images (SVHN Format 2)")
    n = x.shape[3]
    if n == 0:
        raise DataError(f"{path}: contains no images")
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "iuf":
        raise DataError(f"{path}: y is {_describe(y)}, expected numeric labels 1-10")
    if y.size != n or y.ndim > 2 or (y.ndim == 2 and 1 not in y.shape):
        raise DataError(f"{path}: y is {'x'.join(map(str, y.shape))} but X has {n} images; expected {n}x1 labels")
    y = y.reshape(-1)
    bad = ~np.isin(y, np.arange(1, 11))  # also catches NaN and non-integers in a float y
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        value = y[i].item()
        raise DataError(
            f"{path}: label {value:g} at position {i} is outside 1-10 ({int(bad.sum())} such labels); "
            f"SVHN Format 2 labels are 1-10, 10 meaning the digit 0"
        )
    labels = torch.from_numpy(y.astype(np.int64) % 10)  # 10 -> digit 0
    # X[h, w, c, n] -> images[n, c, h, w]: the one copy of the pixels.
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))
    del mat, x
    return ImageDataset(name=NAME, split=split, images=images, labels=labels, classes=CLASSES, source=str(path))


def _pick_folder(root: Path | None) -> tuple[list[Path], Path | None]:
    folders = _search_folders(NAME, root, None)
    for folder in folders:
        if _find(folder, "train") or _find(folder, "test"):
            return folders, folder
    return folders, None


def _load(split: str, root: Path | None, size: int | None, channels: int | None) -> ImageDataset:
    # size/channels are left to load_dataset: both splits are 32x32, so nothing here depends on them.
    folders, folder = _pick_folder(root)
    if folder is None:
        if folders:
            where = "looked in " + ", ".join(map(str, folders))
        else:
            where = "no data.root given and VAEKIT_DATA is not set"
        raise DataError(f"{NAME}: .mat files not found ({where}); {HINT}")
    path = _find(folder, split)
    if path is None:
        raise DataError(f"{NAME}: no {split} file in {folder} (looked for {FILES[split]}); {HINT}")
    return read_svhn_mat(path, split)


def _locate(root: Path | None) -> tuple[str, bool]:
    folders, folder = _pick_folder(root)
    if folder is not None:
        return str(folder), True
    return (str(folders[0]) if folders else f"$VAEKIT_DATA/{NAME}/ (VAEKIT_DATA is not set)"), False


register(
    DatasetSpec(
        name=NAME,
        description="SVHN: 32x32 colour house-number digits, 10 classes, 73,257 train / 26,032 test (the .mat files)",
        load=_load,
        locate=_locate,
        note=HINT,
    )
)
