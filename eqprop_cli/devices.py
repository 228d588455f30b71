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

from .params import thermal_voltage

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
    """I = Is * (exp(v / (n Vt)) - 1)."""

    saturation_current: float
    ideality: float
    thermal_voltage: float

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

    def current(self, v: np.ndarray) -> np.ndarray:
        e, over = self._exp(v)
        return self.saturation_current * (e * (1.0 + over) - 1.0)

    def conductance(self, v: np.ndarray) -> np.ndarray:
        e, _ = self._exp(v)
        return self.saturation_current * e / self.nvt

    def current_and_conductance(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both from one exponential (the hot path of the Newton steps)."""
        e, over = self._exp(v)
        return self.saturation_current * (e * (1.0 + over) - 1.0), (
            self.saturation_current / self.nvt
        ) * e

    def energy(self, v: np.ndarray) -> np.ndarray:
        e, over = self._exp(v)
        return self.saturation_current * (
            self.nvt * (e * (1.0 + over + 0.5 * over * over) - 1.0) - v
        )


def diode_model(params: dict) -> IdealDiode | ShockleyDiode:
    """The I-V model of a diode device from its validated parameters."""
    if params["model"] == "ideal":
        return IdealDiode(float(params["threshold"]), float(params["g_on"]))
    vt = params["vt"] if params["vt"] is not None else thermal_voltage(params["temperature"])
    return ShockleyDiode(float(params["is"]), float(params["n"]), float(vt))
