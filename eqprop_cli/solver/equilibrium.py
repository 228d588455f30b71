"""Equilibrium (DC operating point) of a network for a batch of inputs.

One public ``solve(network, inputs, method=...)`` dispatches to two methods
that return the same ``Equilibrium``:

- ``layered``: exact block coordinate descent for circuits whose unknowns
  split into two classes with no coupling inside a class (layered networks:
  even and odd layers). With one class fixed, every node of the other is an
  independent 1-D convex problem, solved exactly (closed form for resistors
  and hard clamps, safeguarded Newton for diodes), batched with matrix
  products. The energy decreases monotonically. ``auto`` hands a solve whose
  sweeps contract too slowly to finish over to Newton, warm-started.
- ``newton``: damped Newton on Kirchhoff's current law for any circuit, with
  sparse linear algebra (the resistor part factorised once and the diodes as
  low-rank updates when that applies, else one block-diagonal system for the
  whole batch), gradients from branch voltages, an energy line search that
  also lengthens full steps, projection onto hard-clamp bounds, and a
  regularised Hessian where diode conductances underflow. The energy is
  convex, so this converges from any start.

Converged means both: the largest KCL residual within ``tol`` (amperes) and
the estimated largest node-voltage error within ``vtol`` (volts), estimated
from the Newton step or from the sweeps' contraction (see each solver).
Not converging is a result (``success=False`` and a message), never NaN.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np
import scipy.sparse as sp
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.linalg import check_blas_return, ensure_blas
from scipy.sparse.csgraph import breadth_first_order
from scipy.sparse.linalg import splu

from ..circuit.network import Network
from ..devices.diode import EXP_LIMIT
from ..errors import InputError

METHODS = ("auto", "layered", "newton")
_T = TypeVar("_T")
SPD = {"SymmetricMode": True}  # SuperLU: the Hessians are symmetric positive definite
# Each sweep's 1-D diode problems are solved only as far as the next sweep can use:
# once every step is a Newton step (no bisection) smaller than this, the rest of the
# error is of the order of its square and the following sweeps refine it anyway.
INNER_SETTLED = 1e-3  # volts


@dataclass
class Equilibrium:
    """The operating point of every sample, with diagnostics.

    ``voltages`` (batch, n_nodes) is computed from the unknowns on first use,
    so callers that need only a few nodes (``at``) never build the full array.
    """

    network: Network = field(repr=False)
    inputs: np.ndarray = field(repr=False)
    unknowns: np.ndarray = field(repr=False)  # (batch, n_vars)
    converged: np.ndarray  # (batch,) bool
    residual: np.ndarray  # (batch,) largest KCL residual, amperes
    error: np.ndarray  # (batch,) estimated largest node-voltage error, volts
    iterations: int
    method: str
    message: str
    problem: Problem = field(repr=False, compare=False)
    # x Q x per sample, or a function that computes it cheaper than Q would (layered)
    xQx: np.ndarray | Callable[[], np.ndarray] | None = field(
        default=None, repr=False, compare=False
    )

    @functools.cached_property
    def energy(self) -> np.ndarray:
        """Co-content with stage weights (and the nudge's term, if nudged) per sample, watts."""
        xQx = self.xQx() if callable(self.xQx) else self.xQx
        return self.problem.energy(self.unknowns, xQx)

    @property
    def success(self) -> bool:
        return bool(self.converged.all())

    @property
    def node_names(self) -> list[str]:
        return self.network.node_names

    @functools.cached_property
    def voltages(self) -> np.ndarray:
        """All node potentials (batch, n_nodes), volts."""
        return self.network.node_voltages(self.unknowns, self.inputs)

    def at(self, nodes: np.ndarray) -> np.ndarray:
        """Potentials of the given node indices (batch, ...), without building ``voltages``."""
        return self.network.voltages_at(self.unknowns, self.inputs, nodes)

    def outputs(self) -> np.ndarray:
        """Readout values (batch, n_outputs): V+ - V- for differential outputs."""
        V = self.at(self.network.outputs)
        return V[..., 0] - V[..., 1] if V.shape[-1] == 2 else V[..., 0]


@dataclass
class Nudge:
    """The nudge of EP's second phase, added to the circuit at its outputs.

    With ``target``: a conductance ``beta`` (siemens) across each output (or
    output pair) in series with a source at the target voltage, which adds
    beta * L, L = 1/2 sum_k (o_k - target_k)^2, to the energy (o: the readout);
    a negative beta is a negative (active) conductance. With ``current``: a
    current source per output, into its + node (and out of its - node), which
    adds -current . o. Either way the term carries the outputs' stage weight.
    """

    beta: float = 0.0
    target: np.ndarray | None = None  # (batch, n_outputs), volts
    current: np.ndarray | None = None  # (batch, n_outputs), amperes


@dataclass
class _NudgeTerm:
    """A Nudge in terms of the unknowns: o = sum_j coef[:, j] * x[var[:, j]]."""

    beta_w: np.ndarray  # (n_outputs,) beta times the stage weight of each output
    target: np.ndarray  # (batch or 1, n_outputs)
    current_w: np.ndarray  # (batch or 1, n_outputs) injected current times the stage weight
    var: np.ndarray  # (n_outputs, 1 or 2)
    coef: np.ndarray  # (n_outputs, 1 or 2), signed

    def readout(self, x: np.ndarray) -> np.ndarray:
        return np.einsum("bkj,kj->bk", x[:, self.var], self.coef)

    def excess(self, x: np.ndarray) -> np.ndarray:
        """Derivative of the nudge's energy by each output, (batch, n_outputs), amperes."""
        return self.beta_w * (self.readout(x) - self.target) - self.current_w

    def energy(self, x: np.ndarray) -> np.ndarray:
        o = self.readout(x)
        return 0.5 * np.square(o - self.target) @ self.beta_w - np.einsum(
            "bk,bk->b", np.broadcast_to(self.current_w, o.shape), o
        )

    def add_gradient(self, grad: np.ndarray, x: np.ndarray) -> None:
        excess = self.excess(x)
        for j in range(self.var.shape[1]):
            np.add.at(grad, (slice(None), self.var[:, j]), excess * self.coef[:, j])

    def hessian(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, cols, values) of the nudge's constant Hessian beta_w P^T P."""
        k = self.var.shape[1]
        rows = np.concatenate([self.var[:, i] for i in range(k) for _ in range(k)])
        cols = np.concatenate([self.var[:, j] for _ in range(k) for j in range(k)])
        vals = np.concatenate(
            [self.beta_w * self.coef[:, i] * self.coef[:, j] for i in range(k) for j in range(k)]
        )
        return rows, cols, vals


@dataclass
class _DiodeTerms:
    """A diode group in terms of the unknowns: v = x @ A.T + u."""

    model: object
    A: sp.csr_matrix  # (n_diodes, n_vars)
    u: np.ndarray  # (batch, n_diodes)
    weight: np.ndarray
    var: np.ndarray  # the one unknown each diode touches (-1 if two)
    coef: np.ndarray  # dv/dx for that unknown
    AT: sp.csr_matrix  # A transposed, for the diodes' currents into the unknowns

    def voltage(self, x: np.ndarray) -> np.ndarray:
        """Anode-to-cathode voltage of every diode, (batch, n_diodes)."""
        return _rows(self.A, x) + self.u


def _diode_maps(network: Network) -> list[tuple[sp.csr_matrix, np.ndarray, np.ndarray]]:
    """Per diode group, v = x @ A.T + u: A, and the one unknown (var, coef) each diode touches.

    Topology only, so computed once per network. var is -1 for a diode between two unknowns.
    """
    if network.plan.diodes is None:
        maps = []
        for d in network.diodes:
            va, vc = network.node_var[d.anode], network.node_var[d.cathode]
            ca, cc = network.node_coef[d.anode], network.node_coef[d.cathode]
            rows = np.concatenate([np.where(va >= 0)[0], np.where(vc >= 0)[0]])
            cols = np.concatenate([va[va >= 0], vc[vc >= 0]])
            vals = np.concatenate([ca[va >= 0], -cc[vc >= 0]])
            A = sp.csr_matrix((vals, (rows, cols)), shape=(len(d.anode), network.n_vars))
            one = (va >= 0) != (vc >= 0)
            maps.append((A, np.where(one, np.maximum(va, vc), -1), np.where(va >= 0, ca, -cc)))
        network.plan.diodes = maps
    return network.plan.diodes


class Problem:
    """Everything a solver needs for one batch: quadratic form, diode terms, bounds."""

    def __init__(self, network: Network, inputs: np.ndarray, nudge: Nudge | None = None):
        inputs = np.atleast_2d(np.asarray(inputs, dtype=float))
        if inputs.ndim != 2 or inputs.shape[1] != network.n_features:
            raise InputError(
                f"the circuit takes {network.n_features} input feature(s); got vectors of length {inputs.shape[-1]}"
            )
        if not _all_finite(inputs):
            raise InputError("input vectors contain NaN or infinite values")
        self.network = network
        self.inputs = inputs
        self.batch = inputs.shape[0]
        linear = network.linear()
        self.linear = linear
        self.Q_diag = linear.Q_diag
        self.r = linear.rhs(inputs)
        known = network.plan.clamp_bounds  # the hard clamps' bounds, when rails set them all
        if known is not None:
            self.lo, self.hi = known
        else:  # one row while no bound depends on the inputs
            self.lo = np.full((1, network.n_vars), -np.inf)
            self.hi = np.full((1, network.n_vars), np.inf)
        self.terms: list[_DiodeTerms] = []
        maps = _diode_maps(network)
        if network.plan.diodes_T is None:
            network.plan.diodes_T = [m[0].T.tocsr() for m in maps]
        transposed = network.plan.diodes_T
        for d, (A, var, coef), AT in zip(network.diodes, maps, transposed, strict=True):
            if d.model.hard and known is not None:
                continue
            u = self._fixed_part(d.anode) - self._fixed_part(d.cathode)
            if d.model.hard:
                va, vc = network.node_var[d.anode], network.node_var[d.cathode]
                ca, cc = network.node_coef[d.anode], network.node_coef[d.cathode]
                self._add_bounds(d.model.zero_current_voltage, va, vc, ca, cc, u)
            else:
                self.terms.append(_DiodeTerms(d.model, A, u, d.weight, var, coef, AT))
        if known is None and np.any(self.lo > self.hi):
            raise InputError(
                "hard-clamp diodes leave no feasible voltage at some node for these inputs"
            )
        if known is None and self.batch > 1 and self.lo.shape[0] == 1:  # no input in them
            self.lo.flags.writeable = self.hi.flags.writeable = False
            network.plan.clamp_bounds = (self.lo, self.hi)
        self.nudge = None
        if nudge is not None and (nudge.target is not None or nudge.current is not None):
            self.nudge = self._nudge_term(nudge)
        self.blocks: dict[int, _Block] = {}  # the layered solver's, shared with nudged copies
        # per sample, the contraction of the layered solver's plain sweeps on this batch,
        # measured by its free solve and kept for the nudged ones (``_layered``)
        self.contraction: np.ndarray | None = None
        self.secants: tuple | None = None  # and its acceleration's last differences
        # per sample, the contraction of its free layered solve's last sweeps (NaN where not
        # known): the least that a nudged solve of the batch assumes (``_layered``)
        self.rates: np.ndarray | None = None

    @property
    def Q(self) -> np.ndarray | sp.csr_matrix:
        """The quadratic part's matrix: dense when small and not sparse (once per state)."""
        linear, n = self.linear, self.network.n_vars
        if linear.plan.Q is None:
            dense = linear.Q.nnz >= 0.1 * n**2 and n <= 3000
            linear.plan.Q = linear.Q.toarray() if dense else linear.Q
        return linear.plan.Q

    @property
    def var_scale(self) -> np.ndarray:
        """Volts per unit of each unknown: the largest |dV/dx| of the nodes it gives (amplifiers)."""
        net = self.network
        if net.plan.var_scale is None:  # topology only
            scale = np.zeros(net.n_vars)
            free = net.node_var >= 0
            np.maximum.at(scale, net.node_var[free], np.abs(net.node_coef[free]))
            net.plan.var_scale = scale
        return net.plan.var_scale

    @property
    def scale_max(self) -> float:
        """The largest gain of an unknown's node (``var_scale``): topology, kept with it."""
        plan = self.network.plan
        if plan.scale_max is None:
            plan.scale_max = float(self.var_scale.max(initial=0.0))
        return plan.scale_max

    @property
    def _branches(self) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray, np.ndarray]:
        """Resistors between two unknowns as branches: E (edges x unknowns), its transpose,
        their w g; and D, the diagonal that the resistors to fixed nodes add to Q.

        Q = E^T diag(w g) E + diag(D), so the quadratic part's gradient Q x - r is
        E^T (w g (E x)) + D x - r: each such branch's voltage is a difference of two node
        voltages, so two nodes tied by a large conductance keep their weak couplings
        (the product with Q would round them away). A resistor to a fixed node holds
        its node directly, and its term is exact enough as part of D x - r.
        """
        net = self.network
        if net.plan.branches is None:  # topology only
            a, b, _ = net.resistor_edges()
            va, vb = net.node_var[a], net.node_var[b]
            inner = np.where((va >= 0) & (vb >= 0))[0]
            rows = np.arange(len(inner))
            E = sp.csr_matrix(
                (
                    np.concatenate([net.node_coef[a[inner]], -net.node_coef[b[inner]]]),
                    (np.concatenate([rows, rows]), np.concatenate([va[inner], vb[inner]])),
                ),
                shape=(len(inner), net.n_vars),
            )
            weight = net._branch_weight(a, b)
            one = (va >= 0) != (vb >= 0)
            outer = [(one & (v >= 0), v, net.node_coef[n]) for v, n in ((va, a), (vb, b))]
            net.plan.branches = (E, E.T.tocsr(), inner, weight, va, vb, outer)
        E, ET, inner, weight, va, vb, outer = net.plan.branches
        derived = self.linear.plan
        if derived.branches is None:  # once per conductance state
            g = np.concatenate([c.ravel() for c in net.g]) if net.g else np.zeros(0)
            wg = weight * g
            D = np.zeros(net.n_vars)
            for pick, v, c in outer:  # resistors with exactly one end an unknown
                D += np.bincount(v[pick], wg[pick] * c[pick] ** 2, net.n_vars)
            derived.branches = (wg[inner], D)
        wg, D = derived.branches
        return E, ET, wg, D

    @property
    def inverse_bound(self) -> float:
        """A bound on ||Q^-1|| (inf-norm): the largest error of x per ampere of residual.

        With Q an M-matrix (no positive coupling), any v > 0 with Q v >= c > 0 gives
        ||Q^-1|| <= max(v) / c; v comes from one LU solve of Q v = 1 and Q v is recomputed
        from branch voltages. Diodes with a fixed end and hard clamps only lower the
        inverse, so it bounds the nonlinear circuit's error too. Infinite when no bound
        is found (a circuit too stiff for the LU to resolve).
        """
        derived = self.linear.plan
        if derived.inverse_bound is None:  # once per conductance state
            bound = np.inf
            Q = sp.csc_matrix(self.linear.Q)
            off = Q - sp.diags(Q.diagonal())
            if Q.shape[0] and (off.nnz == 0 or off.max() <= 0):
                try:
                    v = splu(Q).solve(np.ones(Q.shape[0]))
                    E, ET, wg, D = self._branches
                    c = float(np.min(ET @ (wg * (E @ v)) + D * v))
                    if np.all(v > 0) and c > 0:
                        bound = float(v.max()) / c
                except RuntimeError:  # singular: nodes held by diodes only
                    pass
            derived.inverse_bound = bound
        return derived.inverse_bound

    def quadratic_gradient(self, x: np.ndarray) -> np.ndarray:
        """Gradient of the quadratic part (Q x - r), from branch voltages."""
        E, ET, wg, D = self._branches
        return _rows(ET, _rows(E, x) * wg) + D * x - self.r

    def quadratic_form(self, s: np.ndarray) -> np.ndarray:
        """s Q s per sample, from branch voltages."""
        E, _, wg, D = self._branches
        return np.square(_rows(E, s)) @ wg + np.square(s) @ D

    def _per_output(self, values: np.ndarray | None, what: str) -> np.ndarray:
        n_out = len(self.network.outputs)
        if values is None:
            return np.zeros((1, n_out))
        values = np.atleast_2d(np.asarray(values, dtype=float))
        if values.shape not in ((self.batch, n_out), (1, n_out)) or not _all_finite(values):
            raise InputError(
                f"nudge {what} must be finite, one per output ({n_out}) for each of the "
                f"{self.batch} samples; got shape {values.shape}"
            )
        return values

    def _nudge_term(self, nudge: Nudge) -> _NudgeTerm:
        var, coef, weight = self.network.readout_map()
        beta = nudge.beta if nudge.target is not None else 0.0
        target = self._per_output(nudge.target, "targets")
        if nudge.current is None:  # a conductance's nudge: no current, the same each batch
            plan = self.network.plan
            if plan.no_current is None:  # (only read, as every nudge term's arrays)
                plan.no_current = self._per_output(None, "currents") * weight
            current_w = plan.no_current
        else:
            current_w = self._per_output(nudge.current, "currents") * weight
        term = _NudgeTerm(beta * weight, target, current_w, var, coef)
        if beta < 0:  # a negative conductance: the nudged energy must stay bounded below
            derived = self.linear.plan
            if derived.nudge_limit is None:  # once per conductance state
                spread = (coef**2 / self.Q_diag[var]).sum(axis=1)
                derived.nudge_limit = float((1.0 / (weight * spread)).min())
            limit = derived.nudge_limit
            if -nudge.beta >= limit:
                raise InputError(
                    f"beta = {nudge.beta:g} S is too negative for this circuit: the nudged "
                    f"circuit has no equilibrium unless |beta| < {limit:.3g} S"
                )
        return term

    def _fixed_part(self, nodes: np.ndarray) -> np.ndarray:
        """Potentials of the fixed ones among ``nodes`` (0 for the others), (batch, len(nodes))."""
        index = self.network.fixed_index[nodes]
        F = self.network.fixed_potentials(self.inputs, np.maximum(index, 0))
        F[:, index < 0] = 0.0
        return F

    def _add_bounds(self, th, va, vc, ca, cc, u) -> None:
        if u.shape[0] > self.lo.shape[0]:
            self.lo = np.repeat(self.lo, u.shape[0], axis=0)
            self.hi = np.repeat(self.hi, u.shape[0], axis=0)
        up = va >= 0  # anode unknown: ca x - V_c <= th  ->  x <= (th - u) / ca
        if np.any(up):
            bound = (th - u[:, up]) / ca[up]
            _scatter_reduce(self.hi, va[up], bound, np.minimum)
        down = vc >= 0  # cathode unknown: V_a - cc x <= th  ->  x >= (u - th) / cc
        if np.any(down):
            bound = (u[:, down] - th) / cc[down]
            _scatter_reduce(self.lo, vc[down], bound, np.maximum)

    @functools.cached_property
    def const(self) -> np.ndarray:
        """The energy's constant term per sample (needed only for energy values)."""
        return self.linear.const(self.inputs)

    def base_hessian(self) -> sp.csr_matrix:
        """Hessian of the energy's quadratic part: Q, plus the nudge's when nudged."""
        Q = sp.csr_matrix(self.Q)
        if self.nudge is None:
            return Q
        rows, cols, vals = self.nudge.hessian()
        return Q + sp.csr_matrix((vals, (rows, cols)), shape=Q.shape)

    # -------------------------------------------------------------- energy and gradient

    def energy(self, x: np.ndarray, xQx: np.ndarray | None = None) -> np.ndarray:
        """Energy per sample; ``xQx`` may come precomputed (the layered solver has it cheaper)."""
        if xQx is None:
            xQx = np.einsum("bi,bi->b", x, _times(x, self.Q))
        total = 0.5 * xQx - np.einsum("bi,bi->b", self.r, x)
        for t in self.terms:
            total += t.model.energy(t.voltage(x)) @ t.weight
        if self.nudge is not None:
            total += self.nudge.energy(x)
        return total + self.const

    def gradient(self, x: np.ndarray, quadratic: np.ndarray | None = None) -> np.ndarray:
        """The energy's gradient; ``quadratic``: its quadratic part's, if computed already."""
        grad = self.quadratic_gradient(x) if quadratic is None else quadratic.copy()
        for t in self.terms:
            grad += _rows(t.AT, t.model.current(t.voltage(x)) * t.weight)
        if self.nudge is not None:
            self.nudge.add_gradient(grad, x)
        return grad

    def conductances(self, x: np.ndarray) -> list[np.ndarray]:
        """Every (soft) diode's conductance at x, one (batch, diodes) array per group."""
        return [t.model.conductance(t.voltage(x)) for t in self.terms]

    def residual(self, x: np.ndarray, grad: np.ndarray | None = None) -> np.ndarray:
        """KCL residual (amperes) per unknown, zero where a clamp absorbs it."""
        grad = self.gradient(x) if grad is None else grad
        return np.where(_held(x, grad, self.lo, self.hi), 0.0, grad) / self.network.var_weight

    def result(
        self, x, residual, error, tol, vtol, iterations, method, unit, xQx=None
    ) -> Equilibrium:
        """The Equilibrium at x; converged where the largest KCL residual is within tol
        and the estimated error of every node voltage within vtol."""
        converged, every = _converged(residual, error, tol, vtol)
        message = "converged"
        if not every:
            worst = int(
                np.argmax(np.where(converged, -np.inf, np.maximum(residual / tol, error / vtol)))
            )
            message = (
                f"not converged after {iterations} {unit} ({(~converged).sum()} of {len(x)} "
                f"samples): KCL residual {residual[worst]:.3g} A (tol {tol:.3g} A), estimated "
                f"voltage error {error[worst]:.3g} V (vtol {vtol:.3g} V)"
            )
        return Equilibrium(
            self.network,
            self.inputs,
            x,
            converged,
            residual,
            error,
            iterations,
            method,
            message,
            self,
            xQx,
        )

    def subset(self, rows: slice) -> Problem:
        """The same circuit for some of the batch's samples (Newton in chunks)."""
        part = _shallow(self)
        part.__dict__.pop("const", None)  # per sample, computed on first use

        def take(a: np.ndarray) -> np.ndarray:  # a row per sample, or one for all
            return a[rows] if a.shape[0] == self.batch and self.batch > 1 else a

        part.inputs, part.r, part.lo, part.hi = (
            take(a) for a in (self.inputs, self.r, self.lo, self.hi)
        )
        part.batch = part.inputs.shape[0]
        part.terms = [replace(t, u=take(t.u)) for t in self.terms]
        if self.nudge is not None:
            part.nudge = replace(
                self.nudge, target=take(self.nudge.target), current_w=take(self.nudge.current_w)
            )
        part.blocks, part.contraction, part.secants = {}, None, None  # per batch
        return part

    def nudged(self, nudge: Nudge) -> Problem:
        """The same batch with another nudge: linear terms, diodes and bounds are shared."""
        other = _shallow(self)
        other.nudge = None
        if nudge.target is not None or nudge.current is not None:
            other.nudge = other._nudge_term(nudge)
        return other


def _shallow(obj: _T) -> _T:
    """A shallow copy of a plain object: copy.copy's, without its dispatch."""
    new = object.__new__(type(obj))
    new.__dict__ = obj.__dict__.copy()  # one copy of the table, not an update that grows it
    return new


def _as_slice(idx: np.ndarray) -> np.ndarray | slice:
    """A contiguous index range as a slice: column access without a gather or scatter."""
    if len(idx) and np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx))):
        return slice(int(idx[0]), int(idx[0]) + len(idx))
    return idx


def _held(x: np.ndarray, grad: np.ndarray, lo, hi) -> np.ndarray:
    """Unknowns a hard clamp holds: at a bound, with the energy falling beyond it."""
    return ((x >= hi) & (grad < 0)) | ((x <= lo) & (grad > 0))


def _scatter_reduce(target: np.ndarray, index: np.ndarray, values: np.ndarray, ufunc) -> None:
    """target[:, index[k]] = ufunc(target[:, index[k]], values[:, k]) over all k, vectorised."""
    order = np.argsort(index, kind="stable")
    index = index[order]
    starts = np.r_[0, np.where(np.diff(index))[0] + 1]
    reduced = ufunc.reduceat(values[:, order], starts, axis=1)
    cols = index[starts]
    target[:, cols] = ufunc(target[:, cols], reduced)


class _Segments:
    """Sums over diodes sorted by the unknown they touch: (batch, diodes) -> (batch, vars).

    The caller lists the diodes sorted by unknown. With k diodes at every
    unknown the sum is a reshape; otherwise a segment sum, no gather either way.
    """

    def __init__(self, var: np.ndarray, n: int):
        self.n = n
        self.k = len(var) // n if n else 0
        self.regular = self.k * n == len(var) and np.array_equal(
            var, np.repeat(np.arange(n), self.k)
        )
        self.starts = np.r_[0, np.where(np.diff(var))[0] + 1]
        self.cols = var[self.starts]

    def sum(self, values: np.ndarray) -> np.ndarray:
        if self.regular:
            return values.reshape(values.shape[0], self.n, self.k).sum(axis=2)
        out = np.zeros((values.shape[0], self.n))
        out[:, self.cols] = np.add.reduceat(values, self.starts, axis=1)
        return out


def _rows(M: sp.spmatrix, x: np.ndarray) -> np.ndarray:
    """M applied to every row of x: x @ M.T, for a sparse M (no transposed copy of M)."""
    return np.asarray(M @ x.T).T


def _times(x: np.ndarray, M) -> np.ndarray:
    """x @ M for dense x and dense or sparse M."""
    if sp.issparse(M):
        return np.asarray((M.T @ x.T).T)
    return x @ M


# ------------------------------------------------------------------ dispatch


def solve(
    network: Network,
    inputs: np.ndarray,
    method: str = "auto",
    tol: float = 1e-10,
    max_iter: int = 1000,
    x0: np.ndarray | None = None,
    vtol: float = 1e-9,
    nudge: Nudge | None = None,
    like: Equilibrium | None = None,
) -> Equilibrium:
    """Equilibrium for a batch of input vectors (batch x features).

    ``method``: "auto" (layered when the circuit allows, else Newton),
    "layered" or "newton". ``tol`` is the KCL residual accepted (amperes),
    ``vtol`` the estimated node-voltage error accepted (volts), ``max_iter``
    the limit on sweeps (layered) or Newton steps. ``x0`` is a
    warm start for the unknowns; ``nudge`` adds EP's nudging term. ``like``,
    an equilibrium of the same network and inputs (at the same conductances),
    lends its set-up so that a nudged solve skips it.
    """
    if method not in METHODS:
        raise InputError(f'unknown method "{method}"; expected one of {", ".join(METHODS)}')
    base = like.problem if like is not None else None
    if (
        base is not None
        and base.network is network
        and base.linear is network.linear()
        and (base.inputs is inputs or np.array_equal(base.inputs, inputs))
    ):
        problem = base.nudged(nudge or Nudge())
    else:
        problem = Problem(network, inputs, nudge)
    x = _start(problem, x0)
    if network.n_vars == 0:
        zero = np.zeros(problem.batch)
        return problem.result(x, zero, zero, tol, vtol, 0, method, "steps")
    classes = layered_classes(network, problem)
    if classes is not None and problem.nudge is not None and not _nudge_fits(problem, classes):
        classes = None
    if method == "layered" and classes is None:
        raise InputError(layered_reason(network))
    if method == "newton" or classes is None:
        return _newton(problem, x, tol, vtol, max_iter)
    return _layered(
        problem, x, classes, tol, vtol, max_iter, handover=method == "auto", cold=x0 is None
    )


def _start(problem: Problem, x0: np.ndarray | None) -> np.ndarray:
    """The first iterate, a new C-ordered array: x0 (zeros where None) clipped into the
    clamps' bounds, np.maximum then np.minimum (np.clip's values, sooner), each written
    straight into it; without x0, the bounds' rows are clipped and broadcast."""
    x = np.empty((problem.batch, problem.network.n_vars))
    first = np.zeros((1, x.shape[1])) if x0 is None else np.asarray(x0, dtype=float)
    lo, hi = problem.lo, problem.hi
    if first.ndim == 1:
        first = first[None]
    if _broadcasts(first, x.shape) and _broadcasts(lo, x.shape) and _broadcasts(hi, x.shape):
        _clip_into(first, lo, hi, x)  # one compiled pass
        return x
    np.maximum(first, lo, out=x)
    return np.minimum(x, hi, out=x)


def _broadcasts(a: np.ndarray, shape: tuple[int, int]) -> bool:
    """Whether a 2-D float64 array broadcasts to ``shape`` (2-D) row by row and column by column."""
    if a.ndim != 2 or a.dtype != np.float64:
        return False
    rows, cols = a.shape
    return (rows == 1 or rows == shape[0]) and (cols == 1 or cols == shape[1])


@njit(cache=True)
def _clip_into(first: np.ndarray, lo: np.ndarray, hi: np.ndarray, out: np.ndarray) -> None:
    """out = np.minimum(np.maximum(first, lo), hi), the inputs broadcast to out's shape, in one
    pass: numpy's values bit for bit (NaN wins; a tie, +0 against -0 too, gives the second
    operand, as numpy's on this machine: ``tests/test_setup.py`` checks it)."""
    rows, cols = out.shape
    full = first.shape[1] == lo.shape[1] == hi.shape[1] == cols  # no column broadcast
    one = first.shape[0] == lo.shape[0] == hi.shape[0] == 1  # one row: made once, copied
    for i in range(rows):
        if one and i:
            out[i] = out[0]
            continue
        f = first[i if first.shape[0] > 1 else 0]
        low = lo[i if lo.shape[0] > 1 else 0]
        high = hi[i if hi.shape[0] > 1 else 0]
        row = out[i]
        if full:  # the loop the compiler vectorises
            for j in range(cols):
                row[j] = _clipped(f[j], low[j], high[j], True)
        else:
            for j in range(cols):
                row[j] = _clipped(
                    f[min(j, f.size - 1)],
                    low[min(j, low.size - 1)],
                    high[min(j, high.size - 1)],
                    True,
                )


@njit(cache=True, fastmath={"reassoc"})
def _all_finite(a: np.ndarray) -> bool:
    """np.isfinite(a).all() of a 2-D float array, without the array of booleans: x - x is 0
    for a finite x and NaN otherwise, and a NaN stays in the sum in any order."""
    total = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            total += a[i, j] - a[i, j]
    return total == 0.0


def _converged(
    residual: np.ndarray, error: np.ndarray, tol: float, vtol: float
) -> tuple[np.ndarray, bool]:
    """(residual <= tol) & (error <= vtol) per sample, and whether all are: one compiled pass
    where both are float64 vectors of a length."""
    if (
        residual.ndim == error.ndim == 1
        and residual.dtype == error.dtype == np.float64
        and residual.shape == error.shape
    ):
        out = np.empty(residual.shape, bool)
        return out, _converged_into(residual, error, float(tol), float(vtol), out)
    converged = (residual <= tol) & (error <= vtol)
    return converged, bool(converged.all())


@njit(cache=True)
def _converged_into(
    residual: np.ndarray, error: np.ndarray, tol: float, vtol: float, out: np.ndarray
) -> bool:
    """``_converged``'s pass: writes out, returns whether every sample converged."""
    every = True
    for i in range(out.shape[0]):
        out[i] = (residual[i] <= tol) & (error[i] <= vtol)
        every &= out[i]
    return every


def _pull(n: _NudgeTerm, spread: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The nudge's constants in a class's closed-form minimum: its pull,
    spread * (beta_w * target + current_w), and stiffness, 1 + beta_w * spread; one
    compiled pass where the arrays are float64 rows that broadcast (numpy's bits)."""
    beta_w, target, current = n.beta_w, n.target, n.current_w
    k = len(spread)
    rows = max(target.shape[0], current.shape[0]) if target.ndim == current.ndim == 2 else 0
    if (
        rows
        and beta_w.shape == spread.shape == (k,)
        and beta_w.dtype == target.dtype == current.dtype == spread.dtype == np.float64
        and target.shape in ((rows, k), (1, k))
        and current.shape in ((rows, k), (1, k))
    ):
        pull, stiffness = np.empty((rows, k)), np.empty(k)
        _pull_into(beta_w, target, current, spread, pull, stiffness)
        return pull, stiffness
    return spread * (beta_w * target + current), 1.0 + beta_w * spread


@njit(cache=True)
def _pull_into(beta_w, target, current, spread, pull, stiffness) -> None:
    """``_pull``'s pass: each operation rounded as numpy's, in its order."""
    for i in range(pull.shape[0]):
        ti = i if target.shape[0] > 1 else 0
        ci = i if current.shape[0] > 1 else 0
        for j in range(pull.shape[1]):
            pull[i, j] = spread[j] * (beta_w[j] * target[ti, j] + current[ci, j])
    for j in range(stiffness.shape[0]):
        stiffness[j] = 1.0 + beta_w[j] * spread[j]


def _nudge_fits(problem: Problem, classes) -> bool:
    """The layered solver nudges in closed form: outputs in one class, free of diodes and clamps.

    Topology only, so decided once per network.
    """
    plan = problem.network.plan
    if plan.nudge_fits is None:
        plan.nudge_fits = _outputs_separable(problem, classes)
    return plan.nudge_fits


def _outputs_separable(problem: Problem, classes) -> bool:
    var = problem.nudge.var.ravel()
    same = any(np.isin(var, c).all() for c in classes)
    diodes = any(np.isin(var, t.A.indices).any() for t in problem.terms)
    bounded = np.isfinite(problem.lo[:, var]).any() or np.isfinite(problem.hi[:, var]).any()
    return same and len(np.unique(var)) == len(var) and not diodes and not bounded


def layered_reason(network: Network) -> str:
    return (
        "the layered solver needs the unknowns to split into two classes with no resistor "
        "inside a class, every unknown to have a resistor, and every diode to have one end "
        "at a fixed potential (and, when nudged, the outputs free of diodes and clamps); "
        "use method newton"
    )


def layered_classes(network: Network, problem: Problem) -> tuple[np.ndarray, np.ndarray] | None:
    """The two classes of a bipartite coupling graph, or None when the circuit is not layered.

    Topology only (conductances stay > 0), so computed once per network.
    """
    plan = network.plan
    if not plan.classes_known:
        plan.classes, plan.classes_known = _two_classes(network, problem), True
        for c in plan.classes or ():  # read-only: kept and looked up by identity
            c.flags.writeable = False
    return plan.classes


def _two_classes(network: Network, problem: Problem) -> tuple[np.ndarray, np.ndarray] | None:
    n = network.n_vars
    Q = sp.coo_matrix(problem.Q)
    diag = problem.Q_diag
    if np.any(diag <= 0):
        return None
    for t in problem.terms:
        if np.any(t.var < 0):
            return None
    off = Q.row != Q.col
    adj = sp.csr_matrix((np.ones(off.sum()), (Q.row[off], Q.col[off])), shape=(n, n))
    depth = np.full(n, -1)
    for start in range(n):
        if depth[start] >= 0:
            continue
        order, pred = breadth_first_order(adj, start, directed=False, return_predecessors=True)
        depth[start] = 0
        for node in order[1:]:  # BFS order: a predecessor always comes first
            depth[node] = depth[pred[node]] + 1
    color = depth % 2
    if np.any(color[Q.row[off]] == color[Q.col[off]]):
        return None
    return np.where(color == 0)[0], np.where(color == 1)[0]


# ------------------------------------------------------------------ layered: block coordinate descent


class _Block:
    """One class of unknowns: each is an independent 1-D convex problem given the other class."""

    @classmethod
    def of(cls, problem: Problem, classes, k: int) -> _Block:
        """Class k of a problem: the parts that do not depend on the nudge are set up once per
        batch and shared by its free and nudged solves.

        Both classes at once, class 1 first: its coupling Q[class 0][:, class 1] is a
        crossbar's own layout (from a layer to the next), which the network builds fastest,
        and class 0's is a copy of its transpose (Q is symmetric)."""
        if not problem.blocks:
            for j in (1, 0):
                problem.blocks[j] = cls(problem, classes, j)
        base = problem.blocks[k]
        block = _shallow(base)
        block.nudge = base._nudge_of(problem)
        return block

    def __init__(self, problem: Problem, classes, k: int):
        network = problem.network
        idx, other = classes[k], classes[1 - k]
        plans = network.plan.blocks
        if k not in plans:  # topology: which diodes touch this class, sorted by unknown
            local = np.full(network.n_vars, -1)
            local[idx] = np.arange(len(idx))
            plan = []
            for g, t in enumerate(problem.terms):
                mine = np.where((t.var >= 0) & (local[np.maximum(t.var, 0)] >= 0))[0]
                if len(mine):
                    mine = mine[np.argsort(local[t.var[mine]], kind="stable")]
                    v = local[t.var[mine]]
                    w, coef = t.weight[mine], t.coef[mine]
                    plan.append((g, mine, v, coef, w * coef, w * coef**2, _Segments(v, len(idx))))
            plans[k] = plan
        slices = network.plan.block_slices
        if k not in slices:  # topology: the classes as slices where they are ranges
            weighted = bool(np.any(network.var_weight[idx] != 1.0))
            slices[k] = (_as_slice(idx), _as_slice(other), weighted)
        # (a slice gathers much faster than its indices)
        self.idx, self.other, self.weighted = slices[k]
        derived = problem.linear.plan.blocks
        if k not in derived:  # conductances: diagonal and coupling to the other class
            mirror = derived[1 - k][2] if 1 - k in derived else None
            if isinstance(mirror, np.ndarray):  # Q is symmetric: the other class's, transposed
                Qc = np.ascontiguousarray(mirror.T)
            else:
                Qc = problem.linear.coupling(other, idx)
            a = problem.Q_diag[self.idx]
            derived[k] = (a, a / network.var_weight[self.idx], Qc)
        self.a, self.a_over_w, self.Q_oc = derived[k]
        # the class's unknowns for the compiled passes: their first, where they are a range
        self.columns = idx
        self.first = self.idx.start if isinstance(self.idx, slice) else -1
        self.other_columns = other  # and the other class's
        self.other_first = self.other.start if isinstance(self.other, slice) else -1
        self.weight = network.var_weight[self.idx]
        scales = network.plan.block_scale
        if k not in scales:  # topology; None: no amplifier gains
            scale = problem.var_scale[idx]
            scales[k] = None if np.all(scale == 1.0) else scale
        self.scale = scales[k]
        self.k, self.classes, self.outputs = k, classes, None
        self.rhs: np.ndarray | None = None  # b of the last update, when kept
        self._set_up(problem, plans[k])
        self.plain_looped = self._plain_looped()  # (shared by the batch's free and nudged solves)

    def _set_up(self, problem: Problem, plan: list) -> None:
        """The class's linear term and bounds, and its diodes: their terms, the bracket ends
        (zmin, zmax) and the stacked junctions. Once per batch (see ``of``)."""
        # contiguous copies: the compiled updates read them row by row
        r = np.ascontiguousarray(problem.r[:, self.idx])
        lo, hi, bounded = self._bounds(problem)
        terms = []
        zmin = zmax = None
        if plan:
            zmin = np.full(r.shape, np.inf)
            zmax = np.full(r.shape, -np.inf)
        for g, mine, v, coef, wc, wc2, segments in plan:
            model, u = problem.terms[g].model, problem.terms[g].u[:, mine]
            terms.append((model, v, coef, u, wc, wc2, segments))
            # where a diode carries no current: the bracket of each root spans these
            zero = (model.zero_current_voltage - u) / coef
            if segments.regular:  # sorted, k per unknown: a reshape, as the sums
                zero = zero.reshape(zero.shape[0], segments.n, segments.k)
                np.minimum(zmin, zero.min(axis=2), out=zmin)
                np.maximum(zmax, zero.max(axis=2), out=zmax)
            else:
                _scatter_reduce(zmin, v, zero, np.minimum)
                _scatter_reduce(zmax, v, zero, np.maximum)
        self.r, self.lo, self.hi, self.bounded = r, lo, hi, bounded
        self.terms, self.zmin, self.zmax = terms, zmin, zmax
        self.junctions = _Junctions.of(terms, r.shape[1])

    def _bounds(self, problem: Problem) -> tuple[np.ndarray, np.ndarray, bool]:
        """The class's columns of the clamps' bounds, contiguous, and whether any is finite:
        kept with the network where the bounds are its rails' (``clamp_bounds``)."""
        known = problem.network.plan.clamp_bounds
        kept = problem.network.plan.block_bounds
        rails = known is not None and problem.lo is known[0] and problem.hi is known[1]
        if not rails or self.k not in kept:
            lo, hi = (np.ascontiguousarray(b[:, self.idx]) for b in (problem.lo, problem.hi))
            bounds = (lo, hi, bool(np.isfinite(lo).any() or np.isfinite(hi).any()))
            if not rails:
                return bounds
            kept[self.k] = bounds
        return kept[self.k]

    def _nudge_of(self, problem: Problem) -> tuple | None:
        """The nudge's part in this class: (term, outputs' places, their a, spread, and the
        nudge's constants in the closed-form minimum), None when the outputs are elsewhere."""
        n, network, k = problem.nudge, problem.network, self.k
        if n is None:
            return None
        outputs = network.plan.block_outputs
        if k not in outputs:  # topology: are the outputs in this class?
            outputs[k] = bool(np.isin(n.var, self.classes[k]).all())
        if not outputs[k]:
            return None
        if self.outputs is None:  # once per batch: the outputs' places, a, spread
            local = network.plan.block_local
            if k not in local:  # topology: each unknown's place in its class
                local[k] = np.full(network.n_vars, -1)
                local[k][self.classes[k]] = np.arange(len(self.classes[k]))
            a_out = self.a[local[k][n.var]]
            # spread: how much of the nudge current each output's own conductance absorbs
            self.outputs = (local[k][n.var], a_out, (n.coef**2 / a_out).sum(axis=1))
        local, a_out, spread = self.outputs
        return (n, local, a_out, spread, *_pull(n, spread))

    def derivative(self, x: np.ndarray, b: np.ndarray, second: bool = False):
        """First (and second) derivative of the 1-D energies at x."""
        if self.junctions is not None:
            return self.junctions.derivative(self.a, x, b, second)
        f1 = self.a * x - b
        f2 = None
        for model, var, coef, u, wc, wc2, segments in self.terms:
            v = x[:, var] * coef + u
            if second:
                i, g = model.current_and_conductance(v)
                g = segments.sum(g * wc2)
                if f2 is None:
                    f2 = self.a + g  # no copy of a first
                else:
                    f2 += g
            else:
                i = model.current(v)
            f1 += segments.sum(i * wc)
        if second and f2 is None:
            f2 = np.broadcast_to(self.a, x.shape).copy()
        return f1, f2

    def _rhs(self, x_all: np.ndarray) -> np.ndarray:
        """Linear term of this class's 1-D problems, given the other class."""
        coupled = _times(x_all[:, self.other], self.Q_oc)
        return np.subtract(self.r, coupled, out=coupled)

    def residual(self, x_all: np.ndarray) -> np.ndarray:
        """KCL residual (A) of this class's unknowns, (batch, class size)."""
        if not self.terms:  # a class without diodes: one compiled pass
            out = np.empty((x_all.shape[0], len(self.columns)))
            coupled = _times(x_all[:, self.other], self.Q_oc)
            nudge = self._nudge()
            _quadratic_residual(coupled, x_all, self._class(), self.weight, nudge, out, _EMPTY)
            return out
        x = x_all[:, self.idx]
        f1 = self.derivative(x, self._rhs(x_all))[0]
        if self.nudge is not None:
            n, local = self.nudge[:2]
            excess = n.excess(x_all)
            for j in range(local.shape[1]):
                f1[:, local[:, j]] += excess * n.coef[:, j]
        return np.where(_held(x, f1, self.lo, self.hi), 0.0, f1) / self.weight

    def _nudged(self, b: np.ndarray, x: np.ndarray) -> None:
        """Set the outputs in ``x`` (this class) to their exact minimum, coupled by the nudge."""
        nudge = self._nudge()
        for s in range(x.shape[0]):
            _nudge_outputs(b[s], x[s], s, nudge)

    def _class(self) -> tuple:
        """The class's arrays as the compiled passes take them: its unknowns (and the first,
        where they are a range, else -1), a, r, lo, hi, whether bounded."""
        return (self.columns, self.first, self.a, self.r, self.lo, self.hi, self.bounded)

    def _nudge(self) -> tuple:
        """The nudge as the compiled passes take them: (whether nudged, the outputs' unknowns
        and places in the class, their signed coefficients, a, beta w, target, current w,
        the pull and stiffness of the closed-form minimum)."""
        if self.nudge is None:
            return _NO_NUDGE
        term, local, a_out, _, pull, stiffness = self.nudge
        outputs = (term.var, local, term.coef, a_out)
        return (True, *outputs, term.beta_w, term.target, term.current_w, pull, stiffness)

    def _looped(self) -> tuple | None:
        """The class as the compiled sweep loop (``_sweep_loop``) takes it: ``_class``, a / w,
        the gains (empty: none), ``_nudge``, the coupling to the other class, the other
        class's unknowns (and their first, where they are a range) and the stage weights.
        None for a class with diodes, or a coupling other than a non-empty C-ordered float64
        array (the layout whose products the loop is known to share with numpy): the sweeps
        then stay in Python."""
        plain = self.plain_looped
        if plain is None or self.nudge is None:
            return plain
        return (*plain[:3], self._nudge(), *plain[4:])

    def _plain_looped(self) -> tuple | None:
        """``_looped`` without a nudge: once per batch, when the class is set up."""
        Q = self.Q_oc
        if self.terms or not isinstance(Q, np.ndarray) or not Q.size:
            return None
        if Q.dtype != np.float64 or not Q.flags.c_contiguous:
            return None
        scale = _EMPTY if self.scale is None else self.scale
        other = (self.other_columns, self.other_first)
        return (self._class(), self.a_over_w, scale, _NO_NUDGE, Q, *other, self.weight)

    def _quadratic(self, x_all: np.ndarray, keep: bool) -> tuple[float, np.ndarray]:
        """``update`` of a class without diodes, in one compiled pass (``_quadratic_update``)
        after the coupling's product: x = clip(b / a) (the outputs at the nudge's exact
        minimum), the residual before the step a times the (projected) step; with ``keep``,
        b into ``self.rhs``."""
        coupled = _times(x_all[:, self.other], self.Q_oc)
        change = np.empty(x_all.shape[0])
        scale = _EMPTY if self.scale is None else self.scale
        rhs = np.empty_like(coupled) if keep else _EMPTY_ROWS
        residual = _quadratic_update(
            coupled, x_all, self._class(), self.a_over_w, scale, rhs, self._nudge(), change
        )
        if keep:
            self.rhs = rhs
        return residual, change

    def update(
        self,
        x_all: np.ndarray,
        tol: float,
        vtol: float,
        estimate: bool = False,
        keep: bool = False,
    ) -> tuple[float, np.ndarray]:
        """Minimise exactly over this class; return the largest residual (A) before the
        update (inf where not evaluated) and, per sample, the largest change of a node voltage (V) it made.

        Each 1-D solve ends within tol / 1000 amperes and vtol / 1000 volts of its root.
        ``estimate``: the diodes' 1-D solves start from an estimate of each root rather
        than from x (a cold start). ``keep``: keep the linear term b given the other class
        in ``self.rhs`` (for the energy at the new point).
        """
        if not self.terms:
            return self._quadratic(x_all, keep)
        b = self._rhs(x_all)
        x = x_all[:, self.idx]
        z = b / self.a
        # safeguarded Newton inside a bracket of the root; a start outside the
        # bracket still leaves a valid one, since the sign of f1 there is known
        lo = np.minimum(z, self.zmin)
        hi = np.maximum(z, self.zmax)
        before = None
        if estimate and self.junctions is not None:
            # the 1-D solves go on from the estimate (inside the bracket); the residual
            # before the update is not evaluated (the first sweep decides nothing)
            before = np.inf
            x = np.fmin(np.fmax(self.junctions.start(self.a, b), lo), hi)  # (NaN: lo)
        for _ in range(200):
            f1, f2 = self.derivative(x, b, second=True)
            size = np.abs(f1)
            if self.weighted:
                size /= self.weight
            largest = float(size.max(initial=0.0))
            if before is None:
                before = largest
                if self.bounded:
                    held = _held(x, f1, self.lo, self.hi)
                    before = float(np.max(np.where(held, 0.0, size), initial=0.0))
            dx = np.divide(f1, f2, out=f2)  # the Newton step, x - dx (f2 > 0)
            if largest <= tol * 1e-3 and np.max(_largest(np.abs(dx), self.scale)) <= vtol * 1e-3:
                break
            step = x - dx
            new = np.minimum(np.maximum(step, lo), hi)  # (np.clip costs more)
            # A step inside the bracket is inside the one that x narrows it to (f1 is
            # increasing, so the step goes from x towards the root): when the step is
            # also small, that is the update, and the narrowed bracket is not needed.
            if np.array_equal(new, step) and np.max(np.abs(dx), initial=0.0) <= INNER_SETTLED:
                x = step
                break
            pos = f1 > 0
            hi = np.where(pos, x, hi)
            lo = np.where(pos, lo, x)
            new = np.minimum(np.maximum(step, lo), hi)
            inside = bool(np.array_equal(new, step))
            if not inside:
                # a step onto a bracket end, give or take rounding, is a Newton step too;
                # one further out is replaced by bisection
                width = hi - lo
                slack = 1e-9 * width + 4e-16 * np.abs(step)
                within = (step >= lo - slack) & (step <= hi + slack)
                new = np.where(within, new, 0.5 * (lo + hi))
                inside = bool(within.all())
            settled = inside and np.max(np.abs(new - x), initial=0.0) <= INNER_SETTLED
            x = new
            if settled or (not inside and np.all(hi - lo <= 4e-16 * np.maximum(1.0, np.abs(x)))):
                break
        if self.bounded:
            x = np.clip(x, self.lo, self.hi)
        if self.nudge is not None:
            self._nudged(b, x)
        change = _largest(np.abs(x - x_all[:, self.idx]), self.scale)
        x_all[:, self.idx] = x
        if keep:
            self.rhs = b
        return before, change


_EMPTY = np.zeros(0)
_EMPTY_ROWS = np.zeros((0, 0))  # no rows: the kernel keeps no b
_NO_NUDGE = (False, *[np.zeros((0, 1), np.int64)] * 2, *[np.zeros((0, 1))] * 2, np.zeros(0))
_NO_NUDGE = (*_NO_NUDGE, *[np.zeros((1, 0))] * 3, np.zeros(0))  # the kernels' "no nudge"
_NOT_RECORDING = (False, *[_EMPTY_ROWS] * 4, *[np.zeros((0, 0, 0))] * 2)  # the sweep loop's


@njit(inline="always")
def _max(a, b):
    """np.maximum of two floats: NaN wins, as numpy's (Python's max would drop it), and a
    tie, +0 against -0 too, gives the second operand, as numpy's on this machine
    (tests/test_setup.py checks the clip made of these against numpy's)."""
    return a if (a > b) | (a != a) else b


@njit(inline="always")
def _min(a, b):
    """np.minimum of two floats: NaN wins; a tie gives the second operand (see ``_max``)."""
    return a if (a < b) | (a != a) else b


@njit(cache=True, error_model="numpy")
def _quadratic_update(coupled, x_all, cls, a_over_w, scale, rhs, nudge, change):
    """Minimise a class without diodes exactly, sample by sample, in its columns of x_all
    (``cls``, as _Block._class): b = r - coupled, x = b / a clipped into [lo, hi]; with a
    ``nudge`` (as _Block._nudge), the outputs at their exact minimum with it (as
    _Block._nudged); b into ``rhs`` where it has rows. Returns the
    largest residual before the update (the largest step of each unknown times a / w) and
    writes each sample's largest change of a node voltage (the steps times ``scale`` where
    given) to ``change``. Rows of r, lo, hi and the nudge's target, current and pull are
    per sample or one for all. (``_update_into``, with its scratch.)"""
    work = np.empty((4, len(cls[0])))
    return _update_into(coupled, x_all, cls, a_over_w, scale, rhs, nudge, change, work)


@njit(inline="always")
def _update_into(coupled, x_all, cls, a_over_w, scale, rhs, nudge, change, work):
    """``_quadratic_update`` with its scratch ``work`` (4, class size) given (the compiled
    sweep loop keeps it). The same IEEE operations in the same order as the numpy
    expressions of the class's update, in simple loops over a sample's unknowns (so that
    they vectorise), indexing the 2-D arrays by row and column (``_column``): no array
    views or tuple unpacking per sample, which cost reference counts."""
    columns, first, a, r, lo, hi, bounded = cls
    nudged, _, local, coef, a_out, beta_w, target, current_w, pull, stiffness = nudge
    n = len(columns)
    b, new, step, largest = work[0], work[1], work[2], work[3]
    for j in range(n):
        largest[j] = 0.0
    keep = rhs.shape[0] > 0
    scaled = scale.size > 0
    # no nudge, no gains, the unknowns a range: each unknown's new value and step in one
    # pass (the same operations as the passes below)
    plain = not (nudged or scaled) and first >= 0
    for s in range(x_all.shape[0]):
        sr, sl, sh = _at(r, s), _at(lo, s), _at(hi, s)
        if plain:
            if keep:
                for j in range(n):
                    rhs[s, j] = r[sr, j] - coupled[s, j]
            if bounded:
                m = _plain_row(coupled, x_all, s, first, a, r, lo, hi, largest, True)
            else:
                m = _plain_row(coupled, x_all, s, first, a, r, lo, hi, largest, False)
            change[s] = _from_bits(m)
            continue
        for j in range(n):
            b[j] = r[sr, j] - coupled[s, j]
            new[j] = b[j] / a[j]
        if keep:
            for j in range(n):
                rhs[s, j] = b[j]
        if bounded:
            for j in range(n):
                new[j] = _clipped(new[j], lo[sl, j], hi[sh, j], True)
        if nudged:
            _nudge_row(b, new, s, local, coef, a_out, beta_w, target, current_w, pull, stiffness)
        # the step from the unknowns' old values, which the new ones then replace
        for j in range(n):
            column = _column(first, j) if first >= 0 else np.uintp(columns[j])
            d = abs(new[j] - x_all[s, column])
            largest[j] = _max(largest[j], d)
            step[j] = d * scale[j] if scaled else d
            x_all[s, column] = new[j]
        change[s] = _largest_of(step)
    residual = 0.0
    for j in range(n):
        residual = _max(residual, largest[j] * a_over_w[j])
    return residual


@njit(inline="always")
def _from_bits(m):
    """The largest of magnitudes from the integer maximum m of their bit patterns, which
    order them as their values, NaN (numpy's) if one is: a NaN's pattern, sign cleared,
    is above inf's (as ``_largest_of`` takes it)."""
    return np.nan if m > 0x7FF0000000000000 else _as_float(m)


@njit(inline="always")
def _plain_row(coupled, x_all, s, first, a, r, lo, hi, largest, bounded):
    """Sample s's update in ``_quadratic_update`` where no nudge, gains or gather: x =
    clip((r - coupled) / a) (``bounded``: a constant at each call, so that the loop has
    no branch), each unknown's largest step so far in ``largest`` and the bit pattern of
    the sample's largest step returned, both as maxima of bit patterns: the steps are
    magnitudes, whose patterns order them as their values (a NaN above inf). (b is not
    stored: a store the compiler cannot tell from x's keeps the loop scalar.)"""
    sr, sl, sh = _at(r, s), _at(lo, s), _at(hi, s)
    m = 0
    for j in range(len(largest)):
        z = _clipped((r[sr, j] - coupled[s, j]) / a[j], lo[sl, j], hi[sh, j], bounded)
        d = _bits(abs(z - x_all[s, _column(first, j)]))
        largest[j] = _as_float(max(_bits(largest[j]), d))
        m = max(m, d)
        x_all[s, _column(first, j)] = z
    return m


@njit(inline="always")
def _clipped(z, low, high, bounded):
    """np.minimum(np.maximum(z, low), high) of a float, where ``bounded``."""
    return _min(_max(z, low), high) if bounded else z


@njit(inline="always")
def _largest_of(v):
    """max(0, v's largest entry), NaN if v has one: the running maximum of the entries' bit
    patterns as integers, which order non-negative doubles as their values (negative ones,
    -0 included, fall below the integer 0 as below 0.0), so that the loop vectorises; NaNs
    are counted apart."""
    m = 0
    nan = False
    for j in range(len(v)):
        m = max(m, _bits(v[j]))
        nan |= v[j] != v[j]
    if nan:
        return np.nan
    return _as_float(m)


@intrinsic
def _bits(typingctx, value):
    """The bit pattern of a double as an integer (the register reinterpreted: no array
    view or allocation, which cost a reference count or a malloc per call)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return (types.int64(value), codegen) if value == types.float64 else None


@intrinsic
def _as_float(typingctx, bits):
    """The double whose bit pattern is the integer ``bits`` (as ``_bits``, reversed)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return (types.float64(bits), codegen) if bits == types.int64 else None


@njit(inline="always")
def _at(a, s):
    """The row of sample s in a 2-D array with a row per sample, or its one row for all."""
    return s if a.shape[0] > 1 else 0


@njit(inline="always")
def _column(first, j):
    """Column first + j (first >= 0) as an unsigned index: numba then leaves out the
    wraparound of negative indices, which the compiler cannot drop for first + j and
    which keeps the loop from vectorising."""
    return np.uintp(first) + np.uintp(j)


@njit(inline="always")
def _gather(out, x_all, columns, first):
    """out = x_all at ``columns`` (from ``first`` on where they are a range), row by row
    (one call for all samples: a call per sample costs reference counts)."""
    for s in range(x_all.shape[0]):
        if first >= 0:
            for j in range(out.shape[1]):
                out[s, j] = x_all[s, _column(first, j)]
        else:
            for j in range(out.shape[1]):
                out[s, j] = x_all[s, columns[j]]


@njit(cache=True, error_model="numpy")
def _quadratic_residual(coupled, x_all, cls, weight, nudge, out, largest):
    """KCL residual (A) of a class without diodes into ``out`` (batch, class size), as
    ``_Block.residual`` computes it: f1 = a x - (r - coupled), plus the nudge's current at
    the outputs where there is a ``nudge``, zero where a clamp holds the unknown, divided
    by the stage weight (where one differs from 1: x / 1 is x). Operation by operation.
    Where ``largest`` has entries, each sample's largest |residual| goes there instead
    (as np.max(np.abs(residual), axis=1, initial=0.0)), and ``out`` is one row, reused."""
    columns, first, a, r, lo, hi, _ = cls
    nudged, var, local, coef, _, beta_w, target, current_w, _, _ = nudge
    n = len(columns)
    weighted = False
    for j in range(n):
        weighted |= weight[j] != 1.0
    if largest.size > 0 and not nudged and first >= 0:  # in one pass
        if weighted:
            _largest_residuals(coupled, x_all, first, a, r, lo, hi, weight, largest, True)
        else:
            _largest_residuals(coupled, x_all, first, a, r, lo, hi, weight, largest, False)
        return
    x = np.empty((x_all.shape[0], n))
    _gather(x, x_all, columns, first)
    for s in range(x_all.shape[0]):
        sr, sl, sh, so = _at(r, s), _at(lo, s), _at(hi, s), _at(out, s)
        for j in range(n):  # (out indexed by row and column: a row's view costs a count)
            out[so, j] = a[j] * x[s, j] - (r[sr, j] - coupled[s, j])
        if nudged:
            st, sc = _at(target, s), _at(current_w, s)
            for k in range(local.shape[0]):
                o = 0.0
                for m in range(local.shape[1]):
                    o += x_all[s, var[k, m]] * coef[k, m]
                excess = beta_w[k] * (o - target[st, k]) - current_w[sc, k]
                for m in range(local.shape[1]):
                    out[so, local[k, m]] += excess * coef[k, m]
        for j in range(n):
            f1 = out[so, j]
            held = ((x[s, j] >= hi[sh, j]) & (f1 < 0)) | ((x[s, j] <= lo[sl, j]) & (f1 > 0))
            out[so, j] = 0.0 if held else f1
        if weighted:
            for j in range(n):
                out[so, j] /= weight[j]
        if largest.size:
            m = 0
            for j in range(n):
                m = max(m, _bits(abs(out[so, j])))
            largest[s] = _from_bits(m)


@njit(inline="always")
def _largest_residuals(coupled, x_all, first, a, r, lo, hi, weight, largest, weighted):
    """Each sample's largest |residual| into ``largest`` in ``_quadratic_residual`` where
    no nudge and the class's unknowns are a range: one pass over a sample's unknowns, the
    maximum taken of the magnitudes' bit patterns (``_from_bits``); ``weighted``: a
    constant at each call, so that the loop has no branch."""
    for s in range(x_all.shape[0]):
        sr, sl, sh = _at(r, s), _at(lo, s), _at(hi, s)
        m = 0
        for j in range(len(a)):
            x = x_all[s, _column(first, j)]
            f1 = a[j] * x - (r[sr, j] - coupled[s, j])
            held = ((x >= hi[sh, j]) & (f1 < 0)) | ((x <= lo[sl, j]) & (f1 > 0))
            f1 = 0.0 if held else f1
            if weighted:
                f1 /= weight[j]
            m = max(m, _bits(abs(f1)))
        largest[s] = _from_bits(m)


@njit(cache=True, error_model="numpy")
def _nudge_outputs(b, new, s, nudge):
    """Sample s's outputs in ``new`` at their exact minimum with the nudge, from the
    class's linear term ``b``: as ``_Block._nudged``, operation by operation."""
    _, _, local, coef, a_out, beta_w, target, current_w, pull, stiffness = nudge
    _nudge_row(b, new, s, local, coef, a_out, beta_w, target, current_w, pull, stiffness)


@njit(inline="always")
def _nudge_row(b, new, s, local, coef, a_out, beta_w, target, current_w, pull, stiffness):
    """``_nudge_outputs`` with the nudge's arrays unpacked (once per batch in a loop over
    samples: unpacking costs reference counts)."""
    st, sc, sp = _at(target, s), _at(current_w, s), _at(pull, s)
    for k in range(local.shape[0]):
        o = 0.0
        for m in range(local.shape[1]):
            z = b[local[k, m]] / a_out[k, m]
            new[local[k, m]] = z  # kept there for the step below (the outputs' nodes differ)
            o += z * coef[k, m]
        o = (o + pull[sp, k]) / stiffness[k]
        excess = beta_w[k] * (o - target[st, k]) - current_w[sc, k]
        for m in range(local.shape[1]):
            new[local[k, m]] = new[local[k, m]] - excess * coef[k, m] / a_out[k, m]


@intrinsic
def _columns_times(typingctx, x, first, Q, out):
    """out = x[:, first : first + len(Q)] @ Q (x and Q C-ordered float64, out C-ordered):
    the BLAS call of numba's np.dot (numpy's, with the operand's rows where they lie), the
    view's rows read in place by their stride rather than copied."""

    def codegen(context, builder, signature, args):
        kinds = signature.args
        xa, qa, oa = (context.make_array(kinds[i])(context, builder, args[i]) for i in (0, 2, 3))
        batch, stride = cgutils.unpack_tuple(builder, xa.shape)
        m, n = cgutils.unpack_tuple(builder, qa.shape)
        row = cgutils.get_item_pointer(
            context, builder, kinds[0], xa, [context.get_constant(types.intp, 0), args[1]]
        )
        void_p = ir.IntType(8).as_pointer()
        char, size = ir.IntType(8), cgutils.intp_t
        # (kind, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        arguments = (char, char, char, size, size, size, void_p, void_p, size, void_p, size)
        gemm = ir.FunctionType(ir.IntType(32), [*arguments, void_p, void_p, size])
        fn = cgutils.get_or_insert_function(builder.module, gemm, "numba_xxgemm")
        one, zero = (
            cgutils.alloca_once_value(builder, context.get_constant(types.float64, v))
            for v in (1.0, 0.0)
        )
        plain = char(ord("n"))
        # column-major C' = Q' x': as numba's call for C-ordered operands
        status = builder.call(
            fn,
            [
                char(ord("d")),
                plain,
                plain,
                n,
                batch,
                m,
                builder.bitcast(one, void_p),
                builder.bitcast(qa.data, void_p),
                n,
                builder.bitcast(row, void_p),
                stride,
                builder.bitcast(zero, void_p),
                builder.bitcast(oa.data, void_p),
                n,
            ],
        )
        check_blas_return(context, builder, status)
        return context.get_dummy_value()

    if any(a.layout != "C" or a.dtype != types.float64 for a in (x, Q, out)):
        return None  # (no such signature)
    ensure_blas()
    return types.none(x, first, Q, out), codegen


@njit(cache=True, error_model="numpy")
def _coupled(x_all, Q, columns, first, out):
    """The coupling product of a class as the compiled sweep loop takes it (``_Block._looped``:
    the coupling ``Q``, the other class's ``columns`` and their ``first`` where they are a
    range) into ``out``: the other class's columns of x_all times the coupling, by numpy's
    BLAS call in ``_Block._rhs``, so that it gives its bits: x_all's rows read in place
    where the columns are a range (``_columns_times``); else the columns copied in the
    layout of numpy's gather by an index array (Fortran order) for numba's np.dot."""
    if first >= 0:
        _columns_times(x_all, first, Q, out)
        return
    B, m = x_all.shape[0], len(columns)
    by_column = np.empty((m, B)).T
    for s in range(B):
        for j in range(m):
            by_column[s, j] = x_all[s, columns[j]]
    np.dot(by_column, Q, out)


@njit(inline="always")
def _fmax(a, b):
    """np.fmax of two floats: a NaN loses."""
    if a != a:
        return b
    return a if (a >= b) | (b != b) else b


@njit(inline="always")
def _largest_magnitude(x):
    """np.abs(x).max(initial=0.0) of a C-ordered x (NaN if x has one), by the integer
    maximum of the magnitudes' bit patterns (as ``_largest_of``; a NaN's is above inf's)."""
    flat = x.reshape(-1)
    m = 0
    for j in range(len(flat)):
        m = max(m, _bits(flat[j]) & 0x7FFFFFFFFFFFFFFF)
    return _as_float(m)


LOOP_DONE, LOOP_LIMIT, LOOP_BACK = 0, 1, 2  # how the compiled sweep loop ended


@njit(cache=True, error_model="numpy")
def _sweep_loop(x, one, two, history, record, tol, vtol, sweeps, limits, out, contraction, rates):
    """Plain sweeps of two classes without diodes (``one`` updated first, each as
    ``_Block._looped``), with ``_layered``'s bookkeeping and stopping rule, until a sweep
    needs Python. Returns (how it ended, sweeps made in all, class one's residual before
    the last sweep):

    - LOOP_DONE: converged; ``out`` holds class one's largest residual per sample, the
      larger of both classes', the estimated error and the contraction it assumed (as
      ``_sweep_error``, with ``rates`` the least contraction of each sample, NaN for none).
    - LOOP_LIMIT: ``max_iter`` sweeps made, the last one's decision taken.
    - LOOP_BACK: the last sweep's updates are made and its change is in ``history``, the
      rest of it is Python's: the acceleration's choice at the sweep ``stop`` when some
      sample is to be accelerated; a sweep where a sample's change is at the rounding
      level of the voltages and the estimate of the sweep before does not hold (the bound
      from the residual of ``_sweep_error``); a look at the contraction (``_too_slow``)
      that finds a sample too slow or is within rounding of its limit.

    ``history`` (ACCEL_WINDOW + 1, batch): the last sweeps' changes, newest first, shifted
    in place. ``record``: (whether to record, the second class before the sweep, its b,
    and ``_Anderson``'s f, g, dF, dG, [f and g set, differences recorded, recording
    dropped]): the sweeps' history of the acceleration, kept as ``_Anderson.record`` keeps
    it before its samples are chosen; at the sweep ``stop``, the plain contraction of each
    sample goes to ``contraction`` and, where no sample is to be accelerated, the loop
    goes on without recording (as ``_layered`` drops its ``_Anderson``). ``limits``:
    (max_iter, stop, handover, SLOW_SWEEPS, LAYERED_SAFETY, the largest gain, ACCEL_FROM,
    ACCEL_TO). The same IEEE operations in the same order as ``_layered``'s numpy
    expressions, so the same iterates and decisions."""
    recording, start, rhs, f, g, dF, dG, counts = record
    max_iter, stop, handover, slow_sweeps, safety, scale_max, accel_from, accel_to = limits
    B = x.shape[0]
    cls0, aow0, scale0, nudge0, Q0, other0, of0, weight0 = one
    cls1, aow1, scale1, nudge1, Q1, other1, of1, weight1 = two
    n0, n1 = len(cls0[0]), len(cls1[0])
    columns1, first1 = cls1[0], cls1[1]
    coupled0, coupled1 = np.empty((B, n0)), np.empty((B, n1))
    work0, work1 = np.empty((4, n0)), np.empty((4, n1))  # the updates' scratch
    change0, change1 = np.empty(B), np.empty(B)
    now = np.empty((B if recording else 0, n1))  # the second class, recording
    scratch0, scratch1 = np.empty((1, n0)), np.empty((1, n1))  # a sample's residuals
    no_rhs = np.empty((0, 0))
    residual0, residual, error, rho = out[0], out[1], out[2], out[3]
    first = np.nan
    fresh = False  # whether coupled0 holds class one's product at x (a failed check's)
    while sweeps < max_iter:
        sweeps += 1
        if recording:
            _gather(start, x, columns1, first1)
        if not fresh:
            _coupled(x, Q0, other0, of0, coupled0)
        fresh = False
        first = _update_into(coupled0, x, cls0, aow0, scale0, no_rhs, nudge0, change0, work0)
        _coupled(x, Q1, other1, of1, coupled1)
        _update_into(coupled1, x, cls1, aow1, scale1, rhs, nudge1, change1, work1)
        for s in range(B):  # (element by element: a row's view costs a count)
            for k in range(history.shape[0] - 1, 0, -1):
                history[k, s] = history[k - 1, s]
            history[0, s] = _max(change0[s], change1[s])
        if sweeps == stop:  # the acceleration's choice, as _layered makes it
            accelerate = False
            for s in range(B):
                c = _fmax(history[0, s] / history[1, s], history[1, s] / history[2, s])
                contraction[s] = c
                accelerate |= (c > accel_from) & (c < accel_to)
            if accelerate:
                return LOOP_BACK, sweeps, first
            recording, counts[2] = False, 1
        slow = handover and sweeps % 5 == 0 and not recording
        done = False
        if not (sweeps == 1 or (first > tol and not slow)):  # a decision: as _sweep_error
            size = _largest_magnitude(x) * scale_max
            level = 1e-14 * (size if size > 1.0 else 1.0)
            for s in range(B):
                c0, c1, c2, c3 = history[0, s], history[1, s], history[2, s], history[3, s]
                # (as _contraction: no ratio to the first sweep's change, and enough of them)
                r01 = c0 / c1 if sweeps > 2 else np.nan
                r12 = c1 / c2 if sweeps > 3 else np.nan
                r23 = c2 / c3 if sweeps > 4 else np.nan
                r = _fmax(_fmax(r01, r12), r23)
                if rates[s] == rates[s]:  # (as _sweep_error: a known least, ratios or none)
                    r = _fmax(r, rates[s])
                elif sweeps < MIN_RATIOS + 2:
                    r = np.nan
                rho[s] = r
                error[s] = safety * c0 * r / (1 - r) if r < 1 else np.inf
                if c0 <= level:  # at the floor: the estimate of the sweep before, if it holds
                    before = _fmax(r12, r23) if sweeps >= MIN_RATIOS + 2 else np.nan
                    held = np.inf
                    if (c1 > level) & (before < 1):
                        held = safety * c1 * before / (1 - before)
                    if not np.isfinite(held):  # else the bound from the residual: Python's
                        return LOOP_BACK, sweeps, first
                    error[s] = held
            if first <= tol and _largest_of(error) <= vtol:
                _coupled(x, Q0, other0, of0, coupled0)
                _quadratic_residual(coupled0, x, cls0, weight0, nudge0, scratch0, residual0)
                done = _largest_of(residual0) <= tol
                fresh = not done  # x does not change before the next sweep's update
            if not done and slow:
                budget = min(slow_sweeps, max_iter - sweeps)
                for s in range(B):
                    if error[s] > vtol:  # as _too_slow, within rounding of its limit
                        if not rho[s] < 1:
                            return LOOP_BACK, sweeps, first
                        needed = np.log(vtol / error[s]) / np.log(_max(rho[s], 1e-300))
                        if needed > budget * (1 - 1e-12) - 1e-12:
                            return LOOP_BACK, sweeps, first
        if recording:  # as _Anderson.record before the samples are chosen
            slot = counts[1] % dF.shape[1]
            _gather(now, x, columns1, first1)
            for s in range(B):
                for j in range(n1):
                    new_f = now[s, j] - start[s, j]
                    if counts[0]:
                        dF[s, slot, j] = new_f - f[s, j]
                        dG[s, slot, j] = now[s, j] - g[s, j]
                    f[s, j] = new_f
                    g[s, j] = now[s, j]
            counts[1] += counts[0]
            counts[0] = 1
        if done:
            # class one has not changed since class two's update: its product holds
            _quadratic_residual(coupled1, x, cls1, weight1, nudge1, scratch1, residual)
            for s in range(B):
                residual[s] = _max(residual0[s], residual[s])
            return LOOP_DONE, sweeps, first
    return LOOP_LIMIT, sweeps, first


# e^-100 = 4e-44: a junction reversed further carries -IS (1 - 4e-44), its conductance
# 4e-44 IS / (n Vt) beside a node's resistors of a > 0, so the floor changes nothing at
# double precision; np.exp is some 15 times slower where its result underflows.
EXP_FLOOR = -100.0


class _Junctions:
    """A class's diodes when all are Shockley junctions without series resistance and
    every unknown has the same number k of them: the 1-D derivatives from one exponential
    per diode, stacked as (k, batch, n) so that no gather or segment sum is needed.

    Diode j of unknown i carries I = IS (e^t - 1), t = (coef x + u) / (n Vt), into its
    unknown times w coef; so f1 = a x - b + sum_j P_j e^t_j - C, with P = w coef IS and
    C = sum_j P_j, and f2 = a + sum_j G_j e^t_j, G = w coef^2 IS / (n Vt). Above
    EXP_LIMIT the exponential continues linearly, as in ShockleyDiode; below EXP_FLOOR
    it is taken at EXP_FLOOR (see there).
    """

    def __init__(self, slope, offset, P, G):
        self.slope, self.offset, self.P, self.G = slope, offset, P, G
        self.C = P.sum(axis=0)
        with np.errstate(divide="ignore"):  # a weight of 0: that diode never conducts
            self.log_G = np.log(G)

    @classmethod
    def of(cls, terms: list, n: int) -> _Junctions | None:
        """The stacked form of a class's diode terms, or None when it does not apply."""
        if not terms:
            return None
        rows = max(u.shape[0] for _, _, _, u, *_ in terms)  # the fixed ends: per sample, or one
        parts = []
        for model, _, coef, u, wc, wc2, segments in terms:
            if model.exponential is None or not segments.regular:
                return None
            Is, nvt = model.exponential
            inv = 1.0 / nvt
            per_diode = [coef * inv, wc * Is, wc2 * (Is * inv)]
            parts.append(
                [
                    np.broadcast_to(values, (rows, values.shape[-1]))
                    .reshape(-1, n, segments.k)
                    .transpose(2, 0, 1)
                    for values in (u * inv, *per_diode)
                ]
            )
        # contiguous (k, rows, n) arrays: the transposed views would slow every product
        offset, slope, P, G = (np.concatenate(p) for p in zip(*parts, strict=True))
        first = [np.ascontiguousarray(a[:, :1]) for a in (slope, P, G)]  # the same in every row
        return cls(first[0], np.ascontiguousarray(offset), *first[1:])

    def start(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """An estimate of each 1-D root (a start for Newton, no more).

        With one junction conducting and the others off, a x - b - C + P e^(s x + t) = 0
        is solved by x = x0 - W(Z) / s, x0 = (b + C) / a the root with none and
        Z = (G / a) e^(s x0 + t) (P s = G > 0), W the Lambert function; W is taken
        from ln(1 + Z) by Winitzki's approximation (within 2%), formed in the log
        domain so no large e^(...) is formed. With several junctions at a node the
        shifts add up: on each side of x0 at most one of them conducts much.
        """
        x0 = (b + self.C) / a
        log_z = x0 * self.slope
        log_z += self.offset
        log_z += self.log_G
        log_z -= np.log(a)
        lz = np.abs(log_z)
        np.negative(lz, out=lz)
        np.maximum(lz, EXP_FLOOR, out=lz)
        np.exp(lz, out=lz)
        np.log1p(lz, out=lz)
        lz += np.maximum(log_z, 0.0, out=log_z)  # ln(1 + Z)
        w = lz * (1.0 - np.log1p(lz) / (2.0 + lz))
        w /= self.slope
        return x0 - w.sum(axis=0)

    def derivative(self, a: np.ndarray, x: np.ndarray, b: np.ndarray, second: bool):
        """First (and second) derivative of the 1-D energies at x, as _Block.derivative."""
        t = x * self.slope
        t += self.offset
        np.maximum(t, EXP_FLOOR, out=t)
        over = None
        if t.max(initial=-np.inf) > EXP_LIMIT:
            capped = np.minimum(t, EXP_LIMIT)
            over = t - capped
            t = capped
        e = np.exp(t, out=t)
        grown = e if over is None else e * (1.0 + over)
        f1 = a * x
        f1 -= b
        f1 -= self.C
        f1 += (grown * self.P).sum(axis=0)
        if not second:
            return f1, None
        e *= self.G
        f2 = e.sum(axis=0)
        f2 += a
        return f1, f2


def _layered(
    problem: Problem,
    x: np.ndarray,
    classes,
    tol: float,
    vtol: float,
    max_iter: int,
    handover: bool,
    cold: bool = False,
) -> Equilibrium:
    """Sweeps until the KCL residual is within tol and the estimated voltage error within vtol.

    The error estimate: with successive sweep changes d_k (largest node-voltage change)
    and their contraction rho (the largest of the last three ratios d_k / d_k-1, none to
    the first sweep's change, at least MIN_RATIOS of them: ``_contraction``), the
    remaining error is at most d_k rho / (1 - rho) while the sweeps contract linearly
    (times LAYERED_SAFETY). A warm-started solve of a batch whose free solve was layered
    (a nudged one given ``like``) takes each sample's rho as at least the one its free
    solve ended with or handed over to Newton with (``Problem.rates``), and needs no
    ratio of its own then. A warm start that knows no contraction (no ``like``) doubts its
    claims of convergence (``_Doubt``): its first sweeps move what the start upset, and the
    changes can show the slow rest of the circuit too little for their ratios to measure
    it. With ``handover``, a contraction too slow to finish (within the iteration limit,
    or SLOW_SWEEPS more sweeps) hands the solve to Newton, warm-started from the sweeps. ``cold``: x is no warm start, so the first sweep's
    1-D diode solves start from each root's estimate (``_Junctions.start``) instead.

    Deep circuits (several hidden layers) contract slowly. Where both classes are
    quadratic (resistors, hard clamps, the nudge) and the first ACCEL_SWEEP plain sweeps
    contract by ACCEL_FROM < rho < ACCEL_TO, the sweeps after them are accelerated
    (``_Anderson``), sample by sample. An accelerated sample's error is then bounded
    from the plain sweeps' contraction rho: its last sweep started from a point y and
    moved the second class by f = S(y) - y, so its error is at most
    sqrt(rho) / (1 - rho) times the sweep's change (times LAYERED_SAFETY), and it is
    also held to the estimate from its last ratio of changes. Every sweep's start and
    result go into the acceleration's history from the first sweep on.

    Nudged solves of a batch (given its free equilibrium through ``like``) take the free
    solve's plain contraction (``Problem.contraction``) and its acceleration's last
    differences (``Problem.secants``): the nudge changes the sweeps' map only at the
    outputs. Such a solve extrapolates a sample once a plain sweep shrinks its change
    less than 1/ACCEL_SLOW-fold (a small nudge's first sweeps contract fast, and the
    bound from the plain contraction would then cost sweeps). A warm-started nudged solve
    that is not accelerated updates the outputs' class first: the nudge is what changed.

    Where both classes are quadratic, the plain sweeps (those before and without the
    acceleration) run in one compiled loop (``_SweepLoop``) with this function's
    arithmetic and decisions, bit for bit; it hands back to the code below only the
    sweeps that need it (the acceleration's start, estimates at the rounding floor, a
    hand-over to Newton).
    """
    blocks = [_Block.of(problem, classes, 0), _Block.of(problem, classes, 1)]
    B = problem.batch
    # the last sweeps' changes, a row each, newest first (shifted in place, as the loop does)
    changes = np.full((ACCEL_WINDOW + 1, B), np.nan)
    error = None  # inf until estimated
    sweeps = 0
    residual0 = None
    quadratic = not (blocks[0].terms or blocks[1].terms)
    # a warm-started solve takes what the batch's free solve learnt (cold: its own, so that
    # a shared set-up changes nothing)
    contraction = problem.contraction if quadratic and not cold else None
    anderson = None
    known = None if contraction is None else _accelerable(contraction)
    if quadratic and (known is None or known.any()):
        anderson = _Anderson(problem, blocks, known)
        if known is not None and problem.secants is not None:  # (warm: known)
            anderson.seed(*problem.secants)
    elif blocks[1].nudge is not None and not cold:
        blocks.reverse()  # a warm start where the nudge is what changed: its class first
    loop = _SweepLoop.of(problem, blocks) if quadratic and x.flags.c_contiguous else None
    # a warm start of a batch whose free solve was layered: its samples' contractions
    rates = problem.rates if not cold and problem.rates is not None else np.full(B, np.nan)
    # a warm start that knows no contraction: its claims of convergence are doubted
    doubt = _Doubt() if not cold and problem.rates is None else None
    rho = None  # the contraction of the last estimate
    estimated = False  # whether ``error`` is that of the current x
    residual = None  # both classes' largest residual, when the compiled loop converged
    while sweeps < max_iter:
        estimated = False
        watch = anderson is not None
        if loop is not None and (anderson is None or anderson.use is None):  # plain sweeps
            ended, sweeps, first = loop.run(
                x, sweeps, max_iter, changes, anderson, tol, vtol, handover, rates
            )
            if loop.dropped:  # it found no sample to accelerate, as below
                contraction = problem.contraction = loop.contraction
                anderson, watch = None, False
            if ended == LOOP_DONE:
                residual0, residual, error, rho = loop.out
                estimated = True
                if doubt is None or doubt.accepts(error, problem, blocks, x, vtol, sweeps):
                    break
                residual0 = residual = None
                continue
            if ended == LOOP_LIMIT:
                break
            start = loop.start  # LOOP_BACK: the rest of the last sweep is done here
        else:
            sweeps += 1
            estimate = cold and sweeps == 1
            start = x[:, blocks[1].idx].copy() if watch else None  # the second class before
            first, change0 = blocks[0].update(x, tol, vtol, estimate)
            _, change1 = blocks[1].update(x, tol, vtol, estimate, keep=watch)
            changes[1:] = changes[:-1]  # (numpy copies what overlaps first)
            changes[0] = np.maximum(change0, change1)
        if watch and anderson.use is None and sweeps == ACCEL_SWEEP:
            with np.errstate(divide="ignore", invalid="ignore"):  # per sample
                contraction = np.fmax(changes[0] / changes[1], changes[1] / changes[2])
            problem.contraction = contraction
            anderson.use = _accelerable(contraction)
            if not anderson.use.any():
                anderson = None
        undone = anderson.record(start, x) if anderson is not None else None
        if undone is not None and undone.any():  # those samples are back where they were
            changes[:-1] = np.where(undone, changes[1:], changes[:-1])
            changes[-1] = np.nan
            anderson.extrapolate(x, sweeps < max_iter, changes)
            continue  # ``first`` was measured on the undone sweep
        # a look at the contraction every 5 sweeps (once a window of accelerated ones is seen)
        slow = handover and sweeps % 5 == 0 and (anderson is None or sweeps > ACCEL_SWEEP + 6)
        if sweeps == 1 or (first > tol and not slow):
            if anderson is not None:
                anderson.extrapolate(x, sweeps < max_iter, changes)
            continue  # nothing to decide yet: no estimate needed
        bound = None if anderson is None else anderson.bound(contraction)
        error, rho = _sweep_error(changes, x, problem, blocks, sweeps, bound, rates)
        estimated = True
        # class 1 is exact now; class 0 was within tol before this sweep's update
        if first <= tol and error.max() <= vtol:
            residual0 = np.max(np.abs(blocks[0].residual(x)), axis=1, initial=0.0)
            if residual0.max() <= tol and (
                doubt is None or doubt.accepts(error, problem, blocks, x, vtol, sweeps)
            ):
                break
            residual0 = None
        judged = error
        if slow and anderson is not None:
            # an accelerated sample is judged by its rate over a window of sweeps and by the
            # bound from the plain contraction alone (one step that did not shrink is no stall)
            with np.errstate(divide="ignore", invalid="ignore"):
                window = (changes[0] / changes[ACCEL_WINDOW]) ** (1.0 / ACCEL_WINDOW)
                plain = LAYERED_SAFETY * changes[0] * np.sqrt(contraction) / (1 - contraction)
            rho = np.where(anderson.moved, window, rho)
            judged = np.where(anderson.moved, plain, error)
        if slow and _too_slow(judged, rho, vtol, min(SLOW_SWEEPS, max_iter - sweeps)):
            if problem.nudge is None:  # a nudged solve of the batch would sweep as slowly
                problem.rates = _rates(anderson, contraction, rho)
            steps = _newton(problem, x, tol, vtol, max_iter)
            steps.method = "layered+newton"
            steps.iterations += sweeps
            steps.message = steps.message.replace("Newton steps", "sweeps and Newton steps", 1)
            return steps
        if anderson is not None:
            anderson.extrapolate(x, sweeps < max_iter, changes)
    if sweeps > 1 and not estimated:
        bound = None if anderson is None else anderson.bound(contraction)
        error, rho = _sweep_error(changes, x, problem, blocks, sweeps, bound, rates)
    if error is None:
        error = np.full(B, np.inf)
    elif doubt is not None and not doubt.accepted:  # an unconfirmed claim: held to the bound
        np.fmax(error, _residual_bound(problem, blocks, x), out=error)
    if residual is None:
        if residual0 is None:
            residual0 = np.max(np.abs(blocks[0].residual(x)), axis=1, initial=0.0)
        residual1 = np.max(np.abs(blocks[1].residual(x)), axis=1, initial=0.0)
        residual = np.maximum(residual0, residual1)
    if anderson is not None and anderson.count and problem.nudge is None:
        problem.secants = (anderson.dF, anderson.dG)
    if problem.nudge is None and rho is not None:
        problem.rates = _rates(anderson, contraction, rho)
    xQx = functools.partial(_block_xQx, x, blocks)  # when an energy is asked for
    return problem.result(x, residual, error, tol, vtol, sweeps, "layered", "sweeps", xQx)


class _Doubt:
    """The claims of convergence of a warm start that knows no contraction (no ``like``):
    its changes may show the slow part of the circuit too little for their ratios to
    measure it. A claim is accepted where the bound from the residual (``_residual_bound``)
    agrees, every sample's error then held to it; else once the estimate claims it again
    CONFIRM_SWEEPS sweeps after the first claim or later, from ratios of changes all made
    since (the bound cannot confirm an answer whose residual is at the rounding level of
    a stiff circuit's currents)."""

    def __init__(self):
        self.claim: int | None = None  # the sweep of the first claim
        self.accepted = False

    def accepts(
        self, error: np.ndarray, problem: Problem, blocks, x: np.ndarray, vtol: float, sweeps: int
    ) -> bool:
        bound = _residual_bound(problem, blocks, x)
        if bound.max() <= vtol:
            np.fmax(error, bound, out=error)
            self.accepted = True
        elif self.claim is None:
            self.claim = sweeps
        else:
            self.accepted = sweeps >= self.claim + CONFIRM_SWEEPS
        return self.accepted


def _rates(anderson: _Anderson | None, contraction: np.ndarray | None, rho: np.ndarray):
    """A free solve's contraction per sample for its batch's nudged ones (``Problem.rates``):
    that of its last estimate, the plain sweeps' for an accelerated sample."""
    if anderson is None or not anderson.moved.any():
        return rho
    return np.where(anderson.moved, contraction, rho)


class _SweepLoop:
    """The plain sweeps of a layered solve whose classes have no diodes, as one compiled loop
    (``_sweep_loop``) that returns to ``_layered`` only for what it does not decide."""

    @classmethod
    def of(cls, problem: Problem, blocks: list[_Block]) -> _SweepLoop | None:
        """The loop of a solve's blocks (in their order), None where a class does not fit."""
        classes = [b._looped() for b in blocks]
        return None if None in classes else cls(problem, blocks, classes)

    def __init__(self, problem: Problem, blocks: list[_Block], classes: list[tuple]):
        self.blocks, self.classes = blocks, classes
        B, n = problem.batch, len(blocks[1].a)
        self.scale_max = problem.scale_max
        self.shape = (B, n)  # the second class's
        # when recording: the second class before the last sweep, and its b (for the
        # acceleration's energy), made on the first run that records
        self.start: np.ndarray | None = None
        self.rhs: np.ndarray | None = None
        self.out = np.empty((4, B))  # residual of the first class, of both, error, rho
        self.contraction = np.empty(B)  # the plain sweeps' (see _layered), when measured
        self.counts = np.zeros(3, np.int64)
        self.dropped = False  # whether the last run dropped the acceleration (none to make)

    def run(self, x, sweeps, max_iter, changes, anderson, tol, vtol, handover, rates):
        """Sweeps from ``sweeps`` on, with ``changes`` as ``_layered`` keeps them (updated in
        place), recording the acceleration's history while ``anderson`` is watching. Returns
        (how it ended, sweeps made, class one's residual before the last)."""
        self.dropped = False
        record = _NOT_RECORDING
        if anderson is not None:  # watching: the first ACCEL_SWEEP sweeps, then Python decides
            if self.start is None:
                self.start, self.rhs = np.empty(self.shape), np.empty(self.shape)
            f, g = anderson.f, anderson.g
            if f is None:
                f, g = np.empty(self.shape), np.empty(self.shape)
            self.counts[:] = anderson.f is not None, anderson.count, 0
            record = (True, self.start, self.rhs, f, g, anderson.dF, anderson.dG)
        stop = ACCEL_SWEEP if anderson is not None else -1
        limits = (max_iter, stop, handover, SLOW_SWEEPS, LAYERED_SAFETY, self.scale_max)
        limits += (ACCEL_FROM, ACCEL_TO)
        one, two = self.classes
        ended, made, first = _sweep_loop(
            x,
            one,
            two,
            changes,
            (*record, self.counts),
            tol,
            vtol,
            sweeps,
            limits,
            self.out,
            self.contraction,
            rates,
        )
        if anderson is not None and made > sweeps:
            if self.counts[0]:
                anderson.f, anderson.g = f, g
            anderson.count = int(self.counts[1])
            self.blocks[1].rhs = self.rhs
            self.dropped = bool(self.counts[2])
        return ended, made, first


def _block_xQx(x: np.ndarray, blocks: list[_Block]) -> np.ndarray:
    """x Q x from the blocks: diagonal terms plus twice the coupling between the classes."""
    x0, x1 = x[:, blocks[0].idx], x[:, blocks[1].idx]
    xQx = (x0 * x0) @ blocks[0].a + (x1 * x1) @ blocks[1].a
    xQx += 2.0 * np.einsum("bi,bi->b", _times(x1, blocks[0].Q_oc), x0)
    return xQx


ACCEL_SWEEP = 3  # plain sweeps before acceleration; the last two ratios of their changes
ACCEL_FROM = 0.05  # contraction per plain sweep below which accelerating gains nothing
ACCEL_TO = 0.95  # and above which the bound from it is too loose (Newton takes such solves)
ACCEL_MEMORY = 8  # sweeps whose results an extrapolation combines
ACCEL_RIDGE = 1e-14  # relative ridge of its least squares (1e-12 and more cost sweeps)
ACCEL_SLOW = 0.01  # extrapolate once a plain sweep shrinks the change less than 100-fold
ACCEL_WINDOW = 5  # sweeps over which an accelerated sample's rate is judged (hand-over)


def _accelerable(contraction: np.ndarray) -> np.ndarray:
    """Samples whose plain sweeps contract slowly enough to gain from acceleration, and
    not so slowly that the error bound from their contraction is too loose."""
    return (contraction > ACCEL_FROM) & (contraction < ACCEL_TO)


class _Anderson:
    """Anderson acceleration of the layered sweeps, as a fixed-point map of the second class,
    safeguarded by the energy.

    A sweep maps the second class's unknowns y to S(y) (the first class solved exactly
    given y, then the second given that). Instead of from S(y_k), the next sweep starts
    from the combination S(y_k) - sum_j gamma_j (S(y_j+1) - S(y_j)) over the last
    ACCEL_MEMORY sweeps, gamma the least-squares fit (per sample) of the residual
    f_k = S(y_k) - y_k by the differences of the residuals, projected onto the clamps'
    bounds. With the set of clamped nodes fixed, S is affine and this is GMRES on its
    fixed-point equation: the few slowly contracting directions of a deep circuit (its
    layers' nodes moving together) go in a few sweeps, where over-relaxation only shrinks
    them by a constant factor per sweep. Every sweep still updates every unknown once,
    exactly given the other class; only its starting point is extrapolated.

    The safeguard: a sweep from an extrapolated start that ends at a higher energy than
    the sweep before is undone for that sample, which goes on with a plain sweep from
    where it was (the undone sweep's start and result stay in the history: they are
    a true pair of S). So the energy after each sweep never rises.
    """

    def __init__(self, problem: Problem, blocks: list[_Block], use: np.ndarray | None):
        self.problem, self.blocks = problem, blocks
        self.use = use  # (batch,) the samples that are accelerated; None: not known yet
        B, n = problem.batch, len(blocks[1].a)
        # the last ACCEL_MEMORY differences of successive residuals f and results S(y), in
        # a ring (the least squares does not depend on their order; unfilled ones are 0)
        self.dF = np.zeros((B, ACCEL_MEMORY, n))
        self.dG = np.zeros((B, ACCEL_MEMORY, n))
        self.count = 0  # differences recorded
        self.f = self.g = None  # the last sweep's residual and result
        self.moved = np.zeros(B, bool)  # samples started from an extrapolation, ever
        self.last = np.zeros(B, bool)  # ... for the sweep just made
        self.hold = np.zeros(B, bool)  # samples whose sweep was just undone
        self.energy = self.saved = None  # at the end of the last sweep kept, and its x

    def seed(self, dF: np.ndarray, dG: np.ndarray) -> None:
        """Start from another solve's differences (the free solve's, for a nudged one of the
        same batch: the nudge changes the sweeps' map only at the outputs); this solve's
        own replace them from the first slot on."""
        self.dF[:], self.dG[:], self.count = dF, dG, ACCEL_MEMORY

    def record(self, start: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Keep a sweep's residual S(y) - y and result S(y) (the second class in ``x``, y
        ``start``); undo the sweep where it raised the energy (returned: those samples)."""
        g = x[:, self.blocks[1].idx]
        f = g - start
        if self.f is not None:
            slot = self.count % ACCEL_MEMORY
            np.subtract(f, self.f, out=self.dF[:, slot])
            np.subtract(g, self.g, out=self.dG[:, slot])
            self.count += 1
        self.f, self.g = f, g.copy()
        if self.use is None:  # no extrapolation before the samples are chosen: no energy
            return np.zeros(len(f), bool)
        energy, size = self._energy(x)
        undone = np.zeros(len(energy), bool)
        if self.energy is not None:
            undone = self.last & (energy > self.energy + 1e-13 * size)
        if undone.any():
            x[undone] = self.saved[undone]
            energy[undone] = self.energy[undone]
        self.energy, self.saved, self.hold = energy, x.copy(), undone
        return undone

    def _energy(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The energy (without its constant) at the end of a sweep, from the second class's
        linear term given the first (``_Block.rhs``), and its size for rounding."""
        first, second = self.blocks
        x0, x1 = x[:, first.idx], x[:, second.idx]
        terms = [(0.5 * first.a * x0 - first.r) * x0, (0.5 * second.a * x1 - second.rhs) * x1]
        energy = terms[0].sum(axis=1) + terms[1].sum(axis=1)
        size = np.abs(terms[0]).sum(axis=1) + np.abs(terms[1]).sum(axis=1)
        if self.problem.nudge is not None:
            nudge = self.problem.nudge.energy(x)
            energy += nudge
            size += np.abs(nudge)
        return energy, size

    def bound(self, contraction: np.ndarray | None) -> np.ndarray | None:
        """The plain contraction of the samples started from an extrapolation (NaN for the
        others), for ``_sweep_error``."""
        if contraction is None or not self.moved.any():
            return None
        return np.where(self.moved, contraction, np.nan)

    def extrapolate(self, x: np.ndarray, more: bool, changes: np.ndarray) -> None:
        """Set the second class in ``x`` to the extrapolated start of the next sweep (not
        for the samples whose sweep was undone: they go on plain). ``more``: whether a
        sweep follows (else x stays at the last sweep's result)."""
        go = ~self.hold & (False if self.use is None else self.use)
        with np.errstate(invalid="ignore"):  # a sample starts once its plain sweeps slow down
            go &= self.moved | (changes[0] > ACCEL_SLOW * changes[1])
        if self.count == 0 or not go.any() or not more:
            self.last = np.zeros_like(go)
            return
        self.last = go
        A = np.matmul(self.dF, self.dF.transpose(0, 2, 1))  # (batch, m, m)
        rhs = np.matmul(self.dF, self.f[:, :, None])
        # a relative ridge keeps nearly dependent differences from blowing up the weights
        # (and gives unfilled slots no weight)
        ridge = ACCEL_RIDGE * np.trace(A, axis1=1, axis2=2) + np.finfo(float).tiny
        A += ridge[:, None, None] * np.eye(ACCEL_MEMORY)
        gamma = np.linalg.solve(A, rhs)  # (batch, m, 1)
        new = self.g - np.matmul(gamma.transpose(0, 2, 1), self.dG)[:, 0]
        block = self.blocks[1]
        if block.bounded:
            np.clip(new, block.lo, block.hi, out=new)
        if not go.all():
            new[~go] = x[:, block.idx][~go]
        x[:, block.idx] = new
        self.moved |= go


def _largest(change: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """Per sample, the largest |change| of a node voltage, from changes of the unknowns."""
    if change.shape[1] == 0:
        return np.zeros(change.shape[0])
    return (change if scale is None else change * scale).max(axis=1)


def _contraction(changes: np.ndarray, sweeps: int, skip: int, need: int | None = None):
    """Per sample, the largest ratio of successive sweep changes among the last three (from
    the ``skip``-th newest change on), NaN where fewer than ``need`` (MIN_RATIOS) of them
    are known, or none.

    ``changes`` holds the changes of the last sweeps, newest first, ``sweeps`` made. The
    first sweep's change is no measure of the contraction: it includes the first class's
    move from the start, which the sweep map does not see (each class is solved given the
    other alone), so a ratio to it can be far below the contraction (a warm start that a
    nudge upsets at the outputs moves them a lot in the first sweep, and the rest of the
    circuit little); ratios to it are left out. Nor is one ratio enough where the error has
    a slowly contracting part much smaller than its fast ones: the changes shrink at the
    fast rate until that part's are the largest, hence MIN_RATIOS."""
    ratios = [changes[k] / changes[k + 1] for k in range(skip, 3) if sweeps - k - 1 >= 2]
    if not ratios or len(ratios) < (MIN_RATIOS if need is None else need) - skip:
        return np.full(changes.shape[1], np.nan)
    rho = ratios[0]
    for r in ratios[1:]:
        rho = np.fmax(rho, r)
    return rho


def _sweep_error(
    changes: np.ndarray,
    x: np.ndarray,
    problem: Problem,
    blocks,
    sweeps: int,
    contraction: np.ndarray | None = None,
    rates: np.ndarray | None = None,
):
    """Estimated remaining error (V) per sample, and the contraction rho it assumed.

    Where the last change is at the rounding level of the voltages, it says nothing (a
    stiff circuit can creep by less than a rounding step per sweep): there the estimate
    of the sweep before holds if it was made from changes above that level, and else
    the error is bounded from the residual, ||Q^-1|| times the largest one.
    ``contraction``: per sample, the plain sweeps' contraction of an accelerated sample
    (NaN for the others), whose error is the larger of the bound from it and the
    estimate from its last ratio of changes (an accelerated sample's ratios vary from
    sweep to sweep); at the rounding level, the residual's bound. ``rates``: per sample,
    the least contraction to assume where one is estimated (NaN: none); ``sweeps``: how
    many were made (the changes' ratios to the first sweep's are left out).
    """
    c0, c1 = changes[:2]
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = _contraction(changes, sweeps, 0)  # NaN: no ratio known yet
        if rates is not None:  # a known least contraction: with any ratios, or alone
            known = np.fmax(_contraction(changes, sweeps, 0, 0), rates)
            rho = np.where(np.isnan(rates), rho, known)
        error = LAYERED_SAFETY * c0 * rho / (1 - rho)
    error[~(rho < 1)] = np.inf
    scale = problem.var_scale
    level = 1e-14 * max(1.0, float(np.abs(x).max(initial=0.0) * scale.max(initial=0.0)))
    fast = np.zeros(len(c0), bool) if contraction is None else np.isfinite(contraction)
    if fast.any():  # held to the bound from the plain contraction, and to a last step that shrank
        plain = contraction[fast]
        with np.errstate(divide="ignore", invalid="ignore"):
            last = c0[fast] / c1[fast]
            own = np.where(last < 1, c0[fast] * last / (1 - last), np.inf)
        own[c0[fast] <= level] = 0.0  # changes at the rounding level: no ratio to judge by
        error[fast] = LAYERED_SAFETY * np.fmax(own, c0[fast] * np.sqrt(plain) / (1 - plain))
    # (not an accelerated sample: it contracts by less than ACCEL_TO per plain sweep)
    floor = (c0 <= level) & ~fast
    if floor.any():  # the last sweep's estimate, made from changes above the floor, still holds
        with np.errstate(divide="ignore", invalid="ignore"):
            before = _contraction(changes, sweeps, 1)
            error[floor] = np.where(
                (c1[floor] > level) & (before[floor] < 1),
                LAYERED_SAFETY * c1[floor] * before[floor] / (1 - before[floor]),
                np.inf,
            )
        floor &= ~np.isfinite(error)
    if floor.any():
        error[floor] = _residual_bound(problem, blocks, x, floor)
    return error, rho


def _residual_bound(problem: Problem, blocks, x: np.ndarray, rows=slice(None)) -> np.ndarray:
    """Per sample (of ``rows``), a bound on the node-voltage error from the KCL residual:
    ||Q^-1|| (``Problem.inverse_bound``) times the largest residual, each class's times its
    weight, in volts of the most amplified node."""
    raw = [np.abs(b.residual(x)[rows]) * b.weight for b in blocks]
    largest = np.maximum(*(np.max(r, axis=1, initial=0.0) for r in raw))
    return problem.inverse_bound * problem.var_scale.max(initial=0.0) * largest


LAYERED_SAFETY = 2.0  # margin on the contraction estimate of the remaining error
MIN_RATIOS = 2  # ratios of sweep changes (none to the first sweep's) that an estimate needs
CONFIRM_SWEEPS = 3  # a doubted claim is confirmed this many sweeps on (_contraction's ratios)
SLOW_SWEEPS = 200  # auto hands a layered solve to Newton when more sweeps than this remain


def _too_slow(error: np.ndarray, rho: np.ndarray, vtol: float, budget: int) -> bool:
    """Whether some sample's sweeps, contracting by rho, need more than ``budget`` more."""
    late = error > vtol
    if not late.any():
        return False
    rho = rho[late]
    if not np.all(rho < 1):
        return True
    needed = np.log(vtol / error[late]) / np.log(np.maximum(rho, 1e-300))
    return bool(np.max(needed) > budget)


# ------------------------------------------------------------------ Newton


class _BlockLU:
    """Newton directions from one sparse LU of the batch's block-diagonal Hessian."""

    def __init__(self, problem: Problem):
        n, B = problem.network.n_vars, problem.batch
        self.problem, self.n, self.B = problem, n, B
        Qc = sp.coo_matrix(problem.base_hessian())
        offsets = (np.arange(B) * n)[:, None]
        rows = [(offsets + Qc.row).ravel()]
        cols = [(offsets + Qc.col).ravel()]
        self.pairs = []
        for t in problem.terms:
            pr, pc, pd, pv = _diode_pairs(t.A)
            self.pairs.append((t, pd, pv))
            rows.append((offsets + pr).ravel())
            cols.append((offsets + pc).ravel())
        rows.append(np.arange(B * n))
        cols.append(np.arange(B * n))
        self.rows, self.cols = np.concatenate(rows), np.concatenate(cols)
        self.q_data = np.tile(Qc.data, B)

    def factor(self, x: np.ndarray, active: np.ndarray):
        """A solver of H d = rhs at x (rows of held unknowns: d = 0), as a function."""
        lu = splu(self.hessian(x, active), permc_spec="MMD_AT_PLUS_A", options=SPD)
        return lambda rhs: lu.solve(rhs.ravel()).reshape(self.B, self.n)

    def factor_each(self, x: np.ndarray, active: np.ndarray, shift: float = 1e-12):
        """As ``factor``, sample by sample, and the samples whose Hessian was regularised.

        Where a sample's Hessian is singular in floating point (diode conductances that
        underflow at a node held by diodes only), shift times its diagonal, plus a
        floor, is added to it.
        """
        n, H = self.n, self.hessian(x, active)
        solvers, regularised = [], np.zeros(self.B, bool)
        for b in range(self.B):
            block = H[b * n : (b + 1) * n, b * n : (b + 1) * n]
            try:
                lu = splu(block, permc_spec="MMD_AT_PLUS_A", options=SPD)
                if not np.all(np.isfinite(lu.solve(np.ones(n)))):
                    raise RuntimeError("singular")
            except RuntimeError:
                diag = block.diagonal()
                floor = max(shift * np.max(diag, initial=0.0) * 1e-3, 1e-300)
                block = block + sp.diags(shift * diag + floor, format="csc")
                lu, regularised[b] = splu(block, permc_spec="MMD_AT_PLUS_A", options=SPD), True
            solvers.append(lu)
        return lambda rhs: np.stack(
            [lu.solve(r) for lu, r in zip(solvers, rhs, strict=True)]
        ), regularised

    def hessian(self, x: np.ndarray, active: np.ndarray) -> sp.csc_matrix:
        """The batch's block-diagonal Hessian at x, held unknowns' rows and columns identity."""
        n, B = self.n, self.B
        keep = (~active).ravel().astype(float)
        data = [self.q_data]
        for t, pd, pv in self.pairs:
            gw = t.model.conductance(t.voltage(x)) * t.weight
            data.append((gw[:, pd] * pv).ravel())
        data.append(active.ravel().astype(float))
        data = np.concatenate(data)
        inner = self.rows[: -B * n], self.cols[: -B * n]
        keep_rc = np.concatenate([keep[inner[0]] * keep[inner[1]], np.ones(B * n)])
        return sp.csc_matrix((data * keep_rc, (self.rows, self.cols)), shape=(B * n, B * n))


class _Woodbury:
    """Newton directions with Q factorised once: the diodes are a low-rank update per sample.

    H_b = Q + U D_b U^T with U the diodes' incidence (n x k) and D_b their
    conductances, so H_b^-1 = Q^-1 - Z (I + D_b C)^-1 D_b Z^T with Z = Q^-1 U
    and C = U^T Z: one sparse LU for the whole solve, then k x k systems.
    Only for circuits without hard clamps and with few diodes, and only while the
    update is moderate (D C below STIFF): a diode far in forward conduction makes
    the two terms cancel to no digits, and Newton then takes the block LU.
    """

    MAX_DIODES = 256
    STIFF = 1e6

    @classmethod
    def applies(cls, problem: Problem) -> bool:
        k = sum(t.A.shape[0] for t in problem.terms)
        bounded = np.isfinite(problem.lo).any() or np.isfinite(problem.hi).any()
        return not bounded and 0 < k <= min(cls.MAX_DIODES, problem.network.n_vars)

    def __init__(self, problem: Problem):
        self.problem = problem
        derived = problem.linear.plan.woodbury
        key = None if problem.nudge is None else tuple(problem.nudge.beta_w)
        if key not in derived:  # once per conductance state (and nudge strength)
            lu = splu(
                sp.csc_matrix(problem.base_hessian()),
                permc_spec="MMD_AT_PLUS_A",
                options={"SymmetricMode": True},
            )
            U = sp.vstack([t.A for t in problem.terms]).T.tocsc()  # (n, k)
            Z = lu.solve(U.toarray())
            derived[key] = (lu, U, Z, np.asarray(U.T @ Z))
        self.lu, self.U, self.Z, self.C = derived[key]

    def factor(self, x: np.ndarray, active: np.ndarray):
        """As _BlockLU.factor, or None when the update is too stiff for these formulas."""
        D = np.concatenate(
            [t.model.conductance(t.voltage(x)) * t.weight for t in self.problem.terms],
            axis=1,
        )  # (B, k)
        if np.max(D * np.abs(np.diagonal(self.C)), initial=0.0) > self.STIFF:
            return None
        k = D.shape[1]
        system = np.eye(k) + D[:, :, None] * self.C[None, :, :]  # I + D_b C

        def apply(rhs: np.ndarray) -> np.ndarray:
            Y = self.lu.solve(rhs.T).T  # Q^-1 rhs, (B, n)
            UY = np.asarray((self.U.T @ Y.T).T)  # (B, k)
            s = np.linalg.solve(system, (D * UY)[:, :, None])[:, :, 0]
            return Y - s @ self.Z.T

        return apply


NEWTON_SAFETY = 2.0  # the error estimate is a first-order one: this much margin on it


def _newton(problem: Problem, x: np.ndarray, tol: float, vtol: float, max_iter: int) -> Equilibrium:
    """Newton on the batch, in chunks of samples where the block LU of the whole batch would
    need more than NEWTON_MEMORY bytes (each sample's Hessian is a block of its own, so the
    chunks' solves are those of the batch)."""
    size = _newton_chunk(problem)
    if size >= problem.batch:
        return _newton_batch(problem, x, tol, vtol, max_iter)
    parts = [
        _newton_batch(problem.subset(rows), x[rows], tol, vtol, max_iter)
        for rows in (slice(i, i + size) for i in range(0, problem.batch, size))
    ]
    joined = [np.concatenate([getattr(e, f) for e in parts]) for f in ("residual", "error")]
    steps = max(e.iterations for e in parts)
    x = np.concatenate([e.unknowns for e in parts])
    return problem.result(x, *joined, tol, vtol, steps, "newton", "Newton steps")


NEWTON_MEMORY = 2 * 2**30  # bytes that one block LU (its batch's Hessians and factors) may take


def _newton_chunk(problem: Problem) -> int:
    """Samples per Newton solve within NEWTON_MEMORY: per sample, about 100 bytes per entry of
    its Hessian (the block LU's index and value arrays) and at most 12 per entry of a dense
    factor (n^2; the LU's fill is less)."""
    n = problem.network.n_vars
    entries = problem.linear.Q.nnz + n + sum(t.A.nnz for t in problem.terms)
    per_sample = 100 * entries + 12 * n * n
    return max(1, int(NEWTON_MEMORY // max(per_sample, 1)))


def _newton_batch(
    problem: Problem, x: np.ndarray, tol: float, vtol: float, max_iter: int
) -> Equilibrium:
    """Damped Newton with an energy line search until residual <= tol and error <= vtol.

    The error estimate at x_k is the Newton step there, -H_k^-1 g(x_k), times
    NEWTON_SAFETY; at x_k+1, before a new factorisation, the step that the last one gives
    from there, -H_k^-1 g(x_k+1), likewise, trusted only after a full step that left
    every diode's conductance within 25% and the held set unchanged, so that H_k is the
    Hessian near x_k+1 too. Where the Hessian is singular (diode
    conductances underflowed on a node held by diodes only), the step is regularised.
    """
    fast = None
    if _Woodbury.applies(problem):
        try:
            fast = _Woodbury(problem)
        except RuntimeError:  # Q singular: a node held only through diodes
            fast = None
    block = None
    B = problem.batch
    scale = problem.var_scale
    done = np.zeros(B, bool)
    error = np.full(B, np.inf)
    last = None  # (solver, held set, conductances, full step) of the previous step
    quadratic = problem.quadratic_gradient(x)
    grad = problem.gradient(x, quadratic)
    it = 0
    while True:
        residual = np.max(np.abs(problem.residual(x, grad)), axis=1, initial=0.0)
        active = _held(x, grad, problem.lo, problem.hi)
        if last is not None:
            apply, held, cond, full = last
            trusted = full & np.all(held == active, axis=1) & _steady(cond, problem.conductances(x))
            estimate = np.full(B, np.inf)
            if trusted.any():
                chord = apply(np.where(held, 0.0, -grad))
                estimate = NEWTON_SAFETY * np.max(np.abs(chord) * scale, axis=1, initial=0.0)
                estimate[~trusted | ~np.isfinite(estimate)] = np.inf
            error = np.where(done, error, estimate)  # a finished sample keeps its estimate
        done |= (residual <= tol) & (error <= vtol)
        if done.all() or it >= max_iter:
            break
        it += 1
        rhs = np.where(active, 0.0, -grad)
        apply, regularised, d = None, np.zeros(B, bool), None
        if fast is not None:
            apply = fast.factor(x, active)
        if apply is None:
            block = block or _BlockLU(problem)
            try:
                apply = block.factor(x, active)
                d = apply(rhs)
                if not np.all(np.isfinite(d)):
                    raise RuntimeError("non-finite direction")
            except RuntimeError:  # singular: diode conductances underflowed somewhere
                apply, regularised = block.factor_each(x, active)
                d = None
        d = apply(rhs) if d is None else d
        # the Newton step at x is itself an estimate of the error at x
        fresh = NEWTON_SAFETY * np.max(np.abs(d) * scale, axis=1, initial=0.0)
        now = ~done & ~regularised & (residual <= tol) & (fresh <= vtol)
        error[now] = fresh[now]
        done |= now
        if done.all():
            break
        d[done] = 0.0
        cond = problem.conductances(x)
        x, moved, full = _line_search(problem, x, grad, quadratic, d, done)
        # where no step lowers the energy, the step itself is the error
        stuck = ~moved & ~done & ~regularised
        error[stuck] = NEWTON_SAFETY * np.max(np.abs(d[stuck]) * scale, axis=1, initial=0.0)
        done |= stuck & (residual <= tol) & (error <= vtol)
        last = (apply, active, cond, full & ~regularised)
        quadratic = problem.quadratic_gradient(x)
        grad = problem.gradient(x, quadratic)
        if not moved.any():
            break
    return problem.result(x, residual, error, tol, vtol, it, "newton", "Newton steps")


def _steady(before: list[np.ndarray], after: list[np.ndarray]) -> np.ndarray:
    """Per sample: every diode's conductance changed by at most 25% between two points."""
    ok = np.ones(max((b.shape[0] for b in before), default=1), bool)
    for g0, g1 in zip(before, after, strict=True):
        top = np.maximum(np.maximum(g0, g1), 1e-300)
        ok &= np.all(np.abs(g1 - g0) <= 0.25 * top, axis=1)
    return ok


def _line_search(
    problem: Problem, x, grad, base, d, done
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backtrack along d (projected onto the clamps' bounds) until the energy falls enough;
    after a full step that lowered the energy, try doubling it while that lowers it more.

    The doubling is for diodes far in forward conduction, where Newton's steps shrink
    to about n Vt each: the energy falls along d for many such steps. The energy
    change is computed as a change (branch voltages, per-diode differences), not as a
    difference of two totals, so that it keeps its digits when the energy is large or
    nodes are tied by large conductances. ``base``: the quadratic part's gradient at x.
    Returns (x, moved, full step).
    """
    B = x.shape[0]
    v0 = [t.voltage(x) for t in problem.terms]
    f0 = [t.model.energy(v) for t, v in zip(problem.terms, v0, strict=True)]
    n0 = problem.nudge.energy(x) if problem.nudge is not None else None

    def change_at(step: np.ndarray):
        """(trial point, energy change, its rounding allowance, slope times step)."""
        trial = np.clip(x + step[:, None] * d, problem.lo, problem.hi)
        s = trial - x
        lin = np.einsum("bi,bi->b", base, s)
        quad = 0.5 * problem.quadratic_form(s)
        change = lin + quad
        size = np.abs(lin) + quad
        for t, v, f in zip(problem.terms, v0, f0, strict=True):
            f1 = t.model.energy(v + _rows(t.A, s))
            change += (f1 - f) @ t.weight
            size += (np.abs(f1) + np.abs(f)) @ t.weight
        if n0 is not None:
            n1 = problem.nudge.energy(trial)
            change += n1 - n0
            size += np.abs(n1) + np.abs(n0)
        return trial, change, 1e-15 * size, np.einsum("bi,bi->b", grad, s)

    step = np.ones(B)
    for _ in range(100):
        trial, change, allowance, slope = change_at(step)
        # Armijo, with an allowance for the rounding of the change itself
        ok = done | (change <= 1e-4 * slope + allowance)
        if ok.all():
            break
        step = np.where(ok, step, 0.5 * step)
    # lengthen only where the energy fell by more than the 1/2 of its slope that a
    # quadratic gives at a full Newton step (an exponential far forward gives 1 - 1/e)
    grow = ok & ~done & (step == 1.0) & (change < -allowance) & (change <= 0.6 * slope)
    for _ in range(60):
        if not grow.any():
            break
        trial2, change2, allowance2, _ = change_at(np.where(grow, 2 * step, step))
        grow &= change2 < change - allowance2
        step = np.where(grow, 2 * step, step)
        trial = np.where(grow[:, None], trial2, trial)
        change = np.where(grow, change2, change)
    moved = ok & ~done & np.any(trial != x, axis=1)
    x = np.where(moved[:, None], trial, x)
    return x, moved, moved & (step >= 1.0)


def _diode_pairs(A: sp.csr_matrix):
    """Hessian stamp pattern of diodes: every (row var, col var) pair one diode touches."""
    A = A.tocsr()
    A.sort_indices()
    count = np.diff(A.indptr)
    first = A.indptr[:-1]
    one = np.where(count == 1)[0]
    two = np.where(count == 2)[0]
    e = [first[one], first[one]], [first[two], first[two]], [first[two], first[two] + 1]
    e += ([first[two] + 1, first[two]], [first[two] + 1, first[two] + 1])
    i = np.concatenate([p[0] for p in e])
    j = np.concatenate([p[1] for p in e])
    diode = np.concatenate([one, two, two, two, two])
    return A.indices[i], A.indices[j], diode, A.data[i] * A.data[j]
