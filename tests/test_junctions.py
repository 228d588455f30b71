"""Stiff Shockley diodes at large swings (issue 13): the layered solver's stacked
junctions and its Lambert-W start of a cold solve give the exact equilibrium, free and
nudged, against Newton, the 50-digit reference and ngspice."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import randomcircuits as rc
from reference import exact_voltages

from eqprop_cli import Network, compile_circuit, parse_circuit, solve
from eqprop_cli.devices.diode import EXP_LIMIT
from eqprop_cli.solver.equilibrium import Nudge

equilibrium = importlib.import_module("eqprop_cli.solver.equilibrium")


def stiff_layered(seed: int, swing: float, clamp: bool = False) -> tuple[str, int]:
    """A random 1-hidden-layer circuit whose hidden nodes swing volts: inputs of ``swing`` V
    per unit, stiff junctions of different models above and below each node (so that each
    unknown has two diodes of different IS and n), amplifiers on some seeds, and rails
    within a fifth of the swing (so that many diodes conduct). ``clamp``: a hard clamp
    too, holding each node within 0.2 V of the rails (before the junctions conduct)."""
    rng = np.random.default_rng(seed)
    n_in, n_hidden, n_out = (int(rng.integers(2, 7)) for _ in range(3))
    upper = f'is = "{10 ** rng.uniform(-16, -12):.3g}"\nn = {rng.uniform(1.0, 2.0):.3f}'
    lower = f'is = "{10 ** rng.uniform(-16, -12):.3g}"\nn = {rng.uniform(1.0, 2.0):.3f}'
    amplifier = 'amplifier = "amp"\n' if seed % 2 else ""
    anode = "node_a" if amplifier and seed % 4 == 1 else "node"
    clamped = "".join(
        f'\n  {{ device = "clamp", anode = "{a}", cathode = "{c}" }},'
        for a, c in (((anode, "vpos"), ("vneg", anode)) if clamp else ())
    )
    return (
        f'''[circuit]
name = "stiff-{seed}"

[devices.w]
type = "resistor"
init = "uniform"
init_low = "0.1u"
init_high = "20u"
seed = {seed}

[devices.up]
type = "diode"
model = "shockley"
{upper}

[devices.down]
type = "diode"
model = "shockley"
{lower}

[devices.clamp]
type = "diode"
model = "ideal"
threshold = 0.2
g_on = "inf"

[devices.amp]
type = "amplifier"
gain = {rng.uniform(1.0, 8.0):.3f}

[rails]
vpos = {rng.uniform(0.0, 0.2 * swing):.3f}
vneg = {rng.uniform(-0.2 * swing, 0.0):.3f}

[input]
size = {n_in}
encoding = "differential"
gain = {swing}

[[hidden]]
name = "h"
size = {n_hidden}
{amplifier}diodes = [
  {{ device = "up", anode = "{anode}", cathode = "vpos" }},
  {{ device = "down", anode = "vneg", cathode = "{anode}" }},{clamped}
]

[output]
size = {n_out}
readout = "differential"
'''
        + "".join(
            f'\n[[connections]]\nfrom = "{a}"\nto = "{b}"\ndevice = "w"\n'
            for a, b in (("input", "h"), ("h", "output"))
        ),
        n_in,
    )


def network(text: str) -> Network:
    return Network(compile_circuit(parse_circuit(text)))


def conducting(net: Network, eq) -> float:
    """The fraction of diodes forward-biased by more than 10 n Vt (of every sample)."""
    V = eq.voltages
    drops = [(V[:, d.anode] - V[:, d.cathode]) / d.model.nvt for d in net.diodes]
    return float(np.mean(np.concatenate([v.ravel() for v in drops]) > 10.0))


def uses_junctions(net: Network, inputs: np.ndarray) -> bool:
    """Whether a class of the layered solver takes the stacked-junction path."""
    problem = equilibrium.Problem(net, inputs)
    classes = equilibrium.layered_classes(net, problem)
    blocks = [equilibrium._Block(problem, classes, k) for k in (0, 1)]
    return any(b.junctions is not None for b in blocks)


def layered_as_newton(seed: int, swing: float, clamp: bool = False):
    """(network, inputs, layered equilibrium) of a stiff circuit whose free layered solve
    (stacked junctions, cold start) is within 1e-7 V of damped Newton's."""
    text, n = stiff_layered(seed, swing, clamp)
    net = network(text)
    inputs = np.random.default_rng(seed).uniform(0.0, 1.0, (6, n))
    assert uses_junctions(net, inputs)
    eq = solve(net, inputs, method="layered")
    reference = solve(net, inputs, method="newton")
    assert eq.success and reference.success, (eq.message, reference.message)
    assert np.abs(eq.voltages - reference.voltages).max() <= 1e-7
    return net, inputs, eq


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("swing", [1.0, 20.0])
def test_stiff_junctions_match_newton_free_and_nudged(seed, swing):
    """Layered (cold start, stacked junctions) against damped Newton within 1e-7 V, at the
    default tolerances, free and nudged; hidden nodes swing volts at 20 V."""
    net, inputs, free = layered_as_newton(seed, swing)
    if swing > 1:  # the case it is for: diodes far into conduction (and far reverse)
        assert conducting(net, free) > 0.05
    n_out = len(net.outputs)
    nudge = Nudge(beta=1e-6, target=np.random.default_rng(seed).uniform(0.0, 1.0, (6, n_out)))
    nudged = solve(net, inputs, method="layered", nudge=nudge, x0=free.unknowns, like=free)
    newton = solve(net, inputs, method="newton", nudge=nudge)
    assert nudged.success and newton.success
    assert np.abs(nudged.voltages - newton.voltages).max() <= 1e-7


@pytest.mark.parametrize("seed", range(4))
def test_converged_stiff_solves_are_within_vtol_of_the_50_digit_reference(seed):
    """Every sample reported converged is within vtol (1e-9 V) of the exact answer."""
    text, n = stiff_layered(seed, 20.0)
    net = network(text)
    inputs = np.random.default_rng(seed + 100).uniform(0.0, 1.0, (2, n))
    eq = solve(net, inputs, method="layered")
    assert eq.success, eq.message
    for b in range(len(inputs)):
        exact = exact_voltages(net, inputs[b], eq.voltages[b])
        assert np.abs(eq.voltages[b] - exact).max() <= 1e-9


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_stiff_junctions_agree_with_ngspice(ngspice, seed):
    """Large swings, an independent simulator: within 1e-7 V at every node."""
    text, n = stiff_layered(seed, 20.0)
    net = network(text)
    inputs = np.random.default_rng(seed).uniform(0.0, 1.0, (2, n))
    eq = solve(net, inputs)
    assert eq.success, eq.message
    rc.assert_agrees_with_ngspice(net, inputs, eq, 1e-7)


def test_stacked_derivatives_are_the_diode_models(monkeypatch):
    """The stacked junctions' f1 and f2 equal the per-group models' sums, also past the
    exponent limit (where Shockley's law continues linearly)."""
    text, n = stiff_layered(1, 20.0)
    net = network(text)
    inputs = np.random.default_rng(1).uniform(0.0, 1.0, (5, n))
    problem = equilibrium.Problem(net, inputs)
    classes = equilibrium.layered_classes(net, problem)
    block = next(
        b for b in (equilibrium._Block(problem, classes, k) for k in (0, 1)) if b.junctions
    )
    rng = np.random.default_rng(2)
    b = rng.normal(0.0, 1e-5, block.r.shape)
    nvt = min(t[0].nvt for t in block.terms)
    for spread in (0.1, 1.0, 3.0 * EXP_LIMIT * nvt):
        x = rng.uniform(-spread, spread, block.r.shape)
        f1, f2 = block.derivative(x, b, second=True)
        junctions, block.junctions = block.junctions, None
        g1, g2 = block.derivative(x, b, second=True)
        h1 = block.derivative(x, b)[0]
        block.junctions = junctions
        assert np.allclose(f1, g1, rtol=1e-12, atol=1e-20)
        assert np.allclose(f2, g2, rtol=1e-12, atol=0.0)
        assert np.allclose(block.derivative(x, b)[0], h1, rtol=1e-12, atol=1e-20)


@pytest.mark.parametrize("seed", range(4))
def test_stiff_junctions_with_hard_clamps_match_newton(seed):
    """Clamps are bounds beside the stacked junctions: the same equilibrium as Newton's."""
    net, inputs, eq = layered_as_newton(seed, 20.0, clamp=True)
    problem = equilibrium.Problem(net, inputs)
    held = [
        np.isclose(eq.unknowns, bound, rtol=0.0, atol=1e-9) for bound in (problem.lo, problem.hi)
    ]
    assert np.any(held)  # some clamp holds its node


def test_junctions_apply_only_to_plain_shockley_diodes():
    """Series resistance (an implicit current) keeps the per-group path."""
    text, n = stiff_layered(0, 20.0)
    text = text.replace('model = "shockley"\n', 'model = "shockley"\nrs = "100"\n', 1)
    net = network(text)
    inputs = np.random.default_rng(0).uniform(0.0, 1.0, (3, n))
    assert not uses_junctions(net, inputs)
    eq = solve(net, inputs, method="layered")
    assert eq.success
    reference = solve(net, inputs, method="newton")
    assert np.abs(eq.voltages - reference.voltages).max() <= 1e-7


def test_a_cold_solve_starts_each_diode_node_near_its_root(monkeypatch):
    """The Lambert-W start: on the paper-sized stiff circuit, the first sweep's 1-D solves
    take at most a few Newton steps (from 0 V they took over ten)."""
    text, n = stiff_layered(5, 20.0)
    net = network(text)
    inputs = np.random.default_rng(5).uniform(0.0, 1.0, (16, n))
    steps = []
    derivative = equilibrium._Block.derivative

    def counted(self, x, b, second=False):
        if second and self.terms:
            steps[-1] += 1
        return derivative(self, x, b, second)

    update = equilibrium._Block.update

    def per_update(self, *args, **kwargs):
        steps.append(0)
        return update(self, *args, **kwargs)

    monkeypatch.setattr(equilibrium._Block, "derivative", counted)
    monkeypatch.setattr(equilibrium._Block, "update", per_update)
    eq = solve(net, inputs, method="layered")
    assert eq.success
    first = [s for s in steps[:2] if s]  # the first sweep's diode class
    assert first and max(first) <= 3, steps
