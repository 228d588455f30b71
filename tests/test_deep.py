"""Deep layered circuits: the layered solver's accelerated sweeps against Newton, and their count."""

from __future__ import annotations

import importlib
import itertools

import numpy as np
import pytest
from randomcircuits import ROOT

from eqprop_cli import Network, compile_circuit, load_circuit, parse_circuit, solve

solver = importlib.import_module("eqprop_cli.solver.equilibrium")


def deep_circuit(seed: int, layers: int, dtype: str = "float64") -> tuple[Network, int]:
    """A random circuit with ``layers`` hidden layers of ideal diodes (hard clamps to ground
    and to a rail) and bias currents; conductances spread over two decades (stored at
    ``dtype``)."""
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(3, 12))
    low = float(rng.uniform(0.05, 1.0))
    text = f"""[circuit]
name = "deep-{seed}"
[devices.w]
type = "resistor"
init = "uniform"
init_low = "{low:.3g}u"
init_high = "{low * 100:.3g}u"
seed = {seed}
[devices.clamp]
type = "diode"
model = "ideal"
g_on = "inf"
[devices.bias]
type = "isource"
current = "{rng.uniform(-2e-6, 2e-6):.3g}"
[rails]
vtop = {rng.uniform(0.5, 3.0):.3g}
[input]
size = {n_in}
encoding = "{rng.choice(["single", "differential"])}"
gain = {rng.uniform(0.5, 4.0):.3g}
[output]
size = {int(rng.integers(1, 4))}
readout = "differential"
[solver]
dtype = "{dtype}"
"""
    names = [f"h{k}" for k in range(layers)]
    for name in names:
        text += f"""[[hidden]]
name = "{name}"
size = {int(rng.integers(3, 30))}
bias = "bias"
diodes = [{{ device = "clamp", anode = "gnd", cathode = "node" }},
          {{ device = "clamp", anode = "node", cathode = "vtop" }}]
"""
    for a, b in itertools.pairwise(["input", *names, "output"]):
        text += f'[[connections]]\nfrom = "{a}"\nto = "{b}"\ndevice = "w"\n'
    return Network(compile_circuit(parse_circuit(text))), n_in


@pytest.mark.parametrize(("seed", "layers"), [(s, 2 + s % 2) for s in range(8)])
def test_deep_circuits_layered_agrees_with_newton(seed, layers):
    net, n_in = deep_circuit(seed, layers)
    x = np.random.default_rng(seed).uniform(-1, 1, (6, n_in))
    a = solve(net, x, method="layered", tol=1e-13, vtol=1e-10)
    b = solve(net, x, method="newton", tol=1e-13, vtol=1e-10)
    assert a.success and b.success
    assert np.abs(a.voltages - b.voltages).max() <= 1e-7
    assert np.abs(net.kcl_residual(a.voltages)).max() <= 1e-12
    # nudged, as in training, warm-started from the free equilibrium
    targets = np.random.default_rng(seed + 1).uniform(0, 1, (6, len(net.outputs)))
    nudge = solver.Nudge(1e-6, target=targets)
    c = solve(net, x, method="layered", tol=1e-13, vtol=1e-10, nudge=nudge, x0=a.unknowns, like=a)
    d = solve(net, x, method="newton", tol=1e-13, vtol=1e-10, nudge=nudge)
    assert c.success and d.success
    assert np.abs(c.voltages - d.voltages).max() <= 1e-7


@pytest.mark.parametrize("seed", range(8, 14))
def test_three_hidden_layers_accelerated_agree_with_newton(seed):
    """Random 3-hidden-layer circuits, accelerated (``_Anderson``): the free equilibrium and
    both centred nudged ones, the second warm-started from the line through the first
    two as in training, within 1e-7 V of Newton's."""
    net, n_in = deep_circuit(seed, 3)
    x = np.random.default_rng(seed).uniform(-1, 1, (6, n_in))
    free = solve(net, x, method="layered", tol=1e-13, vtol=1e-10)
    assert solver._accelerable(free.problem.contraction).any()  # the accelerated path is tested
    assert free.success
    exact = solve(net, x, method="newton", tol=1e-13, vtol=1e-10)
    assert np.abs(free.voltages - exact.voltages).max() <= 1e-7
    # auto keeps the sweeps (an extrapolation that did not shrink the change is no stall)
    assert solve(net, x, tol=1e-13, vtol=1e-10).method == "layered"
    targets = np.random.default_rng(seed + 1).uniform(0, 1, (6, len(net.outputs)))
    start = free.unknowns
    first = None
    for beta in (1e-6, -1e-6):
        nudge = solver.Nudge(beta, target=targets)
        if first is not None:
            start = 2 * free.unknowns - first.unknowns
        state = solve(
            net, x, method="layered", tol=1e-13, vtol=1e-10, nudge=nudge, x0=start, like=free
        )
        exact = solve(net, x, method="newton", tol=1e-13, vtol=1e-10, nudge=nudge)
        assert state.success and exact.success
        assert np.abs(state.voltages - exact.voltages).max() <= 1e-7
        first = state


def energies(net, x, sweeps: int) -> list[np.ndarray]:
    """The energy after each of the first ``sweeps`` sweeps of a layered solve."""
    return [
        solve(net, x, method="layered", tol=1e-30, vtol=1e-30, max_iter=k).energy
        for k in range(1, sweeps + 1)
    ]


def test_accelerated_sweeps_never_raise_the_energy():
    net, n_in = deep_circuit(3, 3)
    x = np.random.default_rng(3).uniform(-1, 1, (4, n_in))
    assert solve(net, x, method="layered", tol=1e-30, max_iter=15).iterations == 15
    for earlier, later in itertools.pairwise(energies(net, x, 15)):
        assert np.all(later <= earlier + 1e-15 * np.abs(earlier))


def test_a_sweep_that_raises_the_energy_is_undone(monkeypatch):
    """The first extrapolations pushed three times too far: the sweeps that end higher are
    undone (the energy still never rises), and the solve still ends at Newton's equilibrium.
    (The energy cannot tell points apart closer than about sqrt(rounding) relative, so only
    the first ones are pushed.)"""
    net, n_in = deep_circuit(3, 3)
    x = np.random.default_rng(3).uniform(-1, 1, (4, n_in))
    extrapolate, record = solver._Anderson.extrapolate, solver._Anderson.record
    undone = []

    def far(self, x_all, more, changes):
        before = x_all[:, self.blocks[1].idx].copy()
        extrapolate(self, x_all, more, changes)
        if self.pushed < 3:
            self.pushed += 1
            step = x_all[:, self.blocks[1].idx] - before
            x_all[:, self.blocks[1].idx] = before + 3.0 * step

    def counted(self, start, x_all):
        undone.append(record(self, start, x_all))
        return undone[-1]

    monkeypatch.setattr(solver._Anderson, "pushed", 0, raising=False)
    monkeypatch.setattr(solver._Anderson, "extrapolate", far)
    monkeypatch.setattr(solver._Anderson, "record", counted)
    for earlier, later in itertools.pairwise(energies(net, x, 15)):
        assert np.all(later <= earlier + 1e-15 * np.abs(earlier))
    assert any(u.any() for u in undone)
    a = solve(net, x, method="layered", tol=1e-13, vtol=1e-10)
    b = solve(net, x, method="newton", tol=1e-13, vtol=1e-10)
    assert a.success and np.abs(a.voltages - b.voltages).max() <= 1e-7


def mnist_like(n: int) -> np.ndarray:
    """Inputs in [0, 1], three quarters of them 0 (as MNIST's pixels are)."""
    rng = np.random.default_rng(1)
    return rng.random((n, 784)) * (rng.random((n, 784)) < 0.25)


def sweeps(name: str, layers: int, x: np.ndarray) -> tuple[int, int, int]:
    """Sweeps of a free solve and of the two centred nudged solves warm-started as in
    training, with 100 nodes per hidden layer."""
    sets = [f"hidden.{k}.size=100" for k in range(layers)]
    net = Network(compile_circuit(load_circuit(ROOT / "circuits" / f"{name}.toml", sets)))
    free = solve(net, x, method="layered", tol=1e-12)
    targets = np.random.default_rng(2).uniform(0, 1, (len(x), len(net.outputs)))
    up = solve(
        net,
        x,
        method="layered",
        tol=1e-12,
        nudge=solver.Nudge(1e-6, target=targets),
        x0=free.unknowns,
        like=free,
    )
    down = solve(
        net,
        x,
        method="layered",
        tol=1e-12,
        nudge=solver.Nudge(-1e-6, target=targets),
        x0=2 * free.unknowns - up.unknowns,
        like=free,
    )
    assert free.success and up.success and down.success
    return free.iterations, up.iterations, down.iterations


def test_deep_circuits_converge_in_few_sweeps(monkeypatch):
    """Free solves with two and three hidden layers need at most twice the sweeps of one
    hidden layer's (issue 15); without the acceleration three need more than four times as
    many, and their nudged solves more than twice the accelerated ones' sweeps. (One layer's
    nudged solves start with the outputs' class, which takes a sweep off them: BENCHMARKS.md
    compares the deep nudged counts with them.)"""
    x = mnist_like(32)
    one = sweeps("mnist-ideal", 1, x)
    deep = [
        sweeps(name, layers, x) for name, layers in (("mnist-ideal-2h", 2), ("mnist-ideal-3h", 3))
    ]
    for free, _, _ in deep:
        assert free <= 2 * one[0]
    monkeypatch.setattr(solver, "ACCEL_FROM", 1.0)  # no contraction is slow enough: plain
    plain = sweeps("mnist-ideal-3h", 3, x)
    assert plain[0] > 4 * one[0]
    assert plain[1] + plain[2] > 2 * (deep[1][1] + deep[1][2])


def test_newton_in_chunks_solves_as_the_whole_batch(monkeypatch):
    """Newton splits a batch whose block LU would pass NEWTON_MEMORY into chunks of samples:
    the same equilibria, free and nudged, as one solve of the whole batch."""
    net, n_in = deep_circuit(3, 3)
    x = np.random.default_rng(3).uniform(-1, 1, (7, n_in))
    targets = np.random.default_rng(4).uniform(0, 1, (7, len(net.outputs)))
    nudge = solver.Nudge(1e-6, target=targets)
    whole = [solve(net, x, method="newton", tol=1e-13, vtol=1e-10, nudge=n) for n in (None, nudge)]
    sizes = []
    batch = solver._newton_batch

    def counted(problem, *args):
        sizes.append(problem.batch)
        return batch(problem, *args)

    monkeypatch.setattr(solver, "_newton_batch", counted)
    per_sample = solver.NEWTON_MEMORY // solver._newton_chunk(whole[0].problem)
    monkeypatch.setattr(solver, "NEWTON_MEMORY", 3 * per_sample)  # 3 samples per chunk
    for n, one in zip((None, nudge), whole, strict=True):
        sizes.clear()
        parts = solve(net, x, method="newton", tol=1e-13, vtol=1e-10, nudge=n)
        assert sizes == [3, 3, 1]
        assert parts.success and one.success and parts.unknowns.shape == one.unknowns.shape
        assert np.abs(parts.voltages - one.voltages).max() <= 1e-9
        if n is None:  # (nudged, the outputs carry the nudge's current too)
            assert np.abs(net.kcl_residual(parts.voltages)).max() <= 1e-12
        np.testing.assert_allclose(parts.energy, one.energy, rtol=1e-12, atol=0)
