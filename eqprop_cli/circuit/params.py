"""Parameter tables: every device kind and section declares its keys once here.

Parsing, validation, error messages, the man page test and the SPICE exporter
all read these tables, so a key exists in exactly one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..circuit.units import parse_si

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
        if self.minimum is not None:
            bounds.append(f"{'>' if self.exclusive_min else '>='} {self.minimum:g}")
        if self.maximum is not None:
            bounds.append(f"<= {self.maximum:g}")
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
            raise ValueError(self.expectation())
        return int(value) if self.kind == "int" else number


# Shockley diodes: real junctions have saturation currents far below this; above it
# the exponential overflows the solvers' arithmetic (is = 1e300 made Newton's matrix
# singular).
MAX_IS = 1e-3


@dataclass(frozen=True)
class DeviceKind:
    """A device type: its parameters and what it is."""

    name: str
    help: str
    params: tuple[Param, ...] = field(default_factory=tuple)

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)


RESISTOR = DeviceKind(
    "resistor",
    "Programmable resistor (memristor): the weights of the network.",
    (
        Param("g", "conductance", "Initial conductance when init is constant.", None, 0, True),
        Param("r", "resistance", "Initial resistance (alternative to g).", None, 0, True),
        Param(
            "init",
            "choice",
            "How initial conductances are drawn.",
            "constant",
            choices=("constant", "uniform", "normal"),
        ),
        Param("init_low", "conductance", "Lower end of the uniform draw.", None, 0, True),
        Param("init_high", "conductance", "Upper end of the uniform draw.", None, 0, True),
        Param("init_mean", "conductance", "Mean of the normal draw.", None, 0, True),
        Param("init_std", "conductance", "Standard deviation of the normal draw.", None, 0, True),
        Param("seed", "int", "Seed of the initial draw.", 0, 0),
        Param("g_min", "conductance", "Smallest programmable conductance.", 1e-9, 0, True),
        Param("g_max", "conductance", "Largest programmable conductance.", 1.0, 0, True),
        Param(
            "levels",
            "int",
            "Programmable levels, evenly spaced in [g_min, g_max], used by exports (0: continuous).",
            0,
            0,
        ),
        Param("trainable", "bool", "Whether training may change these conductances.", True),
    ),
)


@dataclass(frozen=True)
class DiodePart:
    """A named diode: SPICE D-model parameters of a real part, with their source."""

    name: str
    what: str
    saturation_current: float  # IS, A
    ideality: float  # N
    series_resistance: float  # RS, ohms
    source: str


# Only the DC parameters matter at an operating point (IS, N, RS at TNOM = 27 °C).
DIODE_PARTS = {
    p.name: p
    for p in (
        DiodePart(
            "1N4148",
            "small-signal silicon switching diode (discrete)",
            2.495e-9,
            1.679,
            0.4755,
            "the 1n4148 model card of the ngspice manual (section 'Device Models' of the "
            "simulation overview): is=2.495e-09 rs=4.755e-01 n=1.679e+00",
        ),
        DiodePart(
            "2N3904-diode",
            "diode-connected small-signal NPN transistor (base and collector tied)",
            6.75e-15,
            1.0,
            0.0,
            "the Q2N3904 card of the URI ELE 343 notes (IS = 6.734e-15, NF = 1, BF = 416.4, "
            "RB = 10): emitter current IS (1 + 1/BF) e^(V/Vt); left out: the base resistance "
            "seen through the base current, RB / (1 + BF) = 0.024 ohm (2.4 uV at 100 uA, "
            "and ngspice converges far more slowly with it), and the base leakage ISE "
            "(NE = 1.259, under 1% of the current above 0.55 V)",
        ),
        DiodePart(
            "sky130-pw2nd",
            "on-chip p-well/n+ junction diode of the SkyWater SKY130 process, one unit area",
            2.75e-15,
            1.2928,
            981.0,
            "SkyWater SKY130 PDK model card sky130_fd_pr__diode_pw2nd_05v5 "
            "(libs.tech/ngspice/sky130.lib.spice): js = 2.75e-15 per unit area, n = 1.2928, "
            "rs = 981 ohm; IS = js times one unit of area, the sidewall term left out",
        ),
    )
}
SHOCKLEY_KEYS = ("is", "n", "rs")  # what a part fixes

DIODE = DeviceKind(
    "diode",
    "Diode, ideal piecewise-linear or Shockley exponential (with series resistance), or a "
    "named part; current flows anode to cathode.",
    (
        Param(
            "model",
            "choice",
            'I-V model: "ideal", "shockley" (is, n, rs as given), or a named part that fixes '
            "is, n and rs: " + ", ".join(f'"{p}"' for p in DIODE_PARTS) + ".",
            "ideal",
            choices=("ideal", "shockley", *DIODE_PARTS),
        ),
        Param("threshold", "voltage", "Ideal: turn-on voltage.", 0.0),
        Param(
            "g_on",
            "conductance",
            'Ideal: on-conductance; "inf" is a hard clamp.',
            math.inf,
            0,
            True,
            allow_inf=True,
        ),
        Param("is", "current", "Shockley: saturation current.", 1e-14, 0, True, MAX_IS),
        Param("n", "number", "Shockley: ideality factor.", 1.0, 0.5, maximum=10.0),
        Param(
            "rs",
            "resistance",
            "Shockley: series (ohmic) resistance in series with the junction.",
            0.0,
            0,
        ),
        Param(
            "vt",
            "voltage",
            "Shockley: thermal voltage (default from temperature).",
            None,
            1e-4,
            maximum=0.1,
        ),
        Param(
            "temperature",
            "temperature",
            "Shockley: junction temperature.",
            300.15,
            1.0,
            maximum=1000.0,
        ),
    ),
)

VSOURCE = DeviceKind(
    "vsource",
    "DC voltage source: a fixed rail, plus gain times an input feature where one is given.",
    (
        Param("value", "voltage", "Fixed part of the source voltage.", 0.0),
        Param("gain", "number", "Volts per unit of the input feature (with `feature`).", 1.0),
    ),
)

ISOURCE = DeviceKind(
    "isource",
    "DC current source; positive current flows into the first node (a bias).",
    (
        Param("current", "current", "Source current (initial value when trained).", 0.0),
        Param("trainable", "bool", "Whether training may change the currents (biases).", True),
        Param("i_min", "current", "Smallest current training may set.", -math.inf, allow_inf=True),
        Param("i_max", "current", "Largest current training may set.", math.inf, allow_inf=True),
    ),
)

AMPLIFIER = DeviceKind(
    "amplifier",
    "Bidirectional amplifier: forward VCVS of gain A, backward CCCS of 1/A.",
    (Param("gain", "number", "Forward voltage gain A.", 4.0, 0, True),),
)

DEVICE_KINDS = {k.name: k for k in (RESISTOR, DIODE, VSOURCE, ISOURCE, AMPLIFIER)}

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

BOLTZMANN = 1.38064852e-23  # J/K, the value ngspice uses
CHARGE = 1.6021766208e-19  # C, the value ngspice uses
ZERO_CELSIUS = 273.15


def thermal_voltage(temperature: float) -> float:
    """kT/q in volts, with the constants ngspice uses, so exports agree exactly."""
    return BOLTZMANN * temperature / CHARGE
