"""Sources: voltage sources (inputs and rails) and current sources (biases).

A voltage source fixes a node's potential: it is not a variable and has no
energy term of its own (the network holds its nodes). A current source I
into its first node p (out of q) has the energy E = -I (V_p - V_q), so
dE/dI = -(V_p - V_q): trained, it is a bias.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from ..circuit.params import DeviceKind, ErrorAt, Param, outside
from ..circuit.stamp import NodeMap
from .netlist import num, text


@dataclass(frozen=True)
class VoltageSourceModel:
    """A voltage source device: its fixed part and, with an input feature, its gain."""

    value: float
    gain: float

    conducts_dc = True  # it holds its nodes

    @staticmethod
    def spice_line(k: int, plus: str, minus: str, volts: float, label: str) -> str:
        return f"V{k} {plus} {minus} DC {num(volts)} ; {text(label)}"


@dataclass(frozen=True)
class CurrentSourceModel:
    """A current source device: its (initial) current and the range training may set."""

    current: float
    trainable: bool
    i_min: float
    i_max: float

    quantity = "current"  # what training changes: network.currents
    conducts_dc = False

    @property
    def low(self) -> float:
        return self.i_min

    @property
    def high(self) -> float:
        return self.i_max

    @staticmethod
    def branch_current(v: np.ndarray, current: np.ndarray) -> np.ndarray:
        """The current from the first node to the second through the source: -I."""
        return np.zeros_like(v) - current

    @staticmethod
    def energy(v: np.ndarray, current: np.ndarray) -> np.ndarray:
        return -current * v

    @staticmethod
    def energy_derivative(v: np.ndarray) -> np.ndarray:
        """dE/dI at branch voltages v."""
        return -v

    @staticmethod
    def ep_estimate(w, Pa, Pb, Qa, Qb, dense: bool, p_fixed: bool, factor: float) -> np.ndarray:
        """factor * w * sum over the batch of dE/dI(V^a) - dE/dI(V^b): -w (V+ - V-)."""
        if Pa.shape[1] < 2:  # one column: numpy sums it pairwise, not row after row
            total = ((Pa - Qa) - (Pb - Qb)).sum(axis=0)
        else:
            out = np.zeros(Pa.shape[1], np.result_type(Pa, Pb, Qa, Qb))
            total = _summed_drop_changes(Pa, Pb, Qa, Qb, out)
        return -w * total * factor

    @staticmethod
    def adjoint_gradient(w, Lp, Lq, Vp, Vq, dense: bool) -> np.ndarray:
        """dL/dI: -w sum of d(dE/dI)/dv (= -1) times the adjoint drop."""
        return w * ((0.0 if Lp is None else Lp) - Lq).sum(axis=0)

    # ------------------------------------------------------------------ in the network

    @staticmethod
    def add_linear_terms(
        nodes: NodeMap, plus, minus, weight, current, s, fixed_current: np.ndarray | None
    ) -> None:
        """Add the energy's linear terms -w I (V_plus - V_minus) in place: on the unknowns
        (``s``, the linear term r's share) and on the fixed nodes (``fixed_current``, where
        not None)."""
        ws = weight * current
        _add_on_unknowns(nodes.node_var, nodes.node_coef, plus, minus, ws, s)
        if fixed_current is None:
            return
        for node, sign in ((plus, 1.0), (minus, -1.0)):
            fixed = nodes.node_var[node] < 0
            if fixed.any():  # (ground, a rail)
                np.add.at(fixed_current, nodes.fixed_index[node][fixed], sign * ws[fixed])

    @staticmethod
    def set_energy(V: np.ndarray, ends, current: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Energy per sample of one set at node potentials V (batch, nodes)."""
        plus, minus, _ = ends
        return -((V[:, plus] - V[:, minus]) @ (weight * current))

    @staticmethod
    def add_set_currents(out: np.ndarray, V: np.ndarray, ends, current: np.ndarray) -> None:
        """Add each source's current leaving its nodes to ``out``: -I at the first node."""
        plus, minus, _ = ends
        np.add.at(out, (slice(None), plus), -current)
        np.add.at(out, (slice(None), minus), current)

    @staticmethod
    def spice_lines(k: int, sources, currents: np.ndarray, node: list[str]) -> list[str]:
        """I elements of current-source set ``k`` (SPICE's current flows from its first
        node through the source to the second, hence the order)."""
        out = [
            f"* current sources of device {text(sources.device.name)} (current into the first node)"
        ]
        out.extend(
            f"I{k}_{i} {node[m]} {node[p]} DC {num(cur)} ; {text(sources.labels[i])}"
            for i, (p, m, cur) in enumerate(zip(sources.plus, sources.minus, currents, strict=True))
        )
        return out


def _check_isource(p: dict, given, key: tuple, error: ErrorAt) -> None:
    if not p["i_min"] <= p["current"] <= p["i_max"]:
        raise error(
            (*key, "current"),
            outside("current", p["current"], "A", ("i_min", "i_max"), p["i_min"], p["i_max"]),
        )


def _isource_element(
    model: CurrentSourceModel, overrides: dict, key: tuple, device_key: tuple, error: ErrorAt
) -> CurrentSourceModel:
    current = overrides.get("current", model.current)
    if not model.i_min <= current <= model.i_max:
        raise error(
            (*key, "current") if "current" in overrides else (*device_key, "current"),
            outside("current", current, "A", ("i_min", "i_max"), model.i_min, model.i_max),
        )
    return CurrentSourceModel(current, model.trainable, model.i_min, model.i_max)


def _vsource_element(
    model: VoltageSourceModel, overrides: dict, key: tuple, device_key: tuple, error: ErrorAt
) -> VoltageSourceModel:
    return VoltageSourceModel(
        overrides.get("value", model.value), overrides.get("gain", model.gain)
    )


VSOURCE = DeviceKind(
    "vsource",
    "DC voltage source: a fixed rail, plus gain times an input feature where one is given.",
    (
        Param("value", "voltage", "Fixed part of the source voltage.", 0.0),
        Param("gain", "number", "Volts per unit of the input feature (with `feature`).", 1.0),
    ),
    build=lambda values: VoltageSourceModel(**values),
    element_keys=("value", "gain"),
    element=_vsource_element,
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
    build=lambda values: CurrentSourceModel(**values),
    check=_check_isource,
    element_keys=("current",),
    element=_isource_element,
)


@njit(cache=True)
def _add_on_unknowns(node_var, node_coef, plus, minus, ws, s) -> None:
    """The sources' terms on the unknowns, s[var] += sign * ws * coef at each end that is an
    unknown, in one pass: np.add.at's sums in its order (the plus ends, then the minus
    ends, each in turn), each product rounded as numpy's."""
    _add_end(node_var, node_coef, plus, 1.0, ws, s)
    _add_end(node_var, node_coef, minus, -1.0, ws, s)


@njit(cache=True, inline="always")
def _add_end(node_var, node_coef, ends, sign, ws, s) -> None:
    for k in range(ends.shape[0]):
        v = node_var[ends[k]]
        if v >= 0:
            s[v] += sign * ws[k] * node_coef[ends[k]]


@njit(cache=True)
def _summed_drop_changes(Pa, Pb, Qa, Qb, out):
    """out += ((Pa - Qa) - (Pb - Qb)) summed over the rows (batch, n arrays of any strides),
    in one pass: numpy's ((Pa - Qa) - (Pb - Qb)).sum(axis=0) into zeros, n > 1 (which sums
    row after row), the same operations in the same order at the same precisions."""
    for i in range(Pa.shape[0]):
        for j in range(Pa.shape[1]):
            out[j] += (Pa[i, j] - Qa[i, j]) - (Pb[i, j] - Qb[i, j])
    return out
