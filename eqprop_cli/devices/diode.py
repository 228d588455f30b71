"""Device I-V models, array-backed: every diode of one model is evaluated at once.

Each model answers the same questions for an array of branch voltages v
(anode minus cathode): current(v), conductance(v) = dI/dv and energy(v), the
co-content, the integral of I from 0 to v. The co-content is what the
equilibrium minimises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..circuit.params import thermal_voltage

# Shockley exponent limit: beyond it the exponential continues linearly so the
# arithmetic stays finite during iterations (at n = 1 and 300 K that is past 5 V).
EXP_LIMIT = 200.0


@dataclass(frozen=True)
class IdealDiode:
    """Piecewise-linear: I = g_on * max(v - threshold, 0); g_on = inf is a hard clamp v <= threshold."""

    threshold: float
    g_on: float

    @property
    def hard(self) -> bool:
        return math.isinf(self.g_on)

    @property
    def zero_current_voltage(self) -> float:
        return self.threshold

    def current(self, v: np.ndarray) -> np.ndarray:
        return self.g_on * np.maximum(v - self.threshold, 0.0)

    def conductance(self, v: np.ndarray) -> np.ndarray:
        return np.where(v > self.threshold, self.g_on, 0.0)

    def current_and_conductance(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.current(v), self.conductance(v)

    def energy(self, v: np.ndarray) -> np.ndarray:
        on = np.maximum(v - self.threshold, 0.0)
        return 0.5 * self.g_on * on * on - 0.5 * self.g_on * max(-self.threshold, 0.0) ** 2


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


def diode_model(params: dict) -> IdealDiode | ShockleyDiode:
    """The I-V model of a diode device from its validated parameters."""
    if params["model"] == "ideal":
        return IdealDiode(float(params["threshold"]), float(params["g_on"]))
    vt = params["vt"] if params["vt"] is not None else thermal_voltage(params["temperature"])
    return ShockleyDiode(
        float(params["is"]), float(params["n"]), float(vt), float(params.get("rs") or 0.0)
    )
