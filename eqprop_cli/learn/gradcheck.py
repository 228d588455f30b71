"""Is the EP estimate the gradient? Compare it with the exact gradient by implicit differentiation.

At the free equilibrium x*, grad_x E = 0. Differentiating that identity,
dL/dtheta = -lambda . d(dE/dtheta)/dx with H lambda = dL/dx, H the Hessian of
the energy at x* (rows and columns of unknowns held by hard clamps removed).
With dE/dg = w (V_i - V_j)^2 / 2 this gives dL/dg = -w (V_i - V_j)(l_i - l_j),
l the adjoint potentials (lambda mapped to nodes, 0 at fixed nodes); for a
current source dL/dI = w (l_+ - l_-). One sparse solve per sample, no
finite differences and no nudging, so it is an independent oracle for EP.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..circuit.network import Network
from ..learn.loss import ReadoutLoss
from ..learn.train import EPEstimator, ParamGroup, ep_gradients
from ..solver.equilibrium import _BlockLU, _held, solve

VARIANTS = {
    "centred": lambda b: (b, -b),
    "positive": lambda b: (b, 0.0),
    "negative": lambda b: (0.0, -b),
}


def exact_gradients(
    network: Network,
    groups: list[ParamGroup],
    x: np.ndarray,
    y: np.ndarray,
    loss: ReadoutLoss,
    **solver: object,
) -> list[np.ndarray]:
    """dL/dtheta of the batch-mean loss at the free equilibrium, per group (physical units)."""
    eq = solve(network, x, **solver)
    problem = eq.problem
    xs = eq.unknowns
    grad = problem.gradient(xs)
    active = _held(xs, grad, problem.lo, problem.hi)
    var, coef, _ = network.readout_map()
    dL_do = loss.gradient(eq.outputs(), y) / len(y)
    dL_dx = np.zeros_like(xs)
    for j in range(var.shape[1]):
        np.add.at(dL_dx, (slice(None), var[:, j]), dL_do * coef[:, j])
    # H lam = dL/dx on free unknowns
    lam = _BlockLU(problem).factor(xs, active)(np.where(active, 0.0, dL_dx))
    free_nodes = network.fixed_index < 0

    def adjoint(nodes: np.ndarray) -> np.ndarray:
        out = lam[:, np.maximum(network.node_var[nodes], 0)] * network.node_coef[nodes]
        return np.where(free_nodes[nodes], out, 0.0)

    grads = []
    for g, (p, q, dense, w, p_fixed, _) in zip(
        groups, EPEstimator(network, groups).plans, strict=True
    ):
        Lp = None if p_fixed else adjoint(p)  # zero at fixed nodes
        grads.append(g.model.adjoint_gradient(w, Lp, adjoint(q), eq.at(p), eq.at(q), dense))
    return grads


def at_a_kink(network: Network, x: np.ndarray, **solver: object) -> np.ndarray:
    """Samples with an unknown at a hard clamp's threshold whose clamp carries no current.

    The loss is not differentiable there (one-sided derivatives differ), so no
    estimate can match "the" gradient; gradcheck leaves such samples out.
    """
    eq = solve(network, x, **solver)
    problem = eq.problem
    xs = eq.unknowns
    at_bound = (np.abs(xs - problem.lo) <= 1e-12) | (np.abs(xs - problem.hi) <= 1e-12)
    idle = np.abs(problem.gradient(xs)) <= 10 * float(solver.get("tol", 1e-10)) * network.var_weight
    return np.any(at_bound & idle, axis=1)


@dataclass
class Agreement:
    """How well an estimate matches the exact gradient."""

    cosine: float
    relative_error: float  # |estimate - exact| / |exact|

    @classmethod
    def of(cls, estimate: np.ndarray, exact: np.ndarray) -> Agreement:
        # in float64 whatever the estimates' precision ([solver] dtype): a float32 dot
        # product of a million terms is off by more than what it measures here
        a, b = np.ravel(estimate).astype(float), np.ravel(exact).astype(float)
        nb = np.linalg.norm(b)
        na = np.linalg.norm(a)
        cosine = float(a @ b / (na * nb)) if na and nb else float(na == nb)
        error = float(np.linalg.norm(a - b) / nb) if nb else float(np.linalg.norm(a))
        return cls(cosine, error)


def compare(
    network: Network,
    groups: list[ParamGroup],
    x: np.ndarray,
    y: np.ndarray,
    loss: ReadoutLoss,
    beta: float,
    variants: tuple[str, ...] = tuple(VARIANTS),
    **solver: object,
) -> dict[str, dict[str, Agreement]]:
    """Per variant: agreement per group name and "overall" (all parameters together)."""
    exact = exact_gradients(network, groups, x, y, loss, **solver)
    estimator = EPEstimator(network, groups)
    flat = np.concatenate([e.ravel() for e in exact])
    result = {}
    for name in variants:
        est, _, _ = ep_gradients(
            network, estimator, loss, x, y, VARIANTS[name](beta), solver, solver
        )
        row = {g.name: Agreement.of(e, t) for g, e, t in zip(groups, est, exact, strict=True)}
        row["overall"] = Agreement.of(np.concatenate([e.ravel() for e in est]), flat)
        result[name] = row
    return result
