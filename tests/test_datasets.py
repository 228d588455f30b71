"""Data sets: IDX reading, the known data sets and their checksums, discovery, fetching, splits.

Tests that need the full MNIST take it from ../shared/data/mnist (the `mnist_dir` fixture:
skipped where it is absent, a failure in CI). Fetching uses file:// mirrors: no network.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from eqprop_cli.data import datasets
from eqprop_cli.data.datasets import (
    DATASETS,
    IDX_FILES,
    DataError,
    Dataset,
    fetch_dataset,
    find_dataset,
    list_datasets,
    load_dataset,
    make_mini,
    read_idx,
    split,
)
from eqprop_cli.errors import EqpropError

MINI = Path(datasets.__file__).parent / "mnist-mini.npz"  # package data beside the module
MINI_README = MINI.parent / "README.md"
IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    """An array in IDX format (big-endian), written independently of the reader."""
    code = IDX_CODES.get(array.dtype.type, 0x0E)
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def tiny_idx_folder(folder: Path, n_train: int = 12, n_test: int = 6, gz: bool = True) -> Path:
    """A folder of the four IDX files with small 2x3 uint8 images and labels 0..2."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    suffix = ".gz" if gz else ""
    for images, labels, n in (
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", n_train),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", n_test),
    ):
        write_idx(folder / f"{images}{suffix}", rng.integers(0, 256, (n, 2, 3), dtype=np.uint8))
        write_idx(folder / f"{labels}{suffix}", (np.arange(n) % 3).astype(np.uint8))
    return folder


def mnist_copy(mnist_dir: Path, folder: Path) -> Path:
    """Links to the four MNIST files in a folder of our own."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES:
        (folder / f"{name}.gz").symlink_to(mnist_dir / f"{name}.gz")
    return folder


def corrupt_test_labels(folder: Path, compress: bool) -> None:
    """Replace t10k-labels with a copy whose first label (7) is changed to 1: still valid IDX."""
    target = folder / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(target.read_bytes()))
    assert data[8] == 7
    data[8] = 1
    target.unlink()
    if compress:
        target.write_bytes(gzip.compress(bytes(data)))
    else:
        (folder / "t10k-labels-idx1-ubyte").write_bytes(bytes(data))


@pytest.fixture
def clean_env(monkeypatch, tmp_path) -> Path:
    """No EQPROP_DATA_DIR, an empty cache, no Debian Fashion-MNIST: the cache folder."""
    monkeypatch.delenv("EQPROP_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    return tmp_path / "cache" / "eqprop"


def classes_of(labels: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(labels, minlength=k)


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-5, 0, 7], dtype=np.int8),
        np.array([[1, -300], [40000 - 65536, 2]], dtype=np.int16),
        np.array([2**31 - 1, -(2**31), 12345678], dtype=np.int32),
        np.array([[0.5, -1.25e-3]], dtype=np.float32),
        np.array([np.pi, -np.e, 1e300], dtype=np.float64),
    ],
    ids=["uint8-3d", "int8", "int16", "int32", "float32", "float64"],
)
def test_idx_round_trip(tmp_path, array, suffix):
    path = write_idx(tmp_path / f"a-idx{suffix}", array)
    back = read_idx(path)
    assert back.dtype == array.dtype and back.dtype.isnative
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    back[...] = 0  # an ordinary writable array


def test_idx_gzip_is_recognised_by_content_not_name(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    path = tmp_path / "labels-idx1-ubyte"  # no .gz, but compressed
    path.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(path), array)


GOOD = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"\x01" + GOOD[1:], "not an IDX file"),  # bad magic
        (GOOD[:2] + b"\x0a" + GOOD[3:], "type code"),  # unknown type code 0x0A
        (GOOD[:3] + b"\x00" + GOOD[4:], "not an IDX file"),  # zero dimensions
        (GOOD[:2], "not an IDX file"),  # shorter than the magic number
        (GOOD[:10], "truncated IDX header"),
        (GOOD[:-1], "truncated"),
        (GOOD + b"\x00", "extra bytes"),
        (gzip.compress(GOOD)[:-12], "cannot read"),  # gzip stream cut short
    ],
    ids=["magic", "type", "ndim", "short", "header", "truncated", "extra", "gzip"],
)
def test_corrupt_idx_is_a_data_error_naming_the_file(tmp_path, data, says):
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(DataError, match=says) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, EqpropError)


def test_missing_idx_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="nothing-here"):
        read_idx(tmp_path / "nothing-here")


# --------------------------------------------------------------------------- MNIST


def test_mnist_loads_with_the_readme_facts(mnist_dir, clean_env):
    data = load_dataset("mnist", path=mnist_dir)
    assert data.name == "mnist" and data.source == str(mnist_dir)
    assert data.x_train.shape == (60000, 784) and data.x_test.shape == (10000, 784)
    assert data.x_train.dtype == np.float64 and data.y_train.dtype == np.int64
    assert data.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert data.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert abs(data.x_train.mean() - 0.1307) < 1e-4
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
    assert data.classes == [str(d) for d in range(10)]
    assert (data.n_features, data.n_classes) == (784, 10)
    # a pixel is its byte / 255: the first image's raw bytes, read independently
    raw = gzip.decompress((mnist_dir / "train-images-idx3-ubyte.gz").read_bytes())
    first = np.frombuffer(raw, np.uint8, count=784, offset=16)
    np.testing.assert_array_equal(data.x_train[0], first / 255.0)


def test_mnist_with_one_byte_changed_is_a_checksum_error(mnist_dir, tmp_path, clean_env):
    folder = mnist_copy(mnist_dir, tmp_path / "mnist")
    corrupt_test_labels(folder, compress=False)  # a plain file is read too
    with pytest.raises(DataError, match="checksum mismatch") as info:
        load_dataset("mnist", path=folder)
    message = str(info.value)
    assert str(folder / "t10k-labels-idx1-ubyte") in message
    assert datasets.CHECKSUMS["mnist"]["t10k-labels-idx1-ubyte"] in message
    assert f"eqprop data fetch mnist --dest {folder}" in message


def test_the_same_folder_as_a_plain_path_is_not_checked(mnist_dir, tmp_path):
    """A folder given as the source (not the name mnist) is any IDX data: no checksums."""
    folder = mnist_copy(mnist_dir, tmp_path / "digits")
    corrupt_test_labels(folder, compress=True)
    data = load_dataset(str(folder))
    assert data.name == str(folder) and data.y_test[0] == 1
    assert data.classes == [str(d) for d in range(10)]


# --------------------------------------------------------------------------- discovery


def test_discovery_through_eqprop_data_dir(mnist_dir, monkeypatch, clean_env):
    assert find_dataset("mnist") is None
    monkeypatch.setenv("EQPROP_DATA_DIR", str(mnist_dir.parent))
    assert find_dataset("mnist") == mnist_dir


def test_discovery_through_path(mnist_dir, clean_env):
    assert find_dataset("mnist", path=mnist_dir) == mnist_dir
    assert find_dataset("mnist", path=str(mnist_dir)) == mnist_dir


def test_search_order_path_then_env_then_cache_then_debian(tmp_path, monkeypatch, clean_env):
    given = tiny_idx_folder(tmp_path / "given")
    env = tiny_idx_folder(tmp_path / "env" / "fashion-mnist", gz=False)
    cache = tiny_idx_folder(clean_env / "fashion-mnist")
    debian = tiny_idx_folder(tmp_path / "debian")
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", debian)
    monkeypatch.setenv("EQPROP_DATA_DIR", str(tmp_path / "env"))
    assert find_dataset("fashion-mnist", path=given) == given
    assert find_dataset("fashion-mnist") == env
    monkeypatch.delenv("EQPROP_DATA_DIR")
    assert find_dataset("fashion-mnist") == cache
    assert find_dataset("mnist") is None  # the Debian folder is for fashion-mnist only
    for name in IDX_FILES:
        (cache / f"{name}.gz").unlink()
    assert find_dataset("fashion-mnist") == debian


def test_a_folder_missing_one_file_is_not_found(tmp_path, clean_env):
    folder = tiny_idx_folder(tmp_path / "mnist")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    assert find_dataset("mnist", path=folder) is None


def test_cache_defaults_to_home(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("EQPROP_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = tiny_idx_folder(tmp_path / ".cache" / "eqprop" / "mnist")
    assert find_dataset("mnist") == folder


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_missing_data_says_how_to_get_it(name, tmp_path, clean_env):
    with pytest.raises(DataError) as info:
        load_dataset(name, path=tmp_path / "nowhere")
    message = str(info.value)
    assert f"eqprop data fetch {name}" in message
    assert str(tmp_path / "nowhere") in message and str(clean_env / name) in message
    assert "EQPROP_DATA_DIR" in message
    assert ("apt-get install dataset-fashion-mnist" in message) == (name == "fashion-mnist")


def test_unknown_names_and_files(tmp_path):
    with pytest.raises(DataError, match="unknown data set"):
        find_dataset("cifar")
    with pytest.raises(DataError, match="not a known data set"):
        load_dataset("cifar")
    (tmp_path / "data.txt").write_text("1,2\n")
    with pytest.raises(DataError, match=r"data\.txt.*unknown data file type"):
        load_dataset(str(tmp_path / "data.txt"))


def test_list_datasets(tmp_path, monkeypatch, clean_env):
    monkeypatch.setenv("EQPROP_DATA_DIR", str(tmp_path))
    folder = tiny_idx_folder(tmp_path / "mnist", n_train=5, n_test=3)
    rows = {row["name"]: row for row in list_datasets()}
    assert list(rows) == list(DATASETS)
    assert rows["mnist"] == {
        "name": "mnist",
        "status": "installed",
        "location": str(folder),
        "n_train": 5,
        "n_test": 3,
    }
    assert rows["fashion-mnist"]["status"] == "missing"
    assert rows["fashion-mnist"]["location"] is None
    assert rows["mnist-mini"]["status"] == "bundled"
    assert (rows["mnist-mini"]["n_train"], rows["mnist-mini"]["n_test"]) == (6000, 1000)
    assert rows["xor"] == {
        "name": "xor",
        "status": "built-in",
        "location": "built-in",
        "n_train": 4,
        "n_test": 4,
    }
    # only verify=True hashes: the tiny files are not MNIST
    verified = {row["name"]: row for row in list_datasets(verify=True)}
    assert verified["mnist"]["status"] == "checksum mismatch"
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"garbage")
    assert list_datasets()[0]["status"] == "checksum mismatch"


def test_list_datasets_verifies_real_mnist(mnist_dir, monkeypatch, clean_env):
    monkeypatch.setenv("EQPROP_DATA_DIR", str(mnist_dir.parent))
    row = list_datasets(verify=True)[0]
    assert (row["status"], row["n_train"], row["n_test"]) == ("installed", 60000, 10000)


# --------------------------------------------------------------------------- fetching


def test_fetch_from_a_file_mirror_into_the_cache(mnist_dir, clean_env):
    messages: list[str] = []
    dest = fetch_dataset("mnist", mirrors=[mnist_dir.as_uri()], progress=messages.append)
    assert dest == clean_env / "mnist"
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{n}.gz" for n in IDX_FILES)
    assert sorted(p.name for p in clean_env.iterdir()) == ["mnist"]  # no staging left
    for name in IDX_FILES:
        digest = hashlib.sha256(gzip.decompress((dest / f"{name}.gz").read_bytes())).hexdigest()
        assert digest == datasets.CHECKSUMS["mnist"][name]
    assert sum("SHA-256 verified" in m for m in messages) == 4
    assert find_dataset("mnist") == dest


def corrupt_mirror(mnist_dir: Path, folder: Path) -> Path:
    mnist_copy(mnist_dir, folder)
    corrupt_test_labels(folder, compress=True)
    return folder


def test_fetch_from_a_corrupt_mirror_fails_after_retries_and_writes_nothing(
    mnist_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr(datasets, "RETRY_DELAY_S", 0.0)
    mirror = corrupt_mirror(mnist_dir, tmp_path / "mirror")
    dest = tmp_path / "out" / "mnist"
    messages: list[str] = []
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.*checksum mismatch") as info:
        fetch_dataset(
            "mnist", dest=dest, mirrors=[mirror.as_uri()], retries=2, progress=messages.append
        )
    assert "Nothing was written" in str(info.value)
    assert sum(m.startswith("downloading") and "t10k-labels" in m for m in messages) == 2
    assert not dest.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_fetch_falls_back_to_the_next_mirror_and_replaces_a_bad_copy(
    mnist_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr(datasets, "RETRY_DELAY_S", 0.0)
    dest = corrupt_mirror(mnist_dir, tmp_path / "mnist")  # an earlier, damaged install
    mirrors = [(tmp_path / "empty").as_uri(), corrupt_mirror(mnist_dir, tmp_path / "bad").as_uri()]
    mirrors.append(mnist_dir.as_uri())
    assert fetch_dataset("mnist", dest=dest, mirrors=mirrors, retries=1) == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{n}.gz" for n in IDX_FILES)
    assert all(not p.is_symlink() for p in dest.iterdir())
    labels = gzip.decompress((dest / "t10k-labels-idx1-ubyte.gz").read_bytes())
    assert labels[8] == 7


def test_fetch_of_a_name_without_files():
    for name in ("xor", "mnist-mini"):
        with pytest.raises(DataError, match="nothing to fetch"):
            fetch_dataset(name)


# --------------------------------------------------------------------------- npz and csv


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def labelled_rows(n: int = 60, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Features whose first column is the row number (to identify rows), labels i % k."""
    x = np.column_stack([np.arange(n), np.linspace(-1, 1, n)]).astype(float)
    return x, np.arange(n) % k


def test_npz_with_a_test_split(tmp_path):
    images = np.arange(4 * 2 * 2, dtype=np.uint8).reshape(4, 2, 2) * 10
    path = write_npz(
        tmp_path / "d.npz",
        x_train=images,
        y_train=np.array([0, 1, 1, 0]),
        x_test=images[:2],
        y_test=np.array([1, 0], dtype=np.uint8),
    )
    data = load_dataset(str(path))
    assert data.name == str(path) and data.source == str(path)
    assert data.x_train.shape == (4, 4) and data.x_test.shape == (2, 4)
    np.testing.assert_array_equal(data.x_train, images.reshape(4, 4) / 255.0)
    assert data.y_test.dtype == np.int64 and data.y_test.tolist() == [1, 0]
    assert data.classes == ["0", "1"]


def test_npz_without_a_test_split_holds_out_a_stratified_sixth(tmp_path):
    x, y = labelled_rows(60, 3)
    path = write_npz(tmp_path / "d.npz", x_train=x, y_train=y)
    data = load_dataset(str(path))
    assert (len(data.y_train), len(data.y_test)) == (50, 10)
    assert classes_of(data.y_test, 3).tolist() in ([4, 3, 3], [3, 4, 3], [3, 3, 4])
    rows_train, rows_test = set(data.x_train[:, 0]), set(data.x_test[:, 0])
    assert not rows_train & rows_test and rows_train | rows_test == set(range(60))
    np.testing.assert_array_equal(data.y_train, data.x_train[:, 0] % 3)  # labels stay with rows
    again = load_dataset(str(path))
    np.testing.assert_array_equal(again.x_test, data.x_test)  # a fixed seed


@pytest.mark.parametrize(
    ("y", "says"),
    [
        (np.array([0, 1, -1, 0]), "found -1"),
        (np.array([0, 1, 1.5, 0]), "found 1.5"),
        (np.array([0, 1, np.nan, 0]), "found nan"),
        (np.array([1, 2, 2, 1]), "subtract 1"),
        (np.array([0, 2, 2, 0]), r"1 class\(es\) never occur there, the first being 1"),
        (np.array([0, 1, 1, 2**40]), "found 1099511627776"),
        (np.array([0, 1, 1]), "expected 4 integer labels"),
        (np.array(["a", "b", "a", "b"]), "integer labels"),
    ],
)
def test_npz_with_bad_labels(tmp_path, y, says):
    path = write_npz(tmp_path / "bad.npz", x_train=np.zeros((4, 2)), y_train=y)
    with pytest.raises(DataError, match=says) as info:
        load_dataset(str(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("arrays", "says"),
    [
        ({"x_train": np.zeros((2, 2))}, "needs arrays x_train and y_train"),
        ({"x_train": np.array([[0.0, np.inf]]), "y_train": [0]}, "NaN or infinite"),
        ({"x_train": np.zeros((2, 2)), "y_train": [0, 1], "x_test": np.zeros((1, 2))}, "both"),
        (
            {
                "x_train": np.zeros((2, 2)),
                "y_train": [0, 1],
                "x_test": np.zeros((1, 3)),
                "y_test": [0],
            },
            "test set has 3 features",
        ),
        ({"x_train": np.zeros((0, 2)), "y_train": np.zeros(0)}, "no training samples"),
    ],
)
def test_npz_with_bad_arrays(tmp_path, arrays, says):
    path = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=says):
        load_dataset(str(path))


def test_a_file_that_is_not_npz(tmp_path):
    path = tmp_path / "fake.npz"
    path.write_text("hello")
    with pytest.raises(DataError, match=r"cannot read it as a \.npz"):
        load_dataset(str(path))


def test_csv_with_a_label_column(tmp_path):
    x, y = labelled_rows(12, 2)
    lines = ["a, label ,b"] + [f"{r[0]:g},{c},{float(r[1])!r}" for r, c in zip(x, y, strict=True)]
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    data = load_dataset(str(path))
    assert (len(data.y_train), len(data.y_test), data.n_features) == (10, 2, 2)
    assert classes_of(data.y_test, 2).tolist() == [1, 1]
    merged = np.vstack([data.x_train, data.x_test])
    np.testing.assert_array_equal(merged[np.argsort(merged[:, 0])], x)
    np.testing.assert_array_equal(data.y_train, data.x_train[:, 0] % 2)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("a,label\nx,0\n2,1\n", r"line 2, column 1 \(`a`\): 'x' is not a number"),
        ("a,label\n1,0\n2,1.5\n", "found 1.5"),
        ("a,b\n1,0\n", "column named `label`"),
        ("a,label\n1,0\n2,1.5\n", "integers 0..K-1"),
        ("label\n0\n1\n", "at least one feature column"),
        ("a,label\n", "no data rows"),
        ("a,label\n1,0\n2\n", r"line 3: 1 value\(s\); expected one per header column \(2\)"),
        ("a,b,label\n1,0\n2,1\n", r"line 2: 2 value\(s\); expected one per header column \(3\)"),
        ('a,b,label\n1,2,0\n\n"3","x",1\n', r"line 4, column 2 \(`b`\): 'x' is not a number"),
    ],
)
def test_csv_errors_name_the_file(tmp_path, text, says):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=says) as info:
        load_dataset(str(path))
    assert str(path) in str(info.value)


def test_csv_quoted_as_spreadsheets_write_it(tmp_path):
    # was: "every feature column must hold numbers only" for "0.5", a spreadsheet's quoting
    plain, quoted = tmp_path / "plain.csv", tmp_path / "quoted.csv"
    plain.write_text("a,b,label\n0.5,1,rose\n-2,3e-1,tulip\n1,2,rose red\n")
    quoted.write_text(
        '"a","b","label"\r\n"0.5","1","rose"\r\n"-2"," 3e-1 ",tulip\r\n1,"2","rose red"\r\n'
    )
    a, b = load_dataset(str(plain)), load_dataset(str(quoted))
    np.testing.assert_array_equal(
        np.vstack([a.x_train, a.x_test]), np.vstack([b.x_train, b.x_test])
    )
    assert a.classes == b.classes == ["rose", "rose red", "tulip"]
    comma = tmp_path / "comma.csv"  # a quoted class name may hold the delimiter
    comma.write_text('a,label\n1,"red, dark"\n2,white\n3,"red, dark"\n')
    assert load_dataset(str(comma)).classes == ["red, dark", "white"]


def test_idx_folder_as_a_source(tmp_path):
    folder = tiny_idx_folder(tmp_path / "tiny", gz=False)
    data = load_dataset(str(folder))
    assert data.x_train.shape == (12, 6) and data.x_test.shape == (6, 6)
    assert data.classes == ["0", "1", "2"]
    raw = read_idx(folder / "train-images-idx3-ubyte")
    np.testing.assert_array_equal(data.x_train, raw.reshape(12, 6) / 255.0)
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(5, dtype=np.uint8))
    with pytest.raises(DataError, match="test set: expected 6 integer labels"):
        load_dataset(str(folder))
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="no t10k-labels-idx1-ubyte"):
        load_dataset(str(folder))


# --------------------------------------------------------------------------- split


@pytest.fixture
def rows() -> Dataset:
    """120 training rows of 3 unbalanced classes (60/40/20), 30 test rows; column 0 is the id."""
    y = np.repeat([0, 1, 2], [60, 40, 20])
    x = np.column_stack([np.arange(120), y]).astype(float)
    y_test = np.arange(30) % 3
    x_test = np.column_stack([1000 + np.arange(30), y_test]).astype(float)
    return Dataset("rows", x, y, x_test, y_test, ["a", "b", "c"], "test")


def test_split_is_determined_by_the_seed(rows):
    kwargs = {"validation": 0.25, "train_subset": 50, "test_subset": 12}
    first, again = split(rows, seed=3, **kwargs), split(rows, seed=3, **kwargs)
    other = split(rows, seed=4, **kwargs)
    for part in ("train", "validation", "test"):
        for a, b in zip(first[part], again[part], strict=True):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first["validation"][0], other["validation"][0])


def test_split_sizes_disjointness_and_strata(rows):
    parts = split(rows, validation=0.25, train_subset=45, test_subset=12, seed=1)
    (xt, yt), (xv, yv), (xs, ys) = parts["train"], parts["validation"], parts["test"]
    assert (len(yt), len(yv), len(ys)) == (45, 30, 12)
    assert xt.shape[1] == xv.shape[1] == 2
    assert not set(xt[:, 0]) & set(xv[:, 0])
    assert set(xs[:, 0]) <= set(rows.x_test[:, 0])
    for x, y in parts.values():
        np.testing.assert_array_equal(x[:, 1], y)  # rows keep their labels
        assert np.all(np.diff(x[:, 0]) > 0)  # and the data set's order
    assert classes_of(yv, 3).tolist() == [15, 10, 5]  # 60/40/20 in proportion
    assert classes_of(yt, 3).tolist() == [23, 15, 7]  # 45 of 45/30/15: a tie, to the lower class
    assert classes_of(ys, 3).tolist() == [4, 4, 4]


def test_split_with_a_validation_count_and_no_subsets(rows):
    parts = split(rows, validation=7)
    assert len(parts["validation"][1]) == 7 and len(parts["train"][1]) == 113
    np.testing.assert_array_equal(parts["test"][0], rows.x_test)
    whole = np.sort(np.concatenate([parts["train"][0][:, 0], parts["validation"][0][:, 0]]))
    np.testing.assert_array_equal(whole, rows.x_train[:, 0])


def test_split_without_validation_is_empty_with_the_right_shapes(rows):
    parts = split(rows)
    x, y = parts["validation"]
    assert x.shape == (0, 2) and y.shape == (0,)
    np.testing.assert_array_equal(parts["train"][0], rows.x_train)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"validation": 1.0}, "must be < 1"),
        ({"validation": -0.1}, "fraction in"),
        ({"validation": True}, "fraction in"),
        ({"validation": 120}, "leaves none of the 120"),
        ({"validation": 100, "train_subset": 21}, "larger than the 20 samples"),
        ({"test_subset": 31}, "larger than the 30"),
        ({"train_subset": 0}, ">= 1"),
        ({"test_subset": 2.5}, "whole number"),
    ],
)
def test_split_errors(rows, kwargs, says):
    with pytest.raises(DataError, match=says):
        split(rows, **kwargs)


# --------------------------------------------------------------------------- built-in and bundled


def test_xor():
    data = load_dataset("xor")
    assert data.x_train.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert data.y_train.tolist() == [0, 1, 1, 0]
    np.testing.assert_array_equal(data.x_test, data.x_train)
    np.testing.assert_array_equal(data.y_test, data.y_train)
    assert (data.classes, data.n_features, data.n_classes) == (["0", "1"], 2, 2)
    assert data.source == "built-in" and find_dataset("xor") is None


def test_mnist_mini_is_small_stratified_and_documented():
    assert MINI.stat().st_size <= 2 * 1024 * 1024
    readme = MINI_README.read_text(encoding="utf-8")
    assert hashlib.sha256(MINI.read_bytes()).hexdigest() in readme
    with np.load(MINI) as npz:
        assert {k: (npz[k].dtype, npz[k].shape) for k in npz.files} == {
            "x_train": (np.uint8, (6000, 28, 28)),
            "y_train": (np.uint8, (6000,)),
            "x_test": (np.uint8, (1000, 28, 28)),
            "y_test": (np.uint8, (1000,)),
        }
    data = load_dataset("mnist-mini")
    assert data.name == "mnist-mini" and find_dataset("mnist-mini") == MINI
    assert classes_of(data.y_train, 10).tolist() == [600] * 10
    assert classes_of(data.y_test, 10).tolist() == [100] * 10
    assert data.x_train.shape == (6000, 784) and 0 <= data.x_train.min() < data.x_train.max() <= 1


def test_mnist_mini_is_reproduced_by_the_recipe_in_its_readme(mnist_dir, tmp_path):
    readme = MINI_README.read_text(encoding="utf-8")
    call = re.search(
        r"make_mini\(\s*\S+,\s*\S+,\s*train_per_class=(\d+),\s*test_per_class=(\d+),"
        r"\s*seed=(\d+),?\s*\)",
        readme,
    )
    assert call, "the README gives the make_mini call"
    train, test, seed = map(int, call.groups())
    out = tmp_path / "mini.npz"
    make_mini(mnist_dir, out, train_per_class=train, test_per_class=test, seed=seed)
    with np.load(out) as made, np.load(MINI) as shipped:
        assert sorted(made.files) == sorted(shipped.files)
        for key in shipped.files:
            np.testing.assert_array_equal(made[key], shipped[key])
            assert made[key].dtype == shipped[key].dtype


def test_mnist_mini_from_a_path_and_make_mini_limits(mnist_dir, tmp_path):
    out = tmp_path / "small.npz"
    make_mini(mnist_dir, out, train_per_class=3, test_per_class=2, seed=5)
    data = load_dataset("mnist-mini", path=out)
    assert data.source == str(out) and (len(data.y_train), len(data.y_test)) == (30, 20)
    with pytest.raises(DataError, match=r"6000 train images of digit 0.*MNIST has 5923"):
        make_mini(mnist_dir, out, train_per_class=6000, test_per_class=1, seed=0)
    with pytest.raises(DataError, match="no such file"):
        load_dataset("mnist-mini", path=tmp_path / "absent.npz")


def test_shift_images_moves_each_image_by_its_own_offset():
    rng = np.random.default_rng(0)
    n, side = 400, 9
    x = np.zeros((n, side * side))
    x[:, 4 * side + 4] = 1.0  # one lit pixel in the centre
    x[:, 0] = 0.5  # and one in a corner, which some shifts push out
    moved = datasets.shift_images(x, 2, rng).reshape(n, side, side)
    centre = np.array([np.argwhere(m == 1.0)[0] for m in moved]) - 4
    assert set(map(tuple, centre)) == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}
    corner = moved[np.arange(n), centre[:, 0], centre[:, 1]]  # where the corner pixel went
    inside = (centre >= 0).all(axis=1)
    assert np.all(corner[inside] == 0.5)
    assert np.all(moved.sum(axis=(1, 2)) == 1.0 + 0.5 * inside)  # the rest is background
    np.testing.assert_array_equal(datasets.shift_images(x, 0, rng), x)


def test_shift_images_needs_square_images():
    assert datasets.image_side(784) == 28 and datasets.image_side(2) is None
    with pytest.raises(ValueError, match="not a square image"):
        datasets.shift_images(np.zeros((3, 10)), 1, np.random.default_rng(0))


def test_csv_with_class_names_in_another_column(tmp_path):
    """Text classes are numbered in sorted order; the label column can have any name."""
    names = ["tulip", "rose", "iris"] * 8
    lines = ["width,species,height"] + [f"{i},{n},{i % 5}" for i, n in enumerate(names)]
    path = tmp_path / "flowers.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="column named `kind`"):
        load_dataset(str(path), label="kind")
    data = load_dataset(str(path), label="species")
    assert data.classes == ["iris", "rose", "tulip"] and data.n_features == 2
    x = np.vstack([data.x_train, data.x_test])
    y = np.concatenate([data.y_train, data.y_test])
    for row, label in zip(x, y, strict=True):
        assert names[int(row[0])] == data.classes[label]
        assert row[1] == row[0] % 5
