"""Sweeps: one circuit trained and evaluated at every point of a grid or list of overrides.

A sweep file (TOML, see eqprop-sweep(1)) names a base circuit, the `--set`
overrides that vary (``[grid]``: every combination; ``[[points]]``: a list;
both: every point of the list with every combination of the grid), what to
evaluate after training (``[eval]``; keys ``eval.*`` may vary too) and the
metrics to collect. Each training point is an ordinary run directory, named
from its overrides; evaluation settings that vary are evaluated on the same
trained run. This module reads and validates the file (every error located,
as in circuit files) and turns results into tables; `sweep_exec` runs the
points.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tomli_w

from ..circuit.params import Param
from ..circuit.spec import KeyPath, Locator, _Reader, _show, load_circuit, read_text, read_toml
from ..errors import CircuitError, EqpropError, UnknownKeyError
from ..hardware.variation import DISTRIBUTIONS
from ..io import own_folder, write_atomic
from ..learn.settings import SPLITS
from ..learn.state import METRIC_COLUMNS

FORMAT = "eqprop-sweep"
FORMAT_VERSION = 1
SEED_KEY = "training.seed"  # the replicate axis: mean and spread are taken over it
POINTS_DIR = "points"
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
SUMMARY_CSV = "summary.csv"
POINT_RECORD = "sweep-point.json"  # in each point's run directory
POINT_LOG = "sweep-point.log"
MAX_POINTS = 100_000  # training runs in one sweep
MAX_NAME = 100  # characters of a point's directory name before it is shortened with a hash

SWEEP_KEYS = (
    Param("circuit", "string", "Base circuit file, relative to the sweep file.", None),
    Param("name", "string", "Sweep name: the output folder runs/NAME (default: file stem).", ""),
    Param(
        "workers", "int", "Points run at a time (default: the CPUs, or the Ray cluster's).", None, 1
    ),
    Param("address", "string", 'Ray cluster to run on ("local": start one here).', None),
)
SWEEP_LISTS = ("set", "metrics")  # [sweep] keys holding arrays of strings
EVAL_KEYS = (
    Param("split", "choice", "Split evaluated.", "test", choices=SPLITS),
    Param("limit", "int", "Evaluate the first N samples (ngspice: default 20).", None, 1),
    Param("levels", "int", "Round conductances to N levels first (0: the devices' own).", 0, 0),
    Param(
        "variation",
        "number",
        "Monte Carlo: relative programming error (0.05 = 5%).",
        None,
        0,
        maximum=1,
        relative=True,
    ),
    Param("trials", "int", "Monte Carlo: programmed chips drawn.", 10, 1),
    Param("distribution", "choice", "Monte Carlo: error law.", "lognormal", choices=DISTRIBUTIONS),
    Param(
        "stuck_off",
        "number",
        "Monte Carlo: probability of a device stuck at g_min.",
        None,
        0,
        maximum=1,
        relative=True,
    ),
    Param(
        "stuck_on",
        "number",
        "Monte Carlo: probability of a device stuck at g_max.",
        None,
        0,
        maximum=1,
        relative=True,
    ),
    Param("seed", "int", "Monte Carlo: seed of the draws.", 0, 0),
    Param(
        "backend",
        "choice",
        "solver, or ngspice (one netlist per sample).",
        "solver",
        choices=("solver", "ngspice"),
    ),
)
MONTE_CARLO_KEYS = ("variation", "stuck_off", "stuck_on")
NGSPICE_LIMIT = 20

TRAIN_METRICS = (
    *(c for c in METRIC_COLUMNS if c.endswith(("_loss", "_error"))),  # of the last epoch
    "epochs",
    "train_seconds",
)
EVAL_METRICS = ("accuracy", "error_rate", "loss", "n_samples", "not_converged")
MONTE_CARLO_METRICS = ("mean_accuracy", "std_accuracy", "worst_accuracy", "best_accuracy")
NGSPICE_METRICS = ("ngspice_accuracy", "agreement", "max_voltage_difference")
METRICS = TRAIN_METRICS + EVAL_METRICS + MONTE_CARLO_METRICS + NGSPICE_METRICS


@dataclass(frozen=True)
class Task:
    """One training point: what a worker needs (plain data, so it pickles for Ray)."""

    name: str  # the run directory's name
    circuit: str  # base circuit file, absolute
    run_dir: str  # absolute
    overrides: tuple[str, ...]  # --set options: the sweep's fixed ones, then the point's
    evals: tuple[tuple[tuple[str, object], ...], ...] = ()  # eval settings, one per case


@dataclass(frozen=True)
class Row:
    """One line of the results: a training point with one evaluation case."""

    point: str  # the training point's name (its run directory)
    values: tuple[tuple[str, object], ...]  # (axis, value) of every axis this row sets
    case: int | None  # index into its task's evals; None without [eval]


@dataclass
class Sweep:
    """A validated sweep file and every point it describes."""

    path: Path
    name: str
    circuit: Path
    sets: list[str]
    axes: list[str]  # varying keys in file order, training ("a.b") and evaluation ("eval.x")
    tasks: list[Task]
    rows: list[Row]
    metrics: list[str]
    evaluates: bool
    workers: int | None = None
    address: str | None = None
    text: str = field(default="", repr=False)

    def axis_kind(self, axis: str) -> str:
        return "eval" if axis.startswith("eval.") else "train"


# --------------------------------------------------------------------------- reading


def _toml_value(value: object) -> str:
    """A value as TOML text, the VALUE of a --set option."""
    return tomli_w.dumps({"v": value})[len("v = ") :].strip()


def _frozen(value: object) -> object:
    """A TOML value made hashable, equal where the values are equal."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    return value


def show_value(value: object) -> str:
    """A value as it appears in tables and names: strings bare, booleans lower-case."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    return _toml_value(value)


def _leaves(table: Mapping, key: KeyPath) -> tuple[dict[str, object], dict[str, KeyPath]]:
    """The leaves of a table by dotted name, and where each is in the file."""
    where: dict[str, KeyPath] = {}
    leaves: dict[str, object] = {}
    for name, value in table.items():
        if isinstance(value, Mapping):
            sub_leaves, sub_where = _leaves(value, (*key, name))
            for dotted, v in sub_leaves.items():
                leaves[f"{name}.{dotted}"] = v
                where[f"{name}.{dotted}"] = sub_where[dotted]
        else:
            leaves[str(name)] = value
            where[str(name)] = (*key, name)
    return leaves, where


def slug(text: str) -> str:
    """Text as part of a file name: ASCII letters, digits, _ . + and -; anything else is _."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)


def short_names(keys: list[str]) -> dict[str, str]:
    """Each dotted key by its last part, or whole where two keys share the last part."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)}


def point_names(points: list[list[tuple[str, object]]]) -> list[str]:
    """Directory names for points: short key (the last part, or the whole key where two
    keys share it) and value, "learning_rate-0.3__seed-0"; a hash keeps them unique."""
    short = short_names(list(dict.fromkeys(k for p in points for k, _ in p)))
    names = []
    for p in points:
        name = "__".join(slug(f"{short[k]}-{show_value(v)}") for k, v in p) or "base"
        name = name.lstrip(".-") or "point"
        names.append(name)
    counts = Counter(names)  # of the names as they stand, renamed ones included
    for i, (name, p) in enumerate(zip(names, points, strict=True)):
        if len(name) > MAX_NAME or counts[name] > 1:
            digest = hashlib.sha256(repr(p).encode()).hexdigest()[:8]
            names[i] = f"{name[:MAX_NAME]}-{digest}"
            counts[name] -= 1
            counts[names[i]] += 1
    return names


def key_error(sweep: Sweep, key: KeyPath, message: str) -> CircuitError:
    """An error at one key of the sweep file, naming its file, line and key."""
    return Locator(sweep.text).error(str(sweep.path), key, message)


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file; CircuitError (file, line, key) on any fault."""
    return parse_sweep(read_text(path), Path(path))


def parse_sweep(text: str, path: Path) -> Sweep:
    """Validate sweep-file text; ``path`` locates the base circuit and names messages."""
    where = str(path)
    data = read_toml(text, where)
    rd = _Reader(where, Locator(text))
    rd.unknown(data, ["sweep", "grid", "points", "eval"], ())
    head = rd.expect_table(data.get("sweep", {}), ("sweep",))
    settings = rd.values(head, SWEEP_KEYS, ("sweep",), required=("circuit",), extra=SWEEP_LISTS)
    if settings["name"]:  # names the default folder, runs/NAME
        rd.name(settings["name"], ("sweep", "name"))
    lists = {name: _strings(head.get(name, []), ("sweep", name), rd) for name in SWEEP_LISTS}
    circuit = (path.parent / str(settings["circuit"])).resolve()
    if not circuit.is_file():
        raise rd.error(("sweep", "circuit"), f"no circuit file at {circuit}")
    try:  # the base circuit with the fixed overrides; each point's own are checked as it runs
        load_circuit(circuit, lists["set"])
    except CircuitError as exc:
        at = ("sweep", "set") if lists["set"] else ("sweep", "circuit")
        raise rd.error(at, f"the base circuit does not load: {exc}") from None

    grid, axes = _grid(data, rd)
    entries = _points(data, rd, axes)
    base_eval = None
    if "eval" in data:
        base_eval = rd.values(rd.expect_table(data["eval"], ("eval",)), EVAL_KEYS, ("eval",))
    elif any(k.startswith("eval.") for k in axes):
        key = next(k for k in axes if k.startswith("eval."))
        raise rd.error(axes[key], "varies an evaluation setting, but there is no [eval] table")
    count = max(len(entries), 1) * math.prod(len(v) for _, v in grid)
    if count > MAX_POINTS:
        raise rd.error(
            ("grid",) if grid else ("points",),
            f"makes {count:,} points (each a training run); a sweep may have at most "
            f"{MAX_POINTS:,}",
        )
    combos = [
        list(zip([k for k, _ in grid], c, strict=True))
        for c in itertools.product(*(v for _, v in grid))
    ]
    tasks, rows = _expand([e + c for e in entries or [[]] for c in combos], base_eval, rd)
    tasks = [Task(t.name, str(circuit), "", (*lists["set"], *t.overrides), t.evals) for t in tasks]
    _check_keys(tasks, circuit, axes, rd)
    evaluates = base_eval is not None
    modes = _eval_modes(tasks)
    metrics = lists["metrics"] or _default_metrics(evaluates, modes)
    for i, metric in enumerate(metrics):
        _check_metric(metric, evaluates, modes, ("sweep", "metrics", i), rd)
    return Sweep(
        path,
        str(settings["name"]) or path.stem,
        circuit,
        lists["set"],
        list(axes),
        tasks,
        rows,
        metrics,
        evaluates,
        settings["workers"],
        settings["address"],
        text,
    )


def _grid(data: Mapping, rd: _Reader) -> tuple[list[tuple[str, list]], dict[str, KeyPath]]:
    """[grid]: each swept key (dotted) with its values; and where each key is."""
    grid: list[tuple[str, list]] = []
    leaves, located = _leaves(rd.expect_table(data.get("grid", {}), ("grid",)), ("grid",))
    for key, values in leaves.items():
        _check_key(key, located[key], rd)
        if not isinstance(values, list) or not values:
            raise rd.error(
                located[key], f"must be a non-empty array of values; got {_show(values)}"
            )
        first: dict[object, int] = {}
        for i, v in enumerate(values):  # as == compares them: 1 and 1.0 make the same point
            if (j := first.setdefault(_frozen(v), i)) != i:
                raise rd.error(
                    (*located[key], i),
                    f"holds the same value twice ({_toml_value(values[j])} and {_toml_value(v)})",
                )
        if key.startswith("eval."):
            values = [_eval_value(key, v, (*located[key], i), rd) for i, v in enumerate(values)]
        grid.append((key, values))
    return grid, located


def _points(data: Mapping, rd: _Reader, axes: dict[str, KeyPath]) -> list[list[tuple[str, object]]]:
    """[[points]]: each a list of (dotted key, value); their keys are added to ``axes``."""
    if "points" not in data:
        return []
    grid = set(axes)
    entries = []
    for i, entry in enumerate(rd.list_of_tables(data["points"], ("points",))):
        leaves, located = _leaves(entry, ("points", i))
        for key, value in leaves.items():
            _check_key(key, located[key], rd)
            if key in grid:
                raise rd.error(located[key], "is swept in [grid] too; give it in one place")
            if key.startswith("eval."):
                leaves[key] = _eval_value(key, value, located[key], rd)
            axes.setdefault(key, located[key])
        entries.append(list(leaves.items()))
    return entries


def _expand(
    points: list[list[tuple[str, object]]], base_eval: dict | None, rd: _Reader
) -> tuple[list[Task], list[Row]]:
    """Training points (one run each, with its evaluation cases) and result rows."""
    train = [[(k, v) for k, v in p if not k.startswith("eval.")] for p in points]
    unique = list({repr(p): p for p in train}.values())
    names = dict(zip((repr(p) for p in unique), point_names(unique), strict=True))
    cases: dict[str, list] = {name: [] for name in names.values()}
    rows, seen = [], set()
    for point, own in zip(points, train, strict=True):
        key = _frozen(point)  # as == compares them (1 and 1.0 are the same point)
        if key in seen:
            raise rd.error(("points",), f"two points are the same: {_describe(point)}")
        seen.add(key)
        name = names[repr(own)]
        case = None
        if base_eval is not None:
            settings = dict(base_eval)
            settings.update({k[len("eval.") :]: v for k, v in point if k.startswith("eval.")})
            _check_eval(settings, rd)
            items = tuple(sorted(settings.items()))
            if items not in cases[name]:
                cases[name].append(items)
            case = cases[name].index(items)
        rows.append(Row(name, tuple(point), case))
    tasks = [
        Task(
            names[repr(p)],
            "",
            "",  # circuit and run directory: set by the caller and place()
            tuple(f"{k}={_toml_value(v)}" for k, v in p),
            tuple(cases[names[repr(p)]]),
        )
        for p in unique
    ]
    return tasks, rows


def _check_keys(tasks: list[Task], circuit: Path, axes: dict[str, KeyPath], rd: _Reader) -> None:
    """Refuse a swept key that the circuit does not have before any point runs: the first
    point of each set of keys is loaded. (A value out of range fails its point alone, as it
    runs; a key the circuit lacks would fail every point.)"""
    seen = set()
    for task in tasks:
        keys = tuple(o.split("=", 1)[0] for o in task.overrides)
        if keys in seen:
            continue
        seen.add(keys)
        try:
            load_circuit(circuit, task.overrides)
        except UnknownKeyError as exc:
            axis = next(
                (a for a in axes if f" {a}=" in str(exc) or f"{exc.key}.".startswith(f"{a}.")),
                None,
            )
            at = axes[axis] if axis else ("grid",)
            raise rd.error(at, f"is not a key of the circuit: {exc}") from None
        except CircuitError:
            pass  # a value: its point fails alone


def _describe(point: list[tuple[str, object]]) -> str:
    return ", ".join(f"{k} = {_toml_value(v)}" for k, v in point) or "(no overrides)"


def _strings(value: object, key: KeyPath, rd: _Reader) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise rd.error(key, f"must be an array of strings; got {_show(value)}")
    return list(value)


_KEY = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


def _check_key(key: str, at: KeyPath, rd: _Reader) -> None:
    if not _KEY.match(key):
        raise rd.error(at, 'must be a dotted key of the circuit file, e.g. "training.seed"')
    if key.startswith("eval."):
        name = key[len("eval.") :]
        rd.unknown({name: None}, [p.name for p in EVAL_KEYS], at[:-1])


def _eval_value(key: str, value: object, at: KeyPath, rd: _Reader) -> object:
    param = next(p for p in EVAL_KEYS if p.name == key[len("eval.") :])
    try:
        return param.coerce(value)
    except ValueError as exc:
        raise rd.error(at, f"must be {exc}; got {_show(value)}") from None


def _check_eval(settings: dict, rd: _Reader) -> None:
    if settings["levels"] == 1:
        raise rd.error(("eval", "levels"), "must be 0 (the devices' own levels) or at least 2")
    monte_carlo = any(settings[k] is not None for k in MONTE_CARLO_KEYS)
    if settings["backend"] == "ngspice" and monte_carlo:
        raise rd.error(
            ("eval", "backend"),
            "ngspice runs the nominal circuit; drop variation/stuck_off/stuck_on",
        )
    if (settings["stuck_off"] or 0) + (settings["stuck_on"] or 0) > 1:
        raise rd.error(("eval", "stuck_on"), "stuck_off and stuck_on add up to more than 1")


def _eval_modes(tasks: list[Task]) -> set[str]:
    modes = set()
    for task in tasks:
        for case in task.evals:
            c = dict(case)
            if any(c[k] is not None for k in MONTE_CARLO_KEYS):
                modes.add("monte_carlo")
            if c["backend"] == "ngspice":
                modes.add("ngspice")
    return modes


def _default_metrics(evaluates: bool, modes: set[str]) -> list[str]:
    if not evaluates:
        return ["test_error"]
    if "monte_carlo" in modes:
        return ["mean_accuracy", "std_accuracy", "accuracy", "test_error"]
    if "ngspice" in modes:
        return ["ngspice_accuracy", "agreement", "accuracy", "test_error"]
    return ["accuracy", "test_error"]


def _check_metric(metric: str, evaluates: bool, modes: set[str], at: KeyPath, rd: _Reader) -> None:
    if metric not in METRICS:
        rd.unknown({metric: None}, list(METRICS), at[:-1])
    needs = (
        ("an [eval] table", evaluates, EVAL_METRICS + MONTE_CARLO_METRICS + NGSPICE_METRICS),
        ("eval.variation, stuck_off or stuck_on", "monte_carlo" in modes, MONTE_CARLO_METRICS),
        ('eval.backend = "ngspice"', "ngspice" in modes, NGSPICE_METRICS),
    )
    for what, present, names in needs:
        if metric in names and not present:
            raise rd.error(at, f'"{metric}" needs {what}')


def place(sweep: Sweep, out_dir: Path) -> Sweep:
    """The same sweep with its run directories under ``out_dir`` (absolute paths)."""
    base = own_folder(out_dir.resolve() / POINTS_DIR)
    sweep.tasks = [
        Task(t.name, t.circuit, str(own_folder(base / t.name)), t.overrides, t.evals)
        for t in sweep.tasks
    ]
    return sweep


# --------------------------------------------------------------------------- results


def results(sweep: Sweep, records: dict[str, dict]) -> list[dict]:
    """One entry per row: the point, its axis values, status, error and metrics."""
    tasks = {t.name: t for t in sweep.tasks}
    out = []
    for row in sweep.rows:
        record = records.get(row.point)
        status = record["status"] if record else "pending"
        metrics: dict[str, object] = {}
        if record and status == "done":
            metrics.update(record["train"])
            if row.case is not None:
                metrics.update(record["evals"][row.case])
        values = dict(row.values)
        out.append(
            {
                "point": row.point,
                "run_dir": tasks[row.point].run_dir,
                "values": {a: values.get(a) for a in sweep.axes},
                "status": status,
                "error": record.get("error") if record else None,
                "metrics": {m: metrics.get(m) for m in sweep.metrics},
            }
        )
    return out


def summary(sweep: Sweep, rows: list[dict]) -> list[dict]:
    """Mean and sample standard deviation of every metric over the seeds of each setting."""
    settings = [a for a in sweep.axes if a != SEED_KEY]
    groups: dict[str, list[dict]] = {}
    for row in rows:
        key = json.dumps([show_value(row["values"][a]) for a in settings])
        groups.setdefault(key, []).append(row)
    out = []
    for members in groups.values():
        done = [r for r in members if r["status"] == "done"]
        mean, std = {}, {}
        for m in sweep.metrics:
            values = np.array(
                [r["metrics"][m] for r in done if r["metrics"][m] is not None], dtype=float
            )
            mean[m] = float(values.mean()) if len(values) else None
            std[m] = (
                float(values.std(ddof=1)) if len(values) > 1 else (0.0 if len(values) else None)
            )
        out.append(
            {
                "values": {a: members[0]["values"][a] for a in settings},
                "n": len(done),
                "failed": sum(r["status"] == "failed" for r in members),
                "mean": mean,
                "std": std,
            }
        )
    return out


def results_document(sweep: Sweep, records: dict[str, dict], seconds: float) -> dict:
    rows = results(sweep, records)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sweep": str(sweep.path),
        "name": sweep.name,
        "circuit": str(sweep.circuit),
        "axes": sweep.axes,
        "seed_key": SEED_KEY,
        "metrics": sweep.metrics,
        "seconds": seconds,
        "rows": rows,
        "summary": summary(sweep, rows),
        "sweep_file": sweep.text,
    }


def _number(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def write_results(out_dir: Path, doc: dict) -> None:
    """results.json, results.csv (one line per row) and summary.csv, each atomically."""
    write_atomic(out_dir / RESULTS_JSON, json.dumps(doc, indent=2) + "\n")
    axes, metrics = doc["axes"], doc["metrics"]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["point", *axes, "status", *metrics, "error"])
    for r in doc["rows"]:
        writer.writerow(
            [
                r["point"],
                *(show_value(r["values"][a]) for a in axes),
                r["status"],
                *(_number(r["metrics"][m]) for m in metrics),
                r["error"] or "",
            ]
        )
    write_atomic(out_dir / RESULTS_CSV, text.getvalue())
    settings = [a for a in axes if a != doc["seed_key"]]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(
        [*settings, "n", "failed", *(f"{m}_{s}" for m in metrics for s in ("mean", "std"))]
    )
    for s in doc["summary"]:
        writer.writerow(
            [
                *(show_value(s["values"][a]) for a in settings),
                s["n"],
                s["failed"],
                *(_number(s[k][m]) for m in metrics for k in ("mean", "std")),
            ]
        )
    write_atomic(out_dir / SUMMARY_CSV, text.getvalue())


def read_results(folder: Path) -> dict | None:
    """A sweep folder's results.json, or None when ``folder`` is not a sweep folder."""
    path = folder / RESULTS_JSON
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EqpropError(f"{path}: cannot read the sweep results ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return None
    return doc
