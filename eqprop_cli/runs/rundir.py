"""Run directories and checkpoints: what training writes and what eval/export read back.

A run directory holds

- config.toml: the resolved circuit and [training] settings (a valid circuit
  file: ``eqprop check RUN/config.toml`` works), with --set overrides applied;
- checkpoint.npz: conductances, currents, their initial values, optimizer
  state, epoch and batch counters, running sums and metrics, the config text
  and a SHA-256 checksum over all of it, verified on load;
- metrics.csv: one row per completed epoch.

The checkpoint records the SHA-256 of config.toml and metrics.csv as they were
when it was saved; every command that reads the run directory checks them, so
an edited config or a directory that mixes two runs is refused. Training holds
an exclusive lock (flock) on the directory while it writes it.

Every file is written atomically (temporary file, fsync, rename). Random
numbers are counter-based (seed, epoch, batch), so the counters are the RNG
state and a resumed run replays exactly what an uninterrupted one does.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tomli_w

from .. import __version__
from ..errors import EqpropError
from ..circuit.graph import compile_circuit
from ..io import check_npz_sizes, folder_lock, write_atomic
from ..circuit.network import Network
from ..circuit.spec import CircuitSpec, load_circuit, parse_circuit
from ..learn.settings import portable_document
from ..learn.state import DEVICE_COLUMNS, METRIC_COLUMNS, TrainState

FORMAT = "eqprop-checkpoint"
FORMAT_VERSION = 2  # 2: optimiser state by piece name (opt/NAME/K); 1: by position (opt/K)
CONFIG = "config.toml"
CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.csv"


class RunError(EqpropError):
    """A run directory or checkpoint that cannot be used."""


@dataclass
class Checkpoint:
    """The complete state of a training run after a whole batch."""

    conductances: list[np.ndarray]
    currents: list[np.ndarray]
    initial_conductances: list[np.ndarray]
    initial_currents: list[np.ndarray]
    state: TrainState
    config: str  # the run's config.toml text
    version: str = __version__
    files: dict[str, str] = field(default_factory=dict)  # SHA-256 of config.toml, metrics.csv
    parent: dict | None = None  # a fine-tuned run's parent: run, checkpoint, sha256, epoch

    def apply(self, network: Network) -> None:
        """Load the checkpoint's conductances and currents into a network of the same circuit."""
        shapes = [g.shape for g in network.g], [c.shape for c in network.currents]
        mine = [g.shape for g in self.conductances], [c.shape for c in self.currents]
        if shapes != mine:
            raise RunError(
                "the checkpoint's conductances do not fit this circuit "
                f"(resistor sets {mine[0]} vs {shapes[0]}); was the circuit changed?"
            )
        network.set_conductances(self.conductances)
        if self.currents:
            network.set_currents(self.currents)


HEADER_END = "# A valid circuit file: the run's circuit and training settings."


def config_text(
    spec: CircuitSpec, source: str, overrides: list[str], previous: str | None = None
) -> str:
    """config.toml: a header saying where it came from, then the resolved document.

    On a resumed run, ``previous`` (the run's config text) keeps its original
    header, with this invocation's options added.
    """
    if previous is not None and HEADER_END in previous:
        header = previous[: previous.index(HEADER_END)].rstrip("\n").splitlines()
        header += [f"#   --set {o} (on --resume)" for o in overrides]
    else:
        header = [f"# eqprop {__version__} run configuration, resolved from {source}"]
        header += [f"#   --set {o}" for o in overrides]
    header.append(HEADER_END)
    return "\n".join(header) + "\n\n" + tomli_w.dumps(portable_document(spec))


def _arrays(ckpt: Checkpoint) -> dict[str, np.ndarray]:
    out = {}
    for prefix, arrays in (
        ("g", ckpt.conductances),
        ("i", ckpt.currents),
        ("g0", ckpt.initial_conductances),
        ("i0", ckpt.initial_currents),
        *((f"opt/{name}", arrays) for name, arrays in ckpt.state.optimizer.items()),
    ):
        for k, a in enumerate(arrays):
            out[f"{prefix}/{k}"] = np.ascontiguousarray(a, dtype=np.float64)
    for key, a in ckpt.state.devices.items():  # device-to-device draws of device-aware runs
        out[f"dev/{key}"] = np.ascontiguousarray(a, dtype=np.float64)
    return out


def _digest(meta: str, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(meta.encode())
    for name in sorted(arrays):
        a = arrays[name]
        h.update(f"{name}|{a.dtype.str}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    """Write a checkpoint atomically, with a checksum over its metadata and arrays."""
    s = ckpt.state
    meta = json.dumps(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "eqprop_version": ckpt.version,
            "epoch": s.epoch,
            "step": s.step,
            "running": s.running,
            "metrics": s.metrics,
            "counts": [len(ckpt.conductances), len(ckpt.currents)],
            "optimizer": {name: len(arrays) for name, arrays in s.optimizer.items()},
            "config": ckpt.config,
            "files": {
                CONFIG: _sha256(ckpt.config),
                METRICS: _sha256(metrics_text(s.metrics)),
            },
            "parent": ckpt.parent,
        },
        sort_keys=True,
    )
    arrays = _arrays(ckpt)
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(meta), checksum=np.array(_digest(meta, arrays)), **arrays)
    write_atomic(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint; RunError for a missing, foreign or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: no checkpoint there")
    try:
        check_npz_sizes(path)
        with np.load(path, allow_pickle=False) as data:
            contents = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise RunError(f"{path}: not an eqprop checkpoint ({exc})") from None
    try:
        meta_text = str(contents.pop("meta"))
        checksum = str(contents.pop("checksum"))
        meta = json.loads(meta_text)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError("no eqprop format marker")
    except (KeyError, ValueError, RecursionError) as exc:
        raise RunError(f"{path}: not an eqprop checkpoint ({exc})") from None
    version = meta.get("format_version")
    if not _count(version) or version < 1:
        raise RunError(f"{path}: not an eqprop checkpoint (no format version)")
    if version > FORMAT_VERSION:
        raise RunError(
            f"{path}: checkpoint format {version} is newer than this eqprop "
            f"({__version__}) reads; upgrade eqprop"
        )
    if _digest(meta_text, contents) != checksum:
        raise RunError(f"{path}: checksum mismatch: the checkpoint is corrupt or was modified")
    _check_contents(meta, contents, path)
    n_g, n_i = meta["counts"][:2]

    def group(prefix: str, n: int) -> list[np.ndarray]:
        return [contents[f"{prefix}/{k}"] for k in range(n)]

    if "optimizer" in meta:
        optimizer = {name: group(f"opt/{name}", n) for name, n in meta["optimizer"].items()}
    else:  # format 1: the only state then was SGD's momentum, by position
        n_opt = meta["counts"][2]
        optimizer = {"momentum": group("opt", n_opt)} if n_opt else {}
    devices = {k[4:]: a for k, a in contents.items() if k.startswith("dev/")}
    state = TrainState(
        meta["epoch"], meta["step"], optimizer, meta["running"], meta["metrics"], devices
    )
    files = meta.get("files") or {  # checkpoints before the hashes were recorded
        CONFIG: _sha256(meta["config"]),
        METRICS: _sha256(metrics_text(meta["metrics"])),
    }
    return Checkpoint(
        group("g", n_g),
        group("i", n_i),
        group("g0", n_g),
        group("i0", n_i),
        state,
        meta["config"],
        meta["eqprop_version"],
        files,
        meta.get("parent"),
    )


def _count(value: object) -> bool:
    """Whether ``value`` is a whole number >= 0 (not a boolean)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _numbers(value: object, keys: tuple[str, ...] | None = None) -> bool:
    """Whether ``value`` maps names (of ``keys``, when given) to numbers."""
    return isinstance(value, dict) and all(
        isinstance(k, str)
        and (keys is None or k in keys)
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
        for k, v in value.items()
    )


def _check_contents(meta: dict, contents: dict[str, np.ndarray], path: Path) -> None:
    """RunError unless a checkpoint's metadata and arrays have the types and the values
    eqprop writes: its checksum only shows that nothing changed since it was computed,
    and anyone can compute one (a checkpoint from a stranger, or from another program)."""
    columns = (*METRIC_COLUMNS, *DEVICE_COLUMNS)
    counts = meta.get("counts")
    optimizer = meta.get("optimizer", {})
    checks = {
        "counts": isinstance(counts, list)
        and len(counts) == (2 if "optimizer" in meta else 3)
        and all(map(_count, counts)),
        "epoch": _count(meta.get("epoch")),
        "step": _count(meta.get("step")),
        "running": _numbers(meta.get("running")),
        "metrics": isinstance(meta.get("metrics"), list)
        and all(
            _numbers(row, columns) and {"epoch", "test_loss", "test_error"} <= row.keys()
            for row in meta["metrics"]
        ),
        "optimizer": isinstance(optimizer, dict)
        and all(isinstance(k, str) and _count(n) for k, n in optimizer.items()),
        "config": isinstance(meta.get("config"), str),
        "eqprop_version": isinstance(meta.get("eqprop_version"), str),
        "files": meta.get("files") is None
        or (
            isinstance(meta["files"], dict)
            and all(isinstance(v, str) for v in meta["files"].values())
        ),
        "parent": meta.get("parent") is None or isinstance(meta["parent"], dict),
    }
    for key, ok in checks.items():
        if not ok:
            raise RunError(f"{path}: not an eqprop checkpoint (its `{key}` is malformed)")
    n_g, n_i = counts[:2]
    if "optimizer" in meta:
        pieces = [f"opt/{name}/{k}" for name, n in optimizer.items() for k in range(n)]
    else:
        pieces = [f"opt/{k}" for k in range(counts[2])]
    expected = {
        **{f"{p}/{k}": p in ("g", "g0") for p in ("g", "g0") for k in range(n_g)},
        **{f"{p}/{k}": False for p in ("i", "i0") for k in range(n_i)},
        **dict.fromkeys(pieces, False),
    }
    for name, positive in expected.items():
        a = contents.get(name)
        if a is None:
            raise RunError(f"{path}: not an eqprop checkpoint (no array {name})")
        if a.dtype != np.float64 or not np.all(np.isfinite(a)) or (positive and np.any(a <= 0)):
            what = "finite and > 0 S" if positive else "finite"
            raise RunError(f"{path}: {name} must hold float64 values, {what}")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def metrics_text(metrics: list[dict[str, float]]) -> str:
    """metrics.csv: one row per epoch, the columns of METRIC_COLUMNS in that order, then those
    of DEVICE_COLUMNS when the run records programming."""
    text = io.StringIO()
    if metrics:
        extra = [c for c in DEVICE_COLUMNS if c in metrics[0]]
        writer = csv.DictWriter(text, fieldnames=[*METRIC_COLUMNS, *extra], lineterminator="\n")
        writer.writeheader()
        for row in metrics:
            writer.writerow({k: repr(float(v)) if k != "epoch" else int(v) for k, v in row.items()})
    return text.getvalue()


def write_metrics(path: Path, metrics: list[dict[str, float]]) -> None:
    """Write metrics.csv (atomically)."""
    write_atomic(path, metrics_text(metrics))


def check_run_files(run_dir: Path, ckpt: Checkpoint) -> None:
    """Refuse a run directory whose config.toml or metrics.csv is not the checkpoint's."""
    for name, expected in ckpt.files.items():
        try:
            actual = hashlib.sha256((run_dir / name).read_bytes()).hexdigest()
        except OSError as exc:
            actual = f"unreadable ({exc.strerror})"
        if actual != expected:
            raise RunError(
                f"{run_dir / name}: does not match the checkpoint (its SHA-256 differs from "
                f"the one {run_dir / CHECKPOINT} records): the file was edited, or the folder "
                "mixes files of two runs, or a save was cut short. The checkpoint holds the "
                f"run's own settings: give {run_dir / CHECKPOINT} to use them, or continue "
                "the run in it ({resume}), which rewrites the metrics",
                params=("resume",),
            )


def run_lock(run_dir: Path) -> AbstractContextManager[None]:
    """Hold an exclusive lock on a run directory; RunError when another process holds it."""
    return folder_lock(
        run_dir,
        RunError(
            f"{run_dir}: another eqprop train is writing this run directory; wait for it "
            "to finish or choose another {out}",
            params=("out",),
        ),
    )


@dataclass
class Loaded:
    """What a command was pointed at: a circuit file, a run directory or a checkpoint."""

    spec: CircuitSpec
    network: Network
    checkpoint: Checkpoint | None
    run_dir: Path | None


def load_target(target: str | Path, overrides: list[str] = ()) -> Loaded:
    """A circuit file (initial conductances), or a run directory / checkpoint (trained ones)."""
    target = Path(target)
    if target.is_dir():
        if not (target / CONFIG).is_file():
            raise RunError(f"{target}: a folder but not a run directory (no {CONFIG})")
        ckpt = load_checkpoint(target / CHECKPOINT)
        check_run_files(target, ckpt)
        text, where, run_dir = (
            (target / CONFIG).read_text(encoding="utf-8"),
            target / CONFIG,
            target,
        )
    elif target.suffix == ".npz":
        ckpt = load_checkpoint(target)
        text, where, run_dir = ckpt.config, target, target.parent
    else:
        spec = load_circuit(target, overrides)
        return Loaded(spec, Network(compile_circuit(spec)), None, None)
    spec = parse_circuit(text, str(where), overrides)
    network = Network(compile_circuit(spec))
    ckpt.apply(network)
    return Loaded(spec, network, ckpt, run_dir)
