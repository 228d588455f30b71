"""Programmable resistor (memristor): the weights of the network.

A set of resistors between nodes p and q with conductances g carries
I = g (V_p - V_q) and has the energy E = g (V_p - V_q)^2 / 2, so
dE/dg = (V_p - V_q)^2 / 2: the local quantity EP's rule and the exact gradient
use. Resistors are linear: the network stamps them into its quadratic form
(circuit/network.py), which is why this model has no I-V arrays of its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..circuit.params import DeviceKind, ErrorAt, Param, outside
from .netlist import num, text


@dataclass(frozen=True)
class Resistor:
    """The validated parameters of a resistor device (see the table RESISTOR)."""

    g: float | None
    r: float | None
    init: str
    init_low: float | None
    init_high: float | None
    init_mean: float | None
    init_std: float | None
    seed: int
    g_min: float
    g_max: float
    levels: int
    trainable: bool

    quantity = "conductance"  # what training changes: network.g
    conducts_dc = True

    @property
    def low(self) -> float:
        """The smallest conductance training or programming may set."""
        return self.g_min

    @property
    def high(self) -> float:
        return self.g_max

    def initial(self, shape: tuple[int, ...], stream: int) -> np.ndarray:
        """Draw initial conductances (seeded; ``stream`` separates connections)."""
        if self.init == "constant":
            g = np.full(shape, self.g, dtype=float)
        else:
            rng = np.random.default_rng([self.seed, stream])
            if self.init == "uniform":
                g = rng.uniform(self.init_low, self.init_high, size=shape)
            else:
                g = rng.normal(self.init_mean, self.init_std, size=shape)
        return np.clip(g, self.g_min, self.g_max)

    # ------------------------------------------------------------------ physics

    @staticmethod
    def branch_current(v: np.ndarray, g: np.ndarray) -> np.ndarray:
        """The current from the first node to the second at branch voltages v."""
        return g * v

    @staticmethod
    def energy(v: np.ndarray, g: np.ndarray) -> np.ndarray:
        return 0.5 * g * v * v

    @staticmethod
    def energy_derivative(v: np.ndarray) -> np.ndarray:
        """dE/dg at branch voltages v."""
        return 0.5 * v * v

    @staticmethod
    def ep_estimate(w, Pa, Pb, Qa, Qb, dense: bool, p_fixed: bool, factor: float) -> np.ndarray:
        """factor * w * sum over the batch of dE/dg(V^a) - dE/dg(V^b), from the end
        potentials P (first nodes) and Q (second) in the two equilibria a and b."""
        # (dVa^2 - dVb^2) = (dVa - dVb)(dVa + dVb), summed over the batch without cancellation
        Dp = None if p_fixed else Pa - Pb
        total = summed_drop_products(Dp, Qa - Qb, Pa + Pb, Qa + Qb, dense)
        return 0.5 * w * total * factor

    @staticmethod
    def adjoint_gradient(w, Lp, Lq, Vp, Vq, dense: bool) -> np.ndarray:
        """dL/dg by implicit differentiation: -w sum over the batch of d(dE/dg)/dv times
        the adjoint drop, d(dE/dg)/dv = v (L: adjoint potentials, None: zero at p)."""
        return -w * summed_drop_products(Lp, Lq, Vp, Vq, dense)

    # ------------------------------------------------------------------ netlist

    @staticmethod
    def spice_lines(k: int, rset, g: np.ndarray, node: list[str]) -> list[str]:
        """R elements of resistor set number ``k`` (ohms, one per conductance)."""
        if rset.dense:
            out = [
                f"* connection {text(rset.name)} (device {text(rset.device.name)}): R{k}_<row>_<col>, "
                f"rows {node[rset.rows[0]]}..{node[rset.rows[-1]]}, cols {node[rset.cols[0]]}..{node[rset.cols[-1]]}"
            ]
            ohms = 1.0 / g
            for i, a in enumerate(rset.rows):
                na = node[a]
                out.extend(
                    f"R{k}_{i}_{j} {na} {node[b]} {num(ohms[i, j])}"
                    for j, b in enumerate(rset.cols)
                )
            return out
        out = [f"* resistors of device {text(rset.device.name)}: R{k}_<index> ; element name"]
        for i, (a, b) in enumerate(zip(rset.rows, rset.cols, strict=True)):
            out.append(f"R{k}_{i} {node[a]} {node[b]} {num(1.0 / g[i])} ; {text(rset.labels[i])}")
        return out


def summed_drop_products(
    xp: np.ndarray | None, xq: np.ndarray, yp: np.ndarray, yq: np.ndarray, dense: bool
) -> np.ndarray:
    """Sum over the batch of (xp - xq)(yp - yq) for every element between nodes p and q.

    Dense: for every (row p, column q) pair, by matrix products. ``xp`` None
    means zero at every p (nodes at fixed potentials), which skips a product.
    """
    if not dense:
        return (((0.0 if xp is None else xp) - xq) * (yp - yq)).sum(axis=0)
    total = (xq * yq).sum(axis=0)[None, :] - yp.T @ xq
    if xp is not None:
        total = total + (xp * yp).sum(axis=0)[:, None] - xp.T @ yq
    return total


RANGE = ("g_min", "g_max")  # the device range of conductances


def _check(p: dict, given, key: tuple, error: ErrorAt) -> None:
    """g and r exclusive, g_min <= g_max, what the init needs, initial values in range."""
    if p["g"] is not None and p["r"] is not None:
        raise error((*key, "r"), "give either `g` (siemens) or `r` (ohms), not both")
    if p["g_min"] > p["g_max"]:
        raise error(
            (*key, "g_min"),
            f"g_min must not exceed g_max; got g_min = {p['g_min']:g} S > g_max = {p['g_max']:g} S",
        )
    needs = {
        "constant": ("g",),
        "uniform": ("init_low", "init_high"),
        "normal": ("init_mean", "init_std"),
    }[p["init"]]
    if p["init"] == "constant" and p["g"] is None and p["r"] is not None:
        p["g"] = 1.0 / p["r"]
    for name in needs:
        if p[name] is None:
            raise error(key, f'init = "{p["init"]}" needs `{name}`')
    if p["init"] == "uniform" and p["init_low"] > p["init_high"]:
        raise error((*key, "init_low"), "init_low must not exceed init_high")
    lo, hi = p["g_min"], p["g_max"]
    inside = {"constant": ("g",), "uniform": ("init_low", "init_high")}.get(p["init"], ())
    for name in inside:
        if not lo <= p[name] <= hi:
            shown = "r" if name == "g" and p["r"] is not None else name
            raise error((*key, shown), outside(name, p[name], "S", RANGE, lo, hi))


def _element(
    model: Resistor, overrides: dict, key: tuple, device_key: tuple, error: ErrorAt
) -> Resistor:
    """One netlist resistor: its own g (or r), else None (drawn by the device's init)."""
    g = model.g if model.init == "constant" else None
    if "r" in overrides:
        if "g" in overrides:
            raise error((*key, "r"), "give either `g` (siemens) or `r` (ohms), not both")
        g = 1.0 / overrides["r"]
    elif "g" in overrides:
        g = overrides["g"]
    if g is not None and not model.g_min <= g <= model.g_max:
        given = [k for k in ("g", "r") if k in overrides]
        where = (*key, *given) if given else (*device_key, "r" if model.r else "g")
        raise error(where, outside("g", g, "S", RANGE, model.g_min, model.g_max))
    return dataclasses.replace(model, g=g)


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
    build=lambda values: Resistor(**values),
    check=_check,
    element_keys=("g", "r"),
    element=_element,
)
