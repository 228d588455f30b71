"""An independent reference solve in 50-digit decimal arithmetic, for the solver's tests.

It writes Kirchhoff's current law node by node from the network's element lists
(resistors, Shockley and piecewise-linear diodes, current sources, amplifiers:
V_out = A V_in, and 1/A of the current delivered at the output drawn from the
input) and runs Newton's method on it in ``decimal`` at 50 digits, with a
finite-difference Jacobian. Nothing of eqprop's solver is used; Newton starts
from a given guess (e.g. eqprop's answer), and by convexity the root it finds
is the circuit's one equilibrium.
"""

from __future__ import annotations

import decimal
from decimal import Decimal

import numpy as np

from eqprop_cli import Network
from eqprop_cli.devices.diode import IdealDiode

DIGITS = 50


def _solve_linear(J: list[list[Decimal]], r: list[Decimal]) -> list[Decimal]:
    """Gaussian elimination with partial pivoting."""
    n = len(r)
    A = [[*row[:], r[i]] for i, row in enumerate(J)]
    for k in range(n):
        p = max(range(k, n), key=lambda i: abs(A[i][k]))
        A[k], A[p] = A[p], A[k]
        for i in range(k + 1, n):
            f = A[i][k] / A[k][k]
            if f:
                A[i] = [a - f * b for a, b in zip(A[i], A[k], strict=True)]
    x = [Decimal(0)] * n
    for k in reversed(range(n)):
        x[k] = (A[k][n] - sum(A[k][j] * x[j] for j in range(k + 1, n))) / A[k][k]
    return x


def exact_voltages(net: Network, inputs: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Node voltages of one sample to about 40 digits (returned as floats), from ``start``."""
    with decimal.localcontext() as ctx:
        ctx.prec = DIGITS
        return _exact(net, inputs, start)


def _exact(net: Network, inputs: np.ndarray, start: np.ndarray) -> np.ndarray:
    n = net.n_nodes
    fixed = net.fixed_potentials(np.atleast_2d(inputs))[0]
    drive = {amp.target: amp for amp in net.amplifiers}
    unknown = [i for i in range(n) if net.fixed_index[i] < 0 and i not in drive]
    a, b, g = net.resistor_edges()
    resistors = [(int(p), int(q), Decimal(float(c))) for p, q, c in zip(a, b, g, strict=True)]
    diodes = []
    for d in net.diodes:
        assert not d.model.hard, "the reference does not do hard clamps"
        for p, q in zip(d.anode, d.cathode, strict=True):
            diodes.append((int(p), int(q), d.model))
    plus, minus, cur = net.isource_arrays()
    sources = [
        (int(p), int(m), Decimal(float(c))) for p, m, c in zip(plus, minus, cur, strict=True)
    ]

    def depth(node: int) -> int:
        k = 0
        while node in drive:
            node, k = drive[node].source, k + 1
        return k

    order = sorted(drive, key=depth)  # targets after the nodes that drive them

    def current(model, v: Decimal) -> Decimal:
        if isinstance(model, IdealDiode):
            return Decimal(float(model.g_on)) * max(v - Decimal(float(model.threshold)), Decimal(0))
        nvt = Decimal(float(model.ideality)) * Decimal(float(model.thermal_voltage))
        return Decimal(float(model.saturation_current)) * ((v / nvt).exp() - 1)

    def potentials(x: list[Decimal]) -> list[Decimal]:
        V = [Decimal(0)] * n
        for i in range(n):
            if net.fixed_index[i] >= 0:
                V[i] = Decimal(float(fixed[net.fixed_index[i]]))
        for i, value in zip(unknown, x, strict=True):
            V[i] = value
        for t in order:
            V[t] = Decimal(float(drive[t].device.params["gain"])) * V[drive[t].source]
        return V

    def residual(x: list[Decimal]) -> list[Decimal]:
        V = potentials(x)
        out = [Decimal(0)] * n  # current leaving each node into its elements
        for p, q, c in resistors:
            i = c * (V[p] - V[q])
            out[p] += i
            out[q] -= i
        for p, q, model in diodes:
            i = current(model, V[p] - V[q])
            out[p] += i
            out[q] -= i
        for p, m, c in sources:
            out[p] -= c
            out[m] += c
        for t in reversed(order):  # outputs first: chains pass their currents back
            out[drive[t].source] += out[t] / Decimal(float(drive[t].device.params["gain"]))
        return [out[i] for i in unknown]

    x = [Decimal(float(start[i])) for i in unknown]
    h = Decimal(10) ** -(DIGITS // 2)
    for _ in range(30):
        r = residual(x)
        columns = []
        for j in range(len(x)):
            y = x[:]
            y[j] += h
            columns.append([(ri - r0) / h for ri, r0 in zip(residual(y), r, strict=True)])
        J = [[columns[j][i] for j in range(len(x))] for i in range(len(x))]
        step = _solve_linear(J, r)
        x = [xi - si for xi, si in zip(x, step, strict=True)]
        if max((abs(s) for s in step), default=Decimal(0)) < Decimal(10) ** -35:
            break
    else:
        raise AssertionError("the reference Newton did not converge")
    return np.array([float(v) for v in potentials(x)])
