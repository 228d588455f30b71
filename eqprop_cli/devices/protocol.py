"""The contract every device kind keeps, written down once.

A *kind* (resistor, diode, vsource, isource, amplifier) is declared by one
module of this package as a DeviceKind (circuit/params.py): its parameter
table (parsing, validation, help text and the man page test read it), the
checks between its parameters, and ``build``, which turns validated values
into a typed, frozen *model*. Everything downstream reads models, never a
kind's parameters by name; the registry in devices/__init__.py is the only
list of kinds.

Models come in the roles below, one per element group (ROLES); the network
(circuit/network.py) keeps each role's element sets and loops over them, calling
their models, and never names a kind. What code outside this package reads of a
model is what its role declares, and nothing else (tests/test_devices.py runs
every row through compiling, solving, training and export with any other read
refused). The contract test checks every kind and model against these
definitions by finite differences, and a random circuit of each against
ngspice; a new device adds a row there.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class IVModel(Protocol):
    """A nonlinear two-terminal element (a diode), all elements of a group at once.

    For branch voltages v (first node minus second, any shape):

    - ``current(v)``: I(v) from the first node to the second, amperes;
    - ``conductance(v)``: dI/dv, siemens, >= 0 (a monotone I-V curve: the
      circuit then has an energy function and a unique equilibrium);
    - ``current_and_conductance(v)``: both from one evaluation (Newton's hot path);
    - ``energy(v)``: the co-content, the integral of I from 0 to v, which the
      equilibrium minimises;
    - ``hard``: an infinite on-conductance; the element is then a bound
      v <= ``zero_current_voltage`` on the unknowns, not a term of the energy;
    - ``zero_current_voltage``: where I = 0 (the layered solver's bracket);
    - ``conducts_dc``: whether it ties its nodes together for the compiler's
      check for nodes without a DC path (an ideal diode may be off);
    - ``on_conductance``: the fixed conductance a piecewise-linear element adds
      to its nodes when on (0 where there is none); the exporter scales hard
      clamps against the conductance at their nodes;
    - ``thermal_voltage``: kT/q of a junction model, None without one (the
      exported netlist's temperature);
    - ``exponential``: (IS, n Vt) where the I-V is a pure exponential
      I = IS (e^(v / n Vt) - 1), which the layered solver stacks in closed form;
      None otherwise;
    - ``label``: what ``eqprop check`` counts it as;
    - ``spice(k, ends, labels, clamp_g_on)``: its lines of an ngspice netlist
      (elements, .model cards) for group number k, ``ends`` the SPICE names of
      each element's two nodes.
    """

    hard: bool
    zero_current_voltage: float
    conducts_dc: bool
    on_conductance: float
    thermal_voltage: float | None
    exponential: tuple[float, float] | None
    label: str

    def current(self, v: np.ndarray) -> np.ndarray: ...

    def conductance(self, v: np.ndarray) -> np.ndarray: ...

    def current_and_conductance(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def energy(self, v: np.ndarray) -> np.ndarray: ...

    def spice(
        self, k: int, ends: list[tuple[str, str]], labels: list[str], clamp_g_on: np.ndarray
    ) -> tuple[list[str], list[str]]: ...


@runtime_checkable
class TrainableModel(Protocol):
    """A linear element whose parameter theta training changes (a conductance, a current).

    The network keeps theta in one array per element set (``quantity`` names
    which: "conductance" in network.g, "current" in network.currents) and
    stamps the element into its quadratic form. The model gives:

    - ``branch_current(v, theta)`` and ``energy(v, theta)`` at branch voltages v;
    - ``energy_derivative(v)``: dE/dtheta at fixed node potentials, the local
      quantity of EP's rule;
    - ``ep_estimate(w, Pa, Pb, Qa, Qb, dense, p_fixed, factor)``: factor times
      w times the sum over the batch of dE/dtheta(V^a) - dE/dtheta(V^b), from
      the potentials of the first (P) and second (Q) nodes in two equilibria
      ((batch, n) arrays to read only: views of the unknowns, broadcast rows);
    - ``adjoint_gradient(w, Lp, Lq, Vp, Vq, dense)``: dL/dtheta by implicit
      differentiation, -w times the sum of d(dE/dtheta)/dv (V) times the adjoint
      drop Lp - Lq (Lp None: zero);
    - ``trainable``, ``low``, ``high``: whether training may change theta, and
      the range it must stay in;
    - ``conducts_dc``: as for IVModel;
    - ``set_energy(V, ends, theta, weight)``: the energy per sample of a whole set at
      node potentials V (batch, nodes), ``ends`` its (first nodes, second nodes, dense)
      (dense: every first joined to every second, theta a matrix), ``weight`` each
      element's stage weight: what ``Network.energy`` sums, vectorised per set;
    - ``add_set_currents(out, V, ends, theta)``: adds each element's current leaving
      its nodes to ``out`` (batch, nodes): what ``Network.branch_currents`` sums;
    - ``spice_lines(k, elements, theta, node)``: the netlist lines of element set
      number k (``elements`` the set: its ends, labels and device), ``node`` the
      SPICE name of each node.

    How an element set enters the network's quadratic form depends on where theta
    enters the energy: ConductanceModel and CurrentModel below.
    """

    quantity: str
    trainable: bool
    conducts_dc: bool

    @property
    def low(self) -> float: ...

    @property
    def high(self) -> float: ...

    def branch_current(self, v: np.ndarray, theta: np.ndarray) -> np.ndarray: ...

    def energy(self, v: np.ndarray, theta: np.ndarray) -> np.ndarray: ...

    def energy_derivative(self, v: np.ndarray) -> np.ndarray: ...

    def ep_estimate(
        self, w, Pa, Pb, Qa, Qb, dense: bool, p_fixed: bool, factor: float
    ) -> np.ndarray: ...

    def adjoint_gradient(self, w, Lp, Lq, Vp, Vq, dense: bool) -> np.ndarray: ...

    def set_energy(self, V: np.ndarray, ends, theta: np.ndarray, weight) -> np.ndarray: ...

    def add_set_currents(self, out: np.ndarray, V: np.ndarray, ends, theta) -> None: ...

    def spice_lines(self, k: int, elements, theta: np.ndarray, node: list[str]) -> list[str]: ...


@runtime_checkable
class ConductanceModel(TrainableModel, Protocol):
    """A trainable element quadratic in the potentials (quantity "conductance": the
    resistor group). Its initial conductances: ``g``, a netlist element's own (None:
    drawn), and ``initial(shape, stream)``, those drawn for a set of that shape
    (``stream``: the set's number, so that sets draw independently); ``levels``, the
    evenly spaced conductances exports round to (0: continuous). It is stamped into
    Q, K and the constant term as linear maps of theta:

    - ``stamp(nodes, a, b, weight)``: a dict of Stamps (circuit/stamp.py) "Q", "r0",
      "SK", "fixed_diag" and "lap", maps of theta (all elements of the sets stamped
      together, in order; ``nodes`` the network's NodeMap), built once per topology;
    - a dense set whose ends fit a layered circuit (a Crossbar of circuit/network.py)
      is not stamped: ``add_crossbar_terms(bar, G, Q_diag, SK, r0, sums)``
      adds its share in place, by array operations on its matrix G (``sums``, an input
      crossbar's: G's column sums, worked out with its S K, already in SK, by the pass
      that wrote G; None: from G);
      ``crossbar_coupling(bar, G)`` is its (negated) block of Q between unknowns (read
      only: it may be G itself), and
      ``add_crossbar_fixed_diag(bar, G, diag)`` its share of the fixed nodes' diagonal.
    """

    g: float | None
    levels: int

    def initial(self, shape: tuple[int, ...], stream: int) -> np.ndarray: ...

    def stamp(self, nodes, a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> dict: ...

    def add_crossbar_terms(
        self, bar, G: np.ndarray, Q_diag, SK, r0, sums: np.ndarray | None = None
    ) -> None: ...

    def crossbar_coupling(self, bar, G: np.ndarray) -> np.ndarray: ...

    def add_crossbar_fixed_diag(self, bar, G: np.ndarray, diag: np.ndarray) -> None: ...


@runtime_checkable
class CurrentModel(TrainableModel, Protocol):
    """A trainable element linear in the potentials (quantity "current": a current
    source; ``current``, its elements' initial value):
    ``add_linear_terms(nodes, plus, minus, weight, theta, s, fixed_current)``
    adds its energy's linear terms in place, on the unknowns (``s``) and on the fixed
    nodes (``fixed_current``, where not None), for the current values theta."""

    current: float

    def add_linear_terms(self, nodes, plus, minus, weight, theta, s, fixed_current) -> None: ...


@runtime_checkable
class GainModel(Protocol):
    """A bidirectional amplifier (the amplifier group) from node h to the node a it
    drives: ``gain``, its forward voltage gain A (V_a = A V_h; it draws 1/A of the
    current it delivers out of h); ``conducts_dc``, as for IVModel; and
    ``spice_lines(k, source, target, label)``, its netlist lines (number k, between the
    SPICE nodes ``source`` and ``target``)."""

    gain: float
    conducts_dc: bool

    def spice_lines(self, k: int, source: str, target: str, label: str) -> list[str]: ...


@runtime_checkable
class VoltageModel(Protocol):
    """A voltage source (the vsource group): ``value``, its fixed potential difference,
    plus ``gain`` times its input feature where the element takes one (the exporter
    writes its V line itself); ``conducts_dc``, as for IVModel."""

    value: float
    gain: float
    conducts_dc: bool


# the role of each element group (circuit/params.GROUPS): what a model of that group keeps
ROLES = {
    "resistor": ConductanceModel,
    "diode": IVModel,
    "vsource": VoltageModel,
    "isource": CurrentModel,
    "amplifier": GainModel,
}
