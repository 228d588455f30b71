"""Conductance maps: what a programming station needs, device by device, and back.

A map lists every programmable device of a network: each conductance of a
trainable resistor set (a crossbar connection of the layered form, or a
resistor device of the netlist form) and each trainable current source
(biases). It is written as CSV (one row per device, units in the column
names), JSON (the same rows and a metadata block) or npz (arrays per
connection), and read back with every row checked against the network:
names, positions, node names and values. Floats are written with the
shortest text that reads back to the same double, so a map round-trips
exactly.

Every CSV column holds one type in every line and no cell is empty, so that
a data-frame library reads ``row``, ``column`` and ``level`` as integers: a
column that does not apply to a device kind holds that kind's value for it
(``FILL``: a current source has conductance 0 and resistance inf, a resistor
current 0, a device off levels level -1). The level columns are written only
with levels. JSON leaves such fields out of a device's object.

Levels: a device that holds one of N evenly spaced conductances in
[low, high] is modelled by rounding every conductance to the nearest level
(``quantise``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..circuit.network import Network
from ..devices.resistor import MAX_LEVELS, crossbar_element
from ..errors import EqpropError
from ..io import check_npz_sizes

FORMAT = "eqprop-conductance-map"
FORMAT_VERSION = 1
MAP_FORMATS = ("csv", "json", "npz")
COLUMNS = (
    "connection",
    "kind",
    "element",
    "row",
    "column",
    "node_a",
    "node_b",
    "row_polarity",
    "column_polarity",
    "conductance_S",
    "resistance_ohm",
    "current_A",
    "level",
    "n_levels",
    "level_low_S",
    "level_high_S",
)
LEVEL_COLUMNS = ("level", "n_levels", "level_low_S", "level_high_S")
# what a CSV cell holds where a column does not apply to the device (see the module docstring)
FILL = {
    "conductance_S": 0.0,
    "resistance_ohm": float("inf"),
    "current_A": 0.0,
    "level": -1,
    "n_levels": 0,
    "level_low_S": 0.0,
    "level_high_S": 0.0,
}
NO_POLARITY = "none"
RESISTOR, CURRENT_SOURCE = "resistor", "current_source"
AGREE = 1e-9  # relative: conductance_S and 1/resistance_ohm of one row must agree this well


class MapError(EqpropError):
    """A conductance map that does not fit the network, or a bad level request."""


@dataclass
class Levels:
    """N evenly spaced conductance levels in [low, high] (per resistor set)."""

    count: int
    ranges: list[tuple[float, float]]  # one (low, high) per trainable resistor set

    def step(self, k: int) -> float:
        """The conductance between neighbouring levels of set k."""
        low, high = self.ranges[k]
        return (high - low) / (self.count - 1)

    def values(self, k: int, index: np.ndarray) -> np.ndarray:
        """The conductances of levels ``index`` of set k: np.linspace's values, bit for
        bit, without making all ``count`` of them."""
        low, high = self.ranges[k]
        return np.where(index == self.count - 1, high, index * self.step(k) + low)


@dataclass
class ConductanceMap:
    """Conductances (and bias currents) of a network's programmable devices."""

    network: Network
    resistor_sets: list[int]  # indices into network.g of the trainable sets, in map order
    source_sets: list[int]  # indices into network.currents of the trainable sources
    levels: Levels | None = None
    level_index: list[np.ndarray] = field(default_factory=list)  # per resistor set, when levels
    metadata: dict = field(default_factory=dict)

    # ----------------------------------------------------------- rows

    def columns(self) -> dict[str, list]:
        """The map as columns of COLUMNS (one entry per device), values as Python objects;
        None where a column does not apply to the device."""
        net = self.network
        names = net.node_names
        polarity = _polarities(net)
        cols: dict[str, list] = {c: [] for c in COLUMNS}
        for n_set, k in enumerate(self.resistor_sets):
            r = net.resistors[k]
            g = net.g[k].ravel()
            a, b = r.pairs()
            if r.dense:
                rows = np.repeat(np.arange(len(r.rows)), len(r.cols))
                columns: list = np.tile(np.arange(len(r.cols)), len(r.rows)).tolist()
                elements = [
                    crossbar_element(k, i, j) for i, j in zip(rows.tolist(), columns, strict=True)
                ]
            else:
                rows = np.arange(len(r.rows))
                columns = [0] * len(rows)  # a one-dimensional set: column 0
                elements = list(r.labels)
            count = len(g)
            cols["connection"] += [r.name] * count
            cols["kind"] += [RESISTOR] * count
            cols["element"] += elements
            cols["row"] += rows.tolist()
            cols["column"] += columns
            cols["node_a"] += [names[i] for i in a]
            cols["node_b"] += [names[i] for i in b]
            cols["row_polarity"] += [polarity.get(i, NO_POLARITY) for i in a]
            cols["column_polarity"] += [polarity.get(i, NO_POLARITY) for i in b]
            cols["conductance_S"] += g.tolist()
            cols["resistance_ohm"] += (1.0 / g.astype(float)).tolist()  # float64 with float32 g
            if self.levels is not None:
                low, high = self.levels.ranges[n_set]
                cols["level"] += self.level_index[n_set].ravel().tolist()
                cols["n_levels"] += [self.levels.count] * count
                cols["level_low_S"] += [low] * count
                cols["level_high_S"] += [high] * count
            _pad(cols)
        for k in self.source_sets:
            s = net.isources[k]
            count = len(s.plus)
            cols["connection"] += [s.device.name] * count
            cols["kind"] += [CURRENT_SOURCE] * count
            cols["element"] += list(s.labels)
            cols["row"] += list(range(count))
            cols["column"] += [0] * count
            cols["node_a"] += [names[i] for i in s.plus]
            cols["node_b"] += [names[i] for i in s.minus]
            cols["row_polarity"] += [polarity.get(i, NO_POLARITY) for i in s.plus]
            cols["column_polarity"] += [polarity.get(i, NO_POLARITY) for i in s.minus]
            cols["current_A"] += net.currents[k].tolist()
            _pad(cols)
        return cols

    # ----------------------------------------------------------- writing

    def to_csv(self) -> str:
        """One row per device, every cell typed and filled (``FILL``); the level columns
        only with levels; floats as the shortest text that reads back exactly."""
        cols = self.columns()
        keep = [c for c in COLUMNS if self.levels is not None or c not in LEVEL_COLUMNS]
        filled = {c: [FILL[c] if v is None else v for v in cols[c]] for c in keep}
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(keep)
        writer.writerows(zip(*(_texts(filled[c]) for c in keep), strict=True))
        return text.getvalue()

    def to_json(self) -> str:
        """{"format", "version", "metadata", "columns", "devices": [row objects]}."""
        cols = self.columns()
        keep = [c for c in COLUMNS if any(v is not None for v in cols[c])]
        devices = ",\n".join(
            json.dumps({c: v for c, v in zip(keep, row, strict=True) if v is not None})
            for row in zip(*(cols[c] for c in keep), strict=True)
        )
        head = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "metadata": self.metadata,
            "columns": list(COLUMNS),
        }
        # one device per line: readable, diffable, and fast to write
        return json.dumps(head, indent=1)[:-2] + ',\n "devices": [\n' + devices + "\n]}\n"

    def to_npz(self) -> bytes:
        """Arrays per connection: "<name>/conductance_S" (rows x columns for a crossbar),
        "<name>/node_a", "<name>/node_b", and "<name>/level" with levels; per current-source
        device "<name>/current_A"; "metadata" holds the JSON metadata."""
        net = self.network
        names = np.array(net.node_names)
        arrays: dict[str, np.ndarray] = {
            "metadata": np.array(json.dumps({"format": FORMAT, **self.metadata}))
        }
        for n_set, k in enumerate(self.resistor_sets):
            r = net.resistors[k]
            arrays[f"{r.name}/conductance_S"] = net.g[k]
            arrays[f"{r.name}/node_a"] = names[r.rows]  # a crossbar's rows, or each element's
            arrays[f"{r.name}/node_b"] = names[r.cols]
            if self.levels is not None:
                arrays[f"{r.name}/level"] = self.level_index[n_set]
                arrays[f"{r.name}/level_range_S"] = np.array(self.levels.ranges[n_set])
        for k in self.source_sets:
            s = net.isources[k]
            arrays[f"{s.device.name}/current_A"] = net.currents[k]
            arrays[f"{s.device.name}/node_a"] = names[s.plus]
            arrays[f"{s.device.name}/node_b"] = names[s.minus]
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    def render(self, fmt: str) -> str | bytes:
        """The map as text (csv, json) or bytes (npz)."""
        if fmt == "csv":
            return self.to_csv()
        if fmt == "json":
            return self.to_json()
        return self.to_npz()


def programmable_sets(network: Network) -> tuple[list[int], list[int]]:
    """Indices of the trainable resistor sets and trainable current-source sets."""
    resistors = [k for k, r in enumerate(network.resistors) if r.device.model.trainable]
    sources = [k for k, s in enumerate(network.isources) if s.device.model.trainable]
    return resistors, sources


def conductance_map(network: Network) -> ConductanceMap:
    """The map of ``network``'s current conductances and bias currents."""
    resistors, sources = programmable_sets(network)
    if not resistors and not sources:
        raise MapError(
            "the circuit has no programmable devices (every device has trainable = false)"
        )
    return ConductanceMap(network, resistors, sources)


def level_ranges(
    network: Network,
    count: int | None,
    g_range: tuple[float, float] | None,
    percentile: float | None = None,
) -> Levels | None:
    """The levels asked for: N from ``count`` or the devices' ``levels``; range from
    ``g_range``, or with ``percentile`` P from each set's trained conductances (the P-th to
    the (100-P)-th percentile, inside the device range), or each device's [g_min, g_max].
    None when no levels are asked for."""
    resistors, _ = programmable_sets(network)
    counts = {network.resistors[k].device.model.levels for k in resistors}
    if count is None:
        if (g_range is not None or percentile is not None) and counts <= {0}:
            raise MapError(
                "{g_range} needs {levels} N (the devices set no levels)",
                params=("g_range", "levels"),
            )
        if counts <= {0}:
            return None
        if len(counts) > 1:
            raise MapError(
                f"the devices set different numbers of levels ({sorted(counts)}); give {{levels}} N",
                params=("levels",),
            )
        count = counts.pop()
    if not 2 <= count <= MAX_LEVELS:
        raise MapError(
            f"{{levels}} {count}: expected at least 2 levels and at most {MAX_LEVELS:,}",
            params=("levels",),
        )
    if g_range is not None:
        low, high = g_range
        if not (np.isfinite(low) and np.isfinite(high) and 0 < low < high):
            raise MapError(
                f"{{g_range}} {low:g},{high:g}: expected MIN,MAX with 0 < MIN < MAX (siemens)",
                params=("g_range",),
            )
        return Levels(count, [(low, high)] * len(resistors))
    ranges = []
    for k in resistors:
        model = network.resistors[k].device.model
        low, high = float(model.low), float(model.high)
        if percentile is not None:
            lo, hi = np.percentile(network.g[k], [percentile, 100.0 - percentile])
            low, high = max(low, float(lo)), min(high, float(hi))
            if not low < high:
                raise MapError(
                    f"{{g_range}} auto:{percentile:g}: the trained conductances of "
                    f"{network.resistors[k].name} span no range there; use a smaller percentile",
                    params=("g_range",),
                )
        elif not (np.isfinite(high) and low > 0):
            raise MapError(
                f"device {network.resistors[k].device.name}: levels need a finite range "
                "[g_min, g_max] > 0; give {g_range} MIN,MAX",
                params=("g_range",),
            )
        ranges.append((low, high))
    return Levels(count, ranges)


def clipped(cmap: ConductanceMap, levels: Levels) -> tuple[list[np.ndarray], int]:
    """The network's conductances with the mapped ones clipped into their level ranges,
    and how many moved: what a level range costs before any rounding."""
    g = list(cmap.network.g)
    moved = 0
    for n_set, k in enumerate(cmap.resistor_sets):
        low, high = levels.ranges[n_set]
        inside = np.clip(g[k], low, high)
        moved += int(np.count_nonzero(inside != g[k]))
        g[k] = inside
    return g, moved


def quantise(cmap: ConductanceMap, levels: Levels) -> ConductanceMap:
    """Round every mapped conductance to the nearest level; changes the network in place."""
    net = cmap.network
    g = list(net.g)
    indices = []
    for n_set, k in enumerate(cmap.resistor_sets):
        low = levels.ranges[n_set][0]
        step = levels.step(n_set)
        index = np.clip(np.rint((g[k] - low) / step), 0, levels.count - 1).astype(np.int64)
        g[k] = levels.values(n_set, index)
        indices.append(index)
    net.set_conductances(g)
    return ConductanceMap(
        net, cmap.resistor_sets, cmap.source_sets, levels, indices, dict(cmap.metadata)
    )


def parameters_digest(network: Network) -> str:
    """SHA-256 of the conductances and currents (bit-exact identity of a programmed state)."""
    h = hashlib.sha256()
    for a in [*network.g, *network.currents]:
        h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- reading


def read_map(path: str | Path, network: Network) -> None:
    """Load a map (csv, json or npz, by suffix) into ``network``, checking it fits.

    Every programmable device must appear exactly once, at the node names the
    network has; current sources may be left out (the network keeps its own).
    """
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in MAP_FORMATS:
        raise MapError(f"{path}: expected a .csv, .json or .npz conductance map")
    if not path.is_file():
        raise MapError(f"{path}: conductance map not found")
    if suffix == "npz":
        _read_npz(path, network)
        return
    reader = _RowReader(path, network)
    try:  # utf-8-sig: a spreadsheet may start the file with a byte order mark
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise MapError(f"{path}: cannot read the map as UTF-8 text ({exc})") from None
    if suffix == "csv":
        rows = csv.DictReader(io.StringIO(text))
        missing = [c for c in ("connection", "kind", "row") if c not in (rows.fieldnames or [])]
        if missing:
            raise MapError(
                f"{path}: line 1: the header lacks column(s) {', '.join(missing)}; "
                f"expected the columns {', '.join(COLUMNS)}"
            )
        for row in rows:
            reader.take(row, f"line {rows.line_num}")
    else:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MapError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise MapError(
                f"{path}: not a conductance map: arrays or objects nested too deeply"
            ) from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise MapError(f'{path}: not a conductance map (expected "format": "{FORMAT}")')
        devices = doc.get("devices")
        if not isinstance(devices, list):
            raise MapError(f'{path}: "devices" must be a list of device objects')
        for i, row in enumerate(devices):
            if not isinstance(row, dict):
                raise MapError(f"{path}: devices[{i}] must be an object")
            reader.take({k: "" if v is None else v for k, v in row.items()}, f"devices[{i}]")
    reader.finish()


class _RowReader:
    """Collects rows of a CSV or JSON map into new conductance and current arrays."""

    def __init__(self, path: Path, network: Network):
        self.path, self.net = path, network
        resistors, sources = programmable_sets(network)
        self.resistors = {network.resistors[k].name: k for k in resistors}
        self.sources = {network.isources[k].device.name: k for k in sources}
        self.g = {k: np.full(network.g[k].shape, np.nan) for k in resistors}
        self.currents = {k: np.full(network.currents[k].shape, np.nan) for k in sources}
        self.seen_sources: set[int] = set()
        self.elements: dict[str, str] = {}  # element name -> where it was given

    def fail(self, where: str, message: str) -> MapError:
        return MapError(f"{self.path}: {where}: {message}")

    def take(self, row: dict, where: str) -> None:
        name, kind = str(row.get("connection", "")), str(row.get("kind", ""))
        names = self.net.node_names
        if kind == RESISTOR:
            k = self._lookup(self.resistors, name, "a programmable resistor set", where)
            r = self.net.resistors[k]
            i = self._index(row, "row", len(r.rows), where)
            if r.dense:
                j = self._index(row, "column", len(r.cols), where)
                a, b, at = r.rows[i], r.cols[j], (i, j)
                element, position = crossbar_element(k, i, j), f"row {i} column {j}"
            else:
                self._unused(row, "column", 0, where)
                a, b, at = r.rows[i], r.cols[i], (i,)
                element, position = r.labels[i], f"row {i}"
            self._element(row, element, f"{name} {position}", where)
            self._nodes(row, names[a], names[b], where)
            self._unused(row, "current_A", FILL["current_A"], where)
            value = self._conductance(row, where)
            target = self.g[k]
        elif kind == CURRENT_SOURCE:
            k = self._lookup(self.sources, name, "a trainable current-source device", where)
            s = self.net.isources[k]
            i = self._index(row, "row", len(s.plus), where)
            self._unused(row, "column", 0, where)
            self._element(row, s.labels[i], f"{name} row {i}", where)
            self._nodes(row, names[s.plus[i]], names[s.minus[i]], where)
            for key in ("conductance_S", "resistance_ohm"):
                self._unused(row, key, FILL[key], where)
            value = self._number(row, "current_A", where)
            target, at = self.currents[k], (i,)
            self.seen_sources.add(k)
        else:
            raise self.fail(where, f'kind "{kind}": expected "{RESISTOR}" or "{CURRENT_SOURCE}"')
        if not np.isnan(target[at]):
            raise self.fail(where, f"{name} row {row.get('row')} appears twice")
        target[at] = value

    def _lookup(self, known: dict[str, int], name: str, what: str, where: str) -> int:
        if name not in known:
            raise self.fail(
                where,
                f'connection "{name}" is not {what} of the circuit; '
                f"expected one of {', '.join(known) or '(none)'}",
            )
        return known[name]

    def _index(self, row: dict, key: str, size: int, where: str) -> int:
        text = str(row.get(key, "")).strip()
        try:
            value = int(text)
        except ValueError:
            raise self.fail(where, f'{key} "{text}": expected an integer') from None
        if not 0 <= value < size:
            raise self.fail(where, f"{key} {value} is out of range: the set has {size}")
        return value

    def _unused(self, row: dict, key: str, fill: float, where: str) -> None:
        """A column that does not apply to the row's kind: empty (older maps) or its fill."""
        text = str(row.get(key, "")).strip()
        try:
            ok = text == "" or float(text) == fill
        except ValueError:
            ok = False
        if not ok:
            raise self.fail(
                where,
                f'{key} "{text}" does not apply to a {row.get("kind")} row: expected {fill!r} '
                "or an empty cell",
            )

    def _element(self, row: dict, expected: str, position: str, where: str) -> None:
        """The element column, when given, names the device at the row's position, once."""
        text = str(row.get("element", ""))
        if text.strip() == "":
            return  # left out: the position says which device it is
        if text in self.elements:
            raise self.fail(
                where, f'element "{text}" appears twice (first at {self.elements[text]})'
            )
        if text != expected:
            raise self.fail(
                where,
                f'element "{text}" does not match the circuit: its device at connection '
                f'{position} is "{expected}" (an edited row, or a map of another circuit? '
                "correct the element or leave its cell empty)",
            )
        self.elements[text] = where

    def _nodes(self, row: dict, a: str, b: str, where: str) -> None:
        got = (str(row.get("node_a", "")), str(row.get("node_b", "")))
        if got != (a, b):
            raise self.fail(
                where,
                f"nodes {got[0]}, {got[1]} do not match the circuit's {a}, {b} at this position",
            )

    def _number(self, row: dict, key: str, where: str) -> float:
        text = str(row.get(key, "")).strip()
        try:
            value = float(text)
        except ValueError:
            raise self.fail(where, f'{key} "{text}": expected a number') from None
        if not np.isfinite(value):
            raise self.fail(where, f"{key} must be finite")
        return value

    def _conductance(self, row: dict, where: str) -> float:
        has_g = str(row.get("conductance_S", "")).strip() != ""
        has_r = str(row.get("resistance_ohm", "")).strip() != ""
        if not (has_g or has_r):
            raise self.fail(where, "expected conductance_S or resistance_ohm")
        g = self._number(row, "conductance_S", where) if has_g else None
        r = self._number(row, "resistance_ohm", where) if has_r else None
        if (g is not None and g <= 0) or (r is not None and r <= 0):
            raise self.fail(where, "conductance and resistance must be > 0")
        if g is not None and r is not None and abs(g * r - 1.0) > AGREE:
            raise self.fail(
                where,
                f"conductance_S {g!r} and resistance_ohm {r!r} disagree; edit one and "
                "leave the other empty",
            )
        return g if g is not None else 1.0 / r

    def finish(self) -> None:
        for k, g in self.g.items():
            missing = int(np.isnan(g).sum())
            if missing:
                raise MapError(
                    f"{self.path}: {missing} of the {g.size} devices of connection "
                    f"{self.net.resistors[k].name} are missing"
                )
        for k in self.seen_sources:
            if np.isnan(self.currents[k]).any():
                raise MapError(
                    f"{self.path}: some current sources of {self.net.isources[k].device.name} "
                    "are missing (give all or none)"
                )
        g = list(self.net.g)
        for k, values in self.g.items():
            g[k] = values
        currents = list(self.net.currents)
        for k in self.seen_sources:
            currents[k] = self.currents[k]
        self.net.set_conductances(g)
        if currents:
            self.net.set_currents(currents)


def _read_npz(path: Path, network: Network) -> None:
    try:
        check_npz_sizes(path)
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise MapError(f"{path}: cannot read the npz map ({exc})") from None
    try:
        meta = json.loads(str(arrays.get("metadata", "")))
    except (json.JSONDecodeError, RecursionError):
        meta = {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise MapError(f'{path}: not a conductance map (its "metadata" lacks format {FORMAT})')
    names = np.array(network.node_names)
    resistors, sources = programmable_sets(network)
    g = list(network.g)
    for k in resistors:
        r = network.resistors[k]
        g[k] = _npz_array(arrays, path, r.name, "conductance_S", network.g[k].shape)
        _npz_nodes(arrays, path, r.name, names[r.rows], names[r.cols])
        if not np.all(np.isfinite(g[k]) & (g[k] > 0)):
            raise MapError(f"{path}: {r.name}/conductance_S must be finite and > 0")
    currents = list(network.currents)
    for k in sources:
        s = network.isources[k]
        key = f"{s.device.name}/current_A"
        if key not in arrays:
            continue
        currents[k] = _npz_array(arrays, path, s.device.name, "current_A", currents[k].shape)
        _npz_nodes(arrays, path, s.device.name, names[s.plus], names[s.minus])
        if not np.all(np.isfinite(currents[k])):
            raise MapError(f"{path}: {key} must be finite")
    network.set_conductances(g)
    if currents:
        network.set_currents(currents)


def _npz_array(arrays: dict, path: Path, name: str, what: str, shape: tuple) -> np.ndarray:
    key = f"{name}/{what}"
    if key not in arrays:
        raise MapError(f"{path}: no array {key} (the circuit has {name})")
    value = np.asarray(arrays[key], dtype=float)
    if value.shape != shape:
        raise MapError(f"{path}: {key} has shape {value.shape}; the circuit's is {shape}")
    return value


def _npz_nodes(arrays: dict, path: Path, name: str, a: np.ndarray, b: np.ndarray) -> None:
    for key, want in ((f"{name}/node_a", a), (f"{name}/node_b", b)):
        got = arrays.get(key)
        if got is None or got.shape != want.shape or not np.array_equal(got.astype(str), want):
            raise MapError(f"{path}: {key} does not match the circuit's node names")


def _polarities(network: Network) -> dict[int, str]:
    """ "+"/"-" for the nodes of differential inputs and outputs."""
    polarity: dict[int, str] = {}
    counts = Counter(v.feature for v in network.graph.vsources if v.feature >= 0)
    twice = {f for f, n in counts.items() if n == 2}
    for v in network.graph.vsources:
        if v.feature in twice:
            polarity[v.plus] = "+" if v.gain > 0 else "-"
    if network.outputs.shape[1] == 2:
        for plus, minus in network.outputs:
            polarity[int(plus)] = "+"
            polarity[int(minus)] = "-"
    return polarity


def _pad(cols: dict[str, list]) -> None:
    """Mark the columns that the last set of devices left out as not applying (None)."""
    rows = len(cols["connection"])
    for values in cols.values():
        values += [None] * (rows - len(values))


def _texts(values: list) -> list[str]:
    """CSV cells: floats as repr (shortest exact), the rest as str."""
    return [repr(v) if isinstance(v, float) else str(v) for v in values]
