"""Pulsed programming of trained arrays and the measurement of the phases (units)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from eqprop_cli.devices.update import UpdateModel, stream
from eqprop_cli.learn import optim
from eqprop_cli.learn.programming import Measurement, Programmer
from eqprop_cli.solver.equilibrium import Nudge

G_MIN, G_MAX = 1e-9, 2e-5


def group(kind: str = "conductance"):
    return SimpleNamespace(kind=kind, scale=G_MAX, low=G_MIN, high=G_MAX)


def test_ideal_arrays_take_the_exact_clipped_step():
    rng = np.random.default_rng(0)
    p = [rng.uniform(G_MIN, G_MAX, (30, 20)), rng.uniform(-1e-6, 1e-6, 20)]
    steps = [rng.normal(0, 0.1, (30, 20)), rng.normal(0, 0.1, 20)]
    groups = [group(), SimpleNamespace(kind="current", scale=2e-5, low=-2e-5, high=2e-5)]
    programmer = Programmer([UpdateModel("ideal"), None], groups, [600, 20], seed=3)
    assert not programmer.active and programmer.arrays == []
    exact = [k for k in range(2) if k not in programmer.arrays]
    rule = optim.chain(  # the trainer's chain, without momentum and at rate -1
        optim.scale([g.scale for g in groups], "denormalise", exact),
        optim.clip([g.low for g in groups], [g.high for g in groups], exact),
        programmer.piece(groups),
    )
    new = [a.copy() for a in p]
    _, pulses = rule.step(new, [s.copy() for s in steps], {}, [1.0, 1.0])
    assert pulses == 0
    for a, b, s, g in zip(new, p, steps, groups, strict=True):
        np.testing.assert_array_equal(a, np.clip(b + s * g.scale, g.low, g.high))


def test_pulsed_array_moves_by_whole_steps_and_counts_its_pulses():
    model = UpdateModel("linear", levels=21, max_pulses=3)
    programmer = Programmer([model], [group()], [4], seed=0)
    span = G_MAX - G_MIN
    p = [programmer.prepare([np.full(4, G_MIN + 10 * span / 20)])[0]]
    before = p[0].copy()
    steps = np.array([0.0, 0.051, -0.12, 0.9]) * span / G_MAX  # 0, 1, -2 and capped 3 steps
    pulses = programmer.apply(p, {0: steps}, [group()], 0, 0)
    np.testing.assert_allclose((p[0] - before) / (span / 20), [0, 1, -2, 3], atol=1e-9)
    assert pulses == 6


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_compiled_chain_step_gives_the_bits_of_its_pieces_on_whole_arrays(dtype):
    """The chain's one compiled pass: the same bits as each piece by numpy on whole arrays."""
    rng = np.random.default_rng(1)
    shapes = [(70, 50), (20, 30), (13,)]
    scales, low, high = [G_MAX, G_MAX, 1e-5], [G_MIN, G_MIN, -1e-5], [G_MAX, G_MAX, 1e-5]
    p = [rng.uniform(lo, hi, s).astype(dtype) for lo, hi, s in zip(low, high, shapes, strict=True)]
    p[1] = np.asfortranarray(p[1])  # not C-contiguous: stepped on a copy
    grads = [rng.normal(0, 1e-3, s).astype(dtype) for s in shapes]
    velocity = [rng.normal(0, 1e-2, s).astype(dtype) for s in shapes]
    rule = optim.chain(
        optim.scale(scales, "normalise"),
        optim.momentum(0.9),
        optim.learning_rate(),
        optim.scale(scales, "denormalise"),
        optim.clip(low, high),
    )
    expected = []
    for k, (a, g, v) in enumerate(zip(p, grads, velocity, strict=True)):
        v2 = 0.9 * v + g * scales[k]  # numpy: python floats take the arrays' dtype
        expected.append((np.clip(a + (v2 * -2.0) * scales[k], low[k], high[k]), v2))
    new = [a.copy(order="K") for a in p]
    momentum = {"momentum": [v.copy() for v in velocity]}
    state, _ = rule.step(new, [g.copy(order="K") for g in grads], momentum, [2.0] * 3)
    for a, v, (a_expected, v_expected) in zip(new, state["momentum"], expected, strict=True):
        assert a.dtype == v.dtype == dtype
        np.testing.assert_array_equal(a, a_expected)
        np.testing.assert_array_equal(v, v_expected)
    assert np.any(new[0] == G_MAX) and np.any(new[1] == G_MAX)  # the clip acted


def test_chain_without_momentum_and_a_landing_piece():
    """Scalings in a row without momentum; a landing piece gets the changes, then the clip."""
    rng = np.random.default_rng(2)
    p = [rng.uniform(G_MIN, G_MAX, (6, 5)), rng.uniform(G_MIN, G_MAX, 7)]
    grads = [rng.normal(0, 1e-3, a.shape) for a in p]
    got = {}

    def land(values, changes, where):
        got.update({k: c.copy() for k, c in changes.items()})
        for k, c in changes.items():
            values[k] += 10 * c  # far past the clip
        return 4

    rule = optim.chain(
        optim.scale([3.0, 5.0], "normalise"),
        optim.momentum(0.0),
        optim.learning_rate(),
        optim.scale([7.0, 11.0], "denormalise"),
        optim.clip([G_MIN] * 2, [G_MAX] * 2),
        optim.Piece("program", land=land, arrays=frozenset({1})),
    )
    new = [a.copy() for a in p]
    state, count = rule.step(new, [g.copy() for g in grads], {}, [0.5, 0.25])
    assert state == {} and count == 4 and set(got) == {1}
    np.testing.assert_array_equal(new[0], np.clip(p[0] + grads[0] * 3.0 * -0.5 * 7.0, G_MIN, G_MAX))
    np.testing.assert_array_equal(got[1], grads[1] * 5.0 * -0.25 * 11.0)
    np.testing.assert_array_equal(new[1], np.clip(p[1] + 10 * got[1], G_MIN, G_MAX))


def test_device_variation_is_saved_and_restored():
    model = UpdateModel("linear", levels=33, d2d_step=0.3, write_noise=0.01)
    one = Programmer([model], [group()], [50], seed=4)
    saved = one.state()
    assert set(saved) == {"0/c_up", "0/r_up", "0/c_down", "0/r_down"}
    other = Programmer([model], [group()], [50], seed=5)  # other draws ...
    assert not np.array_equal(other.state()["0/c_up"], saved["0/c_up"])
    response = other.entries[0][2]
    other.load(other.state())  # its own draws again (a run continued): nothing rebuilt
    assert other.entries[0][2] is response
    other.load(saved)  # ... until the checkpoint's are loaded
    np.testing.assert_array_equal(other.state()["0/c_up"], saved["0/c_up"])
    assert other.entries[0][2] is not response  # the Response of the loaded devices
    fresh = Programmer([model], [group()], [50], seed=5)
    fresh.load(saved)
    np.testing.assert_array_equal(other.entries[0][2].values, fresh.entries[0][2].values)


def test_adc_quantises_and_clips_to_its_range():
    adc = Measurement(adc_bits=3, adc_range=1.0)
    v = np.array([-2.0, -1.0, -0.2, 0.0, 0.3, 0.99, 5.0])
    read = adc.read(v, None)
    lsb = 2.0 / 7
    np.testing.assert_allclose((read + 1.0) / lsb, np.rint((read + 1.0) / lsb), atol=1e-12)
    assert np.all(np.abs(read - np.clip(v, -1, 1)) <= lsb / 2 + 1e-12)
    assert read[0] == -1.0 and read[-1] == pytest.approx(1.0)


def test_read_noise_and_nudge_error_have_the_stated_spread():
    n = 200_000
    noisy = Measurement(read_noise=2e-3, nudge_error=0.05)
    read = noisy.read(np.full(n, 0.25), stream(1, 0, 0, "read_noise")) - 0.25
    assert abs(read.mean()) < 5 * 2e-3 / math.sqrt(n)
    assert read.std() == pytest.approx(2e-3, rel=0.02)
    rng = stream(1, 0, 0, "nudge")
    factors = np.array(
        [noisy.nudged(Nudge(1.0, target=np.zeros(1)), rng).beta for _ in range(20_000)]
    )
    assert abs(factors.mean() - 1.0) < 5 * 0.05 / math.sqrt(len(factors))
    assert factors.std() == pytest.approx(0.05, rel=0.03)
    current = noisy.nudged(Nudge(current=np.ones((2, 3))), stream(2, 0, 0, "nudge")).current
    assert np.all(current == current[0, 0]) and current[0, 0] != 1.0  # one factor per phase
    exact = Nudge(2.0, target=np.zeros(1))
    assert Measurement().nudged(exact, None) is exact
