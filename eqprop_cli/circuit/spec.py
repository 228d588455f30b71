"""Parse and validate a circuit file (TOML) into a typed spec; every error is located.

The spec layer knows keys, types, units and ranges (from params.py); it knows
nothing of solvers. Checks that need the whole circuit (DC paths, source loops)
happen in graph.py, which reports through the same located errors.
"""

from __future__ import annotations

import difflib
import re
import reprlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..circuit.params import SOLVER, Param
from ..devices import DEVICE_KINDS
from ..devices.update import UpdateModel, parse_update
from ..errors import CircuitError, UnknownKeyError, printable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

KeyPath = tuple[str | int, ...]

GROUND_NAMES = ("0", "gnd")
SELF = "node"  # in a layer's diode list, the layer's own node
SELF_A = "node_a"  # and the output of its amplifier (the node's voltage times the gain)
MAX_SIZE = 1_000_000  # nodes per layer: beyond it compiling would exhaust memory or time
MAX_EPOCHS = 1_000_000  # every epoch adds a row that the run directory rewrites each epoch
MAX_SHIFT = 8  # pixels: beyond it most of an MNIST-sized image leaves the frame
MAX_NAME = 200  # characters of a name
MAX_FILE_BYTES = 64 * 2**20  # a circuit file: parsing takes about 0.2 s per MB
# Names of the circuit, devices, rails, layers, elements and nodes: they reach netlists,
# run directories, CSV headers and messages, so they are plain ASCII words.
NAME = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.+\-]{{0,{MAX_NAME - 1}}}")
NAME_RULE = (
    f"a name of 1 to {MAX_NAME} characters: ASCII letters, digits, _ . + and -, "
    "starting with a letter, a digit or _"
)

CIRCUIT_KEYS = (
    Param("name", "string", "Circuit name.", ""),
    Param("description", "string", "Free text.", ""),
)
INPUT_KEYS = (
    Param("size", "int", "Number of input features.", None, 1, maximum=MAX_SIZE),
    Param(
        "encoding",
        "choice",
        "single: one source per feature (+gain*x); differential: a pair (+gain*x, -gain*x).",
        "differential",
        choices=("single", "differential"),
    ),
    Param("gain", "number", "Volts per unit of input feature.", 1.0),
)
HIDDEN_KEYS = (
    Param("name", "string", "Layer name used by connections.", None),
    Param("size", "int", "Number of nodes.", None, 1, maximum=MAX_SIZE),
    Param("amplifier", "string", "Amplifier device after each node (optional).", None),
    Param("bias", "string", "Current-source device into each node (optional).", None),
)
OUTPUT_KEYS = (
    Param("size", "int", "Number of outputs (classes).", None, 1, maximum=MAX_SIZE),
    Param(
        "readout",
        "choice",
        "single: one node per output; differential: a node pair, output = V+ - V-.",
        "differential",
        choices=("single", "differential"),
    ),
    Param("bias", "string", "Current-source device into each node (optional).", None),
)
DIODE_ATTACH_KEYS = (
    Param("device", "string", "Diode device.", None),
    Param(
        "anode",
        "string",
        f'"{SELF}" (the layer node), "{SELF_A}" (its amplifier output), a rail or ground.',
        None,
    ),
    Param(
        "cathode",
        "string",
        f'"{SELF}" (the layer node), "{SELF_A}" (its amplifier output), a rail or ground.',
        None,
    ),
)
CONNECTION_KEYS = (
    Param("from", "string", "Source layer (input, a hidden layer's name).", None),
    Param("to", "string", "Target layer (a hidden layer's name or output).", None),
    Param("device", "string", "Resistor device of every conductance.", None),
    Param("pattern", "choice", "Which pairs are connected.", "dense", choices=("dense",)),
)
NETLIST_KEYS = (
    Param("ground", "string", 'Name of the ground node ("0" is always ground too).', "gnd"),
    Param("input_gain", "number", "Volts per unit of input feature.", 1.0),
)
ELEMENT_KEYS = (
    Param("name", "string", "Unique element name.", None),
    Param("device", "string", "Device this element is an instance of.", None),
    Param("feature", "int", "vsource only: input feature index driving it.", None, 0),
)
TRAINING_KEYS = (
    Param(
        "dataset",
        "string",
        'A dataset name ("mnist", "fashion-mnist", "mnist-mini", "xor") or the path of an '
        "IDX folder, .npz or .csv file.",
        "mnist-mini",
    ),
    Param("data_path", "string", "Where to find a named dataset (overrides the search).", None),
    Param(
        "label_column",
        "string",
        "The label column of a .csv dataset: integer classes, or class names (sorted).",
        "label",
    ),
    Param("train_subset", "int", "Train on this many samples only (0: all).", 0, 0),
    Param("test_subset", "int", "Evaluate on this many test samples only (0: all).", 0, 0),
    Param(
        "validation",
        "number",
        "Held out of the training set: a fraction (< 1) or a count of samples.",
        0.0,
        0,
    ),
    Param("seed", "int", "Seed of shuffling, subsets, image shifts and random nudge signs.", 0, 0),
    Param(
        "shift",
        "int",
        "Augmentation: move each training image by a random whole number of pixels, up to "
        "this many along each axis, drawn afresh every epoch (0: none; square images only).",
        0,
        0,
        maximum=MAX_SHIFT,
    ),
    Param("epochs", "int", "Passes over the training set.", 10, 1, maximum=MAX_EPOCHS),
    Param("batch_size", "int", "Samples per conductance update.", 16, 1),
    Param(
        "loss",
        "choice",
        "Loss at the readout: squared error, or softmax cross-entropy (current nudge only).",
        "squared_error",
        choices=("squared_error", "cross_entropy"),
    ),
    Param("target_high", "voltage", "squared_error: target readout of the true class.", 1.0),
    Param("target_low", "voltage", "squared_error: target readout of the other classes.", 0.0),
    Param(
        "temperature", "voltage", "cross_entropy: readout volts per unit of logit.", 0.25, 0, True
    ),
    Param(
        "nudge",
        "choice",
        "conductance: beta across each output to a source at its target; "
        "current: a current source of beta times the loss gradient at the free state.",
        "conductance",
        choices=("conductance", "current"),
    ),
    Param("beta", "conductance", "Nudge strength.", 1e-6, 0, True),
    Param(
        "phases",
        "choice",
        "Nudged phases: centred (+beta and -beta), positive (free and +beta), "
        "negative (free and -beta), random (free and a random-sign beta per batch).",
        "centred",
        choices=("centred", "positive", "negative", "random"),
    ),
    Param(
        "learning_rate",
        "number",
        "SGD step on conductances normalised by g_max (currents by their scale).",
        0.01,
        0,
        True,
    ),
    Param("momentum", "number", "SGD momentum (0: none).", 0.0, 0, maximum=0.999),
    Param(
        "schedule",
        "choice",
        "Learning-rate schedule over epochs.",
        "constant",
        choices=("constant", "step", "exponential", "cosine"),
    ),
    Param("decay", "number", "step/exponential: factor applied to the rate.", 0.5, 0, True, 1.0),
    Param("decay_every", "int", "step: epochs between decays.", 1, 1),
    Param(
        "free_tol", "current", "Free phase KCL tolerance (default: [solver] tol).", None, 0, True
    ),
    Param(
        "nudged_tol", "current", "Nudged phase KCL tolerance (default: free_tol).", None, 0, True
    ),
    Param("free_max_iter", "int", "Free phase iteration limit (default: [solver]).", None, 1),
    Param("nudged_max_iter", "int", "Nudged phase iteration limit (default: [solver]).", None, 1),
    Param("warm_start", "bool", "Start each nudged phase from the free equilibrium.", True),
    Param("eval_batch_size", "int", "Samples per solve when evaluating.", 1000, 1),
    # how the learning circuit measures the phases (learn.programming.Measurement)
    Param(
        "read_noise",
        "voltage",
        "Std of the Gaussian noise on each measured node potential of each phase (0: none).",
        0.0,
        0,
    ),
    Param(
        "adc_bits",
        "int",
        "Resolution of the ADC reading node potentials (0: exact).",
        0,
        0,
        maximum=24,
    ),
    Param(
        "adc_range",
        "voltage",
        "The ADC reads -adc_range .. +adc_range (clipping beyond).",
        1.0,
        0,
        True,
    ),
    Param(
        "nudge_error",
        "number",
        "Relative std of the nudge's strength, one draw per nudged phase and batch (0: exact).",
        0.0,
        0,
        maximum=1.0,
        relative=True,
    ),
)
TRAINING_KEY = {p.name: p for p in TRAINING_KEYS}  # by name (options that stand for them)


@dataclass(frozen=True)
class TrainingSpec:
    """The [training] section, every key resolved (defaults filled in) and typed: one
    field per key of TRAINING_KEYS, in its order (what each means is there)."""

    dataset: str
    data_path: str | None
    label_column: str
    train_subset: int
    test_subset: int
    validation: float  # a fraction (< 1) or a whole count
    seed: int
    shift: int
    epochs: int
    batch_size: int
    loss: str
    target_high: float
    target_low: float
    temperature: float
    nudge: str
    beta: float
    phases: str
    learning_rate: float
    momentum: float
    schedule: str
    decay: float
    decay_every: int
    free_tol: float | None
    nudged_tol: float | None
    free_max_iter: int | None
    nudged_max_iter: int | None
    warm_start: bool
    eval_batch_size: int
    read_noise: float
    adc_bits: int
    adc_range: float
    nudge_error: float
    learning_rates: dict[str, float] = field(default_factory=dict)  # per set or source device
    key: KeyPath = ("training",)

    @classmethod
    def defaults(cls) -> TrainingSpec:
        """Every key at its default: what a file without [training] trains with."""
        return cls(**{p.name: p.default for p in TRAINING_KEYS})

    def document(self) -> dict[str, object]:
        """As a TOML table (no None values), for a run's resolved config."""
        values = ((p.name, getattr(self, p.name)) for p in TRAINING_KEYS)
        table = {k: v for k, v in values if v is not None}
        if self.learning_rates:
            table["learning_rates"] = dict(self.learning_rates)
        return table


@dataclass(frozen=True)
class DeviceSpec:
    """A [devices] table: its validated values, and the typed model built from them once
    (what everything downstream reads; see eqprop_cli.devices)."""

    name: str
    type: str
    params: dict[str, object]
    key: KeyPath
    model: object = None
    group: str = ""  # the element group of its kind (DeviceKind.element_group)
    update: UpdateModel | None = None  # how a programmable resistor responds to programming


@dataclass(frozen=True)
class DiodeAttach:
    device: str
    anode: str
    cathode: str
    key: KeyPath


@dataclass(frozen=True)
class InputSpec:
    size: int
    encoding: str
    gain: float
    key: KeyPath = ("input",)


@dataclass(frozen=True)
class LayerSpec:
    name: str
    size: int
    diodes: tuple[DiodeAttach, ...]
    amplifier: str | None
    bias: str | None
    key: KeyPath


@dataclass(frozen=True)
class OutputSpec:
    size: int
    readout: str
    diodes: tuple[DiodeAttach, ...]
    bias: str | None
    key: KeyPath = ("output",)


@dataclass(frozen=True)
class ConnectionSpec:
    source: str
    target: str
    device: str
    pattern: str
    key: KeyPath


@dataclass(frozen=True)
class ElementSpec:
    name: str
    device: str
    nodes: tuple[str, str]
    feature: int | None
    overrides: dict[str, object]
    key: KeyPath


@dataclass(frozen=True)
class NetlistSpec:
    ground: str
    input_gain: float
    inputs: tuple[tuple[str, ...], ...]
    outputs: tuple[tuple[str, ...], ...]
    elements: tuple[ElementSpec, ...]


@dataclass(frozen=True)
class SolverSpec:
    method: str = "auto"
    tol: float = 1e-10
    max_iter: int = 1000
    vtol: float = 1e-9
    dtype: str = "float64"


@dataclass
class CircuitSpec:
    """A validated circuit file: devices plus either the layered or the netlist form."""

    path: str
    name: str
    description: str
    devices: dict[str, DeviceSpec]
    rails: dict[str, float]
    solver: SolverSpec
    input: InputSpec | None = None
    hidden: tuple[LayerSpec, ...] = ()
    output: OutputSpec | None = None
    connections: tuple[ConnectionSpec, ...] = ()
    netlist: NetlistSpec | None = None
    training: TrainingSpec | None = None
    locator: Locator | None = field(default=None, repr=False)
    document: dict = field(default_factory=dict, repr=False)  # the TOML data, overrides applied

    @property
    def form(self) -> str:
        return "netlist" if self.netlist is not None else "layered"

    def error(self, key: KeyPath, message: str) -> CircuitError:
        """A located error for ``key`` of this file (or of the override that gave it)."""
        return (
            self.locator.error(self.path, key, message)
            if self.locator
            else CircuitError(message, path=self.path, key=format_key(key))
        )

    def resolved_document(self) -> dict:
        """The file's data with --set overrides applied and [training] fully resolved."""
        data = dict(self.document)
        if self.training is not None:
            data["training"] = self.training.document()
        return data


def format_key(key: KeyPath) -> str:
    out = ""
    for part in key:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --------------------------------------------------------------------------- locating keys


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(
    r"^\s*((?:[A-Za-z0-9_\-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_\-]+|\"[^\"]*\"|'[^']*'))*)\s*="
)


# One segment of a dotted TOML key: "quoted", 'quoted' or bare.
_KEY_SEGMENT = r"\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_\-]+)"


def _split_dotted(text: str) -> tuple[str, ...]:
    parts = re.findall(_KEY_SEGMENT, text)
    return tuple(_unescape(a) if a else b or c for a, b, c in parts)


def _unescape(quoted: str) -> str:
    """A basic-string key segment's TOML escapes (\\n, \\u000a, ...) decoded."""
    if "\\" not in quoted:
        return quoted
    try:
        return tomllib.loads(f'k = "{quoted}"')["k"]
    except tomllib.TOMLDecodeError:
        return quoted


# A basic or literal string; possessive, unrolled: linear time on a string of megabytes.
_STRINGS = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"|\'[^\']*+\'')


def _strip_strings(line: str) -> str:
    """The line without quoted strings and comments, so brackets can be counted."""
    line = _STRINGS.sub('""', line)
    return line.split("#", 1)[0]


class Locator:
    """Maps key paths of a TOML text to line numbers (tables, arrays of tables, keys)."""

    def __init__(self, text: str):
        self.overridden: dict[KeyPath, str] = {}  # key paths set by --set, with the option
        self._lines: dict[KeyPath, int] = {}
        arrays: dict[KeyPath, int] = {}
        table: KeyPath = ()
        depth = 0  # bracket depth of a multi-line value: its inner lines hold no keys
        value: KeyPath | None = None  # key of the value being read, whose items are located
        item = 0
        for number, raw in enumerate(text.splitlines(), 1):
            line = _strip_strings(raw)
            segment = line
            if depth == 0:
                header = _HEADER.match(line)
                if header:
                    names = _split_dotted(raw[raw.index("[") :].strip("[] \t").split("#")[0])
                    table = self._resolve(names, arrays)
                    if header.group(1) == "[[":
                        self._lines.setdefault(table, number)  # the array: its first entry
                        index = arrays.get(table, -1) + 1
                        arrays[table] = index
                        table = (*table, index)
                    self._lines.setdefault(table, number)
                    continue
                assign = _ASSIGN.match(raw)
                value, item = None, 0
                if assign:
                    value = (*table, *_split_dotted(assign.group(1)))
                    self._lines.setdefault(value, number)
                    segment = line.split("=", 1)[-1]
            for char in segment:  # items of an array: the line each one starts on
                if char in "[{":
                    if depth == 0 and char == "{":
                        value = None  # an inline table: its keys share its line
                    if depth == 1 and value is not None:
                        self._lines.setdefault((*value, item), number)
                    depth += 1
                elif char in "]}":
                    depth = max(0, depth - 1)
                elif depth == 1 and value is not None:
                    if char == ",":
                        item += 1
                    elif not char.isspace():
                        self._lines.setdefault((*value, item), number)

    @staticmethod
    def _resolve(names: tuple[str, ...], arrays: dict[KeyPath, int]) -> KeyPath:
        path: KeyPath = ()
        for i, name in enumerate(names):
            path = (*path, name)
            if i < len(names) - 1 and path in arrays:
                path = (*path, arrays[path])
        return path

    def error(
        self, path: str, key: KeyPath, message: str, kind: type[CircuitError] = CircuitError
    ) -> CircuitError:
        """A CircuitError (or ``kind``) at ``key``: its line, or the override (or option)
        that set it."""
        key = tuple(key)
        for k in range(len(key), 0, -1):
            if key[:k] in self.overridden:
                option = self.overridden[key[:k]]
                if isinstance(option, OptionOverride):  # --seed N: named as given
                    return kind(
                        f"{message} (from {option.option} {option.value})",
                        path=path,
                        key=format_key(key),
                    )
                return kind(
                    f"{message} (from {{override}} {option})",
                    path=path,
                    key=format_key(key),
                    params=("override",),
                )
        return kind(message, path=path, key=format_key(key), line=self.line(key))

    def line(self, key: KeyPath) -> int | None:
        """Line of ``key``, or of its nearest located ancestor."""
        key = tuple(key)
        while key:
            if key in self._lines:
                return self._lines[key]
            key = key[:-1]
        return None


# --------------------------------------------------------------------------- validation


class _Reader:
    """Reads tables against parameter lists; every complaint is a located CircuitError."""

    def __init__(self, path: str, locator: Locator):
        self.path = path
        self.locator = locator

    def error(
        self, key: KeyPath, message: str, kind: type[CircuitError] = CircuitError
    ) -> CircuitError:
        return self.locator.error(self.path, key, message, kind)

    def expect_table(self, value: object, key: KeyPath) -> Mapping:
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be a table; got {_show(value)}")
        return value

    def unknown(self, table: Mapping, allowed: list[str], key: KeyPath) -> None:
        for name in table:
            if name not in allowed:
                near = difflib.get_close_matches(str(name), allowed, n=1)
                hint = (
                    f'; did you mean "{near[0]}"?' if near else f"; allowed: {', '.join(allowed)}"
                )
                raise self.error((*key, name), f"unknown key{hint}", UnknownKeyError)

    def values(
        self,
        table: Mapping,
        params: tuple[Param, ...],
        key: KeyPath,
        required: tuple[str, ...] = (),
        extra: tuple[str, ...] = (),
    ) -> dict[str, object]:
        """Coerce every known key; reject unknown ones; fill defaults."""
        self.unknown(table, [p.name for p in params] + list(extra), key)
        out: dict[str, object] = {}
        for param in params:
            if param.name in table:
                try:
                    out[param.name] = param.coerce(table[param.name])
                except ValueError as exc:
                    raise self.error(
                        (*key, param.name), f"must be {exc}; got {_show(table[param.name])}"
                    ) from None
            elif param.name in required:
                raise self.error(key, f"missing key `{param.name}` ({param.expectation()})")
            else:
                out[param.name] = param.default
        return out

    def name(self, value: object, key: KeyPath) -> str:
        """``value`` if it is a valid name (NAME_RULE), else a located error."""
        if not isinstance(value, str) or not NAME.fullmatch(value):
            raise self.error(key, f"must be {NAME_RULE}; got {_show(value)}")
        return value

    def list_of_tables(self, value: object, key: KeyPath) -> list[Mapping]:
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            raise self.error(key, f"must be an array of tables; got {_show(value)}")
        return value


_SHORT = reprlib.Repr()  # bounded: a value may be huge or deeply nested
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 80, 80


def _show(value: object) -> str:
    text = _SHORT.repr(value) if not isinstance(value, str) else f'"{value[:80]}"'
    text = printable(text)
    return text if len(text) < 60 else text[:57] + "..."


TOP_KEYS = [
    "circuit",
    "devices",
    "rails",
    "solver",
    "input",
    "hidden",
    "output",
    "connections",
    "netlist",
    "elements",
    "training",
]


class OptionOverride(str):
    """An override that a command's own option makes ("training.seed=3" from --seed 3): it
    is applied as any "KEY=VALUE", and an error at its key names that option, not --set."""

    option: str
    value: str

    def __new__(cls, option: str, key: str, value: object) -> OptionOverride:
        self = super().__new__(cls, f"{key}={value}")
        self.option, self.value = option, str(value)
        return self


def load_circuit(path: str | Path, overrides: Sequence[str] = ()) -> CircuitSpec:
    """Read and validate a circuit file; raise CircuitError naming file and line on any fault.

    ``overrides`` are --set options, "dotted.key=VALUE" (VALUE in TOML, else a string).
    """
    return parse_circuit(read_text(path), str(path), overrides)


def read_text(path: str | Path) -> str:
    """A TOML file's text; CircuitError naming the file when it cannot be read."""
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size > MAX_FILE_BYTES:
            raise CircuitError(
                f"{path.stat().st_size:,} bytes is larger than a circuit file may be "
                f"({MAX_FILE_BYTES:,} bytes)",
                path=str(path),
            )
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CircuitError("file not found", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CircuitError(f"cannot read the file ({exc})", path=str(path)) from None


def read_toml(text: str, path: str) -> dict:
    """Parse TOML text; CircuitError with the file and line when it is not valid TOML."""
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise CircuitError(
            "not valid TOML for eqprop: arrays or tables nested too deeply (a circuit file "
            "needs at most 3 levels)",
            path=path,
        ) from None
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise CircuitError(
            f"not valid TOML: {reason}", path=path, line=int(found.group(1)) if found else None
        ) from None


def parse_circuit(text: str, path: str = "<circuit>", overrides: Sequence[str] = ()) -> CircuitSpec:
    """Validate circuit-file text; ``path`` is only used in messages."""
    data = read_toml(text, path)
    locator = Locator(text)
    for option in overrides:
        key, value = _parse_override(option, path)
        _apply_override(data, key, value, option, path)
        locator.overridden[key] = option
    spec = _build(data, _Reader(path, locator), path, locator)
    spec.document = data
    return spec


def _parse_override(option: str, path: str) -> tuple[KeyPath, object]:
    """ "a.b.0.c=VALUE" -> (("a", "b", 0, "c"), value); VALUE is TOML, else a plain string."""
    name, sep, text = _split_assignment(option)
    matches = list(_OVERRIDE_KEY.finditer(name))
    parts = [m.groups() for m in matches]
    whole = "".join(m.group(0) for m in matches) == name
    if not sep or not parts or not whole or not all(any(p) for p in parts):  # no empty segment
        raise CircuitError(
            f'{{override}} {option}: expected KEY=VALUE with a dotted key, e.g. "training.epochs=1"',
            path=path,
            params=("override",),
        )
    try:
        value = tomllib.loads(f"value = {text.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = text.strip()  # an unquoted string, as the shell leaves it
    except RecursionError:
        raise CircuitError(
            f"{{override}} {_show(option)}: the value nests arrays or tables too deeply (a "
            "circuit file needs at most 3 levels)",
            path=path,
            params=("override",),
        ) from None
    return tuple(
        int(bare) if bare and bare.isdigit() else bare or quoted or single
        for quoted, single, bare in parts
    ), value


# One segment of a --set key, then a dot or the end (every character of the key is in one).
_OVERRIDE_KEY = re.compile(rf"\s*(?:{_KEY_SEGMENT})\s*(?:\.(?=.)|$)")


def _split_assignment(option: str) -> tuple[str, str, str]:
    """KEY=VALUE split at the first "=" outside a quoted key segment."""
    quote = ""
    for i, ch in enumerate(option):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "=":
            return option[:i], "=", option[i + 1 :]
    return option, "", ""


def _apply_override(data: dict, key: KeyPath, value: object, option: str, path: str) -> None:
    node: object = data
    for depth, part in enumerate(key[:-1]):
        nxt = key[depth + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise UnknownKeyError(
                    f"{{override}} {option}: `{format_key(key[: depth + 1])}` does not exist",
                    path=path,
                    params=("override",),
                )
            node = node[part]
        elif isinstance(node, dict):
            node = node.setdefault(part, [] if isinstance(nxt, int) else {})
        else:
            raise UnknownKeyError(
                f"{{override}} {option}: `{format_key(key[:depth])}` is not a table",
                path=path,
                params=("override",),
            )
    last = key[-1]
    if isinstance(last, int) or not isinstance(node, dict):
        raise UnknownKeyError(
            f"{{override}} {option}: can only set a key of a table", path=path, params=("override",)
        )
    node[last] = value


def _build(data: Mapping, rd: _Reader, path: str, locator: Locator) -> CircuitSpec:
    rd.unknown(data, TOP_KEYS, ())
    circuit = rd.values(
        rd.expect_table(data.get("circuit", {}), ("circuit",)), CIRCUIT_KEYS, ("circuit",)
    )
    if circuit["name"]:
        rd.name(circuit["name"], ("circuit", "name"))
    devices = _devices(data.get("devices", {}), rd)
    rails = _rails(data.get("rails", {}), rd)
    solver = SolverSpec(
        **rd.values(rd.expect_table(data.get("solver", {}), ("solver",)), SOLVER, ("solver",))
    )
    spec = CircuitSpec(
        path,
        str(circuit["name"]),
        str(circuit["description"]),
        devices,
        rails,
        solver,
        locator=locator,
    )
    if "training" in data:
        spec.training = _training(data["training"], rd)
    layered = [k for k in ("input", "hidden", "output", "connections") if k in data]
    netlist = [k for k in ("netlist", "elements") if k in data]
    if layered and netlist:
        raise rd.error(
            (netlist[0],), f"a circuit is either layered ([{layered[0]}]) or a netlist, not both"
        )
    if netlist:
        if "rails" in data:
            raise rd.error(
                ("rails",), "[rails] belong to the layered form; in a netlist, use vsource elements"
            )
        spec.netlist = _netlist(data, rd)
    elif layered:
        _layered(data, rd, spec)
    else:
        raise rd.error(
            (),
            "describes no circuit: add [input], [[hidden]], [output] and [[connections]] (layered form) or [netlist] and [[elements]]",
        )
    return spec


def _training(table: object, rd: _Reader) -> TrainingSpec:
    key: KeyPath = ("training",)
    table = rd.expect_table(table, key)
    values = rd.values(table, TRAINING_KEYS, key, extra=("learning_rates",))
    rates = rd.expect_table(table.get("learning_rates", {}), (*key, "learning_rates"))
    rate = Param("rate", "number", "", None, 0, True)
    learning_rates = {}
    for name, value in rates.items():
        try:
            learning_rates[str(name)] = float(rate.coerce(value))
        except ValueError as exc:
            raise rd.error(
                (*key, "learning_rates", name), f"must be {exc}; got {_show(value)}"
            ) from None
    validation = values["validation"]
    if validation >= 1 and validation != int(validation):
        raise rd.error(
            (*key, "validation"), f"must be a fraction below 1 or a whole count; got {validation:g}"
        )
    if values["loss"] == "cross_entropy" and values["nudge"] == "conductance":
        raise rd.error(
            (*key, "nudge"),
            'cross_entropy has no conductance nudge (its loss is not a resistor\'s co-content); use nudge = "current"',
        )
    return TrainingSpec(**values, learning_rates=learning_rates)


def _devices(table: object, rd: _Reader) -> dict[str, DeviceSpec]:
    table = rd.expect_table(table, ("devices",))
    out = {}
    for name, body in table.items():
        key = ("devices", name)
        rd.name(name, key)
        body = rd.expect_table(body, key)
        kind_name = body.get("type")
        if "type" not in body:
            raise rd.error(key, f"missing key `type` (one of {', '.join(DEVICE_KINDS)})")
        if not isinstance(kind_name, str) or kind_name not in DEVICE_KINDS:
            near = difflib.get_close_matches(str(kind_name), list(DEVICE_KINDS), n=1)
            hint = f'; did you mean "{near[0]}"?' if near else ""
            raise rd.error(
                (*key, "type"),
                f"must be one of {', '.join(DEVICE_KINDS)}; got {_show(kind_name)}{hint}",
            )
        kind = DEVICE_KINDS[kind_name]
        given = {k: v for k, v in body.items() if k not in ("type", "update")}
        learns = kind.element_group == "resistor"
        if "update" in body and not learns:
            raise rd.error((*key, "update"), "only programmable resistors have an update model")
        params = rd.values(given, kind.params, key)
        if kind.check is not None:
            kind.check(params, given, key, rd.error)
        update = parse_update(body.get("update", {}), rd, (*key, "update")) if learns else None
        out[name] = DeviceSpec(
            name, kind_name, params, key, kind.build(params), kind.element_group, update
        )
    return out


def element_model(spec: CircuitSpec, device: DeviceSpec, element: ElementSpec) -> object:
    """The model of one netlist element: its device's, with the keys the element sets
    for itself (validated by the same table)."""
    kind = DEVICE_KINDS[device.type]
    overrides = {}
    for name, value in element.overrides.items():
        if name not in kind.element_keys:
            allowed = kind.element_keys
            hint = (
                f"; an element of a {device.type} may set: {', '.join(allowed)}" if allowed else ""
            )
            raise spec.error((*element.key, name), f"unknown key{hint}")
        try:
            overrides[name] = kind.param(name).coerce(value)
        except ValueError as exc:
            raise spec.error((*element.key, name), f"must be {exc}; got {value!r}") from None
    if kind.element is None:
        return device.model
    return kind.element(device.model, overrides, element.key, device.key, spec.error)


def _rails(table: object, rd: _Reader) -> dict[str, float]:
    table = rd.expect_table(table, ("rails",))
    volt = Param("rail", "voltage", "Rail potential.")
    out = {}
    for name, value in table.items():
        rd.name(name, ("rails", name))
        if name in GROUND_NAMES:
            raise rd.error(("rails", name), "ground is always 0 V and cannot be a rail")
        if name in (SELF, SELF_A):
            raise rd.error(
                ("rails", name),
                f'"{name}" names a layer node in diode lists; it cannot be a rail',
            )
        try:
            out[name] = float(volt.coerce(value))
        except ValueError as exc:
            raise rd.error(("rails", name), f"must be {exc}; got {_show(value)}") from None
    return out


def _diodes(value: object, rd: _Reader, key: KeyPath) -> tuple[DiodeAttach, ...]:
    out = []
    for i, body in enumerate(rd.list_of_tables(value, key)):
        v = rd.values(body, DIODE_ATTACH_KEYS, (*key, i), required=("device", "anode", "cathode"))
        out.append(DiodeAttach(v["device"], v["anode"], v["cathode"], (*key, i)))
    return tuple(out)


def _layered(data: Mapping, rd: _Reader, spec: CircuitSpec) -> None:
    for section in ("input", "output", "connections"):
        if section not in data:
            raise rd.error(
                (),
                f"layered circuit needs [{section}]"
                if section != "connections"
                else "layered circuit needs [[connections]]",
            )
    inp = rd.values(
        rd.expect_table(data["input"], ("input",)), INPUT_KEYS, ("input",), required=("size",)
    )
    spec.input = InputSpec(inp["size"], inp["encoding"], inp["gain"])
    hidden = []
    for i, body in enumerate(rd.list_of_tables(data.get("hidden", []), ("hidden",))):
        key: KeyPath = ("hidden", i)
        v = rd.values(body, HIDDEN_KEYS, key, required=("size",), extra=("diodes",))
        name = rd.name(v["name"], (*key, "name")) if v["name"] is not None else f"hidden{i + 1}"
        hidden.append(
            LayerSpec(
                name,
                v["size"],
                _diodes(body.get("diodes", []), rd, (*key, "diodes")),
                v["amplifier"],
                v["bias"],
                key,
            )
        )
    spec.hidden = tuple(hidden)
    out_table = rd.expect_table(data["output"], ("output",))
    o = rd.values(out_table, OUTPUT_KEYS, ("output",), required=("size",), extra=("diodes",))
    spec.output = OutputSpec(
        o["size"],
        o["readout"],
        _diodes(out_table.get("diodes", []), rd, ("output", "diodes")),
        o["bias"],
    )
    conns = []
    for i, body in enumerate(rd.list_of_tables(data["connections"], ("connections",))):
        v = rd.values(body, CONNECTION_KEYS, ("connections", i), required=("from", "to", "device"))
        conns.append(
            ConnectionSpec(v["from"], v["to"], v["device"], v["pattern"], ("connections", i))
        )
    spec.connections = tuple(conns)


def _node_groups(value: object, rd: _Reader, key: KeyPath) -> tuple[tuple[str, ...], ...]:
    """A list of node names, or of [plus, minus] pairs (differential)."""
    if not isinstance(value, list):
        raise rd.error(
            key, f"must be a list of node names or of [plus, minus] pairs; got {_show(value)}"
        )
    groups = []
    for item in value:
        group = (
            (item,) if isinstance(item, str) else tuple(item) if isinstance(item, list) else None
        )
        if group is None or not all(isinstance(n, str) for n in group) or len(group) not in (1, 2):
            raise rd.error(
                key,
                f"must be a list of node names or of [plus, minus] pairs; got item {_show(item)}",
            )
        for node in group:
            rd.name(node, key)
        groups.append(group)
    if len({len(g) for g in groups}) > 1:
        raise rd.error(key, "mixes single nodes and pairs: use one kind throughout")
    return tuple(groups)


def _netlist(data: Mapping, rd: _Reader) -> NetlistSpec:
    table = rd.expect_table(data.get("netlist", {}), ("netlist",))
    v = rd.values(table, NETLIST_KEYS, ("netlist",), extra=("inputs", "outputs"))
    rd.name(v["ground"], ("netlist", "ground"))
    inputs = _node_groups(table.get("inputs", []), rd, ("netlist", "inputs"))
    if "outputs" not in table:
        raise rd.error(
            ("netlist",), "missing key `outputs` (the output nodes, or [plus, minus] pairs)"
        )
    outputs = _node_groups(table["outputs"], rd, ("netlist", "outputs"))
    elements = []
    for i, body in enumerate(rd.list_of_tables(data.get("elements", []), ("elements",))):
        key: KeyPath = ("elements", i)
        base = {k: body[k] for k in ("name", "device", "feature") if k in body}
        e = rd.values(base, ELEMENT_KEYS, key, required=("name", "device"))
        nodes = body.get("nodes")
        if not (
            isinstance(nodes, list) and len(nodes) == 2 and all(isinstance(n, str) for n in nodes)
        ):
            raise rd.error((*key, "nodes"), f"must be a list of two node names; got {_show(nodes)}")
        rd.name(e["name"], (*key, "name"))
        for node in nodes:
            rd.name(node, (*key, "nodes"))
        overrides = {
            k: val for k, val in body.items() if k not in ("name", "device", "feature", "nodes")
        }
        elements.append(
            ElementSpec(e["name"], e["device"], (nodes[0], nodes[1]), e["feature"], overrides, key)
        )
    if not elements:
        raise rd.error(("elements",), "a netlist needs at least one [[elements]] entry")
    return NetlistSpec(v["ground"], v["input_gain"], inputs, outputs, tuple(elements))
