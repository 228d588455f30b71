"""The compiled passes of training against independent numpy expressions of the same
computations: bit for bit where the order of operations is the same, within 1e-12 where
a sum is taken in another order."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from test_deep import deep_circuit

from eqprop_cli.circuit.network import _expand_rows
from eqprop_cli.solver.equilibrium import Nudge, Problem

solver = importlib.import_module("eqprop_cli.solver.equilibrium")


def input_crossbar(network):
    """The crossbar from the inputs (fixed rows)."""
    return next(c for c in network._crossbars() if c.row_var is None)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_input_crossbar_linear_part_matches_the_stamps(seed):
    """Q's diagonal, S K and r0 from the crossbars' compiled pass equal those of the sparse
    stamps of the same resistors (another path: sums in another order)."""
    network, _ = deep_circuit(seed, 2)
    stamped, _ = deep_circuit(seed, 2)
    stamped.plan.crossbars = []  # every set by its stamp
    assert input_crossbar(network) is not None
    a, b = network.linear(), stamped.linear()
    for got, expected in ((a.Q_diag, b.Q_diag), (a.SK, b.SK), (a.r0, b.r0)):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_fixed_outer_is_the_product_over_the_fixed_nodes(seed):
    """F^T D + plus from the product over the features, against F^T D over the fixed nodes."""
    network, n_in = deep_circuit(seed, 1)
    rng = np.random.default_rng(seed)
    bar = input_crossbar(network)
    inputs = rng.uniform(-1, 1, (9, n_in))
    D = rng.normal(size=(9, len(bar.col_var)))
    plus = rng.normal(size=len(bar.col_var))
    expected = network.fixed_potentials(inputs, bar.row_fixed).T @ D + plus
    got = network.fixed_outer(bar.row_fixed, inputs, D, plus)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_expansion_to_rows_gives_the_bits_of_numpy_in_place_steps(dtype):
    rng = np.random.default_rng(5)
    P = rng.normal(size=(6, 11)).astype(dtype)
    feature = rng.integers(0, 6, 14)
    gain, const = rng.normal(size=14), rng.normal(size=14)
    sums, plus = rng.normal(size=11).astype(dtype), rng.normal(size=11)
    expected = P[feature]
    expected *= gain[:, None]
    expected += const[:, None] * sums
    expected += plus
    out = np.empty((14, 11), dtype)
    _expand_rows(P, feature, gain, const, sums, plus, True, out)
    np.testing.assert_array_equal(out, expected)


def numpy_update(block, x_all):
    """The update of a class without diodes, as whole-array numpy expressions; also b."""
    b = block.r - x_all[:, block.other] @ block.Q_oc
    x = x_all[:, block.idx].copy()
    new = np.minimum(np.maximum(b / block.a, block.lo), block.hi)
    if block.nudge is not None:
        n, local, a_out, _, pull, stiffness = block.nudge
        z = b[:, local] / a_out
        o = (np.einsum("bkj,kj->bk", z, n.coef) + pull) / stiffness
        excess = n.beta_w * (o - n.target) - n.current_w
        outputs = z - excess[:, :, None] * n.coef / a_out
        for j in range(local.shape[1]):
            new[:, local[:, j]] = outputs[:, :, j]
    step = np.abs(new - x)
    residual = float(np.max(step.max(axis=0) * block.a_over_w, initial=0.0))
    change = (step if block.scale is None else step * block.scale).max(axis=1)
    out = x_all.copy()
    out[:, block.idx] = new
    return residual, change, out, b


def numpy_residual(block, x_all):
    x = x_all[:, block.idx]
    f1 = block.a * x - (block.r - x_all[:, block.other] @ block.Q_oc)
    if block.nudge is not None:
        n, local = block.nudge[:2]
        excess = n.beta_w * (np.einsum("bkj,kj->bk", x_all[:, n.var], n.coef) - n.target)
        excess -= n.current_w
        for j in range(local.shape[1]):
            f1[:, local[:, j]] += excess * n.coef[:, j]
    held = ((x >= block.hi) & (f1 < 0)) | ((x <= block.lo) & (f1 > 0))
    return np.where(held, 0.0, f1) / block.weight


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("nudged", [False, True])
@pytest.mark.parametrize("keep", [False, True])
def test_compiled_block_update_and_residual_give_the_bits_of_numpy(seed, layers, nudged, keep):
    network, n_in = deep_circuit(seed, layers)
    rng = np.random.default_rng(seed)
    inputs = rng.uniform(-1, 1, (7, n_in))
    problem = Problem(network, inputs)
    if nudged:
        n_out = len(network.outputs)
        nudge = Nudge(beta=1e-6, target=rng.uniform(0, 1, (7, n_out)))
        problem = problem.nudged(nudge)
    classes = solver.layered_classes(network, problem)
    x_all = np.clip(rng.normal(0, 1, (7, network.n_vars)), problem.lo, problem.hi)
    for k in (0, 1):
        block = solver._Block.of(problem, classes, k)
        residual, change, expected, b = numpy_update(block, x_all)
        x = x_all.copy()
        got = block.update(x, 1e-12, 1e-9, keep=keep)
        assert got[0] == residual
        if keep:  # the linear term given the other class, for the energy at the new point
            np.testing.assert_array_equal(block.rhs, b)
        np.testing.assert_array_equal(got[1], change)
        np.testing.assert_array_equal(x, expected)
        np.testing.assert_array_equal(block.residual(x_all), numpy_residual(block, x_all))
