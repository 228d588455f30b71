"""Diodes: ideal piecewise-linear (a hard clamp at g_on = inf), Shockley exponential with
series resistance, and named parts (Shockley with the IS, N, RS of a SPICE card).

Each model answers the same questions for an array of branch voltages v
(anode minus cathode), every diode of a group at once (the IVModel protocol of
devices/protocol.py): current(v), conductance(v) = dI/dv and energy(v), the
co-content, the integral of I from 0 to v, which the equilibrium minimises; and
its own lines of an ngspice netlist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..circuit.params import DeviceKind, ErrorAt, Param, thermal_voltage
from .netlist import GMIN, celsius, num, text

CLAMP_WIDTH = 1e-8  # volts: sharper corners make ngspice fail to converge more often
E = 2.718281828459045  # ngspice's CONSTe
JUNCTION_NODE = "xjd"  # exported netlists: the junction node of a diode with series resistance

# Shockley diodes: real junctions have saturation currents far below this; above it
# the exponential overflows the solvers' arithmetic (is = 1e300 made Newton's matrix
# singular).
MAX_IS = 1e-3

# Shockley exponent limit: beyond it the exponential continues linearly so the
# arithmetic stays finite during iterations (at n = 1 and 300 K that is past 5 V).
EXP_LIMIT = 200.0


@dataclass(frozen=True)
class IdealDiode:
    """Piecewise-linear: I = g_on * max(v - threshold, 0); g_on = inf is a hard clamp v <= threshold."""

    threshold: float
    g_on: float

    conducts_dc = False  # off below its threshold: no DC path for the floating-node check
    thermal_voltage = None
    exponential = None  # piecewise linear

    @property
    def hard(self) -> bool:
        return math.isinf(self.g_on)

    @property
    def zero_current_voltage(self) -> float:
        return self.threshold

    @property
    def label(self) -> str:
        return "hard clamp" if self.hard else "ideal"

    @property
    def on_conductance(self) -> float:
        """The fixed conductance it adds to its nodes when on (none for a hard clamp)."""
        return 0.0 if self.hard else self.g_on

    def current(self, v: np.ndarray) -> np.ndarray:
        return self.g_on * np.maximum(v - self.threshold, 0.0)

    def conductance(self, v: np.ndarray) -> np.ndarray:
        return np.where(v > self.threshold, self.g_on, 0.0)

    def current_and_conductance(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.current(v), self.conductance(v)

    def energy(self, v: np.ndarray) -> np.ndarray:
        on = np.maximum(v - self.threshold, 0.0)
        return 0.5 * self.g_on * on * on - 0.5 * self.g_on * max(-self.threshold, 0.0) ** 2

    def spice(
        self, k: int, ends: list[tuple[str, str]], labels: list[str], clamp_g_on: np.ndarray
    ) -> tuple[list[str], list[str]]:
        """B sources of group ``k`` (netlist lines, no .model lines): a hard clamp's law is
        a softplus of width CLAMP_WIDTH at ``clamp_g_on`` (no kink, so ngspice's Newton
        converges)."""
        lines = [
            f"* ideal diodes ({'hard clamp' if self.hard else 'piecewise linear'}): B{k}_<index>"
        ]
        for i, (a, c) in enumerate(ends):
            drop = f"(V({a},{c}) - {num(self.threshold)})"
            if self.hard:
                g_on = clamp_g_on[i]
                law = f"max({drop}, 0) + {CLAMP_WIDTH:g} * ln(1 + exp(-abs({drop}) / {CLAMP_WIDTH:g}))"
            else:
                g_on, law = self.g_on, f"max({drop}, 0)"
            lines.append(f"B{k}_{i} {a} {c} I = {num(g_on)} * ({law}) ; {text(labels[i])}")
        return lines, []


@dataclass(frozen=True)
class ShockleyDiode:
    """I = Is * (exp(Vj / (n Vt)) - 1) at the junction, in series with a resistance RS.

    The branch voltage is v = Vj + RS * I. With RS > 0 the current of a given
    v is implicit; it is solved per element (``junction``), which is exactly
    the diode with an internal node between junction and RS, that node
    eliminated. The co-content, the integral of I dv from 0, is
    RS I^2 / 2 + n Vt I - Is Vj (by parts: I v minus the integral of v dI).
    """

    saturation_current: float
    ideality: float
    thermal_voltage: float
    series_resistance: float = 0.0

    hard = False
    zero_current_voltage = 0.0
    conducts_dc = True
    on_conductance = 0.0
    label = "shockley"

    @property
    def exponential(self) -> tuple[float, float] | None:
        """(IS, n Vt) of a pure exponential I = IS (e^(v / n Vt) - 1); None with a series
        resistance (the junction then sees only part of v)."""
        return (self.saturation_current, self.nvt) if self.series_resistance == 0 else None

    @property
    def nvt(self) -> float:
        return self.ideality * self.thermal_voltage

    def _exp(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = v * (1.0 / self.nvt)
        capped = np.minimum(u, EXP_LIMIT)
        u -= capped
        np.exp(capped, out=capped)
        return capped, u

    def junction(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Junction voltage over n Vt, x, and exp(x), of branch voltages v (RS > 0).

        x solves x + a e^x = u with a = RS Is / (n Vt) and u = v / (n Vt) + a,
        that is x = u - W(a e^u), W the Lambert function. The start is
        Winitzki's approximation of W (within 2%), from ln(1 + a e^u) formed in
        the log domain, so that no e^u is ever formed; Halley steps on the convex
        increasing equation then converge cubically (three reach rounding).
        """
        a = self.series_resistance * self.saturation_current / self.nvt
        u = np.asarray(v, dtype=float) * (1.0 / self.nvt) + a
        log_z = u + math.log(a)  # ln(1 + a e^u), below without overflow:
        lz = np.maximum(log_z, 0.0) + np.log1p(np.exp(-np.abs(log_z)))
        x = u - lz * (1.0 - np.log1p(lz) / (2.0 + lz))
        scale = 1e-15 * (1.0 + np.max(np.abs(u), initial=0.0))
        for k in range(50):
            ae = a * np.exp(x)
            f = x + ae - u
            if k and np.max(np.abs(f), initial=0.0) <= scale:
                return x, ae / a  # e^x of the x just checked
            d1 = 1.0 + ae
            x -= f / (d1 - 0.5 * ae * f / d1)
        return x, np.exp(x)

    def current(self, v: np.ndarray) -> np.ndarray:
        if self.series_resistance > 0:
            return self.saturation_current * (self.junction(v)[1] - 1.0)
        e, over = self._exp(v)
        return self.saturation_current * (e * (1.0 + over) - 1.0)

    def conductance(self, v: np.ndarray) -> np.ndarray:
        return self.current_and_conductance(v)[1]

    def current_and_conductance(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both from one exponential (the hot path of the Newton steps).

        With RS: dI/dv = g / (1 + g RS), g = Is e^x / (n Vt) the junction's.
        """
        if self.series_resistance > 0:
            e = self.junction(v)[1]
            g = (self.saturation_current / self.nvt) * e
            return self.saturation_current * (e - 1.0), g / (1.0 + g * self.series_resistance)
        e, over = self._exp(v)
        return self.saturation_current * (e * (1.0 + over) - 1.0), (
            self.saturation_current / self.nvt
        ) * e

    def energy(self, v: np.ndarray) -> np.ndarray:
        if self.series_resistance > 0:
            x, e = self.junction(v)
            i = self.saturation_current * (e - 1.0)
            return 0.5 * self.series_resistance * i * i + self.nvt * (
                i - self.saturation_current * x
            )
        e, over = self._exp(v)
        return self.saturation_current * (
            self.nvt * (e * (1.0 + over + 0.5 * over * over) - 1.0) - v
        )

    def spice(
        self, k: int, ends: list[tuple[str, str]], labels: list[str], clamp_g_on: np.ndarray
    ) -> tuple[list[str], list[str]]:
        """D elements of group ``k`` with their .model line, each with a BD source (see
        ``reverse_correction``) across its junction. A series resistance is an RD element
        to the junction node ``junction_node(k, i)`` (the .model's RS is 0): ngspice's own
        RS would hide that node, and the correction must see the junction's voltage, not
        the terminals' (they differ by RS I, of the order of RS IS in reverse)."""
        name = f"DM{k}"
        rs = self.series_resistance
        model = (
            f".model {name} D(IS={num(self.saturation_current)} N={num(self.ideality)} "
            f"RS=0 TNOM={num(celsius(self.thermal_voltage))})"
        )
        lines = [
            f"* Shockley diodes: D{k}_<index>, each with BD{k}_<index>, the difference "
            "between Shockley's law and ngspice's reverse region (below -3 n Vt)"
        ]
        if rs > 0:
            lines.append(
                f"* series resistance RS = {num(rs)} ohm: RD{k}_<index> from the anode to the "
                f"junction node {junction_node(k, 0)[:-1]}<index>"
            )
        correction = self.reverse_correction()
        for i, (a, c) in enumerate(ends):
            if rs > 0:
                lines.append(f"RD{k}_{i} {a} {junction_node(k, i)} {num(rs)}")
                a = junction_node(k, i)
            lines.append(
                f"D{k}_{i} {a} {c} {name} TEMP={num(celsius(self.thermal_voltage))} ; {text(labels[i])}"
            )
            lines.append(f"BD{k}_{i} {a} {c} I = {correction.format(v=f'V({a},{c})')}")
        return lines, [model]

    def reverse_correction(self) -> str:
        """ngspice expression (of {v}) that makes its diode exactly Shockley's law.

        Below v = -3 n Vt ngspice's diode carries -Is (1 + (3 n Vt / (e v))^3) instead of
        Is (exp(v / n Vt) - 1); this current source adds the difference there, and nothing
        above (the two match in value and slope at -3 n Vt, so the sum stays smooth). It
        also takes back the GMIN * v that ngspice adds across every diode.
        """
        nvt = num(self.ideality * self.thermal_voltage)
        Is = num(self.saturation_current)
        return (
            f"(({{v}} < -3 * {nvt}) ? {Is} * (exp({{v}} / {nvt}) + "
            f"pwr(3 * {nvt} / ({num(E)} * {{v}}), 3)) : 0) - {GMIN:g} * {{v}}"
        )


def junction_node(k: int, i: int) -> str:
    """The SPICE node between series resistance and junction of diode ``i`` of group ``k``
    (spice_node_names keeps eqprop's nodes off these names)."""
    return f"{JUNCTION_NODE}{k}_{i}"


def diode_model(values: dict) -> IdealDiode | ShockleyDiode:
    """The I-V model of a diode device from its validated parameters."""
    if values["model"] == "ideal":
        return IdealDiode(float(values["threshold"]), float(values["g_on"]))
    vt = values["vt"] if values["vt"] is not None else thermal_voltage(values["temperature"])
    return ShockleyDiode(
        float(values["is"]), float(values["n"]), float(vt), float(values.get("rs") or 0.0)
    )


def _check(p: dict, given, key: tuple, error: ErrorAt) -> None:
    """A finite g_on > 0; a named part's card fixes is, n and rs (which the file may not give)."""
    if p["model"] == "ideal" and p["g_on"] == 0:
        raise error((*key, "g_on"), "must be a conductance > 0 S; got 0")
    part = DIODE_PARTS.get(p["model"])
    if part is None:
        return
    for name in SHOCKLEY_KEYS:
        if name in given:
            raise error(
                (*key, name),
                f'model "{part.name}" fixes is, n and rs (its SPICE card: IS = '
                f"{part.saturation_current:g} A, N = {part.ideality:g}, RS = "
                f'{part.series_resistance:g} Ω); remove `{name}`, or use model = "shockley" '
                "to give your own",
            )
    p["is"], p["n"], p["rs"] = part.saturation_current, part.ideality, part.series_resistance


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
    build=diode_model,
    check=_check,
)
