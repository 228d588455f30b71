"""Data sets: IDX, .npz and .csv loading, discovery, checksummed download, the bundled mnist-mini.

Known names are `mnist`, `fashion-mnist` (four IDX files each, found on disk or fetched),
`mnist-mini` (a stratified 7,000-image subset of MNIST shipped with the package) and `xor`
(built in). Any other source is a path: a folder of IDX files, a .npz or a .csv file.
Every check of a known data set is against the SHA-256 of the *decompressed* IDX content,
since the bytes of a .gz depend on the compressor.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import http.client
import io
import math
import os
import shutil
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from numbers import Integral, Real
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import EqpropError
from ..io import check_npz_sizes, memory_bytes, write_atomic


class DataError(EqpropError):
    """A data set is missing, corrupt or malformed: says which file and what was expected."""


DATASETS = ("mnist", "fashion-mnist", "mnist-mini", "xor")
READ_CHUNK = 1 << 20  # bytes read at a time from a (decompressed) IDX file

# The four files of an IDX data set, each found as NAME or NAME.gz.
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
IDX_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

# SHA-256 of the decompressed IDX content. MNIST: ../shared/data/mnist/README.md. Fashion-MNIST:
# computed from the Debian package dataset-fashion-mnist (0.0~git20200523.55506a9-1).
CHECKSUMS = {
    "mnist": {
        TRAIN_IMAGES: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        TRAIN_LABELS: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        TEST_IMAGES: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        TEST_LABELS: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        TRAIN_IMAGES: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        TRAIN_LABELS: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        TEST_IMAGES: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        TEST_LABELS: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}

MIRRORS = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}

DIGITS = [str(d) for d in range(10)]
CLASSES = {
    "mnist": DIGITS,
    "fashion-mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
}

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MINI_RESOURCE = "data/mnist-mini.npz"

# A .npz or .csv without a test split: this stratified fraction is held out, drawn with this seed.
HOLDOUT_FRACTION = 1 / 6
HOLDOUT_SEED = 0

DOWNLOAD_TIMEOUT_S = 60.0
RETRY_DELAY_S = 1.0  # the wait before the second round over the mirrors; then 2x, 3x, ...

# IDX type codes: numpy dtype (big-endian) of each.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class Dataset:
    """Features (n, features) float64, labels (n,) int64 in 0..n_classes-1, train and test."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    source: str

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.classes)


# --------------------------------------------------------------------------- IDX files


def _read_bytes(path: Path) -> bytes:
    """An IDX file's content, decompressed when it is gzip (recognised by its magic bytes).

    Read no further than its header says it holds, and one byte more to tell extra bytes,
    and refused before reading when that is more than memory: a small compressed file
    cannot expand into all of memory."""
    try:
        with open(path, "rb") as fh:
            compressed = fh.read(2) == b"\x1f\x8b"
        with gzip.open(path) if compressed else open(path, "rb") as fh:
            head = fh.read(4)
            _check_magic(head, path)
            head += fh.read(4 * head[3])
            if len(head) < 4 + 4 * head[3]:
                return head  # _parse_idx says what is missing
            size = _idx_size(head)
            if size > memory_bytes():
                raise DataError(
                    f"{path}: its IDX header declares {size:,} bytes of data, more than this "
                    f"machine's memory ({memory_bytes():,} bytes)"
                )
            chunks, left = [head], size + 1
            while left > 0 and (chunk := fh.read(min(left, READ_CHUNK))):
                chunks.append(chunk)
                left -= len(chunk)
        return b"".join(chunks)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read it ({exc})") from None


def _idx_size(head: bytes) -> int:
    """Bytes of data after an IDX header (magic number and dimensions), in Python integers:
    a fixed-width product of the dimensions wraps around."""
    dims = [int.from_bytes(head[4 + 4 * k : 8 + 4 * k], "big") for k in range(head[3])]
    return math.prod(dims) * np.dtype(IDX_TYPES[head[2]]).itemsize


def _check_magic(data: bytes, path: Path) -> None:
    """The 4-byte magic number: two zero bytes, a known type code, at least one dimension."""
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in IDX_TYPES or data[3] == 0:
        types = ", ".join(f"0x{code:02X} ({np.dtype(t).name})" for code, t in IDX_TYPES.items())
        raise DataError(
            f"{path}: not an IDX file (magic number 0x{data[:4].hex()}); expected two zero "
            f"bytes, a type code ({types}) and the number of dimensions (at least 1)"
        )


def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    """The array in an IDX file's bytes, after checking magic number, type code and length."""
    _check_magic(data, path)
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{path}: truncated IDX header: {ndim} dimension(s) need {header} bytes, "
            f"the file has {len(data)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_TYPES[data[2]])
    expected = _idx_size(data[:header])
    if len(data) - header != expected:
        held = len(data) - header  # _read_bytes reads one byte past the declared data
        what = f"{held} (truncated)" if held < expected else "more (extra bytes at the end)"
        raise DataError(
            f"{path}: IDX dimensions {'x'.join(map(str, dims))} of {dtype.name} need {expected} "
            f"bytes after the {header}-byte header; the file has {what}"
        )
    array = np.frombuffer(data, dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: Path) -> np.ndarray:
    """The array in an IDX file, gzip-compressed or plain; DataError naming the file on any fault."""
    return _parse_idx(_read_bytes(path), path)


def _idx_length(path: Path) -> int:
    """First dimension of an IDX file, from its header alone."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
        with gzip.open(path) if head == b"\x1f\x8b" else open(path, "rb") as fh:
            data = fh.read(8)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read it ({exc})") from None
    _check_magic(data, path)
    if len(data) < 8:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes)")
    return int.from_bytes(data[4:8], "big")


def _idx_path(folder: Path, name: str) -> Path | None:
    """NAME or NAME.gz in folder (the plain file first), or None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_idx_folder(folder: Path, checksums: dict[str, str] | None, dataset: str) -> dict:
    """The four raw arrays of an IDX folder, each checked against its SHA-256 when given."""
    arrays = {}
    for name in IDX_FILES:
        path = _idx_path(folder, name)
        if path is None:
            raise DataError(
                f"{folder}: no {name} (or {name}.gz); an IDX folder holds the four files "
                f"{', '.join(IDX_FILES)}, each optionally gzip-compressed"
            )
        data = _read_bytes(path)
        if checksums is not None:
            digest = hashlib.sha256(data).hexdigest()
            if digest != checksums[name]:
                raise DataError(
                    f"{path}: checksum mismatch: the SHA-256 of its decompressed content is "
                    f"{digest}, expected {checksums[name]} for {dataset}; the file is corrupt "
                    f"or not the original. Replace it: `eqprop data fetch {dataset} --dest {folder}`"
                )
        arrays[name] = _parse_idx(data, path)
    return arrays


# --------------------------------------------------------------------------- checking arrays


def _features(x: np.ndarray, where: str) -> np.ndarray:
    """Samples as float64 rows: uint8 images scaled by 1/255 and flattened."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf" or x.ndim == 0:
        raise DataError(f"{where}: features must be an array of numbers; got {x.dtype} {x.shape}")
    scaled = x.reshape(len(x), int(np.prod(x.shape[1:]))).astype(np.float64)
    if x.dtype == np.uint8:
        scaled /= 255.0
    elif x.dtype.kind == "f" and not np.all(np.isfinite(scaled)):
        raise DataError(f"{where}: features contain NaN or infinite values")
    return scaled


def _labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    """Labels as int64, one per sample, integers >= 0."""
    y = np.asarray(y)
    if y.dtype.kind not in "biuf" or y.size != n or (y.ndim > 1 and y.size != len(y)):
        raise DataError(
            f"{where}: expected {n} integer labels (one per sample); got {y.dtype} of shape {y.shape}"
        )
    y = y.reshape(-1).astype(np.float64 if y.dtype.kind == "f" else np.int64)
    bad = ~np.isfinite(y) | (y != np.round(y)) | (y < 0) | (y >= 2**31)
    if bad.any():
        raise DataError(f"{where}: labels must be integers 0..K-1; found {y[bad][0]}")
    return y.astype(np.int64)


def _dataset(name: str, source: str, arrays: dict, classes: list[str] | None = None) -> Dataset:
    """Check and convert x_train, y_train, x_test, y_test (test optional: then held out)."""
    x = _features(arrays["x_train"], f"{source}: training set")
    y = _labels(arrays["y_train"], len(x), f"{source}: training set")
    if len(y) == 0:
        raise DataError(f"{source}: no training samples")
    if "x_test" in arrays:
        x_test = _features(arrays["x_test"], f"{source}: test set")
        y_test = _labels(arrays["y_test"], len(x_test), f"{source}: test set")
        if x_test.shape[1] != x.shape[1]:
            raise DataError(
                f"{source}: the test set has {x_test.shape[1]} features, "
                f"the training set {x.shape[1]}"
            )
    else:
        x_test, y_test = x[:0], y[:0]
    k = int(max(y.max(initial=-1), y_test.max(initial=-1))) + 1
    present = np.unique(y)
    if len(present) < k:
        first = np.append(np.flatnonzero(present != np.arange(len(present))), len(present))[0]
        raise DataError(
            f"{source}: labels must be integers 0..K-1 with every class in the training set; "
            f"the largest label is {k - 1} but {k - len(present)} class(es) never occur there, "
            f"the first being {first}"
            + (" (labels numbered from 1? subtract 1)" if first == 0 else "")
        )
    if "x_test" not in arrays:
        n_test = round(len(y) * HOLDOUT_FRACTION)
        test, train = _stratified(y, n_test, np.random.default_rng(HOLDOUT_SEED))
        x, y, x_test, y_test = x[train], y[train], x[test], y[test]
    classes = classes if classes is not None else [str(c) for c in range(k)]
    if k > len(classes):
        raise DataError(f"{source}: label {k - 1} is out of range for {len(classes)} classes")
    return Dataset(name, x, y, x_test, y_test, classes, source)


# --------------------------------------------------------------------------- sources


def _cache_dir() -> Path:
    """The per-user cache: $XDG_CACHE_HOME/eqprop, else ~/.cache/eqprop."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "eqprop"


def _search_path(name: str, path: str | Path | None) -> list[Path]:
    """Where a known IDX data set is looked for, in order."""
    places = [] if path is None else [Path(path).expanduser()]
    if os.environ.get("EQPROP_DATA_DIR"):
        places.append(Path(os.environ["EQPROP_DATA_DIR"]).expanduser() / name)
    places.append(_cache_dir() / name)
    if name == "fashion-mnist":
        places.append(DEBIAN_FASHION_MNIST)
    return places


def _mini_resource() -> Path | None:
    """The bundled mnist-mini.npz as a file on disk, or None (zipped install or not built)."""
    resource = resources.files("eqprop_cli").joinpath(MINI_RESOURCE)
    return resource if isinstance(resource, Path) and resource.is_file() else None


def _check_known(name: str) -> None:
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; the known ones are {', '.join(DATASETS)}")


def find_dataset(name: str, path: str | Path | None = None) -> Path | None:
    """The folder (mnist-mini: the .npz file) of a known data set, or None where none is found.

    Search order: `path` if given; $EQPROP_DATA_DIR/<name>; ($XDG_CACHE_HOME or
    ~/.cache)/eqprop/<name>; for fashion-mnist also /usr/share/datasets/fashion-mnist. A folder
    counts when it holds all four IDX files. mnist-mini: `path`, else the bundled file. xor is
    built in: None.
    """
    _check_known(name)
    if name == "xor":
        return None
    if name == "mnist-mini":
        if path is not None:
            return Path(path).expanduser() if Path(path).expanduser().is_file() else None
        return _mini_resource()
    for place in _search_path(name, path):
        if all(_idx_path(place, f) for f in IDX_FILES):
            return place
    return None


def _missing(name: str, path: str | Path | None) -> DataError:
    """The error for a known data set that is nowhere: where it was looked for, how to get it."""
    places = "; ".join(str(p) for p in _search_path(name, path))
    env = "" if os.environ.get("EQPROP_DATA_DIR") else " (EQPROP_DATA_DIR is not set)"
    debian = (
        " or `apt-get install dataset-fashion-mnist` (Debian/Ubuntu)"
        if name == "fashion-mnist"
        else ""
    )
    return DataError(
        f"{name}: data not found; looked for a folder holding {', '.join(IDX_FILES)} (each "
        f"optionally .gz) in: {places}{env}. Get it with `eqprop data fetch {name}`{debian}, "
        f"or point EQPROP_DATA_DIR at a folder that holds {name}/ "
        f"(`export EQPROP_DATA_DIR=/path/to/data`)"
    )


def _load_npz(file: Path | io.BytesIO, source: str) -> dict:
    try:
        check_npz_sizes(file)
        with np.load(file, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test") if k in npz}
    except (OSError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{source}: cannot read it as a .npz file ({exc})") from None
    if "x_train" not in arrays or "y_train" not in arrays:
        raise DataError(
            f"{source}: a .npz data set needs arrays x_train and y_train (and optionally "
            f"x_test, y_test); it has {', '.join(sorted(arrays)) or 'none of them'}"
        )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{source}: has only one of x_test, y_test; give both or neither")
    return arrays


def _load_csv(source: Path, label: str = "label") -> tuple[dict, list[str] | None]:
    """Features and labels of a .csv file (standard CSV quoting: "0.5" is a number), and
    the class names when the labels are names (numbered in sorted order) rather than
    numbers. A row that does not fit is refused with its line and column."""
    try:
        with open(source, encoding="utf-8", newline="") as fh:
            first = fh.readline()
            body = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{source}: cannot read it ({exc})") from None
    header = [h.strip() for h in next(csv.reader([first]), [])]
    if not body.strip():
        raise DataError(f"{source}: no data rows after the header")
    if label not in header or len(header) < 2:
        raise DataError(
            f"{source}: expected a header row with a column named `{label}` (the label column, "
            f"training.label_column) and at least one feature column; got {header}"
        )
    column = header.index(label)
    try:
        # as objects, then str: loadtxt's own dtype=str takes time and memory quadratic in
        # the number of columns (2 rows of 10,000: 30 s and 4 GB)
        rows = np.loadtxt(
            io.StringIO(body), delimiter=",", quotechar='"', ndmin=2, dtype=object
        ).astype(str)
        if rows.shape[1] != len(header):
            raise ValueError
        names = np.char.strip(rows[:, column])
        features = np.delete(rows, column, axis=1).astype(np.float64)
    except ValueError:
        raise _csv_fault(source, header, column, body) from None
    try:
        return {"x_train": features, "y_train": names.astype(np.float64)}, None
    except ValueError:  # class names: numbered in sorted order
        classes, y = np.unique(names, return_inverse=True)
        return {"x_train": features, "y_train": y}, [str(c) for c in classes]


def _csv_fault(source: Path, header: list[str], label: int, body: str) -> DataError:
    """Where a CSV data set's rows go wrong (read again with the csv module, line by line):
    a row without one value per header column, or a feature that is not a number."""
    reader = csv.reader(io.StringIO(body))
    for row in reader:
        line = reader.line_num + 1  # the header is line 1
        if not row or (row[0].lstrip().startswith("#")):
            continue  # blank lines and comments are skipped, as by the fast reader
        if len(row) != len(header):
            return DataError(
                f"{source}: line {line}: {len(row)} value(s); expected one per header column "
                f"({len(header)})"
            )
        for k, cell in enumerate(row):
            if k == label:
                continue
            try:
                float(cell)
            except ValueError:
                return DataError(
                    f"{source}: line {line}, column {k + 1} (`{header[k]}`): {cell.strip()!r} "
                    "is not a number; every column but the label must hold numbers"
                )
    return DataError(
        f"{source}: not a valid CSV data set (a header row, then one value per "
        "header column on every line)"
    )


def _load_mini(path: str | Path | None) -> Dataset:
    """The bundled mnist-mini through importlib.resources (works from a wheel), or `path`."""
    if path is not None:
        file = find_dataset("mnist-mini", path)
        if file is None:
            raise DataError(f"{path}: no such file; expected an mnist-mini .npz file")
        return _dataset("mnist-mini", str(file), _load_npz(file, str(file)), DIGITS)
    resource = resources.files("eqprop_cli").joinpath(MINI_RESOURCE)
    try:
        with resource.open("rb") as fh:
            data = io.BytesIO(fh.read())
    except OSError:
        raise DataError(
            f"{resource}: the bundled mnist-mini is missing from this installation; "
            f"reinstall eqprop (`python -m pip install --force-reinstall eqprop`)"
        ) from None
    return _dataset("mnist-mini", str(resource), _load_npz(data, str(resource)), DIGITS)


def _xor() -> Dataset:
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([0, 1, 1, 0], dtype=np.int64)
    return Dataset("xor", x, y, x.copy(), y.copy(), ["0", "1"], "built-in")


def _idx_arrays(raw: dict) -> dict:
    return {
        "x_train": raw[TRAIN_IMAGES],
        "y_train": raw[TRAIN_LABELS],
        "x_test": raw[TEST_IMAGES],
        "y_test": raw[TEST_LABELS],
    }


def load_dataset(source: str, path: str | Path | None = None, label: str = "label") -> Dataset:
    """A known data set by name (`path` overrides where it is looked for), or a path.

    A path is a folder of IDX files, a .npz (x_train, y_train, optionally x_test, y_test) or a
    .csv (a header row, a label column named ``label``, numeric feature columns; labels are
    integers 0..K-1, or class names numbered in sorted order). Without a test split a
    stratified 1/6 is held out as test (seed HOLDOUT_SEED). uint8 images are scaled by 1/255
    and flattened. Known data sets are checked against their SHA-256 checksums.
    """
    if source == "xor":
        return _xor()
    if source == "mnist-mini":
        return _load_mini(path)
    if source in CHECKSUMS:
        folder = find_dataset(source, path)
        if folder is None:
            raise _missing(source, path)
        raw = _load_idx_folder(folder, CHECKSUMS[source], source)
        return _dataset(source, str(folder), _idx_arrays(raw), CLASSES[source])
    file = Path(source).expanduser()
    if file.is_dir():
        raw = _load_idx_folder(file, None, source)
        return _dataset(source, str(file), _idx_arrays(raw))
    if not file.exists():
        raise DataError(
            f"{source}: no such file or folder, and not a known data set "
            f"({', '.join(DATASETS)}); expected a folder of IDX files, a .npz or a .csv file"
        )
    if file.suffix.lower() == ".npz":
        return _dataset(source, str(file), _load_npz(file, source))
    if file.suffix.lower() == ".csv":
        return _dataset(source, str(file), *_load_csv(file, label))
    raise DataError(
        f"{source}: unknown data file type {file.suffix or '(no suffix)'}; expected a folder "
        f"of IDX files, a .npz or a .csv file"
    )


# --------------------------------------------------------------------------- splits


def _stratified(y: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices of n samples drawn from each class in proportion, and of the rest; both sorted.

    Per-class quotas are n times the class frequency, rounded by largest remainders (ties to the
    lower class); within a class the first samples of one random permutation are taken.
    """
    order = rng.permutation(len(y))
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * n / max(len(y), 1)
    take = np.floor(quota).astype(np.int64)
    extra = np.argsort(-(quota - take), kind="stable")[: n - int(take.sum())]
    take[extra] += 1
    picked = np.zeros(len(y), dtype=bool)
    shuffled = y[order]
    for c, k in zip(classes, take, strict=True):
        picked[order[shuffled == c][:k]] = True
    return np.flatnonzero(picked), np.flatnonzero(~picked)


def _count(value: int | None, what: str, available: int, name: str) -> int | None:
    """A positive sample count that fits in what is available, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise DataError(f"{name}: {what} must be a whole number >= 1; got {value!r}")
    if value > available:
        raise DataError(f"{name}: {what} {value} is larger than the {available} samples available")
    return int(value)


def split(
    dataset: Dataset,
    *,
    validation: float | int = 0,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train, validation and test arrays: {"train": (x, y), "validation": (x, y), "test": (x, y)}.

    The validation set is carved from the training set (a fraction in [0, 1) or a count); then
    train_subset and test_subset samples are kept. Every draw is stratified by class and comes
    from one np.random.default_rng(seed); the arrays keep the data set's order.
    """
    name = dataset.name
    n_train = len(dataset.y_train)
    if isinstance(validation, bool) or not isinstance(validation, Real) or validation < 0:
        raise DataError(
            f"{name}: validation must be a fraction in [0, 1) or a count; got {validation!r}"
        )
    if isinstance(validation, Integral):
        n_val = int(validation)
    elif validation < 1:
        n_val = round(float(validation) * n_train)
    else:
        raise DataError(
            f"{name}: validation fraction {validation} must be < 1; give an integer for a count"
        )
    if n_val >= n_train:
        raise DataError(
            f"{name}: a validation set of {n_val} leaves none of the {n_train} training samples"
        )
    rng = np.random.default_rng(seed)
    val, train = _stratified(dataset.y_train, n_val, rng)
    n_sub = _count(train_subset, "train_subset", len(train), name)
    if n_sub is not None:
        train = train[_stratified(dataset.y_train[train], n_sub, rng)[0]]
    test = np.arange(len(dataset.y_test))
    n_sub = _count(test_subset, "test_subset", len(test), name)
    if n_sub is not None:
        test = _stratified(dataset.y_test, n_sub, rng)[0]

    def take(x: np.ndarray, y: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(rows) == len(y):  # every sample, in order: the arrays themselves, no copy
            return x, y
        return x[rows], y[rows]

    return {
        "train": take(dataset.x_train, dataset.y_train, train),
        "validation": take(dataset.x_train, dataset.y_train, val),
        "test": take(dataset.x_test, dataset.y_test, test),
    }


# --------------------------------------------------------------------------- augmentation


def image_side(n_features: int) -> int | None:
    """The side of a square image of ``n_features`` pixels (28 for MNIST), or None."""
    side = math.isqrt(n_features)
    return side if side * side == n_features and side > 1 else None


def shift_images(x: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Square images (flattened rows) each moved by its own random whole-pixel offset.

    Offsets along each axis are uniform in [-max_shift, max_shift]; pixels moved out of
    the frame are dropped and the ones vacated are 0 (the background of MNIST-like data).
    """
    n, features = x.shape
    side = image_side(features)
    if side is None:
        raise ValueError(f"{features} features are not a square image")
    dy, dx = rng.integers(-max_shift, max_shift + 1, size=(2, n))
    rows = np.arange(side) - dy[:, None]  # source row of each target row, per image
    cols = np.arange(side) - dx[:, None]
    inside = ((rows >= 0) & (rows < side))[:, :, None] & ((cols >= 0) & (cols < side))[:, None, :]
    images = x.reshape(n, side, side)
    moved = images[
        np.arange(n)[:, None, None],
        np.clip(rows, 0, side - 1)[:, :, None],
        np.clip(cols, 0, side - 1)[:, None, :],
    ]
    return np.where(inside, moved, 0.0).reshape(n, features)


# --------------------------------------------------------------------------- fetching


def _download(url: str, target: Path, sha256: str) -> str | None:
    """Download url to target; None when its decompressed content has this SHA-256, else why not."""
    request = urllib.request.Request(url, headers={"User-Agent": f"eqprop/{__version__}"})
    try:
        with (
            urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response,
            open(target, "wb") as fh,
        ):
            shutil.copyfileobj(response, fh, length=1 << 20)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return str(getattr(exc, "reason", None) or exc)
    try:
        digest = hashlib.sha256(_read_bytes(target)).hexdigest()
    except DataError:
        return "not a readable gzip file"
    return None if digest == sha256 else f"checksum mismatch (the content's SHA-256 is {digest})"


def _fetch_file(
    name: str,
    file: str,
    folder: Path,
    mirrors: list[str],
    retries: int,
    say: Callable[[str], None],
) -> None:
    """Download file.gz into folder from the first mirror that serves the right content."""
    sha256 = CHECKSUMS[name][file]
    for attempt in range(1, retries + 1):
        if attempt > 1:
            time.sleep(RETRY_DELAY_S * (attempt - 1))
        failures = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + f"/{file}.gz"
            say(f"downloading {url}" + (f" (attempt {attempt})" if attempt > 1 else ""))
            problem = _download(url, folder / f"{file}.gz", sha256)
            if problem is None:
                say(f"{file}: SHA-256 verified")
                return
            failures.append(f"{url}: {problem}")
    raise DataError(
        f"{name}: could not fetch {file}.gz with the expected SHA-256 {sha256} after {retries} "
        f"attempt(s) on each of {len(mirrors)} mirror(s); last attempt: {'; '.join(failures)}. "
        f"Nothing was written. Check the network, give another mirror "
        f"(`eqprop data fetch {name} --mirror URL`), or download the four files yourself "
        f"into a folder and set EQPROP_DATA_DIR"
    )


def fetch_dataset(
    name: str,
    dest: Path | None = None,
    mirrors: list[str] | None = None,
    retries: int = 3,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Download, verify and install the four IDX files of mnist or fashion-mnist; the folder.

    Each file is tried up to `retries` times on each mirror (http(s):// or file:// URLs of a
    folder). Files go to a temporary folder beside dest, are checked against the SHA-256 of
    their decompressed content, and only then move into dest (default: the user cache,
    ($XDG_CACHE_HOME or ~/.cache)/eqprop/<name>), each by an atomic rename.
    """
    _check_known(name)
    if name not in CHECKSUMS:
        raise DataError(f"{name}: nothing to fetch (mnist-mini is bundled, xor is built in)")
    if retries < 1:
        raise DataError(f"retries must be >= 1; got {retries}")
    mirrors = list(mirrors) if mirrors else MIRRORS[name]
    for mirror in mirrors:
        if urllib.parse.urlsplit(mirror).scheme not in ("http", "https", "file"):
            raise DataError(
                f'{{mirror}} "{mirror}": expected an http://, https:// or file:// URL of a folder',
                params=("mirror",),
            )
    dest = Path(dest).expanduser() if dest is not None else _cache_dir() / name
    say = progress or (lambda _message: None)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    except OSError as exc:
        raise DataError(f"{dest}: cannot write there ({exc.strerror or exc})") from None
    try:
        for file in IDX_FILES:
            _fetch_file(name, file, staging, mirrors, retries, say)
        if not dest.exists():
            umask = os.umask(0)
            os.umask(umask)
            staging.chmod(0o777 & ~umask)  # mkdtemp's 0700, as mkdir would have made it
            staging.rename(dest)
        else:
            for file in IDX_FILES:
                (dest / file).unlink(missing_ok=True)  # a plain copy would shadow the new .gz
                os.replace(staging / f"{file}.gz", dest / f"{file}.gz")
    except OSError as exc:
        raise DataError(f"{dest}: cannot install the files there ({exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"{name}: installed in {dest}")
    return dest


# --------------------------------------------------------------------------- listing


def list_datasets(verify: bool = False) -> list[dict]:
    """One row per known data set: name, status, location, n_train, n_test.

    Status is "installed", "missing", "checksum mismatch" (a header that cannot be read, or with
    verify=True content whose SHA-256 differs), "bundled" or "built-in". Sizes come from the IDX
    headers; only verify=True reads and hashes whole files.
    """
    rows = []
    for name in DATASETS:
        row = {"name": name, "status": "missing", "location": None, "n_train": None, "n_test": None}
        if name == "xor":
            row.update(status="built-in", location="built-in", n_train=4, n_test=4)
        elif name == "mnist-mini":
            file = _mini_resource()
            if file is not None:
                with np.load(file) as npz:
                    n_train, n_test = len(npz["y_train"]), len(npz["y_test"])
                row.update(status="bundled", location=str(file), n_train=n_train, n_test=n_test)
        else:
            folder = find_dataset(name)
            if folder is not None:
                row.update(status="installed", location=str(folder))
                try:
                    if verify:
                        _load_idx_folder(folder, CHECKSUMS[name], name)
                    n_train = _idx_length(_idx_path(folder, TRAIN_IMAGES))
                    row.update(n_train=n_train, n_test=_idx_length(_idx_path(folder, TEST_IMAGES)))
                except DataError:
                    row.update(status="checksum mismatch")
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- mnist-mini


def make_mini(
    source_dir: Path, out: Path, train_per_class: int, test_per_class: int, seed: int
) -> None:
    """Write a stratified subset of a full MNIST folder as a compressed .npz of uint8 arrays.

    From one np.random.default_rng(seed): train_per_class images of each digit drawn from the
    training set, then test_per_class from the test set, each kept in MNIST's order; arrays
    x_train (n, 28, 28), y_train, x_test, y_test.
    """
    raw = _load_idx_folder(Path(source_dir), CHECKSUMS["mnist"], "mnist")
    rng = np.random.default_rng(seed)
    arrays = {}
    for part, images, labels, per_class in (
        ("train", TRAIN_IMAGES, TRAIN_LABELS, train_per_class),
        ("test", TEST_IMAGES, TEST_LABELS, test_per_class),
    ):
        y = raw[labels]
        picks = []
        for digit in range(10):
            members = np.flatnonzero(y == digit)
            if per_class > len(members):
                raise DataError(
                    f"{source_dir}: {per_class} {part} images of digit {digit} asked for; "
                    f"MNIST has {len(members)}"
                )
            picks.append(rng.choice(members, per_class, replace=False))
        keep = np.sort(np.concatenate(picks))
        arrays[f"x_{part}"] = raw[images][keep]
        arrays[f"y_{part}"] = y[keep]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(out, buffer.getvalue())
