"""Linear memristor (ion-drift model): a programmable resistor described by its state.

Its resistance is linear in a state w in [0, 1], R(w) = w R_on + (1 - w) R_off
(Strukov et al. 2008): w = 1 is fully on (R_on), w = 0 fully off (R_off). At DC
it is a resistor of conductance g = 1 / R(w), so it joins the resistor group:
the network stamps it as one, training moves g within [1/R_off, 1/R_on], and dE/dg,
EP's estimate, the adjoint gradient and the netlist lines are a resistor's.
What differs is the parameterisation: ranges and initial values are written as
resistances and states, as device data sheets give them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..circuit.params import DeviceKind, ErrorAt, Param
from .resistor import MAX_LEVELS, LinearConductance


@dataclass(frozen=True)
class Memristor(LinearConductance):
    """The validated parameters of a memristor device (see the table MEMRISTOR)."""

    r_on: float
    r_off: float
    state: float
    spread: float
    seed: int
    levels: int
    trainable: bool

    g = None  # no element sets its own conductance: the states are drawn

    @property
    def low(self) -> float:
        """Fully off: the smallest conductance, 1 / R_off."""
        return 1.0 / self.r_off

    @property
    def high(self) -> float:
        return 1.0 / self.r_on

    def conductance_at(self, state: np.ndarray) -> np.ndarray:
        """g = 1 / (w R_on + (1 - w) R_off)."""
        return 1.0 / (state * self.r_on + (1.0 - state) * self.r_off)

    def initial(self, shape: tuple[int, ...], stream: int) -> np.ndarray:
        """Conductances of initial states, uniform in [state - spread, state + spread]."""
        if self.spread == 0:
            return np.full(shape, self.conductance_at(np.float64(self.state)))
        rng = np.random.default_rng([self.seed, stream])
        state = rng.uniform(self.state - self.spread, self.state + self.spread, size=shape)
        return self.conductance_at(state)


def _check(p: dict, given, key: tuple, error: ErrorAt) -> None:
    if p["r_on"] >= p["r_off"]:
        raise error(
            (*key, "r_on"),
            f"r_on must be below r_off; got r_on = {p['r_on']:g} Ω >= r_off = {p['r_off']:g} Ω",
        )
    if not 0 <= p["state"] - p["spread"] <= p["state"] + p["spread"] <= 1:
        raise error(
            (*key, "spread"),
            f"state ± spread must stay in [0, 1]; got state = {p['state']:g}, "
            f"spread = {p['spread']:g}",
        )


MEMRISTOR = DeviceKind(
    "memristor",
    "Linear (ion-drift) memristor: R = state r_on + (1 - state) r_off; trained like a "
    "programmable resistor within [1/r_off, 1/r_on].",
    (
        Param("r_on", "resistance", "Resistance when fully on (state 1).", 10e3, 0, True),
        Param("r_off", "resistance", "Resistance when fully off (state 0).", 10e6, 0, True),
        Param("state", "number", "Initial state (0: off, 1: on).", 0.5, 0, maximum=1.0),
        Param(
            "spread",
            "number",
            "Initial states uniform in [state - spread, state + spread] (0: all at state).",
            0.0,
            0,
            maximum=0.5,
        ),
        Param("seed", "int", "Seed of the initial draw.", 0, 0),
        Param(
            "levels",
            "int",
            "Programmable levels, evenly spaced in conductance, used by exports (0: continuous).",
            0,
            0,
            maximum=MAX_LEVELS,
        ),
        Param("trainable", "bool", "Whether training may change these conductances.", True),
    ),
    group="resistor",
    build=lambda values: Memristor(**values),
    check=_check,
)
