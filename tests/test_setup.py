"""The solver's per-batch set-up takes short cuts (the first iterate written once, a coupling
that is one crossbar's block written once, the clamps' bounds of each class kept with the
network): each gives the bits of the general path it stands in for."""

from __future__ import annotations

import importlib
import types

import numpy as np
import pytest
from test_sweep_loop import assert_same, circuit, phases

from eqprop_cli import solve

solver = importlib.import_module("eqprop_cli.solver.equilibrium")
network_module = importlib.import_module("eqprop_cli.circuit.network")


def clipped(x0, lo: np.ndarray, hi: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The first iterate as the solver made it before: a float copy of x0, then clipped."""
    x = np.zeros(shape) if x0 is None else np.array(np.broadcast_to(x0, shape), dtype=float)
    return np.minimum(np.maximum(x, lo, out=x), hi, out=x)


@pytest.mark.parametrize("rows", [1, 5])
@pytest.mark.parametrize("start", ["none", "full", "row", "int", "float32", "fortran"])
def test_first_iterate_is_the_clipped_start_bit_for_bit(rows, start):
    B, n = 5, 7
    rng = np.random.default_rng(rows)
    # signed zeros and ties with the bounds: np.maximum and np.minimum decide those
    values = np.array([-2.0, -0.0, 0.0, 0.5, 1.0, 3.0])
    lo = rng.choice(values[:4], (rows, n))
    hi = np.maximum(lo, rng.choice(values[1:], (rows, n)))
    x0 = {
        "none": None,
        "full": rng.choice(values, (B, n)),
        "row": rng.choice(values, n),
        "int": rng.integers(-3, 4, (B, n)),
        "float32": rng.choice(values, (B, n)).astype(np.float32),
        "fortran": np.asfortranarray(rng.choice(values, (B, n))),
    }[start]
    problem = types.SimpleNamespace(batch=B, network=types.SimpleNamespace(n_vars=n), lo=lo, hi=hi)
    x = solver._start(problem, x0)
    expected = clipped(x0, lo, hi, (B, n))
    assert x.dtype == np.float64 and x.flags.c_contiguous and x is not x0
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(np.signbit(x), np.signbit(expected))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", ["mnist", "deep-1-2", "deep-2-3"])
def test_one_crossbar_coupling_is_the_general_sum_bit_for_bit(monkeypatch, case, dtype):
    net, x = circuit(case, dtype)
    solve(net, x)  # the classes
    classes = net.plan.classes
    linear = net.linear()
    fast = [linear.coupling(classes[0], classes[1]), linear.coupling(classes[1], classes[0])]
    monkeypatch.setattr(network_module, "_whole", lambda index, shape: False)
    general = [linear.coupling(classes[0], classes[1]), linear.coupling(classes[1], classes[0])]
    for a, b in zip(fast, general, strict=True):
        assert isinstance(a, np.ndarray) and a.flags.c_contiguous
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(np.signbit(a), np.signbit(b))


@pytest.mark.parametrize("case", ["mnist", "deep-0-1", "deep-4-2"])
def test_kept_bounds_of_the_classes_give_the_solves_of_fresh_ones(case):
    net, x = circuit(case, "float64")
    targets = np.random.default_rng(0).uniform(0, 1, (len(x), len(net.outputs)))
    kept = phases(net, x, targets)  # the second and later solves take the kept bounds
    assert net.plan.block_bounds or net.plan.clamp_bounds is None
    net.plan.clamp_bounds = None  # each solve works out its bounds again
    net.plan.block_bounds.clear()
    fresh = phases(net, x, targets)
    for a, b in zip(kept, fresh, strict=True):
        assert_same(a, b)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_coupling_of_unit_scales_is_the_scaled_product_bit_for_bit(dtype):
    net, _ = circuit("mnist", dtype)
    bar = next(c for c in net._crossbars() if c.row_var is not None)
    assert bar.unit_scales  # no amplifier: stage weights and gains of 1
    G = net.g[bar.index]
    expected = (bar.row_weight * bar.row_coef)[:, None] * G * bar.col_coef
    got = net._crossbar_coupling(bar)
    assert got.dtype == expected.dtype == np.float64
    np.testing.assert_array_equal(got, expected)


SPECIAL = np.array([-np.inf, -2.0, -0.0, 0.0, 0.5, 1.0, 3.0, np.inf, np.nan])


def test_compiled_clip_is_numpys_maximum_then_minimum_bit_for_bit():
    """Every pair of special values (signed zeros, infinities, NaN), each operand broadcast."""
    rng = np.random.default_rng(3)
    B, n = 4, len(SPECIAL) ** 2
    first = np.tile(np.repeat(SPECIAL, len(SPECIAL)), (B, 1))
    first[1:] = rng.choice(SPECIAL, (B - 1, n))
    lo = np.tile(SPECIAL, len(SPECIAL))[None]
    for lo_rows, hi_rows in [(lo, rng.choice(SPECIAL, (1, n))), (lo.repeat(B, 0), first[::-1])]:
        for f in (first, first[:1], first[:1, :1]):
            out = np.empty((B, n))
            solver._clip_into(f, lo_rows, hi_rows, out)
            expected = np.broadcast_to(np.minimum(np.maximum(f, lo_rows), hi_rows), out.shape)
            np.testing.assert_array_equal(out, expected)
            np.testing.assert_array_equal(np.signbit(out), np.signbit(expected))


def test_compiled_checks_are_numpys():
    """The finiteness check and the converged samples (NaN compares false)."""
    rng = np.random.default_rng(4)
    for _ in range(50):
        a = rng.choice(SPECIAL[1:-2], (3, 5))
        if rng.random() < 0.5:
            a[rng.integers(3), rng.integers(5)] = rng.choice([np.inf, -np.inf, np.nan])
        assert solver._all_finite(a) == np.isfinite(a).all()
        assert solver._all_finite(np.asfortranarray(a)) == np.isfinite(a).all()
        residual, error = rng.choice(SPECIAL, 7), rng.choice(SPECIAL, 7)
        tol, vtol = rng.choice(SPECIAL[1:-2], 2)
        converged, every = solver._converged(residual, error, tol, vtol)
        expected = (residual <= tol) & (error <= vtol)
        assert converged.dtype == bool and every == expected.all()
        np.testing.assert_array_equal(converged, expected)


@pytest.mark.parametrize("rows", [(64, 1), (1, 64), (64, 64), (1, 1)])
def test_compiled_pull_is_numpys_bit_for_bit(rows):
    """The nudge's pull and stiffness: products and sums rounded as numpy's, in its order
    (a fused multiply-add would change the last bits of many)."""
    rng = np.random.default_rng(5)
    k = 10
    term = solver._NudgeTerm(
        rng.normal(0, 1e-6, k),
        rng.uniform(0, 1, (rows[0], k)),
        rng.normal(0, 1e-7, (rows[1], k)),
        np.zeros((k, 1), np.int64),
        np.ones((k, 1)),
    )
    spread = rng.uniform(0.5, 2, k)
    pull, stiffness = solver._pull(term, spread)
    assert pull.shape == (max(rows), k)
    np.testing.assert_array_equal(
        pull, spread * (term.beta_w * term.target + term.current_w), strict=True
    )
    np.testing.assert_array_equal(stiffness, 1.0 + term.beta_w * spread, strict=True)


def test_coupling_looked_up_by_identity_only_for_read_only_classes():
    net, x = circuit("mnist", "float64")
    solve(net, x)
    rows, cols = net.plan.classes
    assert not rows.flags.writeable  # the solver's classes: kept, so looked up by identity
    linear = net.linear()
    first = linear.coupling(cols, rows)
    assert net.plan.last_coupling[:2] == (cols, rows)
    np.testing.assert_array_equal(linear.coupling(cols, rows), first, strict=True)
    writable = cols.copy(), rows.copy()  # equal contents, looked up by them
    np.testing.assert_array_equal(linear.coupling(*writable), first, strict=True)
    assert net.plan.last_coupling[0] is cols


def test_current_sources_terms_are_np_add_at_bit_for_bit():
    """The sources' terms on the unknowns in one pass: np.add.at's sums (repeated unknowns,
    fixed ends skipped) and products, in its order; the fixed nodes' terms as before."""
    from eqprop_cli.devices.source import CurrentSourceModel

    rng = np.random.default_rng(6)
    n_nodes, n_src = 12, 40
    node_var = rng.integers(-1, 5, n_nodes)  # -1: a fixed node; five unknowns, often shared
    nodes = types.SimpleNamespace(
        node_var=node_var,
        node_coef=rng.choice([1.0, -1.0, 0.3, 7.0], n_nodes),
        fixed_index=np.where(node_var < 0, rng.integers(0, 3, n_nodes), -1),
    )
    plus, minus = rng.integers(0, n_nodes, n_src), rng.integers(0, n_nodes, n_src)
    weight, current = rng.uniform(0.5, 2, n_src), rng.normal(0, 1e-6, n_src)
    s, fixed = rng.normal(0, 1e-7, 5), np.zeros(3)
    expected, expected_fixed = s.copy(), fixed.copy()
    ws = weight * current
    for node, sign in ((plus, 1.0), (minus, -1.0)):
        var = node_var[node]
        ok = var >= 0
        np.add.at(expected, var[ok], sign * ws[ok] * nodes.node_coef[node][ok])
        np.add.at(expected_fixed, nodes.fixed_index[node][~ok], sign * ws[~ok])
    CurrentSourceModel.add_linear_terms(nodes, plus, minus, weight, current, s, fixed)
    np.testing.assert_array_equal(s, expected, strict=True)
    np.testing.assert_array_equal(fixed, expected_fixed, strict=True)


@pytest.mark.parametrize("case", ["mnist", "deep-1-2"])
def test_crossbar_diagonal_factors_kept_are_the_per_batch_products(case):
    """The ends' factors of a crossbar's share of Q's diagonal, kept with it, are the
    products the rebuild of the linear part made each time."""
    net, _ = circuit(case, "float64")
    for bar in net._crossbars():
        wk = bar.col_weight * bar.col_coef
        np.testing.assert_array_equal(bar.col_scale, wk, strict=True)
        if bar.row_var is None:
            np.testing.assert_array_equal(bar.col_diag, wk * bar.col_coef, strict=True)
        else:
            wr = bar.row_weight * bar.row_coef
            np.testing.assert_array_equal(bar.row_diag, wr * bar.row_coef, strict=True)
            np.testing.assert_array_equal(bar.col_diag, bar.col_coef**2, strict=True)


def test_linear_term_added_into_the_product_bit_for_bit():
    net, x = circuit("mnist", "float64")
    linear = net.linear()
    np.testing.assert_array_equal(linear.rhs(x), x @ linear.SK + linear.r0, strict=True)
