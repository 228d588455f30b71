"""The layered solver's plain sweeps as one compiled loop (``_sweep_loop``): the same
iterates, stopping decisions and diagnostics as the sweeps in Python that it stands in for,
bit for bit, and answers that are right (KCL, Newton, a 50-digit reference on stiff
circuits), never "converged" farther than vtol from the truth."""

from __future__ import annotations

import contextlib
import importlib
import itertools

import numpy as np
import pytest
from randomcircuits import ROOT
from reference import exact_voltages
from test_deep import deep_circuit

from eqprop_cli import Network, compile_circuit, load_circuit, parse_circuit, solve

solver = importlib.import_module("eqprop_cli.solver.equilibrium")
VTOL = 1e-9  # the default voltage tolerance


@contextlib.contextmanager
def endings(monkeypatch):
    """How each call of the compiled loop ended (LOOP_DONE, LOOP_LIMIT or LOOP_BACK)."""
    seen: list[int] = []
    loop = solver._sweep_loop

    def spy(*args):
        result = loop(*args)
        seen.append(result[0])
        return result

    with monkeypatch.context() as m:
        m.setattr(solver, "_sweep_loop", spy)
        yield seen


@contextlib.contextmanager
def in_python(monkeypatch):
    """Every solve sweeps in Python (the general path), as before the compiled loop."""
    with monkeypatch.context() as m:
        m.setattr(solver._SweepLoop, "of", classmethod(lambda cls, problem, blocks: None))
        yield


def assert_same(a, b) -> None:
    """Two equilibria with the same bits: unknowns, diagnostics, sweeps and message."""
    assert (a.iterations, a.method, a.message) == (b.iterations, b.method, b.message)
    for name in ("unknowns", "converged", "residual", "error"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def phases(net: Network, x: np.ndarray, targets: np.ndarray, **settings) -> list:
    """A free solve, the two centred nudged ones warm-started as in training (the second
    from the line through the first two), a cold nudged one, one started from unknowns in
    Fortran order, the free solve cut short after 1 to 5 sweeps, and one to tolerances
    that rounding does not allow."""
    free = solve(net, x, **settings)
    up = solver.Nudge(1e-6, target=targets)
    down = solver.Nudge(-1e-6, target=targets)
    first = solve(net, x, nudge=up, x0=free.unknowns, like=free, **settings)
    start = 2 * free.unknowns - first.unknowns
    second = solve(net, x, nudge=down, x0=start, like=free, **settings)
    cold = solve(net, x, nudge=up, **settings)
    # a start in Fortran order: the loop takes C-ordered unknowns only, the Python sweeps
    # the others (whose products round otherwise)
    fortran = solve(net, x, nudge=up, x0=np.asfortranarray(free.unknowns), like=free, **settings)
    short = [solve(net, x, **{**settings, "max_iter": k}) for k in range(1, 6)]
    # below what rounding allows: the changes reach the floor of ``_sweep_error``
    floor = solve(net, x, **{**settings, "tol": 1e-30, "vtol": 1e-30, "max_iter": 40})
    return [free, first, second, cold, fortran, *short, floor]


def mnist_circuit(dtype: str, hidden: int = 30) -> tuple[Network, np.ndarray]:
    """``circuits/mnist-ideal.toml`` with a small hidden layer, and MNIST-like inputs: sweeps
    that contract fast (no acceleration), so the loop runs solves to their end."""
    sets = [f"hidden.0.size={hidden}", f"solver.dtype={dtype}"]
    net = Network(compile_circuit(load_circuit(ROOT / "circuits" / "mnist-ideal.toml", sets)))
    rng = np.random.default_rng(1)
    return net, rng.random((16, 784)) * (rng.random((16, 784)) < 0.25)


def circuit(case: str, dtype: str) -> tuple[Network, np.ndarray]:
    """The circuit of a case: "mnist", or "deep-<seed>-<hidden layers>" (``deep_circuit``,
    6 random inputs)."""
    if case == "mnist":
        return mnist_circuit(dtype)
    seed, layers = map(int, case.split("-")[1:])
    net, n_in = deep_circuit(seed, layers, dtype)
    return net, np.random.default_rng(seed).uniform(-1, 1, (6, n_in))


CASES = ["mnist", *[f"deep-{s}-{1 + s % 3}" for s in range(6)]]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES)
def test_compiled_sweeps_are_the_python_sweeps_bit_for_bit(monkeypatch, case, dtype):
    """Circuits of hard clamps (some active), bias currents and resistors (MNIST's at 30
    hidden nodes; random ones over two decades with one to three hidden layers, whose
    sweeps the acceleration takes over after the loop recorded their first ones): free,
    nudged warm and cold, and cut short, the compiled loop gives the Python sweeps'
    equilibria bit for bit."""
    net, x = circuit(case, dtype)
    targets = np.random.default_rng(2).uniform(0, 1, (len(x), len(net.outputs)))
    for method in ("layered", "auto"):
        settings = {"method": method, "tol": 1e-13, "vtol": 1e-10}
        with endings(monkeypatch) as seen:
            compiled = phases(net, x, targets, **settings)
        assert seen  # the loop ran
        if case == "mnist":  # and ran solves to their end
            assert solver.LOOP_DONE in seen and solver.LOOP_LIMIT in seen
        with in_python(monkeypatch), endings(monkeypatch) as seen:
            plain = phases(net, x, targets, **settings)
        assert not seen
        for a, b in zip(compiled, plain, strict=True):
            assert_same(a, b)
        assert all(e.success for e in compiled[:5])
    problem = compiled[0].problem
    held = (compiled[0].unknowns <= problem.lo) | (compiled[0].unknowns >= problem.hi)
    assert held.any()  # the clamps' bounds are active


def test_a_batch_sets_up_its_classes_for_the_loop_once():
    """The classes as the compiled loop takes them are set up once per batch, with its free
    solve: its nudged solves share them, the outputs' class with its own nudge in place of
    none; another batch (other inputs, another size), or the same one at other conductances,
    sets up its own."""
    net, x = mnist_circuit("float64")
    targets = np.random.default_rng(2).uniform(0, 1, (len(x), len(net.outputs)))
    free = solve(net, x)
    plain = [free.problem.blocks[k].plain_looped for k in (0, 1)]
    classes = solver.layered_classes(net, free.problem)
    for beta in (1e-6, -1e-6):
        nudged = free.problem.nudged(solver.Nudge(beta, target=targets))
        blocks = [solver._Block.of(nudged, classes, k) for k in (0, 1)]
        outputs = [b.nudge is not None for b in blocks]
        assert outputs.count(True) == 1
        for k, block in enumerate(blocks):
            looped = block._looped()
            if not outputs[k]:
                assert looped is plain[k]  # no nudge here: the free solve's, as it was
                continue
            assert looped[3][0] and all(
                a is b for a, b in zip(looped[3], block._nudge(), strict=True)
            )
            np.testing.assert_array_equal(looped[3][6], targets)
            rest = (*looped[:3], *looped[4:])
            assert all(a is b for a, b in zip(rest, (*plain[k][:3], *plain[k][4:]), strict=True))
    another = solve(net, x[::-1].copy())  # another batch
    fewer = solve(net, x[:5])  # another batch size
    net.set_conductances([2.0 * g for g in net.g])
    again = solve(net, x)  # the same batch at other conductances
    for other in (another, fewer, again):
        for k in (0, 1):
            block = other.problem.blocks[k]
            looped = block.plain_looped
            assert looped is not plain[k]
            np.testing.assert_array_equal(looped[0][3], other.problem.r[:, block.idx])
            assert looped[4] is block.Q_oc
    assert fewer.problem.blocks[0].plain_looped[0][3].shape[0] == 5
    assert not np.array_equal(again.problem.blocks[0].Q_oc, plain[0][4])


@pytest.mark.parametrize("seed", range(4))
def test_compiled_solves_meet_kcl_and_newton(seed):
    """One hidden layer, as in training: the free equilibrium meets KCL within tol, and
    free and nudged equilibria are within 2 vtol of Newton's (each promises vtol)."""
    net, n_in = deep_circuit(seed, 1)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (8, n_in))
    nudge = solver.Nudge(1e-6, target=rng.uniform(0, 1, (8, len(net.outputs))))
    settings = {"tol": 1e-13, "vtol": 1e-10}
    free = solve(net, x, method="layered", **settings)
    nudged = solve(net, x, method="layered", nudge=nudge, x0=free.unknowns, like=free, **settings)
    assert free.success and nudged.success
    assert np.abs(net.kcl_residual(free.voltages)).max() <= 1e-13
    for eq, n in ((free, None), (nudged, nudge)):
        exact = solve(net, x, method="newton", nudge=n, **settings)
        assert exact.success
        assert np.abs(eq.voltages - exact.voltages).max() <= 2e-10


def stiff_circuit(seed: int, layers: int) -> tuple[Network, int]:
    """A layered circuit of resistors only (bias currents, amplifiers at some layers), its
    conductances log-uniform from 1 nS to 1 mS: slow and stiff sweeps."""
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(2, 5))
    text = f"""[circuit]
name = "stiff-{seed}"
[devices.w]
type = "resistor"
g = "1u"
[devices.bias]
type = "isource"
current = "{rng.uniform(-2e-6, 2e-6):.3g}"
[devices.amp]
type = "amplifier"
gain = {rng.uniform(0.5, 3):.3g}
[input]
size = {n_in}
encoding = "single"
[output]
size = {int(rng.integers(1, 3))}
readout = "differential"
"""
    names = [f"h{k}" for k in range(layers)]
    for name in names:
        text += f'[[hidden]]\nname = "{name}"\nsize = {int(rng.integers(2, 6))}\nbias = "bias"\n'
        if rng.random() < 0.5:
            text += 'amplifier = "amp"\n'
    for a, b in itertools.pairwise(["input", *names, "output"]):
        text += f'[[connections]]\nfrom = "{a}"\nto = "{b}"\ndevice = "w"\n'
    net = Network(compile_circuit(parse_circuit(text)))
    log = np.log([1e-9, 1e-3])
    net.set_conductances([np.exp(rng.uniform(*log, g.shape)) for g in net.g])
    return net, n_in


@pytest.mark.parametrize("accelerated", [True, False])
def test_stiff_circuits_converged_means_within_vtol_of_the_exact_answer(monkeypatch, accelerated):
    """Stiff two-class circuits at the default tolerances, accelerated or plain (every sweep
    in the loop), where the loop hands sweeps back to Python (the acceleration's choice,
    estimates at the rounding floor, a look at the contraction that finds a solve too slow)
    and ``auto`` hands some solves to Newton: the same bits as the Python sweeps, and every
    sample reported converged within vtol of the 50-digit reference (``layered`` alone too,
    which reports the ones it cannot finish)."""
    if not accelerated:
        monkeypatch.setattr(solver, "ACCEL_FROM", 1.0)  # no contraction is slow enough
    seen_all, methods = [], set()
    for seed, layers in itertools.product(range(4), (1, 2, 3)):
        net, n_in = stiff_circuit(seed, layers)
        x = np.random.default_rng(seed).uniform(-1, 1, (2, n_in))
        for method in ("auto", "layered"):
            with endings(monkeypatch) as seen:
                eq = solve(net, x, method=method)
            seen_all += seen
            with in_python(monkeypatch):
                assert_same(eq, solve(net, x, method=method))
            methods.add(eq.method)
            if method == "auto":
                assert eq.success, eq.message
            for b in np.where(eq.converged)[0]:
                exact = exact_voltages(net, x[b], eq.voltages[b])
                assert np.abs(eq.voltages[b] - exact).max() <= VTOL
    assert solver.LOOP_BACK in seen_all and "layered+newton" in methods
    if not accelerated:
        assert solver.LOOP_DONE in seen_all


@pytest.mark.parametrize(("batch", "hidden"), [(64, 100), (32, 1024), (3, 7)])
def test_loop_products_are_numpys_bit_for_bit(batch, hidden):
    """The loop's coupling products (``_coupled``: x's rows read in place by their stride
    where the other class is a range of columns, else gathered) give the bits of numpy's
    products in ``_Block._rhs`` (of x's columns as a slice where they are a range, else
    by their index array), both ways between a layer of ``hidden`` nodes and 20 outputs
    (the second has as many products to sum per entry as there are hidden nodes)."""
    rng = np.random.default_rng(batch)
    x = rng.uniform(-1, 1, (batch, hidden + 20))
    for columns in (np.arange(hidden), np.arange(hidden, hidden + 20), np.arange(hidden)[::-1]):
        Q = rng.uniform(0, 1e-5, (len(columns), 20 if len(columns) == hidden else hidden))
        first = int(columns[0]) if np.all(np.diff(columns) == 1) else -1
        out = np.empty((batch, Q.shape[1]))
        solver._coupled(x, Q, columns, first, out)
        np.testing.assert_array_equal(out, x[:, solver._as_slice(columns)] @ Q)


def test_largest_entries_as_numpy_takes_them():
    """``_largest_of`` (max(0, v), NaN if v has one) and ``_largest_magnitude`` (the largest
    |x|) from the bit patterns as integers: numpy's answers for signed zeros, subnormals,
    infinities and NaNs."""
    rng = np.random.default_rng(3)
    special = np.array([0.0, -0.0, 5e-324, -5e-324, np.inf, -np.inf, 1e308, -1e-300])
    for _ in range(200):
        v = rng.choice(np.concatenate([special, rng.standard_normal(8)]), rng.integers(0, 12))
        if rng.random() < 0.2:
            v[rng.integers(0, len(v) + 1) - 1 :] = np.nan
        with np.errstate(invalid="ignore"):
            expected = np.max(v, initial=0.0)
        assert np.array_equal(solver._largest_of(v), expected, equal_nan=True), v
        m = v.reshape(1, -1) if rng.random() < 0.5 else np.tile(v, (2, 1))
        expected = np.max(np.abs(m), initial=0.0)
        assert np.array_equal(solver._largest_magnitude(m), expected, equal_nan=True), m
