"""Files in and out: input vectors from the command line, atomic writes."""

from __future__ import annotations

import errno
import fcntl
import io
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import EqpropError, InputError


def _is_file(path: Path) -> bool:
    """Whether ``path`` names an existing file; False for text no file can be named by
    (a comma list of 784 numbers is longer than a file name may be)."""
    try:
        return path.is_file()
    except OSError:
        return False


def read_inputs(text: str, n_features: int, circuit: str = "the circuit") -> np.ndarray:
    """Input vectors (batch, features) from a .npy or .csv file or a comma list "0.1,0.5"."""
    if not text.strip():
        raise InputError(
            '{input} is empty; expected a .npy/.csv file or numbers like "0.1,0.5"',
            params=("input",),
        )
    path = Path(text)
    if path.suffix.lower() in (".npy", ".csv", ".txt") or _is_file(path):
        if not path.exists():
            raise InputError(f"{text}: input file not found")
        try:
            if path.suffix.lower() == ".npy":
                with open(path, "rb") as fh:
                    check_npy_size(fh, path.stat().st_size, text)
                data = np.load(path, allow_pickle=False)
            else:
                data = np.loadtxt(path, delimiter=",", ndmin=2)
        except (ValueError, OSError) as exc:
            raise InputError(f"{text}: cannot read input vectors ({exc})") from None
    else:
        try:
            data = np.array([float(v) for v in text.split(",")]) if text.strip() else np.zeros(0)
        except ValueError:
            raise InputError(
                f'{{input}} "{text}": expected a .npy/.csv file or comma-separated numbers like '
                '"0.1,0.5"',
                params=("input",),
            ) from None
    data = np.asarray(data, dtype=float)
    if data.ndim == 1:
        data = data.reshape(1, -1)
    if data.ndim != 2 or data.shape[1] != n_features:
        raise InputError(
            f"{{input}} {text}: {circuit} takes {n_features} input feature(s) per vector; "
            f"got shape {data.shape}",
            params=("input",),
        )
    if not np.all(np.isfinite(data)):
        raise InputError(f"{text}: input vectors contain NaN or infinite values")
    return data


def check_npz_sizes(file: str | Path | BinaryIO) -> None:
    """ValueError when an array of a .npz declares more data than it holds, or more than
    this machine's memory: checked from the headers, before anything is allocated."""
    start = file.tell() if hasattr(file, "tell") else None
    try:
        with zipfile.ZipFile(file) as archive:
            for info in archive.infolist():
                if info.filename.endswith(".npy"):
                    with archive.open(info) as fh:
                        check_npy_size(fh, info.file_size, info.filename)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"not a readable .npz archive ({exc})") from None
    finally:
        if start is not None:
            file.seek(start)


def check_npy_size(fh: BinaryIO, size: int, name: str = "the array") -> None:
    """ValueError when a .npy stream's header declares more than its ``size`` bytes hold,
    more than this machine's memory, or Python objects."""
    try:
        version = np.lib.format.read_magic(fh)
        read = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read(fh)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise ValueError(f"{name}: not a valid .npy header ({exc})") from None
    if dtype.hasobject:
        raise ValueError(f"{name}: holds Python objects, which eqprop does not read")
    declared = math.prod(shape) * dtype.itemsize
    held = size - fh.tell()
    if declared > held:
        raise ValueError(
            f"{name}: its header declares shape {shape} of {dtype} ({declared:,} bytes) but "
            f"it holds only {max(held, 0):,} bytes"
        )
    if declared > memory_bytes():
        raise ValueError(
            f"{name}: shape {shape} of {dtype} needs {declared:,} bytes, more than this "
            f"machine's memory ({memory_bytes():,} bytes)"
        )


def memory_bytes() -> int:
    """Physical memory in bytes (a very large number where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**62


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write through a temporary file in the same folder, fsync, then rename.

    Only a regular file (or a new name) is written: the rename would replace a
    symbolic link, a device or a pipe by a plain file. A full disk or any other
    failure to write leaves whatever was at ``path`` as it was.
    """
    path = Path(path)
    data = data.encode() if isinstance(data, str) else data  # UTF-8, whatever the locale
    if path.is_symlink():
        raise InputError(
            f"{path}: is a symbolic link; eqprop replaces the files it writes whole (a new "
            "file renamed over the old one), which would replace the link, not write "
            "where it points: give the target's own path or another name"
        )
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise InputError(
            f"{path}: is a device, pipe or socket, not a regular file; eqprop replaces the "
            "files it writes whole and so writes only regular files (for stdout, leave out "
            "-o or give -o -)"
        )
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc, data) from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary open() would create it
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _write_error(path, exc, data) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def own_folder(path: Path) -> Path:
    """``path``, a folder that eqprop keeps inside one it was given (a run's report, a
    sweep's points); InputError when it is a symbolic link, which would take the writes
    into wherever it points (a link planted in a run or sweep folder from elsewhere)."""
    if path.is_symlink():
        raise InputError(
            f"{path}: is a symbolic link; eqprop writes only inside the folder it was given, "
            "not where a link in it points: remove the link"
        )
    return path


def _write_error(path: Path, exc: OSError, data: bytes) -> InputError:
    """A failed write as one message: for a full disk, how much it needed and had."""
    kept = "; the previous file is intact" if path.is_file() else "; nothing was written"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f"{shutil.disk_usage(path.parent).free:,}"
        except OSError:
            free = "an unknown number of"
        return InputError(
            f"{path}: no space left on the device: writing it needs {len(data):,} bytes and "
            f"{free} bytes are free{kept}"
        )
    return InputError(f"{path}: cannot write it ({exc.strerror or exc}){kept}")


def write_voltages(path: str | Path, voltages: np.ndarray, names: list[str]) -> None:
    """Node voltages (samples x nodes) as .npy, or as .csv with node names as the header."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(voltages, dtype=float))
        write_atomic(path, buffer.getvalue())
        return
    write_atomic(path, voltages_csv(voltages, names))


def voltages_csv(voltages: np.ndarray, names: list[str]) -> str:
    """Node voltages (samples x nodes) as CSV text, node names as the header."""
    text = io.StringIO()
    text.write(",".join(names) + "\n")
    np.savetxt(text, voltages, delimiter=",", fmt="%.17g")
    return text.getvalue()


@contextmanager
def folder_lock(folder: Path, busy: EqpropError) -> Iterator[None]:
    """Hold an exclusive lock (flock) on a folder itself; raise ``busy`` when another
    process holds it, an error of the same type when the folder cannot be opened.

    The lock goes with the process, so a killed one never leaves a stale lock behind.
    """
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise type(busy)(f"{folder}: cannot open the folder ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        yield
    finally:
        os.close(fd)
