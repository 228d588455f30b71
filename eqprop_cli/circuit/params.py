"""Parameter tables: how a key is declared (Param), the device kind's table type
(DeviceKind; each kind's own table is in its module of eqprop_cli.devices), the
[solver] keys, and the physical constants that exports share with ngspice.

Parsing, validation, error messages, the man page test and the SPICE exporter
all read these tables, so a key exists in exactly one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..circuit.units import parse_si

INT_LIMIT = 2**63 - 1  # integer keys reach numpy and compiled code as 64-bit integers
UNITS = {
    "conductance": "S",
    "resistance": "Ω",
    "voltage": "V",
    "current": "A",
    "temperature": "K",
}


@dataclass(frozen=True)
class Param:
    """One key: its kind (and so its unit), default, bounds and help text."""

    name: str
    kind: str  # conductance|resistance|voltage|current|temperature|number|int|bool|choice|string|names
    help: str
    default: object = None
    minimum: float | None = None
    exclusive_min: bool = False
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    allow_inf: bool = False
    relative: bool = False  # a fraction (0.05 = 5%): above 1, the message asks about percent

    @property
    def unit(self) -> str:
        return UNITS.get(self.kind, "")

    def expectation(self) -> str:
        """What a valid value looks like, for error messages."""
        if self.kind == "choice":
            return "one of " + ", ".join(f'"{c}"' for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        if self.kind == "string":
            return "a string"
        noun = {"int": "an integer", "number": "a number"}.get(self.kind, f"a {self.kind}")
        bounds = []
        shown = (lambda b: str(int(b))) if self.kind == "int" else (lambda b: f"{b:g}")
        if self.minimum is not None:
            bounds.append(f"{'>' if self.exclusive_min else '>='} {shown(self.minimum)}")
        if self.maximum is not None:
            bounds.append(f"<= {shown(self.maximum)}")
        unit = f" {self.unit}" if self.unit else ""
        text = noun + (" " + " and ".join(b + unit for b in bounds) if bounds else "")
        if not bounds and unit:
            text += f" in{unit}"
        if self.allow_inf:
            text += ' (or "inf")'
        return text

    def coerce(self, value: object) -> object:
        """Return the validated value or raise ValueError with the expectation."""
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(self.expectation())
            return value
        if self.kind in ("string", "choice"):
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise ValueError(self.expectation())
            return value
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(self.expectation())
            if abs(value) > INT_LIMIT:
                raise ValueError(f"{self.expectation()} that fits in 64 bits (at most {INT_LIMIT})")
            number = float(value)
        else:
            try:
                number = parse_si(value, self.unit)
            except ValueError as exc:
                raise ValueError(f"{self.expectation()} ({exc})") from None
        if math.isnan(number) or (math.isinf(number) and not self.allow_inf):
            raise ValueError(self.expectation())
        if self.minimum is not None and (
            number < self.minimum or (self.exclusive_min and number == self.minimum)
        ):
            raise ValueError(self.expectation())
        if self.maximum is not None and number > self.maximum:
            raise ValueError(self.expectation() + (percent_hint(number) if self.relative else ""))
        return int(value) if self.kind == "int" else number


def percent_hint(fraction: float) -> str:
    """For a relative value above 1, most likely a percentage typed as a number: the
    question to ask (" (5 is 500%: did you mean 0.05?)"); nothing for 1 or less."""
    if not fraction > 1:
        return ""
    return f" ({fraction:g} is {100 * fraction:g}%: did you mean {fraction / 100:g}?)"


ErrorAt = Callable[[tuple, str], Exception]  # (key path, message) -> a located error


def outside(
    name: str, value: float, unit: str, bounds: tuple[str, str], low: float, high: float
) -> str:
    """The one message of a value outside the range two other parameters set (a single
    parameter's own bounds are Param.expectation's)."""
    return (
        f"{name} = {value:g} {unit} is outside [{bounds[0]}, {bounds[1]}] = "
        f"[{low:g}, {high:g}] {unit}"
    )


@dataclass(frozen=True)
class DeviceKind:
    """A device type of circuit files (``type = NAME``): its parameter table, and how its
    validated values become the typed model that everything downstream reads.

    ``group`` is the element group its elements join in the compiled graph, one of
    GROUPS: what the compiler, the network and the solvers deal with (a new kind
    of programmable resistor joins "resistor", a new nonlinear two-terminal
    "diode"), so that no code outside eqprop_cli.devices names a kind.
    ``check(values, given, key, error)`` does the checks that involve two parameters
    (and fills what one implies, as r gives g); ``given`` is the table as written.
    ``element(model, overrides, key, error)`` is the model of one netlist element
    that sets some of ``element_keys`` itself. Every device module of
    eqprop_cli.devices declares one.
    """

    name: str
    help: str
    params: tuple[Param, ...] = field(default_factory=tuple)
    group: str = ""  # one of GROUPS; the kind's own name when empty
    build: Callable[[dict[str, object]], object] = dict
    check: Callable[[dict[str, object], Mapping, tuple, ErrorAt], None] | None = None
    element_keys: tuple[str, ...] = ()
    element: Callable[[object, dict[str, object], tuple, tuple, ErrorAt], object] | None = None

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    @property
    def element_group(self) -> str:
        return self.group or self.name


# the element groups of a compiled circuit (circuit/graph.py), by what the solvers do with
# them: linear trainable conductances, nonlinear two-terminal I-V models, held potentials,
# trainable currents, amplifier stages
GROUPS = ("resistor", "diode", "vsource", "isource", "amplifier")


SOLVER = (
    Param("method", "choice", "Equilibrium solver.", "auto", choices=("auto", "layered", "newton")),
    Param("tol", "current", "Largest KCL residual accepted at any node.", 1e-10, 0, True),
    Param("max_iter", "int", "Iteration limit (sweeps or Newton steps).", 1000, 1),
    Param(
        "vtol", "voltage", "Largest error accepted in any node voltage (estimated).", 1e-9, 0, True
    ),
    Param(
        "dtype",
        "choice",
        "Precision of the conductances and of the dense products with them.",
        "float64",
        choices=("float64", "float32"),
    ),
)

SOLVER_KEY = {p.name: p for p in SOLVER}  # [solver] keys by name (options that stand for them)

BOLTZMANN = 1.38064852e-23  # J/K, the value ngspice uses
CHARGE = 1.6021766208e-19  # C, the value ngspice uses
ZERO_CELSIUS = 273.15


def thermal_voltage(temperature: float) -> float:
    """kT/q in volts, with the constants ngspice uses, so exports agree exactly."""
    return BOLTZMANN * temperature / CHARGE
