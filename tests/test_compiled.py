"""The compiled passes of training against independent numpy expressions of the same
computations: bit for bit where the order of operations is the same, within 1e-12 where
a sum is taken in another order."""

from __future__ import annotations

import importlib
import weakref
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from test_deep import deep_circuit

from eqprop_cli import Network, compile_circuit
from eqprop_cli.circuit.network import RowExpansion, _expand_rows
from eqprop_cli.circuit.spec import load_circuit
from eqprop_cli.devices.resistor import (
    LinearConductance,
    _input_terms,
    drops,
    input_pass,
    summed_drop_products,
)
from eqprop_cli.devices.source import CurrentSourceModel
from eqprop_cli.learn import optim
from eqprop_cli.learn.crossbar import CrossbarGradient, _update
from eqprop_cli.learn.loss import ReadoutLoss, predictions
from eqprop_cli.learn.samples import training_data
from eqprop_cli.solver.equilibrium import Nudge, Problem

solver = importlib.import_module("eqprop_cli.solver.equilibrium")
train = importlib.import_module("eqprop_cli.learn.train")
ROOT = Path(__file__).resolve().parent.parent


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


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("zeros", ["some", "none", "all", "negative zero"])
def test_product_over_the_used_features_gives_the_bits_of_the_whole_product(dtype, zeros):
    """The deferred product skips the features that are 0 in every sample: its rows, expanded,
    are those of the whole product inputs^T D (every bit, the sign of zero too), with the
    features 0 throughout a batch, none, all, or at -0."""
    network, n_in = deep_circuit(4, 1)
    bar = input_crossbar(network)
    rng = np.random.default_rng(4)
    inputs = rng.uniform(-1, 1, (7, n_in)).astype(dtype)
    zero = {"some": rng.random(n_in) < 0.5, "none": np.zeros(n_in, bool)}.get(zeros)
    if zero is None:
        zero = np.ones(n_in, bool)
    inputs[:, zero] = -0.0 if zeros == "negative zero" else 0.0
    if zeros == "negative zero":
        inputs[:, 0] = 0.0  # one feature at +0, the others at -0
    D = rng.normal(size=(7, len(bar.col_var))).astype(dtype)
    rows = network.fixed_outer(bar.row_fixed, inputs, D, deferred=True)
    assert rows.P.shape[0] == (~zero).sum() + 1 and not rows.P[-1].any()
    whole = np.matmul(inputs.T, D)
    expected = np.empty(rows.shape, rows.dtype)
    _expand_rows(
        whole,
        network._feature_of[bar.row_fixed],
        rows.gain,
        rows.const,
        rows.sums,
        rows.plus,
        rows.with_const,
        expected,
    )
    assert_bits(rows.materialise(), expected)


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


def edge_class(seed: int, rows: int, bounded: bool, nan: bool):
    """A class of 16 unknowns (columns 3 to 18 of x_all, 6 samples) as the compiled kernels
    take it (``_Block._class``), with the product of its coupling: b / a beyond the clip's
    ends and at them, signed zeros (a -0 meeting an end at +0), infinities, an unknown at
    its end already and one at inf, and with ``nan`` a NaN in b and one in x."""
    rng = np.random.default_rng(seed)
    batch, n = 6, 16
    a = rng.uniform(0.5, 2.0, n)
    lo, hi = rng.uniform(-1.0, -0.1, (rows, n)), rng.uniform(0.1, 1.0, (rows, n))
    coupled, r = rng.normal(0.0, 1.5, (batch, n)), rng.normal(0.0, 1.5, (batch, n))
    lo[:, 0], hi[:, 1] = 0.0, 0.0
    r[:, 0], r[:, 1], coupled[:, :2] = -0.0, 0.0, 0.0  # b / a = -0 at lo = +0, +0 at hi
    r[:, 2], r[:, 3], coupled[:, 2:4] = np.inf, -np.inf, 0.0
    r[:, 4], coupled[:, 4] = lo[:, 4] * a[4], 0.0  # b / a at (or a rounding off) lo
    x_all = rng.normal(0.0, 1.0, (batch, n + 5))
    x_all[:, 3 + 5], x_all[:, 3 + 6] = hi[:, 5], lo[:, 6]  # at an end already
    x_all[1, 3 + 7] = np.inf
    if nan:
        r[2, 8] = np.nan
        x_all[4, 3 + 9] = np.nan
    return (np.arange(3, 3 + n), 3, a, r, lo, hi, bounded), coupled, x_all


@pytest.mark.parametrize("bounded", [True, False])
@pytest.mark.parametrize("rows", [1, 6])
@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("nan", [False, True])
def test_compiled_plain_update_gives_the_bits_of_numpy_at_the_edges(bounded, rows, keep, nan):
    """The update of a class without nudge or gains whose unknowns are a range (one pass,
    the steps reduced as bit patterns) against numpy's expressions, sign bits included:
    the new values, b, each sample's largest step and the residual before the update
    (NaN where a step is, or where the step of inf meets a / w = 0)."""
    cls, coupled, x_all = edge_class(rows + 2 * keep, rows, bounded, nan)
    _, first, a, r, lo, hi, _ = cls
    n = len(a)
    for zero in (False, True):
        a_over_w = np.linspace(0.1, 3.0, n)
        a_over_w[7] = 0.0 if zero else 1.0
        x = x_all.copy()
        b = r - coupled
        with np.errstate(invalid="ignore"):
            new = np.minimum(np.maximum(b / a, lo), hi) if bounded else b / a
            step = np.abs(new - x[:, first : first + n])
            residual = np.max(step.max(axis=0) * a_over_w, initial=0.0)
        expected = x.copy()
        expected[:, first : first + n] = new
        rhs, change = (np.empty(b.shape) if keep else np.zeros((0, 0))), np.empty(len(x))
        got = solver._quadratic_update(
            coupled, x, cls, a_over_w, np.zeros(0), rhs, solver._NO_NUDGE, change
        )
        assert_bits(x, expected)
        np.testing.assert_array_equal(change, step.max(axis=1))
        assert np.array_equal(got, residual, equal_nan=True)
        assert np.isnan(got) == (nan or zero)
        if keep:
            assert_bits(rhs, b)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("rows", [1, 6])
@pytest.mark.parametrize("gathered", [False, True])
@pytest.mark.parametrize("nan", [False, True])
def test_compiled_largest_residuals_give_numpys_at_the_edges(weighted, rows, gathered, nan):
    """Each sample's largest |KCL residual| as the compiled loop asks for it (one pass where
    the unknowns are a range, else the pass that keeps the residuals) against numpy's
    expressions: zero where a clamp holds the unknown (at its end, pushed outwards),
    divided by the stage weight, NaN where a residual is."""
    cls, coupled, x_all = edge_class(rows + 2 * weighted, rows, True, nan)
    columns, first, a, r, lo, hi, bounded = cls
    x_all[:, first : first + 3] = lo[:, :3]  # at the lower end: held where f1 > 0
    x_all[:, first + 3 : first + 5] = hi[:, 3:5]
    if gathered:
        cls = (columns, -1, a, r, lo, hi, bounded)
    weight = np.linspace(0.5, 2.0, len(a)) if weighted else np.ones(len(a))
    x = x_all[:, columns]
    with np.errstate(invalid="ignore"):
        f1 = a * x - (r - coupled)
        held = ((x >= hi) & (f1 < 0)) | ((x <= lo) & (f1 > 0))
        expected = np.max(np.abs(np.where(held, 0.0, f1) / weight), axis=1, initial=0.0)
    assert held.any() and not held.all()
    largest = np.empty(len(x))
    out = np.empty((1, len(a)))
    solver._quadratic_residual(coupled, x_all, cls, weight, solver._NO_NUDGE, out, largest)
    assert np.array_equal(largest, expected, equal_nan=True)
    assert np.isnan(largest).any() == nan


# ----------------------------------------------------------------------------- fused update


def trainer_chain(network: Network, momentum: float) -> optim.Chain:
    """The trainer's rule (learn/train.py) on every conductance array."""
    models = [r.device.model for r in network.resistors]
    high, low = [m.high for m in models], [m.low for m in models]
    return optim.chain(
        optim.scale(high, "normalise"),
        optim.momentum(momentum),
        optim.learning_rate(),
        optim.scale(high, "denormalise"),
        optim.clip(low, high),
    )


def steps(seed: int, dtype: str, momentum: float, fused: bool, share: bool = True):
    """Three steps of the trainer's rule (large: steps of about g_max) on an input
    crossbar's EP-shaped gradient (the other sets: numpy arrays), by the fused pass or by
    the expanded array; then the conductances, the velocity and the rebuilt linear part."""
    network, n_in = deep_circuit(seed, 1, dtype)
    bar = input_crossbar(network)
    chain, rng = trainer_chain(network, momentum), np.random.default_rng(seed)
    params = list(network.g)
    state = chain.init(params)
    batch = 5
    for _ in range(3):
        inputs = rng.uniform(-1, 1, (batch, n_in))
        D = rng.normal(0, 0.5, (batch, len(bar.col_var))).astype(network.dtype)
        plus = rng.normal(0, 0.5, len(bar.col_var))
        rows = network.fixed_outer(bar.row_fixed, inputs, D, plus, deferred=True)
        assert isinstance(rows, RowExpansion)
        grads = [rng.normal(0, 1, g.shape).astype(g.dtype) for g in params]
        if fused:
            grads[bar.index] = CrossbarGradient.of(network, bar.index, rows)
            if not share:
                grads[bar.index].share = None
        else:
            grads[bar.index] = rows.materialise()
        state, _ = chain.step(params, grads, state, [0.7] * len(params))
        shares = [g.share for g in grads if isinstance(g, CrossbarGradient) and g.share]
        assert len(shares) == (fused and share)
        network.set_conductances(params, owned=True, shares=shares)
        assert len(network._shares) == (fused and share)  # taken, with the array it wrote
        linear = network.linear()
    velocity = state["momentum"][bar.index] if momentum else np.zeros(0)
    return params[bar.index], velocity, linear.SK, linear.Q_diag, linear.r0


def input_crossbar_model(seed: int):
    network, _ = deep_circuit(seed, 1)
    return network.resistors[input_crossbar(network).index].device.model


def assert_bits(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.signbit(a), np.signbit(b))


@pytest.mark.parametrize("seed", [0, 1, 2])  # differential inputs (two rows a feature), single
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("share", [True, False])
def test_fused_crossbar_update_gives_the_bits_of_the_unfused_path(seed, dtype, momentum, share):
    """The one pass (gradient rows, the rule, the next linear part's share) against the
    gradient expanded to an array, the chain's step on it and the linear part rebuilt
    from the new conductances: the same bits, with the clip active at both ends."""
    expected = steps(seed, dtype, momentum, fused=False)
    got = steps(seed, dtype, momentum, fused=True, share=share)
    g, model = expected[0], input_crossbar_model(seed)
    assert np.any(g == np.asarray(model.low, g.dtype))
    assert np.any(g == np.asarray(model.high, g.dtype))
    for a, b in zip(got, expected, strict=True):
        assert_bits(a, b)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("momentum", [True, False])
@pytest.mark.parametrize("columns", ["range", "scattered"])
@pytest.mark.parametrize("with_plus", [True, False])
def test_the_fused_pass_on_any_gain_gives_the_bits_of_the_three_kernels(
    dtype, momentum, columns, with_plus
):
    """``_update`` on features with 2, 1, 0 and 3 rows (the two-row loop and the row
    buffer), the columns of S K a range or scattered, a NaN in the product and the clip
    active at both ends, against the row expansion, the rule's step and the linear part's
    pass over the new conductances: the same conductances, velocity, sums and S K."""
    rng = np.random.default_rng(7)
    counts = np.array([2, 1, 0, 3, 2, 2])
    n_rows, n, lo, hi = counts.sum(), 13, 1e-7, 2e-5
    indptr = np.concatenate([[0], np.cumsum(counts)])
    indices, feature = np.arange(n_rows), np.repeat(np.arange(len(counts)), counts)
    gain, const = rng.normal(0, 3, n_rows), rng.normal(0, 1, n_rows) * (rng.random(n_rows) < 0.5)
    P = rng.normal(0, 1, (len(counts), n)).astype(dtype)
    P[0, 4] = np.nan
    dsums = rng.normal(0, 1, n).astype(dtype)
    plus = rng.normal(0, 1, n) if with_plus else np.zeros(0)
    p0 = rng.uniform(lo, hi, (n_rows, n)).astype(dtype)
    v0 = rng.normal(0, 1e-5, (n_rows, n)).astype(dtype) if momentum else np.zeros(0, dtype)
    factors = np.array([1 / hi, 1, -0.3, hi, 1], dtype)
    decay, bounds = np.array([0.9] if momentum else [], dtype), np.array([lo, hi], dtype)
    n_vars, data, wk = n + 5, gain.astype(dtype), rng.normal(0, 1, n).astype(dtype)
    start, cols = 3, np.arange(3, 3 + n)
    if columns == "scattered":
        start, cols = -1, rng.permutation(n_vars)[:n]
    expansion = (P, feature, gain, const, dsums, plus, True)

    p, grad = p0.copy(), np.empty_like(p0)
    v = v0.copy() if momentum else grad
    _expand_rows(*expansion, grad)
    optim._step(p.reshape(-1), grad.reshape(-1), v.reshape(-1), factors, decay, bounds, False)
    sums, SK = np.zeros(n), np.zeros((len(counts), n_vars), dtype)
    _input_terms(p, indptr, indices, data, cols, start, wk, True, sums, SK)

    got_p = p0.copy()
    got_v = v0.copy() if momentum else got_p
    got_sums, got_SK = np.zeros(n), np.zeros((len(counts), n_vars), dtype)
    got_SK[:, cols] = np.nan  # the pass writes these columns whole
    _update(
        *expansion, got_p, got_v, factors, decay, bounds,
        indptr, indices, data, cols, start, wk, got_sums, got_SK, True,
    )  # fmt: skip
    assert np.any(p == np.asarray(lo, dtype)) and np.any(p == np.asarray(hi, dtype))
    assert np.isnan(p[0, 4]) and np.isnan(p[1, 4])
    for a, b in ((got_p, p), (got_sums, sums), (got_SK, SK)) + ((got_v, v),) * momentum:
        assert_bits(a, b)


def test_a_share_is_taken_only_with_the_array_it_was_written_into():
    network, n_in = deep_circuit(3, 1)
    bar = input_crossbar(network)
    rng = np.random.default_rng(3)
    inputs, D = rng.uniform(-1, 1, (4, n_in)), rng.normal(0, 1e-6, (4, 1))
    D = np.repeat(D, len(bar.col_var), axis=1)
    rows = network.fixed_outer(bar.row_fixed, inputs, D, deferred=True)
    grad = CrossbarGradient.of(network, bar.index, rows)
    p = network.g[bar.index].copy()
    grad.apply(p, None, *trainer_chain(network, 0.0).rule(bar.index, 0.1).arrays(p.dtype))
    other = [g.copy() for g in network.g]  # not the array the pass wrote
    network.set_conductances(other, owned=True, shares=[grad.share])
    assert not network._shares
    g = list(network.g)
    g[bar.index] = p
    network.set_conductances(g, owned=True, shares=[grad.share])
    assert network._shares


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_training_with_the_fused_pass_is_bit_identical_to_unfused(dtype, monkeypatch):
    """A few batches of mnist-mini as `eqprop train` runs them, with the input crossbar's
    gradient deferred (the fused pass) and expanded: the same conductances, currents,
    optimizer state and linear part."""
    results, estimate = [], train.EPEstimator.__call__
    for deferred in (True, False):
        spec = load_circuit(
            ROOT / "circuits" / "mnist-mini.toml",
            ["training.train_subset=160", f"solver.dtype={dtype}", "training.momentum=0.9"],
        )
        network = Network(compile_circuit(spec))
        dataset, splits = training_data(spec, network)
        trainer = train.Trainer(network, spec, splits, dataset.n_classes)
        applied = []

        def spy(self, *args, deferred=deferred, applied=applied):
            grads = estimate(self, *args[:5], deferred)
            applied.extend(g for g in grads if isinstance(g, CrossbarGradient))
            return grads

        monkeypatch.setattr(train.EPEstimator, "__call__", spy)
        state = trainer.new_state()
        x, y = splits["train"]
        for k in range(5):
            state = trainer.train_step(state, x[32 * k : 32 * (k + 1)], y[32 * k : 32 * (k + 1)])
        assert len(applied) == (5 if deferred else 0)
        assert all(g.share is not None and g.share.written is not None for g in applied)
        linear = network.linear()
        results.append(
            [*network.g, *network.currents, *state.optimizer["momentum"], linear.SK, linear.Q_diag]
        )
    for a, b in zip(*results, strict=True):
        assert_bits(a, b)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_node_sets_with_fixed_nodes_read_the_potentials_of_all_nodes(seed):
    """Potentials of node sets with fixed nodes (rails, inputs) among unknowns, read by the
    kept plan of each set (twice: made, then kept): the columns of all node potentials."""
    network, n_in = deep_circuit(seed, 2)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (4, n_in))
    eq = solver.solve(network, x)
    V = network.node_voltages(eq.unknowns, x)
    unknown, fixed = np.flatnonzero(network.fixed_index < 0), network.fixed
    rails = fixed[~network._input_driven[network.fixed_index[fixed]]]
    for nodes in (
        np.concatenate([unknown[:3], rails]),  # unknowns and rails (bias sources)
        rails,
        rng.permutation(np.concatenate([unknown, fixed])),  # unknowns, rails and inputs
        np.stack([unknown[:2], rails[:1].repeat(2)], axis=1),  # (pairs, 2)
    ):
        for _ in range(2):
            assert_bits(eq.at(nodes), V[:, nodes])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coupling_parts_are_the_blocks_of_q(seed):
    """Q[rows][:, cols] for sets of whole layers (the layered solver's classes, and single
    layers, in and out of order), twice (the crossbars' places kept): Q's entries."""
    network, _ = deep_circuit(seed, 3)
    linear = network.linear()
    Q = linear.Q.toarray()
    rng = np.random.default_rng(seed)
    bars = [c for c in network._crossbars() if c.row_var is not None]
    layers = [bars[0].row_var] + [c.col_var for c in bars]  # hidden ..., output
    even, odd = np.concatenate(layers[::2]), np.concatenate(layers[1::2])
    for rows, cols in (
        (even, odd),
        (odd, even),
        (layers[1], layers[2]),
        (rng.permutation(even), rng.permutation(odd)),
    ):
        for _ in range(2):
            part = linear.coupling(rows, cols)
            part = part.toarray() if hasattr(part, "toarray") else part
            np.testing.assert_array_equal(part, Q[np.ix_(rows, cols)])


def test_the_chain_keeps_each_rule_while_its_rate_stays():
    """Steps at a rate, at another, and back (one chain, its rules kept per array) give the
    bits of a new chain at each step."""
    network, _ = deep_circuit(4, 1)
    rng = np.random.default_rng(4)
    kept = trainer_chain(network, 0.9)
    params = [g.copy() for g in network.g]
    fresh = [g.copy() for g in network.g]
    state = kept.init(params)
    fresh_state = kept.init(fresh)
    for rate in (0.5, 0.5, 0.2, 0.5):
        grads = [rng.normal(0, 1e-6, g.shape) for g in params]
        state, _ = kept.step(params, [g.copy() for g in grads], state, [rate] * len(params))
        fresh_state, _ = trainer_chain(network, 0.9).step(
            fresh, grads, fresh_state, [rate] * len(fresh)
        )
        for a, b in zip(params, fresh, strict=True):
            assert_bits(a, b)


def test_deferred_estimates_write_their_product_into_one_kept_array():
    """Deferred EP estimates of an input crossbar, batch after batch: each product written
    into the array of the one before (no new array of its size), the same bits as the
    estimate written out."""
    spec = load_circuit(ROOT / "circuits" / "mnist-mini.toml", ["training.train_subset=96"])
    network = Network(compile_circuit(spec))
    dataset, splits = training_data(spec, network)
    trainer = train.Trainer(network, spec, splits, dataset.n_classes)
    x, y = splits["train"]
    products = []
    for k in range(3):
        batch = x[32 * k : 32 * (k + 1)], y[32 * k : 32 * (k + 1)]
        betas = (1e-6, -1e-6)
        expanded, _, _ = train.ep_gradients(
            network, trainer.estimator, trainer.loss, *batch, betas, trainer.free, trainer.nudged
        )
        deferred, _, _ = trainer.batch_gradients(*batch, betas)
        bars = [(k, g) for k, g in enumerate(deferred) if isinstance(g, CrossbarGradient)]
        assert len(bars) == 1
        index, bar = bars[0]
        assert_bits(bar.materialise(), expanded[index])
        assert np.shares_memory(bar.rows.P, bar.rows.store)
        products.append(bar.rows.store)
    assert products[0] is products[1] is products[2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_node_readers_give_the_bits_of_voltages_at(seed):
    """The estimator's readers of node sets (a view of the unknowns for a range of them, a
    broadcast row for rails, else voltages_at) against voltages_at: the same bits."""
    network, n_in = deep_circuit(seed, 2)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (4, n_in))
    eq = solver.solve(network, x)
    unknown = np.flatnonzero(network.fixed_index < 0)
    by_var = unknown[np.argsort(network.node_var[unknown])]
    fixed = network.fixed
    rails = fixed[~network._input_driven[network.fixed_index[fixed]]]
    ground = rails[:1].repeat(5)  # a bias set's second nodes
    for nodes, kind in (
        (by_var[2:7], "view"),
        (ground, "rails"),
        (rails, "rails"),
        (rng.permutation(unknown), "read"),
        (np.concatenate([unknown[:3], rails]), "read"),
    ):
        got = network.reader(nodes)(eq.unknowns, eq.inputs)
        assert_bits(np.ascontiguousarray(got), network.voltages_at(eq.unknowns, x, nodes))
        assert np.shares_memory(got, eq.unknowns) == (kind == "view")
        assert (got.strides[0] == 0) == (kind == "rails")


def potentials(rng: np.random.Generator, batch: int, n: int, kind: str) -> np.ndarray:
    """(batch, n) potentials six decades apart with a signed zero, a strided view (as of
    the unknowns)."""
    a = rng.normal(size=(batch, n + 3)) * 10.0 ** rng.integers(-3, 3, (batch, n + 3))
    a[0, 1] = -0.0
    return a.astype(kind)[:, 1 : n + 1]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kinds", [("float64",) * 2, ("float32",) * 2, ("float32", "float64")])
@pytest.mark.parametrize("shape", [(32, 9, 4), (1, 3, 2), (17, 2, 1), (5, 1, 6)])
def test_compiled_dense_estimate_gives_the_bits_of_numpy(seed, kinds, shape):
    """A dense resistor set's EP estimate (one pass over each end's potentials, the
    products, one pass to combine) against numpy's summed_drop_products and scaling: the
    same bits, for one stage weight or many, and one row or column (numpy's path)."""
    rng = np.random.default_rng(seed)
    batch, n, m = shape
    Pa, Pb = (potentials(rng, batch, n, kinds[0]) for _ in range(2))
    Qa, Qb = (potentials(rng, batch, m, kinds[1]) for _ in range(2))
    Pb[0, 0] = 0.0
    for w in (0.37, rng.uniform(0.5, 1.0, (n, m))):
        total = summed_drop_products(Pa - Pb, Qa - Qb, Pa + Pb, Qa + Qb, True)
        got = LinearConductance.ep_estimate(w, Pa, Pb, Qa, Qb, True, False, 7.3)
        assert_bits(got, 0.5 * w * total * 7.3)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kinds", [("float64",) * 2, ("float32",) * 2, ("float32", "float64")])
@pytest.mark.parametrize("shape", [(32, 9), (1, 3), (17, 1), (64, 2)])
def test_compiled_source_estimate_gives_the_bits_of_numpy(seed, kinds, shape):
    """A current source set's EP estimate (one pass) against numpy's expression: the same
    bits, with second nodes at unknowns or at rails (a broadcast row), and one column
    (which numpy sums pairwise: numpy's path)."""
    rng = np.random.default_rng(seed)
    Pa, Pb = (potentials(rng, *shape, kinds[0]) for _ in range(2))
    Qa, Qb = (potentials(rng, *shape, kinds[1]) for _ in range(2))
    rails = np.broadcast_to(rng.normal(size=(1, shape[1])).astype(kinds[1]), shape)
    for (qa, qb), w in (((Qa, Qb), 0.5), ((rails, rails), rng.uniform(0.5, 1.0, shape[1]))):
        got = CurrentSourceModel.ep_estimate(w, Pa, Pb, qa, qb, False, False, 3.0)
        assert_bits(got, -w * ((Pa - qa) - (Pb - qb)).sum(axis=0) * 3.0)


@pytest.mark.parametrize("kind", ["float64", "float32"])
def test_the_warm_start_line_gives_the_bits_of_numpy(kind):
    """The second nudged phase's start, x0 + c (x1 - x0), in one pass: numpy's bits."""
    rng = np.random.default_rng(5)
    x0, x1 = (rng.normal(size=(7, 13)).astype(kind) for _ in range(2))
    x1[0, 0], x0[0, 0] = -0.0, 0.0
    for c in (-1.0, 0.3, np.float64(-1.0)):
        assert_bits(train.line_through(x0, x1, c), x0 + c * (x1 - x0))


@pytest.mark.parametrize("kind", ["float64", "float32"])
@pytest.mark.parametrize("net", ["float64", "float32"])
@pytest.mark.parametrize("shape", [(32, 9), (17, 1), (1, 5), (300, 2)])
def test_the_input_crossbar_differences_give_the_bits_of_numpy(kind, net, shape):
    """The input crossbar's estimate's arrays in one compiled pass: Qa - Qb, its products
    with Qa + Qb summed over the batch (numpy's einsum), the difference times the factors
    at the network's dtype and its sums over the batch (numpy's path for one column, or a
    factor numpy takes at float64): numpy's bits."""
    rng = np.random.default_rng(6)
    Qa, Qb = (potentials(rng, *shape, kind) for _ in range(2))
    D, S, _ = drops(Qa, Qb, with_sums=False)
    assert_bits(D, Qa - Qb)
    assert_bits(S, Qa + Qb)
    for s in (-0.37, np.float64(-0.37)):
        scaled = Qa - Qb
        scaled *= s  # (in place: at Qa's dtype)
        scaled = scaled.astype(net)
        got, common, sums = train.input_drops(Qa, Qb, s, np.dtype(net))
        assert_bits(got, scaled)
        assert_bits(common, np.einsum("bj,bj->j", Qa - Qb, Qa + Qb))
        if sums is not None:
            assert_bits(sums, scaled.sum(axis=0))
        assert (sums is None) == (shape[1] == 1 or type(s) is not float)


def test_owned_currents_are_taken_as_they_are_and_others_copied_and_checked():
    """The trainer's currents (its own, clipped) go into the network without a copy; any
    other caller's are copied, and refused where not finite."""
    network, _ = deep_circuit(4, 1)
    mine = [a + 1e-7 for a in network.currents]
    network.set_currents(mine, owned=True)
    assert all(a is b for a, b in zip(network.currents, mine, strict=True))
    network.set_currents(mine)
    assert not any(np.shares_memory(a, b) for a, b in zip(network.currents, mine, strict=True))
    for a, b in zip(network.currents, mine, strict=True):
        assert_bits(a, b)
    with pytest.raises(ValueError, match="finite"):
        network.set_currents([np.full_like(a, np.nan) for a in mine])


def test_a_share_reuses_an_s_k_array_only_once_nothing_refers_to_it():
    """The S K arrays of shares are kept and taken again once nothing else holds them (an
    earlier linear part, a share, a view): zero outside the crossbar's columns still."""
    network, _ = deep_circuit(3, 1)
    bar = input_crossbar(network)
    outside = np.ones(network.n_vars, bool)
    outside[bar.col_var] = False
    first = network.crossbar_share(bar.index)
    made = weakref.ref(first.SK)
    first.SK[:, bar.col_var] = 1.0  # as the pass writes its columns
    second = network.crossbar_share(bar.index)
    assert second.SK is not first.SK  # the first share holds its array
    del first
    third = network.crossbar_share(bar.index)
    assert third.SK is made() and not third.SK[:, outside].any()
    view = third.SK[:1]
    del third
    fourth = network.crossbar_share(bar.index)
    assert fourth.SK is not made() and fourth.SK is not second.SK  # a view holds it
    assert not fourth.SK[:, outside].any() and view.base is made()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("shape", [(100, 20), (7, 2), (3, 7), (33, 8), (5, 128), (4, 129), (6, 1)])
def test_compiled_coupling_terms_give_the_bits_of_numpy(dtype, layout, shape):
    """A coupling crossbar's share of Q's diagonal (one compiled pass over C-contiguous rows
    of 2 to 128 entries: numpy's pairwise row sums and its einsum; numpy's path otherwise)
    against numpy's expressions: the same bits, with and without stage weights."""
    rng = np.random.default_rng(7)
    m, n = shape
    G = (rng.uniform(size=(m, 2 * n)) * 10.0 ** rng.integers(-9, 3, (m, 2 * n))).astype(dtype)
    G = {"C": G[:, :n].copy(), "F": np.asfortranarray(G[:, :n]), "strided": G[:, ::2]}[layout]
    order = rng.permutation(m + n)
    for weights in (np.ones(m), rng.uniform(0.5, 2.0, m)):
        bar = SimpleNamespace(
            row_var=order[:m],
            col_var=order[m:],
            row_weight=weights,
            row_diag=weights * rng.uniform(0.5, 2.0, m),
            col_diag=rng.uniform(0.5, 2.0, n),
        )
        start = rng.normal(size=m + n)
        got = start.copy()
        LinearConductance.add_crossbar_terms(bar, G, got, None, None)
        expected = start.copy()
        expected[bar.row_var] += G.sum(axis=1, dtype=float) * bar.row_diag
        column = np.einsum("i,ij->j", bar.row_weight, G, dtype=float, casting="safe")
        expected[bar.col_var] += column * bar.col_diag
        assert_bits(got, expected)


def test_the_input_pass_arrays_are_kept_per_dtype():
    """An input crossbar's gains and weights for the compiled passes are made once per dtype
    and kept (topology): the same arrays again, others at another dtype."""
    network, _ = deep_circuit(3, 1)
    bar = input_crossbar(network)
    f64, f32 = np.dtype("float64"), np.dtype("float32")
    first = input_pass(bar, f64)
    assert all(a is b for a, b in zip(input_pass(bar, f64), first, strict=True))
    other = input_pass(bar, f32)
    assert other[2].dtype == f32 and other[5].dtype == f32 and first[2].dtype == f64
    assert_bits(other[2], bar.gain.data.astype(f32))
    assert_bits(first[5], bar.col_scale.astype(f64))


@pytest.mark.parametrize("shape", [(64, 10), (1, 2), (7, 3), (128, 9), (129, 10), (32, 129)])
def test_batch_loss_and_errors_give_the_bits_of_numpy(shape):
    """A batch's summed squared error and count of wrong predictions (one compiled pass
    where the batch and classes fit numpy's block of pairwise sums; numpy's path else, and
    for cross-entropy) against numpy's expressions: the same bits, with ties and a NaN
    (which np.argmax takes as the largest)."""
    rng = np.random.default_rng(8)
    batch, classes = shape
    for kind in ("squared_error", "cross_entropy"):
        training = SimpleNamespace(
            dataset="d",
            loss=kind,
            target_high=0.9,
            target_low=0.05,
            temperature=0.7,
            nudge="current",
        )
        loss = ReadoutLoss(training, classes, classes)
        outputs = rng.normal(size=shape) * 10.0 ** rng.integers(-3, 3, shape)
        labels = rng.integers(0, classes, batch)
        for case in ("plain", "tie", "nan"):
            if case == "tie":
                outputs[:, 0] = outputs[:, 1]
            if case == "nan":
                outputs[-1, -1] = np.nan
            value, errors = loss.batch_totals(outputs, labels)
            assert_bits(np.array(value), np.array(float(loss.value(outputs, labels).sum())))
            assert errors == float((predictions(outputs) != labels).sum())
        with pytest.raises(IndexError):  # a label that names no class
            loss.batch_totals(outputs, np.full(batch, classes))


def test_the_learning_rates_are_kept_for_an_epoch_and_rescheduled_at_the_next():
    """A step's learning rates (each group's rate times the schedule) are worked out once an
    epoch and again for another epoch: the schedule's values each time."""
    sets = ["training.train_subset=32", "training.schedule=cosine", "training.epochs=4"]
    spec = load_circuit(ROOT / "circuits" / "mnist-mini.toml", sets)
    network = Network(compile_circuit(spec))
    dataset, splits = training_data(spec, network)
    trainer = train.Trainer(network, spec, splits, dataset.n_classes)
    first = trainer.rates(0)
    assert trainer.rates(0) is first
    for epoch in (2, 0, 3):
        expected = [g.rate * trainer.rate_factor(epoch) for g in trainer.groups]
        assert trainer.rates(epoch) == expected
    assert trainer.rates(1) != first


def test_the_used_inputs_buffer_follows_the_batch_and_dtype():
    """fixed_outer's buffer of the used inputs (transposed) is kept between batches and made
    again for another batch size or dtype: each product has the whole product's bits."""
    network, n_in = deep_circuit(4, 1)
    bar = input_crossbar(network)
    rng = np.random.default_rng(9)
    kept = []
    for batch, dtype in ((7, "float64"), (7, "float64"), (5, "float64"), (5, "float32")):
        inputs = rng.uniform(-1, 1, (batch, n_in)).astype(dtype)
        inputs[:, rng.random(n_in) < 0.5] = 0.0
        D = rng.normal(size=(batch, len(bar.col_var))).astype(dtype)
        rows = network.fixed_outer(bar.row_fixed, inputs, D, deferred=True)
        used = inputs.any(axis=0)
        assert_bits(rows.P[:-1], np.matmul(inputs.T, D)[used])
        kept.append(network.plan.used_columns)
        assert kept[-1].shape == (n_in, batch) and kept[-1].dtype == dtype
    assert kept[0] is kept[1] and kept[1] is not kept[2] and kept[2] is not kept[3]
