"""Equilibrium (DC operating point) of a network for a batch of inputs.

One public ``solve(network, inputs, method=...)`` dispatches to two methods
that return the same ``Equilibrium``:

- ``layered``: exact block coordinate descent for circuits whose unknowns
  split into two classes with no coupling inside a class (layered networks:
  even and odd layers). With one class fixed, every node of the other is an
  independent 1-D convex problem, solved exactly (closed form for resistors
  and hard clamps, safeguarded Newton for diodes), batched with matrix
  products. The energy decreases monotonically.
- ``newton``: damped Newton on Kirchhoff's current law for any circuit, with
  sparse linear algebra (one block-diagonal system for the whole batch), an
  energy line search and projection onto hard-clamp bounds. The energy is
  convex, so this converges from any start.

Not converging is a result (``success=False`` and a message), never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order
from scipy.sparse.linalg import spsolve

from .errors import InputError
from .network import Network

METHODS = ("auto", "layered", "newton")


@dataclass
class Equilibrium:
    """Node voltages for every sample, with diagnostics."""

    voltages: np.ndarray  # (batch, n_nodes), volts
    node_names: list[str]
    converged: np.ndarray  # (batch,) bool
    residual: np.ndarray  # (batch,) largest KCL residual, amperes
    energy: np.ndarray  # (batch,) co-content with stage weights, watts
    iterations: int
    method: str
    message: str
    unknowns: np.ndarray = field(repr=False, default=None)  # (batch, n_vars)

    @property
    def success(self) -> bool:
        return bool(np.all(self.converged))

    def outputs(self, network: Network) -> np.ndarray:
        """Readout values (batch, n_outputs): V+ - V- for differential outputs."""
        V = self.voltages[:, network.outputs]
        return V[..., 0] - V[..., 1] if V.shape[-1] == 2 else V[..., 0]


@dataclass
class _DiodeTerms:
    """A diode group in terms of the unknowns: v = x @ A.T + u."""

    model: object
    A: sp.csr_matrix  # (n_diodes, n_vars)
    u: np.ndarray  # (batch, n_diodes)
    weight: np.ndarray


class Problem:
    """Everything a solver needs for one batch: quadratic form, diode terms, bounds."""

    def __init__(self, network: Network, inputs: np.ndarray):
        inputs = np.atleast_2d(np.asarray(inputs, dtype=float))
        if inputs.shape[1] != network.n_features:
            raise InputError(
                f"the circuit takes {network.n_features} input feature(s); got vectors of length {inputs.shape[1]}"
            )
        if not np.all(np.isfinite(inputs)):
            raise InputError("input vectors contain NaN or infinite values")
        self.network = network
        self.batch = inputs.shape[0]
        self.F = network.fixed_potentials(inputs)
        quad = network.quadratic()
        self.Q = quad.Q
        K = quad.K
        self.r = (
            self.F @ K if isinstance(K, np.ndarray) else np.asarray((K.T @ self.F.T).T)
        ) + quad.s
        self.const = (
            0.5 * (self.F**2) @ quad.fixed_diag
            + 0.5 * np.einsum("bi,bi->b", self.F, np.asarray((quad.fixed_laplacian @ self.F.T).T))
            - self.F @ quad.fixed_current
        )
        n = network.n_vars
        self.lo = np.full((self.batch, n), -np.inf)
        self.hi = np.full((self.batch, n), np.inf)
        self.terms: list[_DiodeTerms] = []
        for d in network.diodes:
            va, vc = network.node_var[d.anode], network.node_var[d.cathode]
            ca, cc = network.node_coef[d.anode], network.node_coef[d.cathode]
            fa, fc = network.fixed_index[d.anode], network.fixed_index[d.cathode]
            u = np.where(fa >= 0, self.F[:, np.maximum(fa, 0)], 0.0) - np.where(
                fc >= 0, self.F[:, np.maximum(fc, 0)], 0.0
            )
            if d.model.hard:
                self._add_bounds(d, va, vc, ca, cc, u)
                continue
            rows = np.concatenate([np.where(va >= 0)[0], np.where(vc >= 0)[0]])
            cols = np.concatenate([va[va >= 0], vc[vc >= 0]])
            vals = np.concatenate([ca[va >= 0], -cc[vc >= 0]])
            A = sp.csr_matrix((vals, (rows, cols)), shape=(len(d.anode), n))
            self.terms.append(_DiodeTerms(d.model, A, u, d.weight))
        if np.any(self.lo > self.hi):
            raise InputError(
                "hard-clamp diodes leave no feasible voltage at some node for these inputs"
            )

    def _add_bounds(self, d, va, vc, ca, cc, u) -> None:
        th = d.model.threshold
        up = va >= 0  # anode unknown: ca x - V_c <= th  ->  x <= (th - u) / ca
        if np.any(up):
            np.minimum.at(self.hi.T, va[up], ((th - u[:, up]) / ca[up]).T)
        down = vc >= 0  # cathode unknown: V_a - cc x <= th  ->  x >= (u - th) / cc
        if np.any(down):
            np.maximum.at(self.lo.T, vc[down], ((u[:, down] - th) / cc[down]).T)

    # -------------------------------------------------------------- energy and gradient

    def energy(self, x: np.ndarray) -> np.ndarray:
        total = 0.5 * np.einsum("bi,bi->b", x, _times(x, self.Q)) - np.einsum("bi,bi->b", self.r, x)
        for t in self.terms:
            total += t.model.energy(_times(x, t.A.T) + t.u) @ t.weight
        return total + self.const

    def gradient(self, x: np.ndarray) -> np.ndarray:
        grad = _times(x, self.Q) - self.r
        for t in self.terms:
            grad += _times(t.model.current(_times(x, t.A.T) + t.u) * t.weight, t.A)
        return grad

    def residual(self, x: np.ndarray, grad: np.ndarray | None = None) -> np.ndarray:
        """KCL residual (amperes) per unknown, zero where a clamp absorbs it."""
        grad = self.gradient(x) if grad is None else grad
        at_hi = (x >= self.hi) & (grad < 0)
        at_lo = (x <= self.lo) & (grad > 0)
        return np.where(at_hi | at_lo, 0.0, grad) / self.network.var_weight

    def result(self, x, converged, residual, iterations, method, message) -> Equilibrium:
        V = self.network.node_voltages(x, self.F)
        return Equilibrium(
            V,
            self.network.node_names,
            converged,
            residual,
            self.energy(x),
            iterations,
            method,
            message,
            x,
        )


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
) -> Equilibrium:
    """Equilibrium for a batch of input vectors (batch x features).

    ``method``: "auto" (layered when the circuit allows, else Newton),
    "layered" or "newton". ``tol`` is the KCL residual accepted (amperes),
    ``max_iter`` the limit on sweeps (layered) or Newton steps. ``x0`` is a
    warm start for the unknowns.
    """
    if method not in METHODS:
        raise InputError(f'unknown method "{method}"; expected one of {", ".join(METHODS)}')
    problem = Problem(network, inputs)
    x = np.zeros((problem.batch, network.n_vars)) if x0 is None else np.array(x0, dtype=float)
    x = np.clip(x, problem.lo, problem.hi)
    if network.n_vars == 0:
        zero = np.zeros(problem.batch)
        return problem.result(x, np.ones(problem.batch, bool), zero, 0, method, "no unknowns")
    classes = layered_classes(network, problem)
    if method == "layered" and classes is None:
        raise InputError(layered_reason(network))
    if method == "newton" or classes is None:
        return _newton(problem, x, tol, max_iter)
    return _layered(problem, x, classes, tol, max_iter)


def layered_reason(network: Network) -> str:
    return (
        "the layered solver needs the unknowns to split into two classes with no resistor "
        "inside a class, every unknown to have a resistor, and every diode to have one end "
        "at a fixed potential; use method newton"
    )


def layered_classes(network: Network, problem: Problem) -> tuple[np.ndarray, np.ndarray] | None:
    """The two classes of a bipartite coupling graph, or None when the circuit is not layered."""
    n = network.n_vars
    Q = problem.Q.tocoo()
    diag = problem.Q.diagonal()
    if np.any(diag <= 0):
        return None
    for t in problem.terms:
        if np.any(np.diff(t.A.indptr) > 1):
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

    def __init__(self, problem: Problem, idx: np.ndarray, other: np.ndarray):
        self.idx = idx
        self.other = other
        Qc = problem.Q[other][:, idx]
        self.Q_oc = Qc.toarray() if Qc.shape[0] * Qc.shape[1] <= 4_000_000 else Qc.tocsr()
        self.a = problem.Q.diagonal()[idx]
        self.r = problem.r[:, idx]
        self.lo, self.hi = problem.lo[:, idx], problem.hi[:, idx]
        self.weight = problem.network.var_weight[idx]
        self.terms = []
        zmin = np.full(self.r.shape, np.inf)
        zmax = np.full(self.r.shape, -np.inf)
        for t in problem.terms:
            A = t.A[:, idx].tocoo()
            if A.nnz == 0:
                continue
            keep = A.row
            coef = A.data
            u = t.u[:, keep]
            M = sp.csr_matrix((coef, (np.arange(len(keep)), A.col)), shape=(len(keep), len(idx)))
            M = M.toarray() if M.shape[0] * M.shape[1] <= 4_000_000 else M
            M2 = M * M if isinstance(M, np.ndarray) else M.multiply(M).tocsr()
            self.terms.append((t.model, M, M2, u, t.weight[keep]))
            zero = (t.model.zero_current_voltage - u) / coef  # x where the diode carries no current
            np.minimum.at(zmin.T, A.col, zero.T)
            np.maximum.at(zmax.T, A.col, zero.T)
        self.zmin, self.zmax = zmin, zmax

    def derivative(self, x: np.ndarray, b: np.ndarray, second: bool = False):
        f1 = self.a * x - b
        f2 = np.broadcast_to(self.a, x.shape).copy() if second else None
        for model, M, M2, u, w in self.terms:
            v = _times(x, M.T) + u
            f1 = f1 + _times(model.current(v) * w, M)
            if second:
                f2 += _times(model.conductance(v) * w, M2)
        return f1, f2

    def update(self, x_all: np.ndarray, tol: float) -> float:
        """Minimise exactly over this class; return the largest residual (A) before the update."""
        b = self.r - _times(x_all[:, self.other], self.Q_oc)
        x = x_all[:, self.idx]
        f1, _ = self.derivative(x, b)
        stuck = ((x >= self.hi) & (f1 < 0)) | ((x <= self.lo) & (f1 > 0))
        before = float(np.max(np.abs(np.where(stuck, 0.0, f1)) / self.weight, initial=0.0))
        z = b / self.a
        if not self.terms:
            x_all[:, self.idx] = np.clip(z, self.lo, self.hi)
            return before
        lo = np.minimum(z, self.zmin)
        hi = np.maximum(z, self.zmax)
        x = np.clip(x, lo, hi)
        for _ in range(200):
            f1, f2 = self.derivative(x, b, second=True)
            if np.max(np.abs(f1) / self.weight) <= tol * 1e-3:
                break
            pos = f1 > 0
            hi = np.where(pos, x, hi)
            lo = np.where(pos, lo, x)
            step = x - f1 / f2
            inside = (step > lo) & (step < hi)
            x = np.where(inside, step, 0.5 * (lo + hi))
            if np.all(hi - lo <= 4e-16 * np.maximum(1.0, np.abs(x))):
                break
        x_all[:, self.idx] = np.clip(x, self.lo, self.hi)
        return before


def _layered(problem: Problem, x: np.ndarray, classes, tol: float, max_iter: int) -> Equilibrium:
    blocks = [_Block(problem, classes[0], classes[1]), _Block(problem, classes[1], classes[0])]
    sweeps = 0
    for sweeps in range(1, max_iter + 1):
        worst = [blocks[0].update(x, tol), blocks[1].update(x, tol)]
        if sweeps > 1 and worst[0] <= tol:
            break
    residual = np.max(np.abs(problem.residual(x)), axis=1)
    converged = residual <= tol
    message = (
        "converged"
        if converged.all()
        else (
            f"not converged after {sweeps} sweeps: largest KCL residual {residual.max():.3g} A > tol {tol:.3g} A"
        )
    )
    return problem.result(x, converged, residual, sweeps, "layered", message)


# ------------------------------------------------------------------ Newton


def _newton(problem: Problem, x: np.ndarray, tol: float, max_iter: int) -> Equilibrium:
    n, B = problem.network.n_vars, problem.batch
    Qc = problem.Q.tocoo()
    offsets = (np.arange(B) * n)[:, None]
    rows = [(offsets + Qc.row).ravel()]
    cols = [(offsets + Qc.col).ravel()]
    pairs = []
    for t in problem.terms:
        pr, pc, pd, pv = _diode_pairs(t.A)
        pairs.append((t, pd, pv))
        rows.append((offsets + pr).ravel())
        cols.append((offsets + pc).ravel())
    rows.append(np.arange(B * n))
    cols.append(np.arange(B * n))
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    q_data = np.tile(Qc.data, B)
    energy = problem.energy(x)
    done = np.zeros(B, bool)
    it = 0
    while it < max_iter:
        it += 1
        grad = problem.gradient(x)
        res = np.max(np.abs(problem.residual(x, grad)), axis=1)
        done |= res <= tol
        if done.all():
            break
        active = ((x >= problem.hi) & (grad < 0)) | ((x <= problem.lo) & (grad > 0))
        keep = (~active).ravel().astype(float)
        data = [q_data]
        for t, pd, pv in pairs:
            gw = t.model.conductance(_times(x, t.A.T) + t.u) * t.weight
            data.append((gw[:, pd] * pv).ravel())
        data.append(active.ravel().astype(float))
        data = np.concatenate(data)
        keep_rc = np.concatenate([keep[rows[: -B * n]] * keep[cols[: -B * n]], np.ones(B * n)])
        H = sp.csc_matrix((data * keep_rc, (rows, cols)), shape=(B * n, B * n))
        rhs = np.where(active, 0.0, -grad).ravel()
        d = spsolve(H, rhs).reshape(B, n)
        d[done] = 0.0
        step = np.ones(B)
        for _ in range(60):
            trial = np.clip(x + step[:, None] * d, problem.lo, problem.hi)
            e_trial = problem.energy(trial)
            slope = np.einsum("bi,bi->b", grad, trial - x)
            # Armijo on the energy, with an allowance for rounding in the energy itself
            ok = (e_trial <= energy + 1e-4 * slope + 1e-14 * np.abs(energy)) | done
            ok |= ~np.isfinite(slope) & done
            if ok.all():
                break
            step = np.where(ok, step, 0.5 * step)
        moved = ok & ~done
        x = np.where(moved[:, None], trial, x)
        energy = np.where(moved, e_trial, energy)
        stalled = ~ok & ~done
        if stalled.any() and not moved.any():
            break
    residual = np.max(np.abs(problem.residual(x)), axis=1)
    converged = residual <= tol
    message = (
        "converged"
        if converged.all()
        else (
            f"not converged after {it} Newton steps: largest KCL residual {residual.max():.3g} A > tol {tol:.3g} A"
        )
    )
    return problem.result(x, converged, residual, it, "newton", message)


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
