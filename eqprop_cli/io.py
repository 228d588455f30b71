"""Files in and out: input vectors from the command line, atomic writes."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import InputError


def read_inputs(text: str, n_features: int, circuit: str = "the circuit") -> np.ndarray:
    """Input vectors (batch, features) from a .npy or .csv file or a comma list "0.1,0.5"."""
    if not text.strip():
        raise InputError('--input is empty; expected a .npy/.csv file or numbers like "0.1,0.5"')
    path = Path(text)
    if path.suffix.lower() in (".npy", ".csv", ".txt") or path.exists():
        if not path.exists():
            raise InputError(f"{text}: input file not found")
        try:
            if path.suffix.lower() == ".npy":
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
                f'--input "{text}": expected a .npy/.csv file or comma-separated numbers like "0.1,0.5"'
            ) from None
    data = np.asarray(data, dtype=float)
    if data.ndim == 1:
        data = data.reshape(1, -1)
    if data.ndim != 2 or data.shape[1] != n_features:
        raise InputError(
            f"--input {text}: {circuit} takes {n_features} input feature(s) per vector; got shape {data.shape}"
        )
    if not np.all(np.isfinite(data)):
        raise InputError(f"{text}: input vectors contain NaN or infinite values")
    return data


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write through a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    mode = "wb" if isinstance(data, bytes) else "w"
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise InputError(f"{path}: cannot write there ({exc.strerror})") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary open() would create it
        with os.fdopen(fd, mode) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
